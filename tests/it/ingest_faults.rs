//! Ingest under faults: corrupt and oversized mail, a UIDVALIDITY change, an
//! IMAP outage, and a crash in the middle of a burst. The invariant in every
//! case: every mail ends up as exactly one interaction (or message), or in
//! quarantine — none lost, none duplicated — and the mailbox goes on.

use std::time::Duration;

use mailroom::mail::imap::{ImapConfig, ImapSession};
use mailroom::secret::Secret;
use mailroom::store::Store;
use serde_json::Value;

use crate::ingest::{account_id, app_with_account, mail, store, wait_interactions};
use crate::support::app::{Backend, Options, config_toml};
use crate::support::db::TestDb;
use crate::support::mail::{fresh_address, mail_password, smtp_send};
use crate::support::proxy::Proxy;
use crate::support::services::service_var;

fn id(tag: &str) -> String {
    format!("{tag}.{:016x}@customer.example.test", rand::random::<u64>())
}

/// Put raw bytes into a mailbox with IMAP APPEND (exact bytes, no SMTP
/// rewriting, no size limit of Postfix's).
async fn append(mailbox: &str, raw: &[u8]) {
    let imap = service_var("MAILROOM_TEST_IMAP_ADDR");
    let (host, port) = imap.rsplit_once(':').unwrap();
    let cfg = ImapConfig {
        host: host.into(),
        port: port.parse().unwrap(),
        tls: mailroom::domain::TlsMode::None,
        username: mailbox.into(),
        password: Secret::new(mail_password()),
        folder: "INBOX".into(),
        accept_invalid_certs: false,
        auth: mailroom::mail::imap::AuthMethod::Login,
    };
    let mut s = ImapSession::connect(&cfg, Duration::from_secs(10))
        .await
        .expect("imap connect");
    s.append("INBOX", None, raw).await.expect("append");
    s.logout().await;
}

async fn quarantine_count(app: &crate::support::app::TestApp) -> usize {
    store(app)
        .list_quarantine(account_id(app).await)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn corrupt_and_oversized_mail_is_quarantined_or_ingested_and_the_mailbox_goes_on() {
    let mailbox = fresh_address("support");
    let app = app_with_account(Backend::Sqlite, &mailbox, "").await;
    let c = "c@customer.example.test";
    let mut bad: Vec<Vec<u8>> = vec![
        // Truncated MIME: the multipart never closes and the base64 stops mid-way.
        format!("From: {c}\r\nTo: {mailbox}\r\nSubject: truncated\r\nMessage-ID: <{}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJ", id("t")).into_bytes(),
        // Undeclared 8-bit in headers (Latin-1 bytes, no RFC 2047).
        [format!("From: Ren\u{e9} <{c}>\r\nTo: {mailbox}\r\nMessage-ID: <{}>\r\n", id("8")).into_bytes(), b"Subject: caf\xe9 cr\xe8me\r\n\r\nbody \xe9\r\n".to_vec()].concat(),
        // Bad base64.
        format!("From: {c}\r\nTo: {mailbox}\r\nSubject: bad base64\r\nMessage-ID: <{}>\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64 at all%%%\r\n", id("b")).into_bytes(),
        // Unknown charset.
        format!("From: {c}\r\nTo: {mailbox}\r\nSubject: =?x-klingon?Q?qapla?=\r\nMessage-ID: <{}>\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\nnuqneH\r\n", id("k")).into_bytes(),
        // NUL bytes in the body.
        [format!("From: {c}\r\nTo: {mailbox}\r\nSubject: nul\r\nMessage-ID: <{}>\r\n\r\n", id("n")).into_bytes(), b"a\0b\0c\r\n".to_vec()].concat(),
        // Not a mail at all.
        b"\x00\x01\x02 garbage without headers \xff\xfe\r\n".to_vec(),
    ];
    // 41 MB: over the default 40 MB limit, so quarantined whatever it holds.
    let mut big = format!(
        "From: {c}\r\nTo: {mailbox}\r\nSubject: huge\r\nMessage-ID: <{}>\r\n\r\n",
        id("huge")
    )
    .into_bytes();
    let line = b"0123456789012345678901234567890123456789012345678901234567890123456789012345\r\n";
    while big.len() < 41 * 1024 * 1024 {
        big.extend_from_slice(line);
    }
    bad.push(big);
    let total_bad = bad.len();
    for raw in &bad {
        append(&mailbox, raw).await;
    }
    // A good mail after all of them must still arrive.
    let good = id("good");
    append(
        &mailbox,
        &mail(c, &mailbox, "after the storm", &good, "", "all fine"),
    )
    .await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let interactions = store(&app)
            .interactions_of_account(account_id(&app).await)
            .await
            .unwrap();
        let quarantined = quarantine_count(&app).await;
        let good_in = interactions.iter().any(|i| i.subject == "after the storm");
        if good_in && interactions.len() + quarantined == total_bad + 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} interactions + {quarantined} quarantined of {} mails (good one in: {good_in})",
            interactions.len(),
            total_bad + 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let admin = app.login("admin").await;
    let q: Value = app
        .get(&admin, "/api/v1/accounts/SERV/quarantine")
        .await
        .json()
        .await
        .unwrap();
    let huge = q
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["size"].as_u64().unwrap_or(0) > 40 * 1024 * 1024)
        .expect("the 41 MB mail is quarantined");
    assert!(huge["reason"].as_str().unwrap().contains("limit"), "{huge}");
    // Its raw bytes are kept whole.
    let qid = huge["id"].as_str().unwrap();
    let raw = app
        .get(
            &admin,
            &format!("/api/v1/accounts/SERV/quarantine/{qid}/raw"),
        )
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(raw.len(), bad.last().unwrap().len());
    let status: Value = app
        .get(&admin, "/api/v1/accounts/SERV/status")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["mailbox"]["backing_off"], false, "{status}");
}

#[tokio::test]
async fn a_uidvalidity_change_resyncs_without_duplicates() {
    let mailbox = fresh_address("support");
    let app = app_with_account(Backend::Sqlite, &mailbox, "").await;
    let c = fresh_address("cust");
    for n in 0..2 {
        smtp_send(
            &c,
            &[&mailbox],
            &mail(&c, &mailbox, &format!("before {n}"), &id("v"), "", "x"),
        )
        .await;
    }
    wait_interactions(&app, 2).await;
    // Renumber the folder as a server migration would.
    let conf = service_var("MAILROOM_TEST_DOVECOT_CONF");
    let out = std::process::Command::new("doveadm")
        .args([
            "-c",
            &conf,
            "mailbox",
            "update",
            "--uid-validity",
            &format!("{}", 1000 + rand::random::<u16>() as u32),
            "-u",
            &mailbox,
            "INBOX",
        ])
        .output()
        .expect("doveadm runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    smtp_send(
        &c,
        &[&mailbox],
        &mail(&c, &mailbox, "after", &id("v"), "", "y"),
    )
    .await;
    let list = wait_interactions(&app, 3).await;
    assert!(list.iter().any(|i| i.subject == "after"));
    // Nothing was duplicated by the resync; wait for the watermark to be on
    // the new UIDVALIDITY to be sure the resync ran.
    let account = account_id(&app).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let before = store(&app).watermark(account).await.unwrap();
        if before.is_some_and(|w| w.uid_validity != 0 && w.last_uid >= 3) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "watermark never moved: {before:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_interactions(&app, 3).await;
}

#[tokio::test]
async fn an_imap_outage_backs_off_and_loses_nothing() {
    let mailbox = fresh_address("support");
    let proxy = Proxy::start(service_var("MAILROOM_TEST_IMAP_ADDR")).await;
    let smtp = service_var("MAILROOM_TEST_SMTP_ADDR");
    let (shost, sport) = smtp.rsplit_once(':').unwrap();
    let pw = mail_password();
    let extra = format!(
        "[[queues]]\nname = \"support\"\nagents = [\"alice\"]\n[[accounts]]\nkey = \"SERV\"\naddress = \"{mailbox}\"\nqueue = \"support\"\n\
         imap = {{ host = \"127.0.0.1\", port = {}, tls = \"none\", username = \"{mailbox}\", password = \"{pw}\" }}\n\
         smtp = {{ host = \"{shost}\", port = {sport}, tls = \"none\", username = \"{mailbox}\", password = \"{pw}\" }}\n",
        proxy.port
    );
    let app = crate::support::app::spawn_app(Options {
        extra,
        ..Options::default()
    })
    .await;
    let c = fresh_address("cust");
    smtp_send(
        &c,
        &[&mailbox],
        &mail(&c, &mailbox, "one", &id("o"), "", "1"),
    )
    .await;
    wait_interactions(&app, 1).await;

    proxy.take_down();
    let admin = app.login("admin").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s: Value = app
            .get(&admin, "/api/v1/accounts/SERV/status")
            .await
            .json()
            .await
            .unwrap();
        if s["mailbox"]["backing_off"] == true {
            assert!(s["mailbox"]["last_error"].is_string(), "{s}");
            assert!(s["mailbox"]["failures"].as_u64().unwrap() >= 1, "{s}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never backed off: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Mail keeps arriving at the server while we cannot reach it.
    smtp_send(
        &c,
        &[&mailbox],
        &mail(&c, &mailbox, "two", &id("o"), "", "2"),
    )
    .await;
    smtp_send(
        &c,
        &[&mailbox],
        &mail(&c, &mailbox, "three", &id("o"), "", "3"),
    )
    .await;
    proxy.bring_up();
    let list = wait_interactions(&app, 3).await;
    let mut subjects: Vec<&str> = list.iter().map(|i| i.subject.as_str()).collect();
    subjects.sort();
    assert_eq!(subjects, ["one", "three", "two"]);
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("mailroom_imap_errors_total"), "{metrics}");
}

/// Kill -9 the server in the middle of a 500-mail burst, start it again: all
/// 500 are there, each exactly once.
#[tokio::test]
async fn a_crash_during_a_burst_of_500_loses_and_duplicates_nothing() {
    const N: usize = 500;
    let mailbox = fresh_address("burst");
    let (url, _db) = TestDb::sqlite_url();
    let imap = service_var("MAILROOM_TEST_IMAP_ADDR");
    let (host, port) = imap.rsplit_once(':').unwrap();
    let smtp = service_var("MAILROOM_TEST_SMTP_ADDR");
    let (shost, sport) = smtp.rsplit_once(':').unwrap();
    // The burst starts while the server may still be starting; mail that
    // reaches the mailbox before the account exists would (rightly) be
    // older than its default import_since, so set it explicitly.
    let since = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let pw = mail_password();
    let extra = format!(
        "[[queues]]\nname = \"support\"\n[[accounts]]\nkey = \"SERV\"\naddress = \"{mailbox}\"\nqueue = \"support\"\nimport_since = \"{since}\"\n\
         imap = {{ host = \"{host}\", port = {port}, tls = \"none\", username = \"{mailbox}\", password = \"{pw}\" }}\n\
         smtp = {{ host = \"{shost}\", port = {sport}, tls = \"none\", username = \"{mailbox}\", password = \"{pw}\" }}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("burst.toml");
    std::fs::write(
        &config,
        config_toml(
            &url,
            &Options {
                extra,
                ..Options::default()
            },
        ),
    )
    .unwrap();
    // The server's log goes to a file, shown if the test fails.
    let log_path = dir.path().join("server.log");
    let spawn = || {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("MAILROOM__LOG__LEVEL", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("server starts")
    };
    let log_tail = || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                !l.contains(" INFO ")
                    || l.contains("quarantin")
                    || l.contains("first sync")
                    || l.contains("connected")
            })
            .collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    };
    let mut server = spawn();
    let reader = Store::connect(&url).await.unwrap();
    let count = |reader: Store| async move {
        match reader.account_by_key("SERV").await {
            Ok(a) => reader
                .interactions_of_account(a.id)
                .await
                .map(|l| l.len())
                .unwrap_or(0),
            Err(_) => 0,
        }
    };
    // Send in the background; kill once a good part has been ingested.
    let c = fresh_address("cust");
    let (mb, cc) = (mailbox.clone(), c.clone());
    let sender = tokio::spawn(async move {
        for n in 0..N {
            let raw = mail(
                &cc,
                &mb,
                &format!("burst {n}"),
                &format!("burst-{n}.{mb}"),
                "",
                "payload",
            );
            smtp_send(&cc, &[&mb], &raw).await;
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while count(reader.clone()).await < N / 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the burst never started arriving"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let at_kill = count(reader.clone()).await;
    sender.await.unwrap();
    let mut server = spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let n = count(reader.clone()).await;
        if n >= N {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let account = reader.account_by_key("SERV").await.unwrap();
            let quarantined = reader.list_quarantine(account.id).await.unwrap();
            let mark = reader.watermark(account.id).await.unwrap();
            panic!(
                "only {n} of {N} after restart (had {at_kill} at the kill); quarantined: {quarantined:?}; \
                 watermark {mark:?}\nserver log:\n{}",
                log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Exactly N, each subject once.
    let account = reader.account_by_key("SERV").await.unwrap();
    let list = reader.interactions_of_account(account.id).await.unwrap();
    assert_eq!(list.len(), N, "had {at_kill} at the kill");
    let mut subjects: Vec<&str> = list.iter().map(|i| i.subject.as_str()).collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), N);
    let _ = server.kill();
    let _ = server.wait();
}
