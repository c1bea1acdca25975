//! Mail for tests against the real servers: fresh mailbox addresses and a
//! raw SMTP client that hands a mail to Postfix (`MAILROOM_TEST_SMTP_ADDR`),
//! which delivers `@example.test` to Dovecot over LMTP.
//!
//! The SMTP dialogue is written out by hand (a few lines) so that tests send
//! exactly the bytes they mean, with no client library deciding headers.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::services::service_var;

/// Each reply from Postfix must arrive within this.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A mailbox nobody else uses: `<prefix><random>@example.test`. Dovecot
/// lets any address log in with the test password, and Postfix delivers
/// to any address of the domain, so nothing needs creating.
pub fn fresh_address(prefix: &str) -> String {
    let domain = service_var("MAILROOM_TEST_MAIL_DOMAIN");
    format!("{prefix}{:016x}@{domain}", rand::random::<u64>())
}

/// The password every test mailbox logs in with.
pub fn mail_password() -> String {
    service_var("MAILROOM_TEST_MAIL_PASSWORD")
}

/// Sends `raw` (a whole RFC 5322 message) from `from` to `to` through
/// Postfix; panics with the server's reply if any step is refused. Only
/// `@example.test` recipients are accepted.
pub async fn smtp_send(from: &str, to: &[&str], raw: &[u8]) {
    if let Err(e) = try_smtp_send(from, to, raw).await {
        panic!("SMTP send from {from} to {to:?} failed: {e}");
    }
}

/// Like [`smtp_send`], but returns the refusal (e.g. `RCPT TO: 550 ...`)
/// for tests that expect one.
pub async fn try_smtp_send(from: &str, to: &[&str], raw: &[u8]) -> Result<(), String> {
    let addr = service_var("MAILROOM_TEST_SMTP_ADDR");
    let stream = timeout(REPLY_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| format!("connect to {addr}: timed out"))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);

    expect(&mut read, "greeting", 220).await?;
    command(&mut write, &mut read, "EHLO mailroom-tests.localhost", 250).await?;
    command(&mut write, &mut read, &format!("MAIL FROM:<{from}>"), 250).await?;
    for rcpt in to {
        command(&mut write, &mut read, &format!("RCPT TO:<{rcpt}>"), 250).await?;
    }
    command(&mut write, &mut read, "DATA", 354).await?;
    let data = dot_stuffed(raw);
    write
        .write_all(&data)
        .await
        .map_err(|e| format!("DATA: {e}"))?;
    write
        .write_all(b".\r\n")
        .await
        .map_err(|e| format!("DATA: {e}"))?;
    expect(&mut read, "end of DATA", 250).await?;
    command(&mut write, &mut read, "QUIT", 221).await?;
    Ok(())
}

async fn command(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    line: &str,
    code: u16,
) -> Result<(), String> {
    write
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|e| format!("{line}: {e}"))?;
    expect(read, line, code).await
}

/// Reads one reply (all its `NNN-` continuation lines) and checks its code.
async fn expect(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    step: &str,
    code: u16,
) -> Result<(), String> {
    let mut reply = String::new();
    loop {
        let mut line = String::new();
        let n = timeout(REPLY_TIMEOUT, read.read_line(&mut line))
            .await
            .map_err(|_| format!("{step}: no reply within {REPLY_TIMEOUT:?}"))?
            .map_err(|e| format!("{step}: {e}"))?;
        if n == 0 {
            return Err(format!("{step}: connection closed after {reply:?}"));
        }
        reply.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            break;
        }
    }
    if reply.starts_with(&code.to_string()) {
        Ok(())
    } else {
        Err(format!("{step}: expected {code}, got {}", reply.trim_end()))
    }
}

/// The message with CRLF line ends (bare LFs converted), a `.` doubled at
/// the start of a line (RFC 5321 4.5.2), and a final CRLF.
fn dot_stuffed(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 16);
    let mut at_line_start = true;
    let mut previous = 0u8;
    for &byte in raw {
        if at_line_start && byte == b'.' {
            out.push(b'.');
        }
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        at_line_start = byte == b'\n';
        previous = byte;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn data_is_dot_stuffed_with_crlf_line_ends() {
    assert_eq!(
        dot_stuffed(b"a\n.b\r\n..c"),
        b"a\r\n..b\r\n...c\r\n".to_vec()
    );
    assert_eq!(dot_stuffed(b".\r\n"), b"..\r\n".to_vec());
}
