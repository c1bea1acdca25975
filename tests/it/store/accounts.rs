//! Contract: mail accounts (import_since, write-only passwords, the queue
//! they route to, deletion and revival).

use super::*;

pub(super) async fn upsert_account_sets_import_since_once_and_keeps_passwords(store: &Store) {
    let queue = store
        .upsert_queue(queue_spec("support", &[]))
        .await
        .unwrap();
    let before = now_ms();
    let account = store
        .upsert_account(account_spec("SERV", "support"))
        .await
        .unwrap();
    let after = Utc::now();
    assert_eq!(account.key, "SERV");
    assert_eq!(account.address, "serv@example.test");
    assert_eq!(
        (account.queue.as_str(), account.queue_id),
        ("support", queue.id)
    );
    assert_eq!(account.imap, account_spec("SERV", "support").imap);
    assert_eq!(account.smtp, account_spec("SERV", "support").smtp);
    assert_eq!(account.options, account_spec("SERV", "support").options);
    assert!(account.import_since >= before && account.import_since <= after);
    assert_eq!(store.account(account.id).await.unwrap(), account);
    assert_eq!(store.account_by_key("SERV").await.unwrap(), account);
    let secrets = store.account_secrets(account.id).await.unwrap();
    assert_eq!(secrets.imap_password.expose(), "imap-pw");
    assert_eq!(secrets.smtp_password.expose(), "smtp-pw");

    // A restart provisions again: import_since stays, None passwords stay.
    let mut again = account_spec("SERV", "support");
    again.import_since = Some(Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap());
    again.imap_password = None;
    again.smtp_password = None;
    again.imap.host = "imap.example.test".into();
    again.options.signature = None;
    let updated = store.upsert_account(again).await.unwrap();
    assert_eq!(updated.id, account.id);
    assert_eq!(updated.import_since, account.import_since);
    assert_eq!(updated.created_at, account.created_at);
    assert_eq!(updated.imap.host, "imap.example.test");
    assert_eq!(updated.options.signature, None);
    let secrets = store.account_secrets(account.id).await.unwrap();
    assert_eq!(secrets.imap_password.expose(), "imap-pw");
    assert_eq!(secrets.smtp_password.expose(), "smtp-pw");

    // A given password replaces only its own.
    let mut new_imap = account_spec("SERV", "support");
    new_imap.imap_password = Some(Secret::new("imap-pw-2"));
    new_imap.smtp_password = None;
    store.upsert_account(new_imap).await.unwrap();
    let secrets = store.account_secrets(account.id).await.unwrap();
    assert_eq!(secrets.imap_password.expose(), "imap-pw-2");
    assert_eq!(secrets.smtp_password.expose(), "smtp-pw");
}

pub(super) async fn new_accounts_take_the_given_import_since(store: &Store) {
    store
        .upsert_queue(queue_spec("support", &[]))
        .await
        .unwrap();
    let since =
        Utc.with_ymd_and_hms(2024, 5, 17, 8, 30, 0).unwrap() + Duration::microseconds(1_234_567);
    let mut spec = account_spec("SALE", "support");
    spec.import_since = Some(since);
    spec.imap_password = None;
    spec.smtp_password = None;
    let account = store.create_account(spec).await.unwrap();
    assert_eq!(
        account.import_since,
        since.duration_trunc(TimeDelta::milliseconds(1)).unwrap()
    );
    // No password given on insert: empty ones.
    let secrets = store.account_secrets(account.id).await.unwrap();
    assert!(secrets.imap_password.is_empty() && secrets.smtp_password.is_empty());
}

pub(super) async fn accounts_need_an_active_queue(store: &Store) {
    assert_invalid(
        store.upsert_account(account_spec("SERV", "nowhere")).await,
        "`nowhere`",
    );
    assert_invalid(
        store.create_account(account_spec("SERV", "nowhere")).await,
        "`nowhere`",
    );
    assert!(store.list_accounts().await.unwrap().is_empty());
    let queue = store
        .upsert_queue(queue_spec("support", &[]))
        .await
        .unwrap();
    let account = store
        .upsert_account(account_spec("SERV", "support"))
        .await
        .unwrap();
    assert_invalid(
        store
            .update_account(account.id, account_spec("SERV", "nowhere"))
            .await,
        "`nowhere`",
    );
    let old = store.upsert_queue(queue_spec("old", &[])).await.unwrap();
    store.delete_queue(old.id).await.unwrap();
    assert_invalid(
        store
            .update_account(account.id, account_spec("SERV", "old"))
            .await,
        "`old`",
    );
    assert_eq!(store.account(account.id).await.unwrap().queue_id, queue.id);
}

pub(super) async fn create_account_refuses_a_taken_key(store: &Store) {
    store
        .upsert_queue(queue_spec("support", &[]))
        .await
        .unwrap();
    let account = store
        .create_account(account_spec("SERV", "support"))
        .await
        .unwrap();
    assert_conflict(
        store.create_account(account_spec("SERV", "support")).await,
        "`SERV`",
    );
    store.delete_account(account.id).await.unwrap();
    assert_conflict(
        store.create_account(account_spec("SERV", "support")).await,
        "`SERV`",
    );
}

pub(super) async fn update_account_replaces_settings_but_not_the_key(store: &Store) {
    store
        .upsert_queue(queue_spec("support", &[]))
        .await
        .unwrap();
    let sales = store.upsert_queue(queue_spec("sales", &[])).await.unwrap();
    let account = store
        .upsert_account(account_spec("SERV", "support"))
        .await
        .unwrap();

    let mut spec = account_spec("SERV", "sales");
    spec.address = "help@example.test".into();
    spec.imap.port = 993;
    spec.imap.tls = TlsMode::Tls;
    spec.imap.sent_folder = None;
    spec.smtp.port = 465;
    spec.imap_password = None;
    spec.smtp_password = Some(Secret::new("smtp-pw-2"));
    spec.options.max_mail_bytes = 1;
    let updated = store
        .update_account(account.id, spec.clone())
        .await
        .unwrap();
    assert_eq!(updated.id, account.id);
    assert_eq!(
        (updated.queue.as_str(), updated.queue_id),
        ("sales", sales.id)
    );
    assert_eq!(updated.address, "help@example.test");
    assert_eq!(updated.imap, spec.imap);
    assert_eq!(updated.smtp, spec.smtp);
    assert_eq!(updated.options, spec.options);
    assert_eq!(updated.import_since, account.import_since);
    assert_eq!(store.account(account.id).await.unwrap(), updated);
    let secrets = store.account_secrets(account.id).await.unwrap();
    assert_eq!(secrets.imap_password.expose(), "imap-pw");
    assert_eq!(secrets.smtp_password.expose(), "smtp-pw-2");

    // Unlike upsert, update sets import_since when one is given.
    let since = Utc.with_ymd_and_hms(2021, 2, 3, 4, 5, 6).unwrap();
    spec.import_since = Some(since);
    assert_eq!(
        store
            .update_account(account.id, spec)
            .await
            .unwrap()
            .import_since,
        since
    );

    assert_invalid(
        store
            .update_account(account.id, account_spec("OTHER", "sales"))
            .await,
        "`SERV`",
    );
    assert_not_found(
        store
            .update_account(AccountId(999_999), account_spec("SERV", "sales"))
            .await,
        "account",
    );
}

pub(super) async fn deleted_accounts_are_gone_until_revived(store: &Store) {
    store
        .upsert_queue(queue_spec("support", &[]))
        .await
        .unwrap();
    let account = store
        .upsert_account(account_spec("SERV", "support"))
        .await
        .unwrap();
    store.delete_account(account.id).await.unwrap();

    assert_not_found(store.account(account.id).await, "account");
    assert_not_found(store.account_by_key("SERV").await, "account");
    assert_not_found(store.account_secrets(account.id).await, "account");
    assert!(store.list_accounts().await.unwrap().is_empty());
    assert_not_found(store.delete_account(account.id).await, "account");
    assert_not_found(
        store
            .update_account(account.id, account_spec("SERV", "support"))
            .await,
        "account",
    );

    let revived = store
        .upsert_account(account_spec("SERV", "support"))
        .await
        .unwrap();
    assert_eq!(revived.id, account.id);
    assert_eq!(revived.import_since, account.import_since);
}

pub(super) async fn list_accounts_orders_by_key(store: &Store) {
    store
        .upsert_queue(queue_spec("support", &[]))
        .await
        .unwrap();
    for key in ["SERV", "BILL", "Sale", "ADM"] {
        store
            .upsert_account(account_spec(key, "support"))
            .await
            .unwrap();
    }
    let adm = store.account_by_key("ADM").await.unwrap();
    store.delete_account(adm.id).await.unwrap();
    let accounts: Vec<Account> = store.list_accounts().await.unwrap();
    let keys: Vec<&str> = accounts.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["BILL", "SERV", "Sale"]);
}

pub(super) async fn account_numbers_out_of_range_are_invalid(store: &Store) {
    store
        .upsert_queue(queue_spec("support", &[]))
        .await
        .unwrap();
    let mut spec = account_spec("SERV", "support");
    spec.options.max_mail_bytes = u64::MAX;
    assert_invalid(store.upsert_account(spec).await, "max_mail_bytes");
    assert!(store.list_accounts().await.unwrap().is_empty());
}
