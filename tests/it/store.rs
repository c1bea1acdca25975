//! The store contract: one set of tests, run against both backends by
//! `store_contract!` at the bottom, so that `cargo test sqlite_` and
//! `cargo test postgres_` each run the whole contract on one backend.
//!
//! The tests live beside their aggregate in `store/` (`agents`, `queues`,
//! `accounts`, `interactions`, `ingest`, `threading`, `bookkeeping`, `routing`);
//! fixtures, the migration tests and the two instantiations live here. A new
//! store method gets its test in the module of its aggregate: an
//! `async fn(&Store)`, added to the list in `contract_for!` below. Behaviour
//! must be identical on both backends: the same results, the same order, the
//! same errors.

use chrono::{DateTime, Duration, DurationRound, TimeDelta, TimeZone, Utc};
use mailroom::domain::{
    AccountId, AgentId, InteractionId, InteractionStatus, QueueId, Role, Strategy, TlsMode,
};
use mailroom::secret::Secret;
use mailroom::store::{
    Account, AccountOptions, AccountSpec, Agent, AgentPatch, AgentSpec, ClaimOutcome, ImapSettings,
    Interaction, NewInteraction, QueueSpec, SmtpSettings, Store, StoreError,
};

use crate::support::db::TestDb;

mod accounts;
mod agents;
mod bookkeeping;
mod downloads;
mod ingest;
mod interactions;
mod outbox;
mod queues;
mod routing;
mod threading;
mod work;

use accounts::*;
use agents::*;
use bookkeeping::*;
use downloads::*;
use ingest::*;
use interactions::*;
use outbox::*;
use queues::*;
use routing::*;
use threading::*;
use work::*;

// ---- fixtures ---------------------------------------------------------------

fn agent_spec(username: &str) -> AgentSpec {
    AgentSpec {
        username: username.to_string(),
        name: format!("{username} Example"),
        email: Some(format!("{username}@example.test")),
        role: Role::Agent,
        capacity: 5,
        password_hash: Some(format!("$argon2id$v=19$hash-of-{username}")),
    }
}

async fn agent(store: &Store, username: &str) -> Agent {
    store
        .upsert_agent(agent_spec(username))
        .await
        .expect("upsert agent")
}

fn queue_spec(name: &str, agents: &[&str]) -> QueueSpec {
    QueueSpec {
        name: name.to_string(),
        strategy: Strategy::RingAll,
        offer_timeout_secs: 30,
        sticky_secs: 10,
        retry_backoff_secs: 5,
        max_simultaneous_offers: None,
        auto_pause_after_missed: None,
        disposition_required: false,
        agents: agents.iter().map(|a| a.to_string()).collect(),
    }
}

fn account_spec(key: &str, queue: &str) -> AccountSpec {
    let address = format!("{}@example.test", key.to_lowercase());
    AccountSpec {
        key: key.to_string(),
        address: address.clone(),
        queue: queue.to_string(),
        imap: ImapSettings {
            host: "127.0.0.1".into(),
            port: 10143,
            tls: TlsMode::None,
            username: address.clone(),
            folder: "INBOX".into(),
            accept_invalid_certs: false,
            poll_secs: 60,
            sent_folder: Some("Sent".into()),
        },
        smtp: SmtpSettings {
            host: "127.0.0.1".into(),
            port: 10025,
            tls: TlsMode::Starttls,
            username: address,
            accept_invalid_certs: true,
        },
        imap_password: Some(Secret::new("imap-pw")),
        smtp_password: Some(Secret::new("smtp-pw")),
        import_since: None,
        options: AccountOptions {
            subject_token: true,
            allow_mark_unread: false,
            show_preview: true,
            max_attachment_bytes: 15 * 1024 * 1024,
            max_mail_bytes: 40 * 1024 * 1024,
            signature: Some("-- \nSupport".into()),
        },
    }
}

/// A queue `support`, an account `SERV` routed to it, and one new interaction.
async fn interaction(store: &Store) -> Interaction {
    store
        .upsert_queue(queue_spec("support", &[]))
        .await
        .expect("queue");
    let account = store
        .upsert_account(account_spec("SERV", "support"))
        .await
        .expect("account");
    store
        .create_interaction(NewInteraction {
            account: account.id,
            queue: account.queue_id,
            subject: "Where is my order?".into(),
            contact: None,
            priority: 0,
        })
        .await
        .expect("create interaction")
}

/// Now, truncated to the store's millisecond precision.
fn now_ms() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(TimeDelta::milliseconds(1))
        .expect("now is representable")
}

fn usernames(agents: &[Agent]) -> Vec<&str> {
    agents.iter().map(|a| a.username.as_str()).collect()
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::NotFound(w)) if w == what => {}
        other => panic!("expected NotFound({what}), got {other:?}"),
    }
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, mentions: &str) {
    match result {
        Err(StoreError::Conflict(msg)) if msg.contains(mentions) => {}
        other => panic!("expected a Conflict mentioning {mentions:?}, got {other:?}"),
    }
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, mentions: &str) {
    match result {
        Err(StoreError::Invalid(msg)) if msg.contains(mentions) => {}
        other => panic!("expected Invalid mentioning {mentions:?}, got {other:?}"),
    }
}

// ---- migrations and health ----------------------------------------------------

/// How many migrations `src/store/migrations/<dialect>/` holds; both
/// dialects must hold the same versions.
fn migrations() -> i64 {
    let versions = |dialect: &str| {
        let dir = format!(
            "{}/src/store/migrations/{dialect}",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("migrations directory")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".sql"))
            .filter_map(|n| n.split("__").next().map(str::to_string))
            .collect();
        names.sort();
        names
    };
    let (sqlite, postgres) = (versions("sqlite"), versions("postgres"));
    assert_eq!(
        sqlite, postgres,
        "both dialects have the same migration versions"
    );
    sqlite.len() as i64
}

async fn migrate_twice_is_a_no_op(store: &Store, db: &TestDb) {
    let alice = agent(store, "alice").await;
    assert_eq!(db.applied_migrations().await, migrations());
    store.migrate().await.expect("second migrate");
    store.migrate().await.expect("third migrate");
    assert_eq!(db.applied_migrations().await, migrations());
    assert_eq!(store.agent(alice.id).await.expect("agent survives"), alice);
}

async fn ping_answers(store: &Store) {
    store.ping().await.expect("ping");
}

// ---- the two backends --------------------------------------------------------------

/// Instantiate every contract test for one backend, in a module whose name
/// starts with the backend's (`sqlite_contract`, `postgres_contract`).
/// `with_backdoor` tests also get an [`ingest::Backdoor`] that writes state
/// no store method sets yet (opened by `$open_backdoor`).
macro_rules! store_contract {
    (
        $module:ident, $open:path, $open_backdoor:path,
        plain: [$($test:ident),* $(,)?],
        with_db: [$($db_test:ident),* $(,)?],
        with_backdoor: [$($bd_test:ident),* $(,)?],
        multi_thread: [$($mt_test:ident),* $(,)?] $(,)?
    ) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $bd_test() {
                    let (store, backdoor, _db) = $open_backdoor().await;
                    super::$bd_test(&store, &backdoor).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $test() {
                    let (store, _db) = $open().await;
                    super::$test(&store).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $db_test() {
                    let (store, db) = $open().await;
                    super::$db_test(&store, &db).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $mt_test() {
                    let (store, _db) = $open().await;
                    super::$mt_test(&store).await;
                }
            )*
        }
    };
}

macro_rules! contract_for {
    ($module:ident, $open:path, $open_backdoor:path) => {
        store_contract!(
            $module, $open, $open_backdoor,
            plain: [
                ping_answers,
                attachment_place_names_message_interaction_and_uploader,
                message_source_is_the_stored_raw,
                message_agents_follow_the_messages,
                canned_answers_are_created_listed_updated_and_deleted,
                upsert_agent_inserts_then_updates_in_place,
                create_agent_refuses_a_taken_username,
                update_agent_patches_only_the_given_fields,
                agent_numbers_out_of_range_are_invalid,
                list_agents_orders_by_username_bytewise,
                deleting_an_agent_revokes_sessions_and_leaves_queues,
                agent_credentials_need_a_password,
                sessions_live_until_expiry_or_revocation,
                revoke_agent_sessions_counts_live_sessions,
                sessions_need_an_active_agent,
                upsert_queue_replaces_settings_and_members,
                queue_members_must_be_active_agents,
                create_queue_refuses_a_taken_name,
                update_queue_renames_and_refuses_taken_names,
                deleting_a_queue_in_use_is_a_conflict,
                list_queues_orders_by_name_with_members,
                queue_numbers_out_of_range_are_invalid,
                upsert_account_sets_import_since_once_and_keeps_passwords,
                new_accounts_take_the_given_import_since,
                accounts_need_an_active_queue,
                create_account_refuses_a_taken_key,
                update_account_replaces_settings_but_not_the_key,
                deleted_accounts_are_gone_until_revived,
                list_accounts_orders_by_key,
                account_numbers_out_of_range_are_invalid,
                interactions_are_created_open_and_unowned,
                claim_makes_exactly_one_owner,
                a_new_mail_creates_an_open_unread_interaction_and_its_contact,
                attachments_are_stored_with_their_metadata,
                the_same_position_twice_is_a_duplicate,
                a_redelivered_mail_at_another_uid_is_a_duplicate,
                a_reused_message_id_with_other_content_is_kept,
                without_a_message_id_the_content_hash_dedupes,
                contacts_are_found_by_address_and_names_only_fill_gaps,
                matching_is_scoped_to_the_account,
                a_reply_to_a_closed_thread_continues_it_in_thread_2,
                an_auto_reply_to_a_closed_thread_is_kept_on_it_and_opens_nothing,
                closing_is_once_with_a_short_disposition_path,
                a_bounce_fails_its_original_outgoing_message,
                a_bounce_of_an_unknown_mail_is_kept_as_an_auto_reply,
                quarantined_mail_is_kept_raw_and_moves_the_watermark,
                an_ingested_position_cannot_be_quarantined,
                the_watermark_never_goes_back_within_a_uidvalidity,
                server_secrets_are_random_stable_and_32_bytes,
                every_fixture_and_corpus_mail_is_stored,
                create_offers_records_live_offers_once_per_agent,
                owned_or_closed_interactions_get_no_offers,
                decide_offer_decides_a_live_offer_once,
                accept_claims_and_rescinds_the_other_offers,
                accept_of_a_taken_or_closed_interaction_is_gone,
                cancel_live_offers_rescinds_every_live_offer,
                owned_open_counts_count_open_interactions_per_owner,
                round_robin_place_survives_a_new_store_handle,
                transfer_to_a_queue_clears_the_owner_and_marks_unread,
                transfer_to_an_agent_assigns_and_rescinds_live_offers,
                transfer_needs_the_expected_version_and_an_open_interaction,
                transfer_to_an_agent_respects_capacity,
                closing_rescinds_live_offers,
                uploads_belong_to_their_uploader_until_used,
                enqueue_commits_the_message_its_files_and_its_outbox_row,
                enqueue_needs_an_open_interaction_still_owned_by_the_author,
                new_mail_starts_an_owned_interaction_with_the_recipients_contact,
                a_claim_is_a_lease_that_one_sender_gets,
                outcomes_land_on_the_outbox_row_and_the_message,
                reopen_to_the_queue_or_to_an_agent,
                reopen_to_an_agent_respects_capacity,
                dispositions_form_a_tree_of_three_levels,
                a_draft_belongs_to_the_agent_who_saved_it,
                a_draft_save_is_idempotent_and_checks_its_base,
                drafts_of_lists_mine_with_display_names,
                closing_deletes_the_draft_and_takes_no_new_one,
                draft_attachments_are_my_uploads,
                a_draft_answers_a_mail_of_its_interaction,
                notes_leave_the_interaction_as_it_is,
                a_note_carries_the_authors_uploads,
                tags_come_from_the_admin_list,
                substatuses_come_from_the_admin_list,
                a_customer_reply_clears_the_substatus_an_auto_reply_does_not,
                mark_unread_sets_the_flag_and_keeps_the_count,
            ],
            with_db: [migrate_twice_is_a_no_op],
            with_backdoor: [
                a_reply_by_in_reply_to_is_appended,
                a_reply_by_references_only_is_appended,
                a_reply_by_subject_token_is_appended,
                a_reply_to_our_signed_id_is_appended,
                an_auto_reply_is_appended_without_touching_the_thread,
                waiting_interactions_come_by_priority_then_age,
                last_agent_of_contact_is_the_latest_owner,
            ],
            multi_thread: [
                fifty_concurrent_claims_have_exactly_one_winner,
                twenty_concurrent_ingests_of_one_position_create_one_interaction,
                twenty_concurrent_ingests_of_one_mail_at_many_positions_create_one_interaction,
                concurrent_replies_to_a_closed_thread_make_one_thread_2,
                fifty_concurrent_accepts_have_exactly_one_winner,
                concurrent_transfers_never_exceed_capacity,
                twenty_concurrent_claims_of_one_row_have_one_winner,
                concurrent_draft_saves_leave_one_owner,
                concurrent_tag_sets_never_mix,
            ],
        );
    };
}

contract_for!(
    sqlite_contract,
    crate::support::db::sqlite_store,
    crate::store::ingest::sqlite_with_backdoor
);
contract_for!(
    postgres_contract,
    crate::support::db::postgres_store,
    crate::store::ingest::postgres_with_backdoor
);

/// Two nodes starting at once on a fresh database: both migrations succeed
/// (the advisory lock makes the second wait, then find nothing to do).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_migrations_both_succeed() {
    for _ in 0..3 {
        let (url, db) = TestDb::postgres_url().await;
        let first = Store::connect(&url).await.expect("connect first");
        let second = Store::connect(&url).await.expect("connect second");
        let (a, b) = tokio::join!(
            tokio::spawn(async move { first.migrate().await }),
            tokio::spawn(async move { second.migrate().await }),
        );
        a.expect("first task").expect("first migrate");
        b.expect("second task").expect("second migrate");
        assert_eq!(db.applied_migrations().await, migrations());
        let store = Store::connect(&url).await.expect("connect");
        store
            .upsert_agent(agent_spec("alice"))
            .await
            .expect("the schema is usable");
    }
}

/// `sqlite::memory:` (one connection doing reads and writes) keeps the basics.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_in_memory_store_keeps_the_contract_basics() {
    let store = Store::connect("sqlite::memory:").await.expect("open");
    store.migrate().await.expect("migrate");
    let alice = agent(&store, "alice").await;
    assert_eq!(store.agent(alice.id).await.unwrap(), alice);
    let open = interaction(&store).await;
    assert!(matches!(
        store.claim(open.id, alice.id, 1).await,
        Ok(ClaimOutcome::Won(_))
    ));
}
