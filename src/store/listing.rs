//! The interactions list (issue #6, part 1): filters, the caller's read
//! rights applied inside the query, newest activity first, keyset cursor.
//!
//! The `WHERE` clause is built once here for both dialects from
//! [`ListFilter`], with every value a bound parameter (never spliced into the
//! SQL text); the backends only bind [`Arg`]s their way.

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};

use super::{Interaction, Store, StoreError, StoreResult};
use crate::domain::{AgentId, InteractionId, InteractionStatus};

/// Whose interactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Owned by the caller.
    Me,
    /// Open and owned by nobody (waiting in a queue).
    Unassigned,
    /// Everything the caller may read.
    All,
}

/// Who is asking: agents see their queues' interactions and their own;
/// supervisors and admins see everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Agent(AgentId),
    Everything(AgentId),
}

impl Reader {
    fn id(self) -> AgentId {
        match self {
            Reader::Agent(a) | Reader::Everything(a) => a,
        }
    }
}

/// The list's filters (DESIGN.md: `GET /api/v1/interactions`).
#[derive(Debug, Clone)]
pub struct ListFilter {
    pub reader: Reader,
    pub scope: Scope,
    pub status: Option<InteractionStatus>,
    pub substatus: Option<String>,
    pub unread: Option<bool>,
    /// Account key.
    pub account: Option<String>,
    /// Queue name.
    pub queue: Option<String>,
    /// First agent's username.
    pub first_agent: Option<String>,
    /// Any of these tags.
    pub tags: Vec<String>,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created before.
    pub to: Option<DateTime<Utc>>,
    /// Search: the interaction's id exactly, words in its subject or in any
    /// of its messages (subject and text), or its contact's names or email.
    pub q: Option<String>,
    /// One contact's interactions (the journey).
    pub contact: Option<crate::domain::ContactId>,
    /// Advanced search (`POST /api/v1/interactions/search`).
    pub advanced: Option<super::advanced::Search>,
    pub cursor: Option<Cursor>,
    /// 1 to 500.
    pub limit: u32,
}

/// The words of a search: runs of letters and digits, lower-cased. Every
/// word must match (as a prefix of a word) for a text to match. Only
/// letters and digits survive, so nothing of the search syntax of either
/// store can be injected.
pub fn search_words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(str::to_lowercase)
        .collect()
}

/// Where a page ended: the last item's activity time and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub updated_at: DateTime<Utc>,
    pub id: InteractionId,
}

impl Cursor {
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "{}:{}",
            self.updated_at.timestamp_millis(),
            self.id.0
        ))
    }

    pub fn decode(text: &str) -> Result<Cursor, String> {
        let bad = || "`cursor` is not one this server gave out".to_string();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let (ms, id) = raw.split_once(':').ok_or_else(bad)?;
        let ms: i64 = ms.parse().map_err(|_| bad())?;
        let id: i64 = id.parse().map_err(|_| bad())?;
        let updated_at = Utc.timestamp_millis_opt(ms).single().ok_or_else(bad)?;
        Ok(Cursor {
            updated_at,
            id: InteractionId(id),
        })
    }
}

/// One page.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    pub items: Vec<Interaction>,
    pub next_cursor: Option<Cursor>,
}

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
    Time(DateTime<Utc>),
    Bool(bool),
    Texts(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// The `WHERE … ORDER BY … LIMIT` tail of the list query over
/// `interactions i`, and its arguments in placeholder order.
pub(crate) fn list_sql(f: &ListFilter, dialect: Dialect) -> (String, Vec<Arg>) {
    let mut args: Vec<Arg> = Vec::new();
    let arg = |a: Arg, args: &mut Vec<Arg>| {
        args.push(a);
        match dialect {
            Dialect::Sqlite => format!("?{}", args.len()),
            Dialect::Postgres => format!("${}", args.len()),
        }
    };
    let any = |p: String| match dialect {
        // SQLite has no arrays: the list travels as one JSON text.
        Dialect::Sqlite => format!("IN (SELECT value FROM json_each({p}))"),
        Dialect::Postgres => format!("= ANY({p})"),
    };
    let mut conds: Vec<String> = Vec::new();
    if let Reader::Agent(a) = f.reader {
        // The same rule as `http::access::may_read`, inside the query.
        let p = arg(Arg::Int(a.0), &mut args);
        conds.push(format!(
            "(i.owner_id = {p} OR i.first_agent_id = {p}
              OR i.queue_id IN (SELECT queue_id FROM queue_members WHERE agent_id = {p})
              OR i.account_id IN (SELECT ac.id FROM accounts ac
                                  JOIN queue_members m ON m.queue_id = ac.queue_id
                                  WHERE m.agent_id = {p}))"
        ));
    }
    match f.scope {
        Scope::Me => {
            let p = arg(Arg::Int(f.reader.id().0), &mut args);
            conds.push(format!("i.owner_id = {p}"));
        }
        Scope::Unassigned => conds.push("i.owner_id IS NULL AND i.status = 'open'".into()),
        Scope::All => {}
    }
    if let Some(s) = f.status {
        let p = arg(Arg::Text(s.as_str().into()), &mut args);
        conds.push(format!("i.status = {p}"));
    }
    if let Some(s) = &f.substatus {
        let p = arg(Arg::Text(s.clone()), &mut args);
        conds.push(format!("i.substatus = {p}"));
    }
    if let Some(u) = f.unread {
        let p = arg(Arg::Bool(u), &mut args);
        conds.push(format!("i.unread = {p}"));
    }
    if let Some(k) = &f.account {
        let p = arg(Arg::Text(k.clone()), &mut args);
        conds.push(format!(
            "i.account_id IN (SELECT id FROM accounts WHERE key = {p})"
        ));
    }
    if let Some(q) = &f.queue {
        let p = arg(Arg::Text(q.clone()), &mut args);
        conds.push(format!(
            "i.queue_id IN (SELECT id FROM queues WHERE name = {p} AND deleted_at IS NULL)"
        ));
    }
    if let Some(u) = &f.first_agent {
        let p = arg(Arg::Text(u.clone()), &mut args);
        conds.push(format!(
            "i.first_agent_id IN (SELECT id FROM agents WHERE username = {p})"
        ));
    }
    if !f.tags.is_empty() {
        let list = match dialect {
            Dialect::Sqlite => Arg::Text(serde_json::Value::from(f.tags.clone()).to_string()),
            Dialect::Postgres => Arg::Texts(f.tags.clone()),
        };
        let p = arg(list, &mut args);
        conds.push(format!(
            "i.id IN (SELECT interaction_id FROM interaction_tags WHERE tag {})",
            any(p)
        ));
    }
    if let Some(c) = f.contact {
        let p = arg(Arg::Int(c.0), &mut args);
        conds.push(format!("i.contact_id = {p}"));
    }
    if let Some(t) = f.from {
        let p = arg(Arg::Time(t), &mut args);
        conds.push(format!("i.created_at >= {p}"));
    }
    if let Some(t) = f.to {
        let p = arg(Arg::Time(t), &mut args);
        conds.push(format!("i.created_at < {p}"));
    }
    if let Some(q) = f.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        conds.push(search_sql(q, dialect, &mut |a| arg(a, &mut args)));
    }
    if let Some(s) = &f.advanced
        && let Some(cond) = super::advanced::search_sql(s, dialect, &mut |a| arg(a, &mut args))
    {
        conds.push(cond);
    }
    if let Some(c) = f.cursor {
        let at = arg(Arg::Time(c.updated_at), &mut args);
        let id = arg(Arg::Int(c.id.0), &mut args);
        conds.push(format!(
            "(i.updated_at < {at} OR (i.updated_at = {at} AND i.id < {id}))"
        ));
    }
    let limit = arg(Arg::Int(i64::from(f.limit) + 1), &mut args);
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join("\n  AND "))
    };
    (
        format!("{filter}\nORDER BY i.updated_at DESC, i.id DESC\nLIMIT {limit}"),
        args,
    )
}

/// The search condition (see [`ListFilter::q`]).
fn search_sql(q: &str, dialect: Dialect, arg: &mut dyn FnMut(Arg) -> String) -> String {
    match dialect {
        Dialect::Sqlite => search_sql_sqlite(q, arg),
        Dialect::Postgres => search_sql_postgres(q, arg),
    }
}

fn search_sql_sqlite(q: &str, arg: &mut dyn FnMut(Arg) -> String) -> String {
    let mut any: Vec<String> = Vec::new();
    if let Ok(id) = q.parse::<i64>() {
        let p = arg(Arg::Int(id));
        any.push(format!("i.id = {p}"));
    }
    let words = search_words(q);
    if !words.is_empty() {
        // `"word"*` is a prefix query; the words are letters and digits
        // only, so the quotes cannot be broken out of.
        let query = words
            .iter()
            .map(|w| format!("\"{w}\"*"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let m = arg(Arg::Text(query));
        any.push(format!(
            "i.id IN (SELECT rowid FROM interactions_fts WHERE interactions_fts MATCH {m})"
        ));
        any.push(format!(
            "i.id IN (SELECT ms.interaction_id FROM messages ms
                      WHERE ms.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH {m}))"
        ));
        any.push(format!(
            "i.contact_id IN (SELECT rowid FROM contacts_fts WHERE contacts_fts MATCH {m})"
        ));
    }
    let email = arg(Arg::Text(q.to_lowercase()));
    any.push(format!(
        "i.contact_id IN (SELECT ce.contact_id FROM contact_emails ce
                          WHERE substr(ce.email, 1, length({email})) = {email})"
    ));
    format!("({})", any.join("\n   OR "))
}

/// Postgres: one `i.id IN (… UNION ALL …)` of the ids each way of matching
/// finds, rather than an OR of IN-subqueries. Under an OR, Postgres can
/// only test each row against each subquery: it hashes a subquery's result
/// when it fits in `work_mem`, and otherwise rescans it per row (seconds at
/// 1 M messages, measured with `mailroom-load search`). A single IN is a
/// semi-join: each arm uses its own index (GIN for words, the primary key
/// of contact_emails for the address prefix) and only the ids found are
/// sorted. Same rows as the OR: an id matches if any arm finds it.
fn search_sql_postgres(q: &str, arg: &mut dyn FnMut(Arg) -> String) -> String {
    let mut arms: Vec<String> = Vec::new();
    if let Ok(id) = q.parse::<i64>() {
        let p = arg(Arg::Int(id));
        arms.push(format!("SELECT {p}::bigint"));
    }
    let words = search_words(q);
    if !words.is_empty() {
        // The words go through the same unaccenting as the indexed text,
        // then become `w1:* & w2:*` (prefix, all of them).
        let t = arg(Arg::Text(words.join(" ")));
        let tsq = format!(
            "to_tsquery('simple', regexp_replace(mailroom_search_text({t}), ' ', ':* & ', 'g') || ':*')"
        );
        arms.push(format!(
            "SELECT s.id FROM interactions s WHERE s.search @@ {tsq}"
        ));
        arms.push(format!(
            "SELECT ms.interaction_id FROM messages ms WHERE ms.search @@ {tsq}"
        ));
        arms.push(format!(
            "SELECT s.id FROM interactions s JOIN contacts c ON c.id = s.contact_id WHERE c.search @@ {tsq}"
        ));
    }
    // The address prefix as a range of the (COLLATE "C", byte-ordered)
    // primary key, so the index finds it, and `left(…) = …` as the rule
    // itself. The range's upper end misses only an address with U+10FFFF
    // (a noncharacter) right after the prefix.
    let email = arg(Arg::Text(q.to_lowercase()));
    arms.push(format!(
        "SELECT s.id FROM interactions s JOIN contact_emails ce ON ce.contact_id = s.contact_id
         WHERE ce.email >= {email} AND ce.email < {email} || chr(1114111)
           AND left(ce.email, length({email})) = {email}"
    ));
    format!("i.id IN ({})", arms.join("\n   UNION ALL "))
}

/// Split one extra row off a page: it only says there is a next page.
pub(crate) fn page(mut rows: Vec<Interaction>, limit: u32) -> ListPage {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last()).flatten().map(|last| Cursor {
        updated_at: last.updated_at,
        id: last.id,
    });
    ListPage {
        items: rows,
        next_cursor,
    }
}

impl Store {
    /// A page of the interactions list.
    pub async fn list_interactions(&self, filter: ListFilter) -> StoreResult<ListPage> {
        if filter.limit == 0 || filter.limit > 500 {
            return Err(StoreError::Invalid("`limit` is 1 to 500".into()));
        }
        dispatch!(self.list_interactions(filter))
    }

    /// `EXPLAIN (ANALYZE, BUFFERS)` of the list query `filter` makes, for
    /// measuring (mailroom-load `search --explain`). It runs the query.
    /// Postgres only: SQLite's `EXPLAIN QUERY PLAN` says too little to be
    /// worth a second code path.
    pub async fn explain_list(&self, filter: ListFilter) -> StoreResult<String> {
        match self {
            Store::Postgres(s) => s.explain_list(filter).await,
            Store::Sqlite(_) => Err(StoreError::Invalid(
                "explain_list is supported on Postgres only".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> ListFilter {
        ListFilter {
            reader: Reader::Agent(AgentId(7)),
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
        }
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let mut f = filter();
        let hostile = "x' OR 1=1; DROP TABLE interactions; --".to_string();
        f.account = Some(hostile.clone());
        f.tags = vec![hostile.clone()];
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let (sql, args) = list_sql(&f, dialect);
            assert!(!sql.contains("DROP"), "{sql}");
            assert!(args.contains(&Arg::Text(hostile.clone())));
        }
    }

    #[test]
    fn placeholders_follow_the_dialect() {
        let mut f = filter();
        f.unread = Some(true);
        let (sqlite, args) = list_sql(&f, Dialect::Sqlite);
        assert!(sqlite.contains("?1") && sqlite.contains("?2") && !sqlite.contains('$'));
        let (pg, _) = list_sql(&f, Dialect::Postgres);
        assert!(pg.contains("$1") && pg.contains("$2") && !pg.contains('?'));
        // reader, unread, limit + 1
        assert_eq!(args.len(), 3);
        assert_eq!(args[2], Arg::Int(51));
    }

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let c = Cursor {
            updated_at: Utc.timestamp_millis_opt(1_764_000_000_123).unwrap(),
            id: InteractionId(42),
        };
        assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        assert!(Cursor::decode("not base64!").is_err());
        assert!(
            Cursor::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("1:x"))
                .is_err()
        );
    }
}
