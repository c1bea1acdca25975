//! Contract: a mailbox's bookkeeping: quarantine (invariant 8: a bad mail
//! is kept raw and never blocks its mailbox), the UID watermark, and server
//! secrets. The harness and mail fixtures are in `ingest.rs`.

use mailroom::store::{IngestOutcome, QuarantineMail, Watermark};

use super::*;

// ---- quarantine --------------------------------------------------------------------

pub(super) async fn quarantined_mail_is_kept_raw_and_moves_the_watermark(store: &Store) {
    let account = serv(store).await;
    let other = sale(store).await;
    let raw = b"\x00\x01\x02 not a mail \xff\xfe".to_vec();
    let quarantine = |position| QuarantineMail {
        account: account.id,
        position,
        raw: raw.clone(),
        reason: "parse: not a mail\0".into(),
        attempts: 3,
    };
    let before = now_ms();
    let id = store
        .quarantine_mail(quarantine(Some((1, 9))))
        .await
        .unwrap();
    assert_eq!(
        store.watermark(account.id).await.unwrap(),
        Some(Watermark {
            uid_validity: 1,
            last_uid: 9
        })
    );
    // Idempotent for the position.
    assert_eq!(
        store
            .quarantine_mail(quarantine(Some((1, 9))))
            .await
            .unwrap(),
        id
    );
    let listed = store.list_quarantine(account.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    let entry = &listed[0];
    assert_eq!(entry.id, id);
    assert_eq!(entry.account, "SERV");
    assert_eq!((entry.uid_validity, entry.uid), (Some(1), Some(9)));
    assert_eq!(entry.size, raw.len() as u64);
    assert_eq!(entry.reason, "parse: not a mail");
    assert_eq!(entry.attempts, 3);
    assert!(entry.created_at >= before);
    assert_eq!(store.quarantine_raw(account.id, id).await.unwrap(), raw);

    // The position is taken: ingesting it now is a duplicate of nothing.
    let mail = Mail::new("q1", "Hello", "Hi").raw();
    assert_eq!(
        ingest(store, &account, &mail, 9).await,
        IngestOutcome::Duplicate { message: None }
    );
    // A quarantined mail without a position (e.g. a failed retry) lists too, newest first.
    let later = store.quarantine_mail(quarantine(None)).await.unwrap();
    let ids: Vec<i64> = store
        .list_quarantine(account.id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, [later, id]);

    assert_not_found(store.quarantine_raw(other.id, id).await, "quarantined mail");
    assert_not_found(
        store.resolve_quarantine(other.id, id).await,
        "quarantined mail",
    );
    store.resolve_quarantine(account.id, id).await.unwrap();
    store.resolve_quarantine(account.id, id).await.unwrap();
    let ids: Vec<i64> = store
        .list_quarantine(account.id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, [later]);
    assert_eq!(store.quarantine_raw(account.id, id).await.unwrap(), raw);
    assert!(store.list_quarantine(other.id).await.unwrap().is_empty());
}

pub(super) async fn an_ingested_position_cannot_be_quarantined(store: &Store) {
    let account = serv(store).await;
    created(ingest(store, &account, &Mail::new("i1", "Hi", "Hi").raw(), 4).await);
    let result = store
        .quarantine_mail(QuarantineMail {
            account: account.id,
            position: Some((1, 4)),
            raw: b"x".to_vec(),
            reason: "late".into(),
            attempts: 1,
        })
        .await;
    assert_conflict(result, "already ingested");
}

// ---- watermark and secrets ------------------------------------------------------------

pub(super) async fn the_watermark_never_goes_back_within_a_uidvalidity(store: &Store) {
    let account = serv(store).await;
    assert_eq!(store.watermark(account.id).await.unwrap(), None);
    let mark = |uid_validity, last_uid| Watermark {
        uid_validity,
        last_uid,
    };
    store.set_watermark(account.id, mark(5, 10)).await.unwrap();
    assert_eq!(
        store.watermark(account.id).await.unwrap(),
        Some(mark(5, 10))
    );
    store.set_watermark(account.id, mark(5, 3)).await.unwrap();
    assert_eq!(
        store.watermark(account.id).await.unwrap(),
        Some(mark(5, 10))
    );
    store
        .set_watermark(account.id, mark(5, u32::MAX))
        .await
        .unwrap();
    assert_eq!(
        store.watermark(account.id).await.unwrap(),
        Some(mark(5, u32::MAX))
    );
    // A new UIDVALIDITY replaces it, lower UIDs and all.
    store.set_watermark(account.id, mark(6, 2)).await.unwrap();
    assert_eq!(store.watermark(account.id).await.unwrap(), Some(mark(6, 2)));
    // An older mail committed late does not move it back.
    store
        .ingest_mail(request(
            &account,
            &Mail::new("w1", "Hi", "Hi").raw(),
            Some((6, 1)),
        ))
        .await
        .unwrap();
    assert_eq!(store.watermark(account.id).await.unwrap(), Some(mark(6, 2)));
}

pub(super) async fn server_secrets_are_random_stable_and_32_bytes(store: &Store) {
    let first = store.server_secret("message-id").await.unwrap();
    assert_eq!(first.len(), 32);
    assert_ne!(first, vec![0u8; 32]);
    assert_eq!(store.server_secret("message-id").await.unwrap(), first);
    let other = store.server_secret("other").await.unwrap();
    assert_eq!(other.len(), 32);
    assert_ne!(other, first);
}
