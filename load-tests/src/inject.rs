//! Mail injected at a target rate: through SMTP into Postfix (which hands it
//! to Dovecot over LMTP, as real mail arrives) or by IMAP APPEND straight
//! into Dovecot. Every mail's subject carries a token unique to the run and
//! the mail ([`MailGen::tagged`]), so the `offer` frame (which shows the
//! subject) names its mail.
//!
//! Open loop: mail `i` is due at `start + i / rate`, whatever happened to
//! the ones before; `--connections` workers take the next index in turn, so
//! a slow server shows as a send rate below target (reported), not as a
//! hidden slowdown of the schedule.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use mailroom::mail::imap::ImapSession;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::app::Services;
use crate::mailgen::MailGen;

const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    Smtp,
    Imap,
}

/// What the injector reports, per mail.
#[derive(Debug)]
pub enum Injected {
    /// Mail `index` was taken by the server (SMTP `250` after the data, or
    /// the APPEND's `OK`) at `at`.
    Sent { index: u64, at: Instant },
    /// Mail `index` could not be injected (it is not counted as injected).
    Failed { index: u64, error: String },
}

pub struct Plan {
    pub via: Via,
    pub mails: u64,
    pub rate: f64,
    pub connections: usize,
    /// One generator per mailbox; mail `i` goes to mailbox `i % len`.
    pub gens: Arc<Vec<MailGen>>,
    pub mailboxes: Vec<String>,
    pub deadline: Instant,
}

/// Start the workers; they end when every mail is sent or at the deadline.
pub fn spawn(
    plan: Plan,
    services: &Services,
    tx: mpsc::UnboundedSender<Injected>,
) -> tokio::task::JoinSet<()> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let plan = Arc::new(plan);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..plan.connections.max(1) {
        let (plan, next, tx, services) = (plan.clone(), next.clone(), tx.clone(), services.clone());
        set.spawn(async move {
            // One connection per mailbox this worker sends to: an IMAP
            // session is logged in to one mailbox (SMTP could share one,
            // but the same shape keeps the code single).
            let mut conns: Vec<Option<Conn>> = (0..plan.mailboxes.len()).map(|_| None).collect();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= plan.mails {
                    break;
                }
                let due = start + Duration::from_secs_f64(index as f64 / plan.rate.max(1e-9));
                // Bounded in time as well as count: behind schedule, the
                // mails still due are dropped at the deadline, not sent late.
                if due >= plan.deadline || Instant::now() >= plan.deadline {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let k = (index % plan.mailboxes.len() as u64) as usize;
                let mail = plan.gens[k].mail(index);
                let mailbox = &plan.mailboxes[k];
                let conn = &mut conns[k];
                // One retry on a fresh connection: a connection the server
                // dropped (idle timeout, a restart) is not a lost mail.
                let mut result = Err(anyhow::anyhow!("not sent"));
                for _ in 0..2 {
                    if conn.is_none() {
                        *conn = Conn::open(plan.via, &services, mailbox).await.ok();
                    }
                    let Some(c) = conn.as_mut() else {
                        result = Err(anyhow::anyhow!("cannot connect"));
                        continue;
                    };
                    result = c.send(mailbox, &mail).await;
                    if result.is_ok() {
                        break;
                    }
                    *conn = None;
                }
                let ev = match result {
                    Ok(()) => Injected::Sent {
                        index,
                        at: Instant::now(),
                    },
                    Err(e) => Injected::Failed {
                        index,
                        error: format!("{e:#}"),
                    },
                };
                if tx.send(ev).is_err() {
                    break;
                }
            }
            for c in conns.into_iter().flatten() {
                c.quit().await;
            }
        });
    }
    set
}

enum Conn {
    Smtp(Smtp),
    /// An IMAP session is logged in to one mailbox: kept with its name.
    Imap(Box<ImapSession>, String),
}

impl Conn {
    async fn open(via: Via, s: &Services, mailbox: &str) -> anyhow::Result<Conn> {
        match via {
            Via::Smtp => Ok(Conn::Smtp(Smtp::connect(&s.smtp_host, s.smtp_port).await?)),
            Via::Imap => {
                let session = ImapSession::connect(&s.imap(mailbox), IO_TIMEOUT)
                    .await
                    .map_err(|e| anyhow::anyhow!("IMAP login to {mailbox}: {e}"))?;
                Ok(Conn::Imap(Box::new(session), mailbox.to_string()))
            }
        }
    }

    async fn send(&mut self, mailbox: &str, mail: &[u8]) -> anyhow::Result<()> {
        match self {
            Conn::Smtp(smtp) => smtp.send(mailbox, mail).await,
            Conn::Imap(session, logged_in) => {
                if logged_in != mailbox {
                    bail!("this session is logged in to another mailbox");
                }
                session
                    .append("INBOX", None, mail)
                    .await
                    .map_err(|e| anyhow::anyhow!("APPEND: {e}"))
            }
        }
    }

    async fn quit(self) {
        match self {
            Conn::Smtp(mut smtp) => smtp.quit().await,
            Conn::Imap(..) => {}
        }
    }
}

/// A minimal SMTP client for loopback Postfix (no TLS, no AUTH: Postfix
/// trusts 127.0.0.0/8): one connection, many transactions.
struct Smtp {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Smtp {
    async fn connect(host: &str, port: u16) -> anyhow::Result<Smtp> {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect((host, port)))
            .await
            .context("SMTP connect timed out")?
            .context("SMTP connect")?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        let mut smtp = Smtp {
            reader: BufReader::new(r),
            writer: w,
        };
        smtp.expect(220).await?;
        smtp.command("EHLO load.localhost\r\n", 250).await?;
        Ok(smtp)
    }

    async fn reply(&mut self) -> anyhow::Result<(u16, String)> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(IO_TIMEOUT, self.reader.read_line(&mut line))
                .await
                .context("SMTP reply timed out")??;
            if n == 0 {
                bail!("SMTP server closed the connection");
            }
            all.push_str(&line);
            if line.len() < 4 {
                bail!("malformed SMTP reply: {line:?}");
            }
            if line.as_bytes()[3] != b'-' {
                let code = line[..3].parse().context("SMTP reply code")?;
                return Ok((code, all));
            }
        }
    }

    async fn expect(&mut self, code: u16) -> anyhow::Result<()> {
        let (got, text) = self.reply().await?;
        if got != code {
            bail!("SMTP: expected {code}, got {}", text.trim_end());
        }
        Ok(())
    }

    async fn command(&mut self, line: &str, code: u16) -> anyhow::Result<()> {
        self.writer.write_all(line.as_bytes()).await?;
        self.expect(code).await
    }

    async fn send(&mut self, rcpt: &str, mail: &[u8]) -> anyhow::Result<()> {
        // A real envelope sender in the mail domain: a null sender (`<>`)
        // would make the mail look like a bounce to mailroom.
        let domain = rcpt.rsplit_once('@').map_or("example.test", |(_, d)| d);
        self.command(&format!("MAIL FROM:<loadsender@{domain}>\r\n"), 250)
            .await?;
        self.command(&format!("RCPT TO:<{rcpt}>\r\n"), 250).await?;
        self.command("DATA\r\n", 354).await?;
        let mut data = Vec::with_capacity(mail.len() + 64);
        let mut at_line_start = true;
        for &b in mail {
            if at_line_start && b == b'.' {
                data.push(b'.');
            }
            data.push(b);
            at_line_start = b == b'\n';
        }
        if !data.ends_with(b"\r\n") {
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        self.writer.write_all(&data).await?;
        self.expect(250).await
    }

    async fn quit(&mut self) {
        let _ = self.writer.write_all(b"QUIT\r\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.reply()).await;
    }
}

/// How many mails the mailboxes hold now (IMAP SELECT): with SMTP, a mail
/// Postfix accepted but had not yet handed to Dovecot at the deadline is
/// not there, which tells a mail lost in transit from one mailroom missed.
pub async fn in_mailboxes(services: &Services, mailboxes: &[String]) -> Option<u64> {
    let mut total = 0u64;
    for mailbox in mailboxes {
        let mut session = ImapSession::connect(&services.imap(mailbox), IO_TIMEOUT)
            .await
            .ok()?;
        total += u64::from(session.select("INBOX").await.ok()?.exists);
        session.logout().await;
    }
    Some(total)
}

/// Delete from the local Postfix's queue the run's mails it has not yet
/// delivered (recipients among `mailboxes` only), so that a run that
/// outpaced Postfix does not keep loading the machine for minutes after
/// its report. The queue lives next to the services env file
/// (`…/postfix/etc`, as scripts/services.sh sets it up); without it, or
/// without `postqueue`/`postsuper`, nothing is done. Returns how many
/// queued mails were deleted.
pub fn purge_postfix(env_file: &std::path::Path, mailboxes: &[String]) -> Option<usize> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let conf = env_file.parent()?.join("postfix/etc");
    if !conf.is_dir() {
        return None;
    }
    let out = Command::new("postqueue")
        .arg("-c")
        .arg(&conf)
        .arg("-j")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|q| {
            q["recipients"].as_array().is_some_and(|r| {
                !r.is_empty()
                    && r.iter().all(|x| {
                        x["address"]
                            .as_str()
                            .is_some_and(|a| mailboxes.iter().any(|m| m == a))
                    })
            })
        })
        .filter_map(|q| q["queue_id"].as_str().map(str::to_string))
        .collect();
    if ids.is_empty() {
        return Some(0);
    }
    let mut child = Command::new("postsuper")
        .arg("-c")
        .arg(&conf)
        .args(["-d", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()?
        .write_all(ids.join("\n").as_bytes())
        .ok()?;
    child.wait().ok()?.success().then_some(ids.len())
}
