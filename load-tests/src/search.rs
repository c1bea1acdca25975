//! `search`: the interactions list, search and advanced search at
//! contact-center scale, on Postgres (issue #6, part 6).
//!
//! 1. Fill: the tool migrates an empty database with mailroom's own
//!    migrations, then writes a year of a contact center straight into the
//!    schema with bulk SQL (`INSERT … SELECT … FROM generate_series`):
//!    queues, a few hundred agents and their memberships, accounts (each on a
//!    fresh Dovecot mailbox, so the app's IMAP sessions are real and quiet),
//!    contacts with first and last names (some accented) and emails,
//!    interactions (~30 % open, owners, unread, tags on ~10 %), messages with
//!    text drawn from a vocabulary with a Zipf-like distribution, and the
//!    interactions' `last_message_*` columns as ingest fills them. Then
//!    `VACUUM (ANALYZE)`. Going through the API would take hours for 1 M
//!    messages and measure ingest, which `ingest` already does.
//! 2. Measure: mailroom is started on that database, and every query is
//!    sent `--runs` times over HTTP (the path integrators use), one at a
//!    time, timed from request to the last byte of the answer.
//! 3. `--explain`: the `EXPLAIN (ANALYZE, BUFFERS)` of each query's SQL, as
//!    the store builds it for the same filter.
//!
//! `--reuse` measures a database an earlier run filled (the app migrates it
//! first, so a new index migration is timed and then measured).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use mailroom::domain::{AgentId, InteractionStatus};
use mailroom::store::Store;
use mailroom::store::listing::{Cursor, ListFilter, Reader, Scope};
use serde_json::{Value, json};

use crate::app::{Mailroom, Services, StoreArg};
use crate::logs::LogCounts;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// An empty Postgres database (postgres://…): migrated, filled and left
    /// in place; with `--reuse`, one an earlier run filled.
    #[arg(long, value_name = "URL")]
    store: String,
    /// Measure the database as an earlier run filled it (no fill).
    #[arg(long)]
    reuse: bool,
    /// Messages to generate (about: each interaction gets 1 to
    /// 2 × messages/interactions − 1 of them).
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    messages: u64,
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    interactions: u64,
    #[arg(long, default_value_t = 50_000, value_name = "N")]
    contacts: u64,
    /// Agents (role agent), spread over the queues.
    #[arg(long, default_value_t = 300, value_name = "N")]
    agents: u64,
    /// Timed runs per query (after 2 untimed warm-up runs).
    #[arg(long, default_value_t = 50, value_name = "N")]
    runs: usize,
    /// Print the `EXPLAIN (ANALYZE, BUFFERS)` of every measured query.
    #[arg(long)]
    explain: bool,
    /// The env file written by `scripts/services.sh start`.
    #[arg(
        long,
        default_value = "/var/tmp/mailroom-services/env",
        value_name = "FILE"
    )]
    services_env: std::path::PathBuf,
}

const QUEUES: u64 = 6;
const ACCOUNTS: u64 = 4;
const PASSWORD: &str = "pw-search-load";
const SUPERVISOR: &str = "gen-sup";
/// Words in the vocabulary: the common ones below, then made-up ones.
const VOCABULARY: u32 = 5000;
/// The most frequent words first (rank 1 is the most frequent).
const COMMON: &[&str] = &[
    "the",
    "to",
    "and",
    "you",
    "order",
    "please",
    "for",
    "your",
    "is",
    "my",
    "we",
    "have",
    "it",
    "on",
    "with",
    "thank",
    "this",
    "can",
    "not",
    "be",
    "help",
    "hello",
    "account",
    "invoice",
    "payment",
    "delivery",
    "refund",
    "package",
    "received",
    "problem",
    "still",
    "would",
    "like",
    "number",
    "card",
    "email",
    "customer",
    "service",
    "support",
    "return",
    "shipping",
    "address",
    "product",
    "time",
    "week",
    "today",
    "tomorrow",
    "yesterday",
    "phone",
    "call",
    "back",
    "again",
    "update",
    "status",
    "cancel",
    "subscription",
    "price",
    "charge",
    "error",
    "login",
    "password",
    "reset",
    "wrong",
    "item",
    "size",
    "colour",
    "store",
    "online",
    "website",
    "app",
    "mobile",
    "message",
    "reply",
    "answer",
    "question",
    "information",
    "details",
    "attached",
    "photo",
    "broken",
    "damaged",
    "missing",
    "late",
    "warranty",
    "repair",
    "exchange",
    "voucher",
    "discount",
    "newsletter",
    "unsubscribe",
    "contract",
    "renewal",
    "bill",
    "bank",
    "transfer",
    "receipt",
    "confirm",
    "urgent",
    "regards",
];
/// Made-up words are three consonant–vowel syllables: the base-20 digits
/// of their rank. Two letters each, so every rank gives a different word.
const SYLLABLES: &[&str] = &[
    "ba", "ke", "di", "fo", "gu", "ha", "je", "ki", "lo", "mu", "na", "pe", "ri", "so", "tu", "va",
    "we", "xi", "yo", "zu",
];
const FIRST_NAMES: &[&str] = &[
    "Anna",
    "José",
    "Zoë",
    "François",
    "Jürgen",
    "Maria",
    "John",
    "Peter",
    "Linda",
    "Ahmed",
    "Fatima",
    "Chen",
    "Yuki",
    "Olga",
    "Søren",
    "Ingrid",
    "Luis",
    "Carmen",
    "Paul",
    "Emma",
    "Noah",
    "Lucas",
    "Léa",
    "Chloé",
    "Hugo",
    "Mia",
    "Ben",
    "Sara",
    "Tomás",
    "Inês",
    "Björn",
    "Agnès",
    "David",
    "Laura",
    "Marco",
    "Giulia",
    "Ivan",
    "Nina",
    "Omar",
    "Priya",
];
/// Ordered by frequency: the first ones are shared by many contacts.
const LAST_NAMES: &[&str] = &[
    "Smith",
    "Müller",
    "García",
    "Martin",
    "Rossi",
    "Dubois",
    "Johnson",
    "Schmidt",
    "López",
    "Bernard",
    "Brown",
    "Fernández",
    "Novak",
    "Nowak",
    "Jensen",
    "Hansen",
    "Schneider",
    "Petit",
    "Moreau",
    "Wilson",
    "Núñez",
    "Sørensen",
    "Dvořák",
    "Kowalski",
    "Fischer",
    "Weber",
    "Ricci",
    "Bianchi",
    "Costa",
    "Silva",
    "Santos",
    "Pereira",
    "Öztürk",
    "Yılmaz",
    "Nagy",
    "Horváth",
    "Taylor",
    "Anderson",
    "Thomas",
    "Lefèvre",
    "Girard",
    "Bonnet",
    "Dupont",
    "Lambert",
    "Fontaine",
    "Rousseau",
    "Vincent",
    "Muller",
    "Meyer",
    "Wagner",
    "Becker",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Krüger",
    "Hofmann",
    "Hartmann",
    "Lange",
    "Werner",
    "Krause",
    "Lehmann",
    "Köhler",
    "Ramírez",
    "Torres",
    "Flores",
    "Rivera",
    "Gómez",
    "Díaz",
    "Cruz",
    "Morales",
    "Reyes",
    "Gutiérrez",
    "Ortiz",
    "Chávez",
    "Ruiz",
    "Álvarez",
    "Castillo",
    "Jiménez",
    "Vázquez",
    "Romero",
    "Herrera",
    "Medina",
    "Aguilar",
    "Vargas",
    "Castro",
    "Guzmán",
    "Mendoza",
    "Fuchs",
    "Scholz",
    "Keller",
    "Lindqvist",
    "Åberg",
    "Zhang",
    "Wang",
    "Li",
    "Liu",
    "Chen",
    "Yang",
    "Huang",
    "Zhao",
    "Wu",
    "Zhou",
    "Tanaka",
    "Suzuki",
    "Takahashi",
    "Watanabe",
    "Ito",
    "Ivanov",
    "Smirnov",
    "Kuznetsov",
    "Popov",
    "Petrov",
    "Okafor",
    "Mensah",
    "Diallo",
    "Traoré",
    "Haddad",
    "Khalil",
    "Nasser",
    "Kaya",
    "Demir",
    "Şahin",
];
const TAGS: &[&str] = &[
    "vip",
    "refund",
    "complaint",
    "billing",
    "urgent",
    "shipping",
    "bug",
    "feedback",
];

/// The word of `rank` (1-based), as the SQL function `gen_word` makes it.
fn word(rank: u32) -> String {
    if let Some(w) = COMMON.get(rank as usize - 1) {
        return (*w).to_string();
    }
    let s = |d: u32| SYLLABLES[(d % 20) as usize];
    format!("{}{}{}", s(rank), s(rank / 20), s(rank / 400))
}

/// A SQL array literal of `words` (our own constants: no quotes in them).
fn sql_array(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    format!("ARRAY[{}]", quoted.join(","))
}

/// The session's helper functions (pg_temp: gone with the connection).
fn functions_sql() -> String {
    let n = COMMON.len();
    format!(
        r#"
CREATE FUNCTION pg_temp.gen_word(r int) RETURNS text LANGUAGE sql IMMUTABLE AS $f$
  SELECT CASE WHEN r <= {n} THEN ({common}::text[])[r]
    ELSE ({syl}::text[])[1 + r % 20] || ({syl}::text[])[1 + (r / 20) % 20]
         || ({syl}::text[])[1 + (r / 400) % 20] END
$f$;
-- A word's rank, drawn log-uniformly from 1..VOCABULARY: rank r comes
-- up about 1/r as often as rank 1 (Zipf's law with s = 1).
CREATE FUNCTION pg_temp.zipf_rank() RETURNS int LANGUAGE sql VOLATILE AS $f$
  SELECT least({VOCABULARY}, floor(exp(random() * ln({VOCABULARY})))::int)
$f$;
"#,
        common = sql_array(COMMON),
        syl = sql_array(SYLLABLES),
    )
}

/// The whole fill, one statement after another (each timed). `{…}` holes
/// are our own integers; text values are bound ($1…) where they come from
/// outside (addresses, the password hash).
fn fill_steps(a: &Args) -> Vec<(&'static str, String)> {
    let (q, agents, i_n, c_n) = (QUEUES, a.agents, a.interactions, a.contacts);
    let per_queue = (agents / q).max(1);
    // Messages per interaction: 1 ..= 2·avg − 1, so the mean is avg.
    let spread = (2 * a.messages)
        .div_ceil(a.interactions)
        .saturating_sub(1)
        .max(1);
    let first = sql_array(FIRST_NAMES);
    let last = sql_array(LAST_NAMES);
    let tags = sql_array(TAGS);
    let (nf, nl, nt) = (FIRST_NAMES.len(), LAST_NAMES.len(), TAGS.len());
    vec![
        ("queues", format!(
            "INSERT INTO queues (name, strategy, offer_timeout_secs, sticky_secs, retry_backoff_secs, created_at, updated_at)
             SELECT 'gen-q' || n, 'ring_all', 30, 0, 10, now(), now() FROM generate_series(1, {q}) n;
             CREATE TEMP TABLE gq AS SELECT substr(name, 6)::int AS n, id FROM queues WHERE name LIKE 'gen-q%';"
        )),
        ("agents", format!(
            "INSERT INTO agents (username, name, email, role, capacity, password_hash, created_at, updated_at)
             SELECT 'agent' || lpad(n::text, 4, '0'), 'Agent ' || n, 'agent' || n || '@example.test',
                    'agent', 10, (SELECT h FROM gen_hash), now(), now()
             FROM generate_series(0, {agents} - 1) n;
             INSERT INTO agents (username, name, role, capacity, password_hash, created_at, updated_at)
             VALUES ('{SUPERVISOR}', 'Generated supervisor', 'supervisor', 0, (SELECT h FROM gen_hash), now(), now());
             CREATE TEMP TABLE ga AS SELECT substr(username, 6)::int AS n, id FROM agents WHERE username ~ '^agent[0-9]{{4}}$';
             -- Agent n works queue n % Q + 1; every tenth one a second queue too.
             INSERT INTO queue_members (queue_id, agent_id)
             SELECT gq.id, ga.id FROM ga JOIN gq ON gq.n = ga.n % {q} + 1
             UNION ALL
             SELECT gq.id, ga.id FROM ga JOIN gq ON gq.n = (ga.n + 1) % {q} + 1 WHERE ga.n % 10 = 0;"
        )),
        ("contacts", format!(
            "INSERT INTO contacts (first_name, last_name, created_at, updated_at)
             SELECT CASE WHEN n % 17 = 0 THEN NULL ELSE ({first}::text[])[1 + (n * 7) % {nf}] END,
                    ({last}::text[])[least({nl}, floor(exp(random() * ln({nl} + 1)))::int)],
                    t, t
             FROM (SELECT n, now() - random() * interval '400 days' AS t FROM generate_series(1, {c_n}) n) s;
             INSERT INTO contact_emails (email, contact_id, created_at)
             SELECT lower(regexp_replace(unaccent(coalesce(first_name, 'info') || '.' || last_name), '[^A-Za-z.]', '', 'g'))
                    || id || '@' || (ARRAY['mail.example','post.example','corp.example','shop.example'])[1 + id % 4],
                    id, created_at
             FROM contacts;"
        )),
        ("interactions", format!(
            "INSERT INTO interactions (account_id, queue_id, subject, status, owner_id, first_agent_id, contact_id,
                                       unread, unread_count, enqueued_at, created_at, updated_at, closed_at)
             SELECT acc.id, gq.id,
                    initcap(pg_temp.gen_word(pg_temp.zipf_rank() + 0 * s.g)) || ' '
                      || (SELECT string_agg(pg_temp.gen_word(pg_temp.zipf_rank()), ' ')
                          FROM generate_series(1, 2 + s.g % 5))
                      || CASE WHEN s.g % 5 = 0 THEN ' order ' || (100000 + s.g) ELSE '' END,
                    s.st,
                    CASE WHEN s.unassigned THEN NULL ELSE ga.id END,
                    CASE WHEN s.unassigned THEN NULL ELSE ga.id END,
                    (SELECT min(id) FROM contacts) + floor({c_n} * power(s.rc, 2))::bigint,
                    false, 0,
                    CASE WHEN s.st = 'open' THEN s.t END,
                    s.t, s.t,
                    CASE WHEN s.st = 'closed' THEN s.t END
             FROM (SELECT g, now() - random() * interval '365 days' AS t,
                          CASE WHEN random() < 0.3 THEN 'open' ELSE 'closed' END AS st,
                          random() AS rc, random() < 0.05 AS unassigned_draw,
                          g % {ACCOUNTS} + 1 AS an,
                          -- One in twenty was transferred to another queue.
                          CASE WHEN g % 20 = 0 THEN (g / 20) % {q} + 1 ELSE g % {ACCOUNTS} + 1 END AS qn
                   FROM generate_series(1, {i_n}) g) s0
             CROSS JOIN LATERAL (SELECT s0.g, s0.t, s0.st, s0.rc, s0.an, s0.qn,
                                        s0.st = 'open' AND s0.unassigned_draw AS unassigned) s
             JOIN gacc acc ON acc.n = s.an
             JOIN gq ON gq.n = s.qn
             JOIN ga ON ga.n = ((s.g * 7919) % {per_queue}) * {q} + s.qn - 1;"
        )),
        ("messages", format!(
            "INSERT INTO messages (interaction_id, account_id, direction, kind, from_addr, from_name, subject,
                                   text_body, message_id_header, author_agent_id, created_at)
             SELECT i.id, i.account_id,
                    CASE WHEN k % 2 = 1 THEN 'in' ELSE 'out' END, 'mail',
                    CASE WHEN k % 2 = 1 THEN ce.email ELSE acc.address END,
                    CASE WHEN k % 2 = 1 THEN concat_ws(' ', c.first_name, c.last_name) ELSE 'Support' END,
                    CASE WHEN k = 1 THEN i.subject ELSE 'Re: ' || i.subject END,
                    (SELECT string_agg(pg_temp.gen_word(pg_temp.zipf_rank()), ' ')
                     FROM generate_series(1, 12 + ((i.id * 31 + k) % 40)::int)),
                    '<gen.' || i.id || '.' || k || '@load.example>',
                    CASE WHEN k % 2 = 0 THEN i.first_agent_id END,
                    least(now(), i.created_at + (k - 1) * (10 + i.id % 600) * interval '1 minute')
             FROM interactions i
             JOIN accounts acc ON acc.id = i.account_id
             LEFT JOIN contacts c ON c.id = i.contact_id
             LEFT JOIN LATERAL (SELECT email FROM contact_emails WHERE contact_id = i.contact_id LIMIT 1) ce ON true
             CROSS JOIN LATERAL generate_series(1, (1 + (i.id * 2654435761) % {spread})::int) k;"
        )),
        ("message indexes", MESSAGE_INDEXES.to_string()),
        ("last message, unread, tags", format!(
            "UPDATE interactions i
                SET last_message_direction = m.direction, last_message_at = m.created_at,
                    last_message_preview = left(regexp_replace(m.text_body, '\\s+', ' ', 'g'), 200),
                    closed_at = CASE WHEN i.status = 'closed' THEN m.created_at + interval '2 hours' END,
                    updated_at = CASE WHEN i.status = 'closed' THEN m.created_at + interval '2 hours'
                                      ELSE m.created_at END,
                    unread = (i.status = 'open' AND m.direction = 'in' AND i.id % 5 < 3),
                    unread_count = CASE WHEN i.status = 'open' AND m.direction = 'in' AND i.id % 5 < 3
                                        THEN 1 + i.id % 3 ELSE 0 END
               FROM (SELECT DISTINCT ON (interaction_id) interaction_id, direction, created_at, text_body
                       FROM messages ORDER BY interaction_id, created_at DESC, id DESC) m
              WHERE m.interaction_id = i.id;
             INSERT INTO tags (name, created_at) SELECT unnest({tags}::text[]), now();
             INSERT INTO interaction_tags (interaction_id, tag)
             SELECT DISTINCT i.id, ({tags}::text[])[1 + ((i.id / 10) * 7 + k * 3) % {nt}]
             FROM interactions i CROSS JOIN LATERAL generate_series(1, 1 + (i.id / 10) % 3) k
             WHERE i.id % 10 = 3;"
        )),
    ]
}

/// The messages' indexes (V1, V6), dropped for the bulk insert and built
/// once after it: much faster than maintaining them row by row.
const DROP_MESSAGE_INDEXES: &str =
    "DROP INDEX messages_search; DROP INDEX messages_interaction; DROP INDEX messages_message_id;";
const MESSAGE_INDEXES: &str =
    "CREATE INDEX messages_interaction ON messages (interaction_id, created_at);
CREATE INDEX messages_message_id ON messages (account_id, message_id_header);
CREATE INDEX messages_search ON messages USING gin (search);";

/// One measured request.
struct Query {
    name: String,
    who: Who,
    /// `GET /api/v1/interactions?{params}`, or the advanced search's body.
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Who {
    Supervisor,
    Agent,
}

enum Kind {
    List(Vec<(&'static str, String)>),
    Advanced(Value),
}

struct Ids {
    supervisor: AgentId,
    agent: AgentId,
}

pub async fn run(args: Args, _logs: &LogCounts) -> anyhow::Result<()> {
    if !(args.store.starts_with("postgres://") || args.store.starts_with("postgresql://")) {
        bail!("--store must be a Postgres URL (postgres://…): this measures Postgres");
    }
    if args.interactions == 0 || args.contacts == 0 || args.agents < QUEUES || args.agents > 9999 {
        bail!("--interactions and --contacts must be at least 1, --agents {QUEUES} to 9999");
    }
    if args.messages < args.interactions {
        bail!("--messages must be at least --interactions (every interaction has one)");
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let services = Services::load(&args.services_env)?;
    let redacted = mailroom::secret::redact_url(&args.store);
    let (pg, conn) = tokio_postgres::connect(&args.store, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {redacted}"))?;
    let conn = tokio::spawn(conn);

    let store = Store::connect(&args.store)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {redacted}: {e}"))?;
    let started = Instant::now();
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("cannot migrate {redacted}: {e}"))?;
    let migrated_in = started.elapsed();
    drop(store);
    let count = |sql: &'static str| {
        let pg = &pg;
        async move {
            let row = pg.query_one(sql, &[]).await?;
            anyhow::Ok(row.get::<_, i64>(0))
        }
    };
    let existing = count("SELECT count(*) FROM interactions").await?;
    if args.reuse {
        if existing == 0 {
            bail!("--reuse: {redacted} has no interactions; fill it first (without --reuse)");
        }
        println!(
            "reusing {redacted}: migrations took {:.1} s",
            migrated_in.as_secs_f64()
        );
        // The harness account's watermark from the previous run would make
        // `Mailroom::start` refuse the database; this run gets a new mailbox.
        pg.batch_execute(
            "DELETE FROM mailbox_state WHERE account_id IN (SELECT id FROM accounts WHERE key = 'LOAD')",
        )
        .await
        .context("resetting the harness account")?;
        // Separately: VACUUM refuses to run in the implicit transaction of
        // a multi-statement batch.
        pg.batch_execute("VACUUM (ANALYZE)")
            .await
            .context("VACUUM (ANALYZE)")?;
    } else {
        if existing > 0 || count("SELECT count(*) FROM contacts").await? > 0 {
            bail!(
                "{redacted} already holds data: give an empty database, or --reuse to measure it"
            );
        }
        fill(&pg, &args, &services).await?;
    }
    let figures = [
        (
            "interactions",
            count("SELECT count(*) FROM interactions").await?,
        ),
        ("messages", count("SELECT count(*) FROM messages").await?),
        ("contacts", count("SELECT count(*) FROM contacts").await?),
        (
            "tagged",
            count("SELECT count(DISTINCT interaction_id) FROM interaction_tags").await?,
        ),
        (
            "open",
            count("SELECT count(*) FROM interactions WHERE status = 'open'").await?,
        ),
        (
            "unread",
            count("SELECT count(*) FROM interactions WHERE unread").await?,
        ),
    ];
    println!(
        "database: {}",
        figures
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // What the queries look for, read from the data itself.
    let agent_name: String = pg
        .query_one(
            // An agent in two queues (every tenth one), as realistic a reader
            // as any.
            "SELECT a.username FROM agents a JOIN queue_members m ON m.agent_id = a.id
             WHERE a.username LIKE 'agent%' GROUP BY a.username HAVING count(*) = 2
             ORDER BY a.username LIMIT 1",
            &[],
        )
        .await?
        .get(0);
    let (email,): (String,) = {
        let r = pg
            .query_one(
                "SELECT email FROM contact_emails ORDER BY contact_id OFFSET (SELECT count(*) / 2 FROM contact_emails) LIMIT 1",
                &[],
            )
            .await?;
        (r.get(0),)
    };
    let some_id: i64 = pg
        .query_one(
            "SELECT id FROM interactions ORDER BY id OFFSET (SELECT count(*) / 3 FROM interactions) LIMIT 1",
            &[],
        )
        .await?
        .get(0);

    let mailbox = services.fresh_mailbox("search");
    let app = Mailroom::start(
        &StoreArg::Url(args.store.clone()),
        &services,
        &mailbox,
        None,
    )
    .await?;
    let ids = Ids {
        supervisor: app
            .store()
            .agent_by_username(SUPERVISOR)
            .await
            .map_err(|e| anyhow::anyhow!("{SUPERVISOR}: {e}"))?
            .id,
        agent: app
            .store()
            .agent_by_username(&agent_name)
            .await
            .map_err(|e| anyhow::anyhow!("{agent_name}: {e}"))?
            .id,
    };
    let sup_token = app.login(SUPERVISOR, PASSWORD).await?;
    let agent_token = app.login(&agent_name, PASSWORD).await?;
    let http = reqwest::Client::new();

    let now = Utc::now();
    let day = chrono::Duration::days(1);
    let rfc = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let common = word(5);
    let rare = word(4000);
    let subject_word = word(27); // "refund"
    let text_word = word(60);
    let email_prefix: String = email.chars().take(8).collect();
    let l = |pairs: &[(&'static str, &str)]| {
        Kind::List(pairs.iter().map(|(k, v)| (*k, v.to_string())).collect())
    };
    let mut queries = vec![
        Query {
            name: "list: supervisor scope=all".into(),
            who: Who::Supervisor,
            kind: l(&[("scope", "all")]),
        },
        Query {
            name: "list: status=open".into(),
            who: Who::Supervisor,
            kind: l(&[("scope", "all"), ("status", "open")]),
        },
        Query {
            name: "list: unread=true".into(),
            who: Who::Supervisor,
            kind: l(&[("scope", "all"), ("unread", "true")]),
        },
        Query {
            name: "list: agent scope=all (rights)".into(),
            who: Who::Agent,
            kind: l(&[("scope", "all")]),
        },
        Query {
            name: "list: agent scope=me".into(),
            who: Who::Agent,
            kind: l(&[("scope", "me")]),
        },
        Query {
            name: "list: tag=vip".into(),
            who: Who::Supervisor,
            kind: l(&[("scope", "all"), ("tag", "vip")]),
        },
        Query {
            name: "list: from..to (30 days)".into(),
            who: Who::Supervisor,
            kind: l(&[
                ("scope", "all"),
                ("from", &rfc(now - day * 60)),
                ("to", &rfc(now - day * 30)),
            ]),
        },
        Query {
            name: format!("q: common word `{common}`"),
            who: Who::Supervisor,
            kind: l(&[("scope", "all"), ("q", &common)]),
        },
        Query {
            name: format!("q: rare word `{rare}`"),
            who: Who::Supervisor,
            kind: l(&[("scope", "all"), ("q", &rare)]),
        },
        Query {
            name: "q: last name `Dvořák`".into(),
            who: Who::Supervisor,
            kind: l(&[("scope", "all"), ("q", "Dvořák")]),
        },
        Query {
            name: format!("q: email prefix `{email_prefix}`"),
            who: Who::Supervisor,
            kind: l(&[("scope", "all"), ("q", &email_prefix)]),
        },
        Query {
            name: format!("q: id `{some_id}`"),
            who: Who::Supervisor,
            kind: l(&[("scope", "all"), ("q", &some_id.to_string())]),
        },
        Query {
            name: format!("q: agent, `{common}`"),
            who: Who::Agent,
            kind: l(&[("scope", "all"), ("q", &common)]),
        },
        Query {
            name: format!("adv: subject ~ `{subject_word}`, open, 90 days"),
            who: Who::Supervisor,
            kind: Kind::Advanced(json!({"match": "all", "conditions": [
                {"field": "subject", "op": "contains", "value": subject_word},
                {"field": "status", "op": "equals", "value": "open"},
                {"field": "created_at", "op": "between", "value": [rfc(now - day * 90), rfc(now)]},
            ]})),
        },
        Query {
            name: format!("adv: text ~ `{text_word}`, tag in, closed"),
            who: Who::Supervisor,
            kind: Kind::Advanced(json!({"match": "all", "conditions": [
                {"field": "text", "op": "contains", "value": text_word},
                {"field": "tag", "op": "in", "value": ["vip", "urgent"]},
                {"field": "status", "op": "equals", "value": "closed"},
            ]})),
        },
    ];
    // The second page of the supervisor's list: its cursor from page one.
    let first = send(&http, &app, &sup_token, &queries[0].kind).await?;
    let cursor = first["next_cursor"]
        .as_str()
        .context("the first page has no next_cursor")?
        .to_string();
    queries.insert(
        1,
        Query {
            name: "list: second page (cursor)".into(),
            who: Who::Supervisor,
            kind: l(&[("scope", "all"), ("cursor", &cursor)]),
        },
    );

    println!(
        "\n{} runs per query over HTTP, one at a time; load average {:.2} before",
        args.runs,
        crate::app::load_average().unwrap_or(f64::NAN)
    );
    println!(
        "{:<44} {:>5}  {:>9} {:>9} {:>9}",
        "query", "items", "p50 ms", "p95 ms", "max ms"
    );
    let mut over = 0;
    for query in &queries {
        let token = match query.who {
            Who::Supervisor => &sup_token,
            Who::Agent => &agent_token,
        };
        // Two untimed runs: the first pays for connection setup and cold
        // caches, and the statement cache fills.
        let answer = send(&http, &app, token, &query.kind).await?;
        send(&http, &app, token, &query.kind).await?;
        let mut samples = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            let t = Instant::now();
            send(&http, &app, token, &query.kind).await?;
            samples.push(t.elapsed());
        }
        samples.sort();
        let p = |q: f64| {
            let i = (q * samples.len() as f64).ceil() as usize;
            ms(samples[i.clamp(1, samples.len()) - 1])
        };
        let p95 = p(0.95);
        if p95 > 100.0 {
            over += 1;
        }
        println!(
            "{:<44} {:>5}  {:>9.1} {:>9.1} {:>9.1}",
            query.name,
            answer["items"].as_array().map_or(0, Vec::len),
            p(0.50),
            p95,
            ms(samples[samples.len() - 1]),
        );
    }
    println!(
        "{over} of {} queries over the 100 ms p95 goal; load average {:.2} after",
        queries.len(),
        crate::app::load_average().unwrap_or(f64::NAN)
    );

    if args.explain {
        for query in &queries {
            let filter = filter_of(query, &ids)?;
            let plan = app
                .store()
                .explain_list(filter)
                .await
                .map_err(|e| anyhow::anyhow!("EXPLAIN {}: {e}", query.name))?;
            println!("\n== {} ==\n{plan}", query.name);
        }
    }
    app.stop().await?;
    drop(pg);
    let _ = conn.await;
    Ok(())
}

async fn fill(pg: &tokio_postgres::Client, args: &Args, services: &Services) -> anyhow::Result<()> {
    println!(
        "filling: {} contacts, {} interactions, ~{} messages, {} agents in {QUEUES} queues, {ACCOUNTS} accounts",
        args.contacts, args.interactions, args.messages, args.agents
    );
    let hash = tokio::task::spawn_blocking(|| mailroom::auth::hash_password(PASSWORD))
        .await
        .context("the hashing thread panicked")?
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    let all = Instant::now();
    // A bulk load: no need to wait for the WAL flush of each statement, and
    // room to build the GIN indexes in memory.
    pg.batch_execute(&format!(
        "SET synchronous_commit = off; SET maintenance_work_mem = '256MB';
         CREATE TEMP TABLE gen_hash (h text);
         {}",
        functions_sql()
    ))
    .await
    .context("preparing the fill")?;
    pg.execute("INSERT INTO gen_hash VALUES ($1)", &[&hash])
        .await?;
    let steps = fill_steps(args);
    for (name, sql) in &steps[..2] {
        step(pg, name, sql).await?;
    }
    // Accounts: each on its own fresh mailbox, so that the app's IMAP
    // sessions log in and wait in IDLE like any account's.
    let t = Instant::now();
    let accounts = "INSERT INTO accounts (key, address, queue_id, imap_host, imap_port, imap_tls,
            imap_username, imap_password, imap_folder, imap_poll_secs, smtp_host, smtp_port, smtp_tls,
            smtp_username, smtp_password, import_since, max_attachment_bytes, max_mail_bytes,
            created_at, updated_at)
         VALUES ($1, $2, (SELECT id FROM gq WHERE n = $3), $4, $5, 'none', $2, $6, 'INBOX', 60,
                 $7, $8, 'none', $2, $6, now(), 26214400, 52428800, now(), now())";
    for n in 1..=ACCOUNTS as i32 {
        let mailbox = services.fresh_mailbox("searchacc");
        pg.execute(
            accounts,
            &[
                &format!("GEN{n}"),
                &mailbox,
                &n,
                &services.imap_host,
                &i32::from(services.imap_port),
                &services.mail_password,
                &services.smtp_host,
                &i32::from(services.smtp_port),
            ],
        )
        .await
        .context("inserting an account")?;
    }
    pg.batch_execute(
        "CREATE TEMP TABLE gacc AS SELECT substr(key, 4)::int AS n, id FROM accounts WHERE key LIKE 'GEN%'",
    )
    .await?;
    println!("  {:<28} {:>7.1} s", "accounts", t.elapsed().as_secs_f64());
    for (name, sql) in &steps[2..4] {
        step(pg, name, sql).await?;
    }
    step(pg, "drop message indexes", DROP_MESSAGE_INDEXES).await?;
    for (name, sql) in &steps[4..] {
        step(pg, name, sql).await?;
    }
    step(pg, "vacuum analyze", "VACUUM (ANALYZE)").await?;
    println!("fill took {:.1} s", all.elapsed().as_secs_f64());
    Ok(())
}

async fn step(pg: &tokio_postgres::Client, name: &str, sql: &str) -> anyhow::Result<()> {
    let t = Instant::now();
    pg.batch_execute(sql)
        .await
        .with_context(|| format!("fill step `{name}`"))?;
    println!("  {:<28} {:>7.1} s", name, t.elapsed().as_secs_f64());
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn send(
    http: &reqwest::Client,
    app: &Mailroom,
    token: &str,
    kind: &Kind,
) -> anyhow::Result<Value> {
    let req = match kind {
        Kind::List(params) => http.get(app.app.url("/api/v1/interactions")).query(params),
        Kind::Advanced(body) => http
            .post(app.app.url("/api/v1/interactions/search"))
            .json(body),
    };
    let res = req
        .bearer_auth(token)
        .send()
        .await
        .context("sending a query")?;
    let status = res.status();
    let body = res.text().await.context("reading an answer")?;
    if !status.is_success() {
        bail!("the query answered {status}: {body}");
    }
    serde_json::from_str(&body).context("the answer is not JSON")
}

/// The store's filter for `query`, as the HTTP layer builds it (for
/// `--explain`; only the parameters this tool sends).
fn filter_of(query: &Query, ids: &Ids) -> anyhow::Result<ListFilter> {
    let reader = match query.who {
        Who::Supervisor => Reader::Everything(ids.supervisor),
        Who::Agent => Reader::Agent(ids.agent),
    };
    let mut f = ListFilter {
        reader,
        scope: Scope::All,
        status: None,
        substatus: None,
        unread: None,
        account: None,
        queue: None,
        first_agent: None,
        tags: Vec::new(),
        from: None,
        to: None,
        q: None,
        contact: None,
        advanced: None,
        cursor: None,
        limit: 50,
    };
    let time = |v: &str| -> anyhow::Result<DateTime<Utc>> {
        Ok(DateTime::parse_from_rfc3339(v)?.with_timezone(&Utc))
    };
    match &query.kind {
        Kind::Advanced(body) => {
            f.advanced = Some(mailroom::store::advanced::parse(body).map_err(anyhow::Error::msg)?);
        }
        Kind::List(params) => {
            for (k, v) in params {
                match *k {
                    "scope" => {
                        f.scope = match v.as_str() {
                            "me" => Scope::Me,
                            "unassigned" => Scope::Unassigned,
                            _ => Scope::All,
                        }
                    }
                    "status" => {
                        f.status = Some(
                            v.parse::<InteractionStatus>()
                                .map_err(|_| anyhow::anyhow!("status {v}"))?,
                        )
                    }
                    "unread" => f.unread = Some(v == "true"),
                    "tag" => f.tags.push(v.clone()),
                    "from" => f.from = Some(time(v)?),
                    "to" => f.to = Some(time(v)?),
                    "q" => f.q = Some(v.clone()),
                    "cursor" => f.cursor = Some(Cursor::decode(v).map_err(anyhow::Error::msg)?),
                    other => bail!("filter_of: unexpected parameter {other}"),
                }
            }
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_follow_the_sql_function() {
        assert_eq!(word(1), "the");
        assert_eq!(word(COMMON.len() as u32), "regards");
        // 4000 = 10·400 + 0·20 + 0: digits 0, 0, 10.
        assert_eq!(word(4000), "babana");
        let mut made: Vec<String> = (COMMON.len() as u32 + 1..=VOCABULARY).map(word).collect();
        made.sort();
        made.dedup();
        assert_eq!(made.len(), (VOCABULARY as usize) - COMMON.len());
    }
}
