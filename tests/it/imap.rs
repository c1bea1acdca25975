//! The IMAP session (`mailroom::mail::imap`) against the real Dovecot:
//! login (plain, STARTTLS, IMAPS), errors the mailbox actor decides on,
//! SELECT, batched UID FETCH (and its `n:*` pitfall), SEARCH SINCE, APPEND,
//! and IDLE woken by APPEND and by mail delivered through Postfix.
//!
//! Every test uses its own fresh mailbox (`t<random>@example.test`), so the
//! tests run in parallel without seeing each other's mail.

use std::time::Duration;

use chrono::Utc;
use mailroom::domain::TlsMode;
use mailroom::mail::imap::{
    AuthMethod, FetchedMail, IdleOutcome, IdleStop, ImapConfig, ImapError, ImapSession,
};
use mailroom::secret::Secret;
use tokio::time::{Instant, timeout};

use crate::support::mail::{fresh_address, mail_password, smtp_send};
use crate::support::services::service_var;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a mail may take to show up in IDLE (Dovecot alone holds the
/// notice back 0.5 s).
const NEWS_DEADLINE: Duration = Duration::from_secs(10);

fn host_port(var: &str) -> (String, u16) {
    let addr = service_var(var);
    let (host, port) = addr
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{var}={addr} is not HOST:PORT"));
    (host.to_string(), port.parse().expect("a port number"))
}

fn config(username: &str, tls: TlsMode) -> ImapConfig {
    let var = match tls {
        TlsMode::Tls => "MAILROOM_TEST_IMAPS_ADDR",
        TlsMode::None | TlsMode::Starttls => "MAILROOM_TEST_IMAP_ADDR",
    };
    let (host, port) = host_port(var);
    ImapConfig {
        host,
        port,
        tls,
        username: username.to_string(),
        password: Secret::new(mail_password()),
        folder: "INBOX".to_string(),
        accept_invalid_certs: false,
        auth: AuthMethod::Login,
    }
}

async fn connect(cfg: &ImapConfig) -> ImapSession {
    ImapSession::connect(cfg, CONNECT_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("connect as {}: {e}", cfg.username))
}

/// A fresh mailbox, logged in over plain IMAP with INBOX selected.
async fn fresh_inbox() -> (String, ImapSession) {
    let user = fresh_address("t");
    let mut session = connect(&config(&user, TlsMode::None)).await;
    session.select("INBOX").await.expect("select INBOX");
    (user, session)
}

/// A small, realistic mail with CRLF line ends (what IMAP hands back).
fn sample_mail(to: &str, n: u32) -> Vec<u8> {
    format!(
        "From: Jane Customer <jane.customer@example.test>\r\n\
         To: Support <{to}>\r\n\
         Subject: Order #{n} has not arrived\r\n\
         Date: Mon, 24 Nov 2025 10:{n:02}:00 +0100\r\n\
         Message-ID: <order-{n}-{}@customer.example.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         Hello,\r\n\
         \r\n\
         my order {n} was due last week and is still not here. Could you\r\n\
         look into it? Merci beaucoup, Jürgen would say danke.\r\n\
         \r\n\
         Jane\r\n",
        rand::random::<u32>()
    )
    .into_bytes()
}

/// Fetches until at least one mail above `last_uid` is there, IDLEing in
/// between: waits for the event, never for a fixed time.
async fn wait_for_mail(mut session: ImapSession, last_uid: u32) -> (ImapSession, Vec<FetchedMail>) {
    let deadline = Instant::now() + NEWS_DEADLINE;
    loop {
        let mails = session.fetch_after(last_uid, 100).await.expect("fetch");
        if !mails.is_empty() {
            return (session, mails);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(
            !remaining.is_zero(),
            "no mail arrived within {NEWS_DEADLINE:?}"
        );
        let (back, _) = session
            .idle(remaining, IdleStop::new())
            .await
            .expect("idle");
        session = back;
    }
}

#[tokio::test]
async fn plain_login_reports_capabilities_and_answers_noop() {
    let user = fresh_address("t");
    let mut session = connect(&config(&user, TlsMode::None)).await;
    assert!(session.has_idle(), "Dovecot announces IDLE after login");
    assert!(session.has_capability("imap4rev1"));
    session.noop().await.expect("noop");
    session.logout().await;
}

#[tokio::test]
async fn authenticate_plain_logs_in() {
    let user = fresh_address("t");
    let mut cfg = config(&user, TlsMode::None);
    cfg.auth = AuthMethod::Plain;
    let mut session = connect(&cfg).await;
    session.select("INBOX").await.expect("select");
    session.logout().await;
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error_that_does_not_repeat_it() {
    let user = fresh_address("t");
    let password = "not-the-password-7f3a";
    let attempts = [AuthMethod::Login, AuthMethod::Plain].map(|auth| {
        let mut cfg = config(&user, TlsMode::None);
        cfg.password = Secret::new(password);
        cfg.auth = auth;
        // Concurrently: Dovecot answers a failed login after a 2 s delay.
        async move { (ImapSession::connect(&cfg, CONNECT_TIMEOUT).await, cfg.auth) }
    });
    for (result, auth) in futures_util::future::join_all(attempts).await {
        let err = result.expect_err("a wrong password must fail");
        assert!(err.is_auth(), "{auth:?}: {err:?}");
        assert!(err.needs_attention() && !err.is_transient());
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains(password), "{shown}");
            assert!(shown.contains(&user), "the error names the login: {shown}");
        }
    }
}

#[tokio::test]
async fn an_unsupported_xoauth2_login_is_an_auth_error_without_the_token() {
    let user = fresh_address("t");
    let mut cfg = config(&user, TlsMode::None);
    cfg.auth = AuthMethod::XOAuth2 {
        token: Secret::new("ya29.secret-token"),
    };
    let err = ImapSession::connect(&cfg, CONNECT_TIMEOUT)
        .await
        .expect_err("the test Dovecot has no XOAUTH2");
    assert!(err.is_auth(), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("ya29"), "{err:?}");
}

#[tokio::test]
async fn an_empty_inbox_selects_with_uidvalidity() {
    let user = fresh_address("t");
    let mut session = connect(&config(&user, TlsMode::None)).await;
    let info = session.select("INBOX").await.expect("select");
    assert!(info.uid_validity > 0, "{info:?}");
    assert_eq!(info.exists, 0);
    assert_eq!(info.uid_next, Some(1));
    assert!(session.fetch_after(0, 100).await.expect("fetch").is_empty());
    assert!(
        session
            .uids_since(Utc::now())
            .await
            .expect("search")
            .is_empty()
    );
}

#[tokio::test]
async fn a_missing_folder_is_no_such_folder_and_the_session_goes_on() {
    let (_user, mut session) = fresh_inbox().await;
    let err = session
        .select("Does/Not/Exist")
        .await
        .expect_err("missing folder");
    assert!(matches!(err, ImapError::NoSuchFolder { .. }), "{err:?}");
    let err = session
        .append("Nor This One", None, b"Subject: x\r\n\r\nx\r\n")
        .await
        .expect_err("append to a missing folder");
    assert!(matches!(err, ImapError::NoSuchFolder { .. }), "{err:?}");
    // A refused command leaves the connection usable.
    session
        .select("INBOX")
        .await
        .expect("select after a refusal");
    session.noop().await.expect("noop");
}

#[tokio::test]
async fn appended_mails_are_fetched_in_uid_order_with_the_same_bytes() {
    let (user, mut session) = fresh_inbox().await;
    let sent: Vec<Vec<u8>> = (1..=3).map(|n| sample_mail(&user, n)).collect();
    for mail in &sent {
        session.append("INBOX", None, mail).await.expect("append");
    }
    let before = Utc::now();

    let fetched = session.fetch_after(0, 100).await.expect("fetch");
    assert_eq!(fetched.len(), 3);
    for (mail, raw) in fetched.iter().zip(&sent) {
        assert_eq!(&mail.body, raw, "uid {} differs", mail.uid);
        assert_eq!(mail.size, Some(raw.len() as u32));
        let date = mail.internal_date.expect("INTERNALDATE");
        assert!((before - date).num_seconds().abs() < 120, "{date}");
        assert!(
            !mail.flags.iter().any(|f| f == "\\Seen"),
            "{:?}",
            mail.flags
        );
    }
    assert!(fetched.windows(2).all(|w| w[0].uid < w[1].uid));

    // BODY.PEEK: fetching did not mark anything read.
    let again = session
        .fetch_uids(&[fetched[0].uid])
        .await
        .expect("refetch");
    assert!(
        !again[0].flags.iter().any(|f| f == "\\Seen"),
        "{:?}",
        again[0].flags
    );

    // `UID FETCH n:*` answers with the last mail even when its UID is below
    // n: nothing above the last UID means nothing.
    let last = fetched[2].uid;
    assert!(
        session
            .fetch_after(last, 100)
            .await
            .expect("fetch")
            .is_empty()
    );
    assert!(
        session
            .fetch_after(last + 1000, 100)
            .await
            .expect("fetch")
            .is_empty()
    );
}

#[tokio::test]
async fn fetch_after_hands_out_at_most_max_per_batch() {
    let (user, mut session) = fresh_inbox().await;
    for n in 1..=5 {
        session
            .append("INBOX", Some("(\\Seen)"), &sample_mail(&user, n))
            .await
            .expect("append");
    }
    let mut last = 0;
    let mut sizes = Vec::new();
    let mut uids = Vec::new();
    for _ in 0..3 {
        let batch = session.fetch_after(last, 2).await.expect("fetch");
        sizes.push(batch.len());
        for mail in &batch {
            assert!(mail.uid > last);
            assert!(
                mail.flags.iter().any(|f| f == "\\Seen"),
                "flags given to APPEND"
            );
            uids.push(mail.uid);
        }
        last = batch.last().map_or(last, |m| m.uid);
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert!(uids.windows(2).all(|w| w[0] < w[1]), "{uids:?}");
    assert!(
        session
            .fetch_after(last, 2)
            .await
            .expect("fetch")
            .is_empty()
    );
}

#[tokio::test]
async fn uids_since_and_fetch_uids_find_what_exists() {
    let (user, mut session) = fresh_inbox().await;
    for n in 1..=2 {
        session
            .append("INBOX", None, &sample_mail(&user, n))
            .await
            .expect("append");
    }
    let uids = session
        .uids_since(Utc::now() - chrono::Duration::hours(1))
        .await
        .expect("search");
    assert_eq!(uids.len(), 2, "{uids:?}");
    let later = session
        .uids_since(Utc::now() + chrono::Duration::days(3))
        .await
        .expect("search");
    assert!(later.is_empty(), "{later:?}");

    let mut asked = uids.clone();
    asked.push(uids[1] + 50); // no such mail
    let mails = session.fetch_uids(&asked).await.expect("fetch");
    assert_eq!(mails.iter().map(|m| m.uid).collect::<Vec<_>>(), uids);
}

#[tokio::test]
async fn idle_wakes_when_another_session_appends() {
    let (user, watcher) = fresh_inbox().await;
    let mut writer = connect(&config(&user, TlsMode::None)).await;

    let idle = tokio::spawn(watcher.idle(Duration::from_secs(60), IdleStop::new()));
    // The pause makes it likely that the IDLE is under way, so that the news
    // comes as an EXISTS during IDLE. Should the append land first, the news
    // comes at IDLE start instead: the outcome is the same either way.
    tokio::time::sleep(Duration::from_millis(300)).await;
    writer
        .append("INBOX", None, &sample_mail(&user, 1))
        .await
        .expect("append");
    let appended = Instant::now();
    let (mut watcher, outcome) = timeout(NEWS_DEADLINE, idle)
        .await
        .expect("IDLE must report the new mail in time")
        .expect("task")
        .expect("idle");
    assert_eq!(
        outcome,
        IdleOutcome::NewData,
        "after {:?}",
        appended.elapsed()
    );
    assert_eq!(watcher.fetch_after(0, 10).await.expect("fetch").len(), 1);
}

#[tokio::test]
async fn idle_wakes_when_postfix_delivers_and_the_bytes_survive() {
    let (user, mut session) = fresh_inbox().await;
    let last = session.fetch_after(0, 1).await.expect("fetch").len() as u32;
    assert_eq!(last, 0);
    let raw = sample_mail(&user, 7);
    smtp_send("jane.customer@example.test", &[&user], &raw).await;

    let (_session, mails) = wait_for_mail(session, 0).await;
    assert_eq!(mails.len(), 1);
    let body = &mails[0].body;
    // Dovecot and Postfix add headers on top (Return-Path, Delivered-To,
    // Received); the message itself arrives byte for byte.
    assert!(body.ends_with(&raw), "{}", String::from_utf8_lossy(body));
    assert!(body.len() > raw.len());
    let text = String::from_utf8_lossy(body);
    assert!(text.contains("Received: "), "{text}");
}

#[tokio::test]
async fn idle_reports_changes_seen_during_an_earlier_command() {
    let (user, mut watcher) = fresh_inbox().await;
    let mut writer = connect(&config(&user, TlsMode::None)).await;
    writer
        .append("INBOX", None, &sample_mail(&user, 1))
        .await
        .expect("append");
    // The NOOP's answer carries the EXISTS; the next IDLE must not wait for
    // a notice the server will never repeat.
    watcher.noop().await.expect("noop");
    let started = Instant::now();
    let (_watcher, outcome) = watcher
        .idle(Duration::from_secs(30), IdleStop::new())
        .await
        .expect("idle");
    assert_eq!(outcome, IdleOutcome::NewData);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn idle_times_out_and_the_session_stays_usable() {
    let (user, session) = fresh_inbox().await;
    let started = Instant::now();
    let (mut session, outcome) = session
        .idle(Duration::from_millis(300), IdleStop::new())
        .await
        .expect("idle");
    assert_eq!(outcome, IdleOutcome::Timeout);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    session
        .append("INBOX", None, &sample_mail(&user, 1))
        .await
        .expect("append after IDLE");
    assert_eq!(session.fetch_after(0, 10).await.expect("fetch").len(), 1);
}

#[tokio::test]
async fn the_stop_handle_ends_idle_promptly() {
    let (_user, session) = fresh_inbox().await;

    // Stopped before the IDLE begins: returns at once, without IDLE.
    let stop = IdleStop::new();
    stop.stop();
    let (session, outcome) = session
        .idle(Duration::from_secs(60), stop)
        .await
        .expect("idle");
    assert_eq!(outcome, IdleOutcome::Stopped);

    // Stopped while waiting. The pause only makes it likely that the IDLE
    // is under way when the stop comes; the outcome is the same either way.
    let stop = IdleStop::new();
    let idle = tokio::spawn(session.idle(Duration::from_secs(60), stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = Instant::now();
    stop.stop();
    let (mut session, outcome) = timeout(Duration::from_secs(5), idle)
        .await
        .expect("stop must end the IDLE promptly")
        .expect("task")
        .expect("idle");
    assert_eq!(outcome, IdleOutcome::Stopped);
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopped.elapsed()
    );
    session
        .noop()
        .await
        .expect("the session is usable after DONE");
}

#[tokio::test]
async fn starttls_works_when_invalid_certificates_are_accepted() {
    let user = fresh_address("t");
    let mut cfg = config(&user, TlsMode::Starttls);
    cfg.accept_invalid_certs = true;
    let mut session = connect(&cfg).await;
    session.select("INBOX").await.expect("select over STARTTLS");
    let raw = sample_mail(&user, 1);
    session.append("INBOX", None, &raw).await.expect("append");
    let mails = session.fetch_after(0, 10).await.expect("fetch");
    assert_eq!(mails[0].body, raw);
    session.logout().await;
}

#[tokio::test]
async fn starttls_refuses_a_self_signed_certificate_by_default() {
    let cfg = config(&fresh_address("t"), TlsMode::Starttls);
    let err = ImapSession::connect(&cfg, CONNECT_TIMEOUT)
        .await
        .expect_err("the test certificate is self-signed");
    assert!(matches!(err, ImapError::Certificate { .. }), "{err:?}");
    assert!(err.needs_attention());
}

#[tokio::test]
async fn imaps_works_when_invalid_certificates_are_accepted() {
    let user = fresh_address("t");
    let mut cfg = config(&user, TlsMode::Tls);
    cfg.accept_invalid_certs = true;
    let mut session = connect(&cfg).await;
    assert!(session.has_idle());
    session.select("INBOX").await.expect("select over TLS");
    let (session, outcome) = session
        .idle(Duration::from_millis(200), IdleStop::new())
        .await
        .expect("IDLE over TLS");
    assert_eq!(outcome, IdleOutcome::Timeout);
    session.logout().await;
}

#[tokio::test]
async fn imaps_refuses_a_self_signed_certificate_by_default() {
    let cfg = config(&fresh_address("t"), TlsMode::Tls);
    let err = ImapSession::connect(&cfg, CONNECT_TIMEOUT)
        .await
        .expect_err("the test certificate is self-signed");
    assert!(matches!(err, ImapError::Certificate { .. }), "{err:?}");
}

#[tokio::test]
async fn a_closed_port_is_a_quick_connect_error() {
    // A port that was just free: nothing listens there now.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mut cfg = config(&fresh_address("t"), TlsMode::None);
    cfg.port = port;
    let started = Instant::now();
    let err = ImapSession::connect(&cfg, CONNECT_TIMEOUT)
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, ImapError::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
