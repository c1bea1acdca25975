//! `SenderActor`: one per account. It delivers the account's outbox
//! (`store/outbox.rs`, invariant 4) over SMTP with lettre, from a pooled
//! connection, and records every outcome on the message.
//!
//! The actor hosts one spawned loop future (invariant 5: the actor's mailbox
//! never waits on SMTP or the store). The loop takes due rows one at a time:
//! one account's mail goes out in the order it was queued, over the pooled
//! connection, and a slow server only slows its own account. It sleeps
//! until the next row is due, the poll interval passes, or it is woken:
//! [`SenderRegistry::wake`] right after a compose commits, so a reply leaves
//! at once. Polling is what makes a crash lose nothing: on start, and every
//! `poll`, the loop finds whatever is due in the store, whoever queued it.
//!
//! Each attempt:
//! 1. claims the row (`Store::claim_outbox`, a conditional update that is
//!    also a lease of [`LEASE`], longer than an attempt can take);
//! 2. sends the stored MIME to the stored envelope;
//! 3. records the outcome (`Store::finish_outbox`): `sent`; `failed` with
//!    the server's reason on a permanent (5xx) refusal; otherwise (a 4xx,
//!    a refused connection, a timeout) queued again after the next delay of
//!    the schedule (`[outbox]` settings: 30 s doubling, at most 24 h apart),
//!    or `failed` once `give_up_after` has passed since it was queued;
//! 4. tells the interaction's owner (`message_added` with the message as it
//!    now is, see docs/compose.md);
//! 5. after a success, appends a copy to the account's Sent folder over
//!    IMAP if one is configured (never blocking or failing the delivery),
//!    and makes the account's other waiting mail due now: the server is back.
//!
//! When the server cannot be reached at all (no connection, no answer), the
//! account's other due mail is held until the same retry time: an outage
//! costs one attempt per retry, not one timeout per queued mail. A new mail
//! (a wake) lifts the hold and tries at once.
//!
//! Between 2 and 3 a crash leaves the row queued with its lease: the mail is
//! sent again when the lease runs out, with the same Message-ID. That is the
//! at-least-once edge of the outbox (docs/compose.md); every other path is
//! exactly once.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use lettre::address::Envelope;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::actors::agent::AgentHub;
use crate::config::OutboxSettings;
use crate::domain::{AccountId, Delivery, TlsMode};
use crate::http::ws::protocol::ServerFrame;
use crate::mail::imap::{ImapConfig, ImapSession};
use crate::store::{Account, DeliveryChange, OutboxJob, OutboxOutcome, Store, StoreError};

/// One SMTP command may take this long before the attempt counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole attempt (connect, TLS, AUTH, every RCPT, DATA) is cut off here.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a claimed row stays with its sender: longer than an attempt can
/// take, so no other sender (another node, or this one restarted) takes it
/// while it is in flight; if the sender died, the row is retried then.
pub const LEASE: Duration = Duration::from_secs(150);
/// Rows taken per look at the store.
const BATCH: u32 = 20;
/// Connections kept per account.
const POOL_SIZE: u32 = 2;

/// What every sender needs; cloned into each.
#[derive(Clone)]
pub struct SenderDeps {
    pub store: Store,
    pub hub: AgentHub,
    pub settings: OutboxSettings,
}

/// Stop the sender (account deleted or changed, or shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSender;

pub struct SenderActor {
    account: Account,
    deps: SenderDeps,
    wake: Arc<Notify>,
    cancel: CancellationToken,
}

impl Actor for SenderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let run = Loop {
            account: self.account.clone(),
            deps: self.deps.clone(),
            wake: self.wake.clone(),
            cancel: self.cancel.clone(),
            transport: None,
            held_until: None,
        };
        let span = info_span!("sender", account = %self.account.key);
        ctx.spawn(
            run.run()
                .instrument(span)
                .into_actor(self)
                .map(|(), _act, ctx| ctx.stop()),
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.cancel.cancel();
    }
}

impl Handler<StopSender> for SenderActor {
    type Result = ();

    fn handle(&mut self, _msg: StopSender, _ctx: &mut Self::Context) {
        // The loop sees the cancellation between attempts or while waiting,
        // and ends; then the actor stops. An attempt in flight is finished
        // and recorded rather than cut off (it is bounded by ATTEMPT_TIMEOUT).
        self.cancel.cancel();
    }
}

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// The loop's state (owned by the one spawned future).
struct Loop {
    account: Account,
    deps: SenderDeps,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    /// Built on first use (it needs the password from the store) and kept:
    /// it holds the connection pool.
    transport: Option<Transport>,
    /// The server could not be reached: the account's other due mail waits
    /// until then too, so an outage costs one attempt per retry, not one
    /// (timeout) per queued mail. A new mail (a wake) lifts it.
    held_until: Option<DateTime<Utc>>,
}

impl Loop {
    async fn run(mut self) {
        let key = self.account.key.clone();
        debug!(account = %key, "sender started");
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            if self.held_until.is_some_and(|h| h <= Utc::now()) {
                self.held_until = None;
            }
            if self.held_until.is_none()
                && let Err(e) = self.drain().await
            {
                warn!(account = %key, error = %e, "outbox: store error; retrying after the poll interval");
            }
            let poll = self.deps.settings.poll;
            let wait = match self.held_until {
                Some(held) => until(held).min(poll),
                None => match self.deps.store.next_outbox_due(self.account.id).await {
                    Ok(Some(at)) => until(at).min(poll),
                    Ok(None) | Err(_) => poll,
                },
            };
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = self.wake.notified() => self.held_until = None,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Attempt every due row, until none is due.
    async fn drain(&mut self) -> Result<(), StoreError> {
        loop {
            let due = self
                .deps
                .store
                .due_outbox(self.account.id, Utc::now(), BATCH)
                .await?;
            if due.is_empty() {
                return Ok(());
            }
            for id in due {
                if self.cancel.is_cancelled() {
                    return Ok(());
                }
                if let Some(retry_at) = self.attempt(id).await? {
                    self.held_until = Some(retry_at);
                    return Ok(());
                }
            }
        }
    }

    /// One attempt at one row. `Some(retry time)` when the server could not
    /// be reached (the rest of the account's mail should wait for it too).
    async fn attempt(&mut self, id: i64) -> Result<Option<DateTime<Utc>>, StoreError> {
        let now = Utc::now();
        let lease = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
        let Some(job) = self.deps.store.claim_outbox(id, now, lease).await? else {
            // Sent, failed or taken by another sender meanwhile.
            return Ok(None);
        };
        let mut unreachable = false;
        let outcome = match self.send(&job).await {
            Ok(()) => OutboxOutcome::Sent,
            Err(SendError::Permanent(reason)) => OutboxOutcome::Failed { error: reason },
            Err(SendError::Transient {
                reason,
                server_down,
            }) => {
                unreachable = server_down;
                self.retry_or_give_up(&job, reason)
            }
        };
        let hold = match &outcome {
            OutboxOutcome::Retry { at, .. } if unreachable => Some(*at),
            _ => None,
        };
        let label = match &outcome {
            OutboxOutcome::Sent => "sent",
            OutboxOutcome::Failed { .. } => "failed",
            OutboxOutcome::Retry { .. } => "retry",
        };
        match &outcome {
            OutboxOutcome::Sent => {
                info!(account = %self.account.key, message = %job.message, attempts = job.attempts, "mail sent")
            }
            OutboxOutcome::Failed { error } => {
                warn!(account = %self.account.key, message = %job.message, attempts = job.attempts, %error, "mail failed")
            }
            OutboxOutcome::Retry { at, error } => {
                info!(account = %self.account.key, message = %job.message, attempts = job.attempts, retry_at = %at, %error, "mail deferred")
            }
        }
        debug!(outcome = label, "outbox attempt recorded");
        metrics::counter!(crate::metrics::OUTBOX_ATTEMPTS, "account" => self.account.key.clone(), "outcome" => label)
            .increment(1);
        let sent = matches!(outcome, OutboxOutcome::Sent);
        let change = match self.deps.store.finish_outbox(job.id, outcome).await {
            Ok(change) => change,
            // Not queued any more: nothing of ours to record.
            Err(StoreError::Conflict(_)) => return Ok(hold),
            Err(e) => return Err(e),
        };
        announce(&self.deps, &change).await;
        if sent {
            match self
                .deps
                .store
                .expedite_outbox(self.account.id, Utc::now())
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    info!(account = %self.account.key, waiting = n, "server is back: waiting mail is due now")
                }
                Err(e) => {
                    warn!(account = %self.account.key, error = %e, "could not expedite the outbox")
                }
            }
            let folder = self.account.imap.sent_folder.clone().filter(|f| {
                // The folder the mailbox reads would ingest our own mail
                // back as if the customer had sent it: never append there.
                let same = f.eq_ignore_ascii_case(&self.account.imap.folder);
                if same {
                    warn!(account = %self.account.key, folder = %f, "the Sent folder is the folder the mailbox reads; not appending");
                }
                !same
            });
            if let Some(folder) = folder {
                // Its own task: a slow or broken IMAP server must not hold up
                // the next delivery, and its failure changes nothing sent.
                let (account, store, raw) =
                    (self.account.clone(), self.deps.store.clone(), job.raw);
                tokio::spawn(
                    async move {
                        if let Err(e) = append_sent(&account, &store, &folder, &raw).await {
                            warn!(account = %account.key, %folder, error = %e, "could not append the sent mail to the Sent folder");
                        }
                    }
                    .in_current_span(),
                );
            }
        }
        Ok(hold)
    }

    fn retry_or_give_up(&self, job: &OutboxJob, reason: String) -> OutboxOutcome {
        let s = &self.deps.settings;
        let delay = retry_delay(job.attempts, s.retry_first, s.retry_max);
        let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        let give_up =
            job.queued_at + chrono::Duration::from_std(s.give_up_after).unwrap_or_default();
        if at > give_up {
            OutboxOutcome::Failed {
                error: format!(
                    "gave up after {} attempts over {}; last error: {reason}",
                    job.attempts,
                    human(s.give_up_after)
                ),
            }
        } else {
            OutboxOutcome::Retry { at, error: reason }
        }
    }

    async fn send(&mut self, job: &OutboxJob) -> Result<(), SendError> {
        let envelope = envelope_of(job)?;
        let transport = match &self.transport {
            Some(t) => t.clone(),
            None => {
                let t = self.build_transport().await?;
                self.transport = Some(t.clone());
                t
            }
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, transport.send_raw(&envelope, &job.raw)).await {
            Err(_) => Err(SendError::Transient {
                reason: format!(
                    "no answer from {}:{} within {}",
                    self.account.smtp.host,
                    self.account.smtp.port,
                    human(ATTEMPT_TIMEOUT)
                ),
                server_down: true,
            }),
            Ok(Ok(_)) => Ok(()),
            // A 5xx: the server will never take this mail.
            Ok(Err(e)) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            // A 4xx is about this mail (a full mailbox, greylisting): the
            // server is there, the next mail may well go.
            Ok(Err(e)) => Err(SendError::Transient {
                reason: describe(&e),
                server_down: !e.is_transient(),
            }),
        }
    }

    async fn build_transport(&self) -> Result<Transport, SendError> {
        let password = self
            .deps
            .store
            .account_secrets(self.account.id)
            .await
            .map_err(|e| SendError::Transient {
                reason: format!("store: {e}"),
                server_down: true,
            })?
            .smtp_password;
        transport(&self.account, password.expose()).map_err(|e| SendError::Transient {
            reason: format!("SMTP settings: {e}"),
            server_down: true,
        })
    }
}

/// Why an attempt did not deliver.
enum SendError {
    /// Retrying cannot help (a 5xx answer, an unusable address).
    Permanent(String),
    /// It may work later. `server_down`: the server was not reached (or
    /// did not answer), as opposed to a 4xx about this mail.
    Transient { reason: String, server_down: bool },
}

/// lettre's error text, with the cause (e.g. "Connection refused") that its
/// Display leaves out.
fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn envelope_of(job: &OutboxJob) -> Result<Envelope, SendError> {
    let bad =
        |what: &str, v: &str| SendError::Permanent(format!("{what} `{v}` is not a usable address"));
    let from = job
        .from
        .parse::<lettre::Address>()
        .map_err(|_| bad("the sender", &job.from))?;
    let to = job
        .recipients
        .iter()
        .map(|r| {
            r.parse::<lettre::Address>()
                .map_err(|_| bad("the recipient", r))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Envelope::new(Some(from), to).map_err(|e| SendError::Permanent(format!("no recipients: {e}")))
}

/// The account's SMTP transport: `tls = "none"` plain (loopback relays and
/// tests), `starttls` upgraded (required, never downgraded), `tls` wrapped.
/// AUTH only when a password is set: a relay that trusts our network (and
/// offers no AUTH) is configured with an empty password.
pub fn transport(
    account: &Account,
    password: &str,
) -> Result<Transport, lettre::transport::smtp::Error> {
    let s = &account.smtp;
    let builder = match s.tls {
        TlsMode::None => Transport::builder_dangerous(s.host.as_str()),
        TlsMode::Starttls => {
            let mut b = Transport::starttls_relay(&s.host)?;
            if s.accept_invalid_certs {
                b = b.tls(Tls::Required(insecure_tls(&s.host)?));
            }
            b
        }
        TlsMode::Tls => {
            let mut b = Transport::relay(&s.host)?;
            if s.accept_invalid_certs {
                b = b.tls(Tls::Wrapper(insecure_tls(&s.host)?));
            }
            b
        }
    };
    let mut builder = builder
        .port(s.port)
        .timeout(Some(SMTP_TIMEOUT))
        .pool_config(PoolConfig::new().max_size(POOL_SIZE));
    if !password.is_empty() {
        builder = builder.credentials(Credentials::new(s.username.clone(), password.to_string()));
    }
    Ok(builder.build())
}

/// The guide's option for self-signed servers: any certificate is accepted.
fn insecure_tls(host: &str) -> Result<TlsParameters, lettre::transport::smtp::Error> {
    TlsParameters::builder(host.to_string())
        .dangerous_accept_invalid_certs(true)
        .build_rustls()
}

/// The delay before retry number `attempts` (1 = after the first failure):
/// `first`, doubling, at most `max`.
pub fn retry_delay(attempts: u32, first: Duration, max: Duration) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    first.saturating_mul(1u32 << exp).min(max)
}

fn until(at: DateTime<Utc>) -> Duration {
    (at - Utc::now()).to_std().unwrap_or(Duration::ZERO)
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// Tell the interaction's owner how delivery stands: `message_added` with
/// the message as it is now (clients replace a message they already have by
/// its id).
pub async fn announce(deps: &SenderDeps, change: &DeliveryChange) {
    let Some(owner) = change.interaction.owner else {
        return;
    };
    let frame = async {
        let reader = deps.store.agent(owner).await?;
        let messages = deps.store.messages(change.interaction.id).await?;
        Ok::<_, StoreError>(
            messages
                .iter()
                .find(|m| m.id == change.message)
                .and_then(|m| crate::http::interactions::message_view(m, &reader).ok()),
        )
    };
    match frame.await {
        Ok(Some(message)) => deps.hub.push(
            owner,
            ServerFrame::MessageAdded {
                interaction_id: change.interaction.id,
                message,
            },
        ),
        Ok(None) => {}
        Err(e) => warn!(error = %e, "could not announce a delivery change"),
    }
    if change.delivery == Delivery::Failed {
        debug!(interaction = %change.interaction.id, "delivery failed; the owner was told");
    }
}

async fn append_sent(
    account: &Account,
    store: &Store,
    folder: &str,
    raw: &[u8],
) -> Result<(), String> {
    let secrets = store
        .account_secrets(account.id)
        .await
        .map_err(|e| e.to_string())?;
    let cfg = ImapConfig::from_settings(&account.imap, secrets.imap_password);
    let mut session = ImapSession::connect(&cfg, SMTP_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let appended = session.append(folder, Some("(\\Seen)"), raw).await;
    session.logout().await;
    appended.map_err(|e| e.to_string())
}

/// Starts, restarts and stops sender actors; the admin API calls it when an
/// account is added, changed or removed. Compose wakes an account's sender
/// through it after each commit.
/// A running sender and the bell that wakes it.
type Running = (Addr<SenderActor>, Arc<Notify>);

#[derive(Clone)]
pub struct SenderRegistry {
    running: Arc<DashMap<AccountId, Running>>,
    deps: SenderDeps,
    arbiter: ArbiterHandle,
}

impl SenderRegistry {
    /// `arbiter`: the thread sender actors run on (their work is async I/O).
    pub fn new(deps: SenderDeps, arbiter: ArbiterHandle) -> Self {
        SenderRegistry {
            running: Arc::new(DashMap::new()),
            deps,
            arbiter,
        }
    }

    /// Start (or restart, with new settings) the sender of an account.
    pub fn start(&self, account: Account) {
        self.stop(account.id);
        let wake = Arc::new(Notify::new());
        let actor = SenderActor {
            account: account.clone(),
            deps: self.deps.clone(),
            wake: wake.clone(),
            cancel: CancellationToken::new(),
        };
        let addr = SenderActor::start_in_arbiter(&self.arbiter, |_| actor);
        self.running.insert(account.id, (addr, wake));
    }

    pub fn stop(&self, account: AccountId) {
        if let Some((_, (addr, _))) = self.running.remove(&account) {
            addr.do_send(StopSender);
        }
    }

    pub fn stop_all(&self) {
        let ids: Vec<AccountId> = self.running.iter().map(|e| *e.key()).collect();
        for id in ids {
            self.stop(id);
        }
    }

    /// Mail was queued for this account: look at the outbox now. A wake
    /// while the sender is busy is remembered (`Notify` keeps one permit),
    /// so it looks again right after.
    pub fn wake(&self, account: AccountId) {
        if let Some(entry) = self.running.get(&account) {
            entry.value().1.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_the_first_delay_up_to_the_cap() {
        let first = Duration::from_secs(30);
        let max = Duration::from_secs(86_400);
        let delays: Vec<u64> = (1..=5)
            .map(|n| retry_delay(n, first, max).as_secs())
            .collect();
        assert_eq!(delays, [30, 60, 120, 240, 480]);
        assert_eq!(retry_delay(13, first, max), max);
        assert_eq!(retry_delay(1000, first, max), max);
    }
}
