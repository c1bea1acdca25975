//! `MailboxActor`: one per account. It keeps an IMAP session to the
//! account's folder, imports what is new, then waits in IDLE (or polls when
//! the server has no IDLE), and commits every mail through
//! [`Store::ingest_batch`] — mails and the watermark committed together
//! (invariant 1), several mails of a fetched batch per transaction on
//! Postgres.
//!
//! The session loop is one future spawned on the actor's context: it is the
//! only user of the IMAP connection, so mails are committed strictly in UID
//! order and the watermark never skips. The actor itself stays responsive
//! (status, stop) because a spawned future does not block its mailbox.
//! A slow or dead mailbox affects nobody else: each account has its own loop,
//! and every failure ends in a backoff (exponential with jitter, capped at
//! 60 s), never in a stalled actor.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use rand::Rng;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};
use utoipa::ToSchema;

use crate::actors::agent::AgentHub;
use crate::actors::queue::{Known, Summary};
use crate::domain::threading::{MessageIdSigner, reply_refs};
use crate::domain::{AccountId, InteractionStatus};
use crate::mail::Mailbox;
use crate::mail::imap::{FetchedMail, IdleOutcome, IdleStop, ImapConfig, ImapError, ImapSession};
use crate::mail::parse::parse;
use crate::store::{
    Account, IngestMail, IngestOutcome, QuarantineMail, Store, StoreError, Watermark,
};

/// Mails per UID FETCH round: bounds memory on a first sync of a big box.
const BATCH: u32 = 50;
/// Mails committed together (one `ingest_batch`, one Postgres transaction).
/// 16 takes most of the gain (one fsync shared by 16 mails) while the first
/// mail of a group waits for at most 15 others (~10 ms at the rate measured)
/// before its commit; and it keeps a group's savepoints (one per mail)
/// below Postgres' 64 cached subtransactions.
const GROUP: usize = 16;
/// A group is committed once its mails reach this size, so that a group of
/// large mails does not hold tens of MB in memory (twice: the mails and
/// what the store makes of them).
const GROUP_BYTES: usize = 4 << 20;
/// IDLE is re-issued before servers drop it (RFC 2177: 29 minutes).
const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Attempts before a mail that fails to parse or commit is quarantined.
const MAX_ATTEMPTS: u32 = 3;
/// Reconnects after which a mail whose commit keeps failing is quarantined.
const STUCK_ROUNDS: u32 = 5;

/// What an account's mailbox is doing, for `GET /api/v1/accounts/{key}/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct MailboxStatus {
    /// `starting`, `connecting`, `syncing`, `idle`, `polling`, `backing_off`, `stopped`.
    pub state: String,
    pub connected: bool,
    pub idle: bool,
    pub backing_off: bool,
    /// When the next connection attempt happens, while backing off.
    pub retry_at: Option<DateTime<Utc>>,
    /// Failures in a row (reset by a successful sync).
    pub failures: u32,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_mail_at: Option<DateTime<Utc>>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub uid_validity: Option<u32>,
    pub last_uid: Option<u32>,
    pub idle_supported: Option<bool>,
    pub ingested: u64,
    pub duplicates: u64,
    pub quarantined: u64,
}

/// Shared with the registry so status reads never queue behind the loop.
/// A std `Mutex`: it is held only to copy or update a few fields, never
/// across an `.await`.
type SharedStatus = Arc<Mutex<MailboxStatus>>;

fn update(status: &SharedStatus, f: impl FnOnce(&mut MailboxStatus)) {
    if let Ok(mut s) = status.lock() {
        f(&mut s);
    }
}

/// What the rest of the system learns about committed mail. Routing (#4)
/// subscribes to it; until then new interactions wait in the store.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct MailIngested {
    pub account: AccountId,
    pub outcome: IngestOutcome,
}

/// Stop the mailbox (account deleted, changed, or shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopMailbox;

pub struct MailboxActor {
    account: Account,
    deps: MailboxDeps,
    status: SharedStatus,
    cancel: CancellationToken,
}

/// What every mailbox needs; cloned into each.
#[derive(Clone)]
pub struct MailboxDeps {
    pub store: Store,
    pub signer: MessageIdSigner,
    pub hub: AgentHub,
    pub sink: Option<Recipient<MailIngested>>,
    /// Where new interactions are offered (the queue actors).
    pub routing: Option<crate::actors::queue::Routing>,
}

impl Actor for MailboxActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let session = Session {
            account: self.account.clone(),
            deps: self.deps.clone(),
            status: self.status.clone(),
            cancel: self.cancel.clone(),
            attempts: Default::default(),
        };
        let span = info_span!("mailbox", account = %self.account.key);
        ctx.spawn(
            session
                .run()
                .instrument(span)
                .into_actor(self)
                .map(|(), _act, ctx| ctx.stop()),
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.cancel.cancel();
        update(&self.status, |s| {
            s.state = "stopped".into();
            s.connected = false;
            s.idle = false;
        });
        metrics::gauge!(crate::metrics::IMAP_CONNECTED, "account" => self.account.key.clone())
            .set(0.0);
    }
}

impl Handler<StopMailbox> for MailboxActor {
    type Result = ();

    fn handle(&mut self, _msg: StopMailbox, ctx: &mut Self::Context) {
        // Cancelling wakes the loop wherever it waits (IDLE, backoff, I/O);
        // it logs out and ends, and then the actor stops.
        self.cancel.cancel();
        ctx.stop();
    }
}

/// The session loop's state (owned by the one spawned future).
struct Session {
    account: Account,
    deps: MailboxDeps,
    status: SharedStatus,
    cancel: CancellationToken,
    /// Rounds in which committing a UID failed with a store error.
    attempts: std::collections::HashMap<(u32, u32), u32>,
}

/// Why a sync round ended.
enum RoundEnd {
    Cancelled,
    Failed(SyncError),
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("{0}")]
    Imap(#[from] ImapError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl Session {
    async fn run(mut self) {
        let key = self.account.key.clone();
        let mut failures: u32 = 0;
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            match self.connected_round(&mut failures).await {
                RoundEnd::Cancelled => return,
                RoundEnd::Failed(e) => {
                    failures = failures.saturating_add(1);
                    let delay = backoff(failures);
                    warn!(account = %key, error = %e, failures, retry_in_ms = delay.as_millis() as u64, "mailbox failed; backing off");
                    metrics::counter!(crate::metrics::IMAP_ERRORS, "account" => key.clone())
                        .increment(1);
                    metrics::gauge!(crate::metrics::IMAP_CONNECTED, "account" => key.clone())
                        .set(0.0);
                    metrics::gauge!(crate::metrics::IMAP_IDLE, "account" => key.clone()).set(0.0);
                    let retry_at =
                        Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                    update(&self.status, |s| {
                        s.state = "backing_off".into();
                        s.connected = false;
                        s.idle = false;
                        s.backing_off = true;
                        s.retry_at = Some(retry_at);
                        s.failures = failures;
                        s.last_error = Some(e.to_string());
                        s.last_error_at = Some(Utc::now());
                    });
                    metrics::gauge!(crate::metrics::IMAP_BACKING_OFF, "account" => key.clone())
                        .set(1.0);
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    metrics::gauge!(crate::metrics::IMAP_BACKING_OFF, "account" => key.clone())
                        .set(0.0);
                }
            }
        }
    }

    /// Connect, sync, then IDLE (or poll) until something fails or we are
    /// cancelled.
    async fn connected_round(&mut self, failures: &mut u32) -> RoundEnd {
        update(&self.status, |s| {
            s.state = "connecting".into();
            s.backing_off = false;
            s.retry_at = None;
        });
        let password = match self.deps.store.account_secrets(self.account.id).await {
            Ok(secrets) => secrets.imap_password,
            Err(e) => return RoundEnd::Failed(e.into()),
        };
        let cfg = ImapConfig::from_settings(&self.account.imap, password);
        let connect = tokio::select! {
            () = self.cancel.cancelled() => return RoundEnd::Cancelled,
            r = ImapSession::connect(&cfg, CONNECT_TIMEOUT) => r,
        };
        let mut session = match connect {
            Ok(s) => s,
            Err(e) => return RoundEnd::Failed(e.into()),
        };
        let key = self.account.key.clone();
        let has_idle = session.has_idle();
        metrics::gauge!(crate::metrics::IMAP_CONNECTED, "account" => key.clone()).set(1.0);
        update(&self.status, |s| {
            s.connected = true;
            s.idle_supported = Some(has_idle);
        });
        info!(account = %key, idle = has_idle, "mailbox connected");

        let mut trigger = Instant::now();
        loop {
            update(&self.status, |s| {
                s.state = "syncing".into();
                s.idle = false;
            });
            let cancel = self.cancel.clone();
            let synced = tokio::select! {
                () = cancel.cancelled() => None,
                r = self.sync(&mut session, trigger) => Some(r),
            };
            let Some(synced) = synced else {
                session.logout().await;
                return RoundEnd::Cancelled;
            };
            if let Err(e) = synced {
                return RoundEnd::Failed(e);
            }
            *failures = 0;
            update(&self.status, |s| {
                s.failures = 0;
                s.last_sync_at = Some(Utc::now());
            });

            if has_idle {
                update(&self.status, |s| {
                    s.state = "idle".into();
                    s.idle = true;
                });
                metrics::gauge!(crate::metrics::IMAP_IDLE, "account" => key.clone()).set(1.0);
                let stop = IdleStop::new();
                let cancel = self.cancel.clone();
                let stopper = stop.clone();
                // Cancellation reaches the IDLE through its stop handle, so
                // the session is handed back and logged out cleanly.
                let watcher = tokio::spawn(async move {
                    cancel.cancelled().await;
                    stopper.stop();
                });
                let res = session.idle(IDLE_RENEW, stop).await;
                watcher.abort();
                metrics::gauge!(crate::metrics::IMAP_IDLE, "account" => key.clone()).set(0.0);
                match res {
                    Ok((s, outcome)) => {
                        session = s;
                        trigger = Instant::now();
                        match outcome {
                            IdleOutcome::NewData => debug!(account = %key, "new data"),
                            IdleOutcome::Timeout => debug!(account = %key, "IDLE renewed"),
                            IdleOutcome::Stopped => {
                                session.logout().await;
                                return RoundEnd::Cancelled;
                            }
                        }
                    }
                    Err(e) => return RoundEnd::Failed(e.into()),
                }
            } else {
                update(&self.status, |s| s.state = "polling".into());
                let wait = Duration::from_secs(u64::from(self.account.imap.poll_secs.max(1)));
                tokio::select! {
                    () = self.cancel.cancelled() => {
                        session.logout().await;
                        return RoundEnd::Cancelled;
                    }
                    () = tokio::time::sleep(wait) => {}
                }
                trigger = Instant::now();
                if let Err(e) = session.noop().await {
                    return RoundEnd::Failed(e.into());
                }
            }
        }
    }

    /// SELECT, reconcile the watermark, and commit every mail above it.
    async fn sync(&mut self, session: &mut ImapSession, trigger: Instant) -> Result<(), SyncError> {
        let info = session.select(&self.account.imap.folder).await?;
        let stored = self.deps.store.watermark(self.account.id).await?;
        let mut last_uid = match stored {
            Some(w) if w.uid_validity == info.uid_validity => w.last_uid,
            other => {
                // First sync, or UIDVALIDITY changed (the server renumbered
                // the folder): import what is at or after import_since.
                // Mail already stored is recognised by Message-ID + content
                // hash in ingest, so a renumbered folder duplicates nothing.
                if let Some(old) = other {
                    warn!(account = %self.account.key, old = old.uid_validity, new = info.uid_validity, "UIDVALIDITY changed; resyncing");
                }
                self.first_sync(session, info.uid_validity, info.uid_next, trigger)
                    .await?
            }
        };
        // The first batch was announced by the EXISTS (`trigger`); mail in
        // later batches arrived while we were committing, so it is timed
        // from the fetch that found it, not from the round's start (which
        // would overstate its latency under a flood).
        let mut found = trigger;
        loop {
            let batch = session.fetch_after(last_uid, BATCH).await?;
            if batch.is_empty() {
                break;
            }
            let last = batch.last().map_or(last_uid, |m| m.uid);
            self.ingest_fetched(info.uid_validity, batch, found).await?;
            last_uid = last;
            found = Instant::now();
        }
        update(&self.status, |s| {
            s.uid_validity = Some(info.uid_validity);
            s.last_uid = Some(last_uid);
        });
        metrics::gauge!(crate::metrics::IMAP_WATERMARK, "account" => self.account.key.clone())
            .set(f64::from(last_uid));
        Ok(())
    }

    /// Import the mail at or after `import_since` (compared at whole
    /// seconds, inclusive), then set the watermark past everything present
    /// at SELECT time, so older mail is never looked at again.
    async fn first_sync(
        &mut self,
        session: &mut ImapSession,
        uid_validity: u32,
        uid_next: Option<u32>,
        trigger: Instant,
    ) -> Result<u32, SyncError> {
        let since = self.account.import_since;
        let candidates = session.uids_since(since).await?;
        let total = candidates.len();
        info!(account = %self.account.key, since = %since, candidates = total, "first sync");
        let mut done = 0usize;
        for chunk in candidates.chunks(BATCH as usize) {
            let fetched = session.fetch_uids(chunk).await?;
            done += fetched.len();
            let keep = fetched
                .into_iter()
                .filter(|mail| {
                    mail.internal_date
                        .is_none_or(|d| d.timestamp() >= since.timestamp())
                })
                .collect();
            self.ingest_fetched(uid_validity, keep, trigger).await?;
            if total > BATCH as usize {
                info!(account = %self.account.key, done, total, "first sync progress");
            }
        }
        // Everything below uid_next was present at SELECT and has been
        // considered; later arrivals have higher UIDs and are fetched next.
        let last = uid_next
            .map(|n| n.saturating_sub(1))
            .unwrap_or_else(|| candidates.iter().copied().max().unwrap_or(0));
        let current = self.deps.store.watermark(self.account.id).await?;
        let last = match current {
            Some(w) if w.uid_validity == uid_validity => w.last_uid.max(last),
            _ => last,
        };
        self.deps
            .store
            .set_watermark(
                self.account.id,
                Watermark {
                    uid_validity,
                    last_uid: last,
                },
            )
            .await?;
        Ok(last)
    }

    /// Commit fetched mails, in UID order, in groups of up to `GROUP` mails
    /// (or `GROUP_BYTES`), each group through one [`Store::ingest_batch`]:
    /// on Postgres one transaction, so one commit's fsync, for the group
    /// (docs/performance.md, "Ingest on Postgres, faster"). A mail that does
    /// not parse or is too large ends the group before it and goes through
    /// [`Session::ingest`] alone, in its place in the order; so does every
    /// mail of a group that failed, which is what retries and quarantines a
    /// bad mail. The watermark never passes an uncommitted mail: a group
    /// moves it only to its own last mail, in its own transaction, after
    /// every earlier mail was committed.
    async fn ingest_fetched(
        &mut self,
        uid_validity: u32,
        mails: Vec<FetchedMail>,
        trigger: Instant,
    ) -> Result<(), SyncError> {
        let mut group: Vec<IngestMail> = Vec::new();
        let mut bytes = 0usize;
        for mail in mails {
            let size = mail.body.len();
            let parsed = if size as u64 > self.account.options.max_mail_bytes {
                None
            } else {
                // Parsing is CPU work on this loop's thread (~20–45 µs a
                // mail, docs/performance.md "Parsing"): small next to the
                // store's round trips, so it is not moved off the thread.
                parse(&mail.body).ok()
            };
            let Some(parsed) = parsed else {
                self.commit_group(uid_validity, &mut group, trigger).await?;
                bytes = 0;
                self.ingest(uid_validity, mail, trigger).await?;
                continue;
            };
            let refs = reply_refs(&parsed, &self.deps.signer, &self.account.key);
            group.push(IngestMail {
                account: self.account.id,
                account_key: self.account.key.clone(),
                queue: self.account.queue_id,
                position: Some((uid_validity, mail.uid)),
                internal_date: mail.internal_date,
                raw: mail.body,
                parsed,
                refs,
            });
            bytes += size;
            if group.len() >= GROUP || bytes >= GROUP_BYTES {
                self.commit_group(uid_validity, &mut group, trigger).await?;
                bytes = 0;
            }
        }
        self.commit_group(uid_validity, &mut group, trigger).await
    }

    /// Commit `group` (emptied); see [`Session::ingest_fetched`].
    async fn commit_group(
        &mut self,
        uid_validity: u32,
        group: &mut Vec<IngestMail>,
        trigger: Instant,
    ) -> Result<(), SyncError> {
        if group.is_empty() {
            return Ok(());
        }
        let mails = std::mem::take(group);
        let batch = self.deps.store.ingest_batch(&mails).await;
        let done = batch.committed.len();
        for (mail, outcome) in mails.iter().zip(batch.committed) {
            if let Some(position) = mail.position {
                self.attempts.remove(&position);
            }
            metrics::histogram!(crate::metrics::INGEST_LATENCY, "account" => self.account.key.clone())
                .record(trigger.elapsed().as_secs_f64());
            self.after_commit(outcome, trigger, mail.parsed.from.as_ref());
        }
        if let Some(e) = batch.failed {
            info!(account = %self.account.key, mails = mails.len() - done, error = %e, "a group of mails failed to commit; committing them one by one");
            for mail in mails.into_iter().skip(done) {
                let fetched = FetchedMail {
                    uid: mail.position.map_or(0, |(_, uid)| uid),
                    flags: Vec::new(),
                    internal_date: mail.internal_date,
                    size: None,
                    body: mail.raw,
                };
                self.ingest(uid_validity, fetched, trigger).await?;
            }
        }
        Ok(())
    }

    /// Parse and commit one mail; after `MAX_ATTEMPTS` failures it is
    /// quarantined, so the mailbox never stalls on one bad mail. A failure
    /// that is not the mail's fault (the store is down) propagates instead:
    /// backoff, reconnect, and the mail is fetched again. As a safety net, a
    /// mail whose commit keeps failing across reconnects (`STUCK_ROUNDS`) is
    /// quarantined too — if the store is really down that fails as well, and
    /// the loop keeps backing off.
    async fn ingest(
        &mut self,
        uid_validity: u32,
        mail: FetchedMail,
        trigger: Instant,
    ) -> Result<(), SyncError> {
        let key = self.account.key.clone();
        let position = (uid_validity, mail.uid);
        let size = mail.body.len() as u64;
        let raw = mail.body;
        if size > self.account.options.max_mail_bytes {
            let reason = format!(
                "the mail is {size} bytes, over the account's limit of {} bytes",
                self.account.options.max_mail_bytes
            );
            return self.quarantine(position, raw, reason, 1).await;
        }
        let mut last_error = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            let parsed = match parse(&raw) {
                Ok(p) => p,
                Err(e) => {
                    last_error = format!("parse: {e}");
                    warn!(account = %key, uid = mail.uid, attempt, error = %e, "mail does not parse");
                    continue;
                }
            };
            let refs = reply_refs(&parsed, &self.deps.signer, &key);
            let from = parsed.from.clone();
            let request = IngestMail {
                account: self.account.id,
                account_key: key.clone(),
                queue: self.account.queue_id,
                position: Some(position),
                internal_date: mail.internal_date,
                raw: raw.clone(),
                parsed,
                refs,
            };
            match self.deps.store.ingest_mail(request).await {
                Ok(outcome) => {
                    self.attempts.remove(&position);
                    metrics::histogram!(crate::metrics::INGEST_LATENCY, "account" => key.clone())
                        .record(trigger.elapsed().as_secs_f64());
                    self.after_commit(outcome, trigger, from.as_ref());
                    return Ok(());
                }
                Err(e @ (StoreError::Invalid(_) | StoreError::Conflict(_))) => {
                    last_error = format!("ingest: {e}");
                    warn!(account = %key, uid = mail.uid, attempt, error = %e, "mail cannot be committed");
                }
                Err(e) => {
                    let rounds = self.bump(position);
                    if rounds >= STUCK_ROUNDS {
                        return self
                            .quarantine(position, raw, format!("ingest kept failing: {e}"), rounds)
                            .await;
                    }
                    return Err(e.into());
                }
            }
        }
        self.quarantine(position, raw, last_error, MAX_ATTEMPTS)
            .await
    }

    fn bump(&mut self, position: (u32, u32)) -> u32 {
        let n = self.attempts.entry(position).or_insert(0);
        *n += 1;
        *n
    }

    async fn quarantine(
        &mut self,
        position: (u32, u32),
        raw: Vec<u8>,
        reason: String,
        attempts: u32,
    ) -> Result<(), SyncError> {
        warn!(account = %self.account.key, uid = position.1, %reason, "quarantined");
        self.deps
            .store
            .quarantine_mail(QuarantineMail {
                account: self.account.id,
                position: Some(position),
                raw,
                reason,
                attempts,
            })
            .await?;
        self.attempts.remove(&position);
        metrics::counter!(crate::metrics::INGEST_MAILS, "account" => self.account.key.clone(), "outcome" => "quarantined").increment(1);
        update(&self.status, |s| s.quarantined += 1);
        Ok(())
    }

    /// Persist, then announce (invariant 3): this runs only after the commit.
    /// `from` is the mail's sender, as parsed.
    fn after_commit(&mut self, outcome: IngestOutcome, seen: Instant, from: Option<&Mailbox>) {
        let key = self.account.key.clone();
        let label = match &outcome {
            IngestOutcome::Duplicate { .. } => "duplicate",
            IngestOutcome::Created { .. } => "created",
            IngestOutcome::Appended { .. } => "appended",
            IngestOutcome::Continued { .. } => "continued",
            IngestOutcome::Bounced { .. } => "bounced",
        };
        metrics::counter!(crate::metrics::INGEST_MAILS, "account" => key.clone(), "outcome" => label).increment(1);
        update(&self.status, |s| {
            if matches!(outcome, IngestOutcome::Duplicate { .. }) {
                s.duplicates += 1;
            } else {
                s.ingested += 1;
                s.last_mail_at = Some(Utc::now());
                metrics::gauge!(crate::metrics::IMAP_LAST_MAIL, "account" => key.clone())
                    .set(Utc::now().timestamp() as f64);
            }
        });
        match &outcome {
            IngestOutcome::Created { interaction, .. }
            | IngestOutcome::Continued { interaction, .. } => {
                info!(account = %key, interaction = %interaction.id, kind = label, "new interaction");
                if let Some(routing) = &self.deps.routing {
                    // `seen` (the EXISTS, or the fetch that found the mail)
                    // travels with it, so routing can time EXISTS → offer.
                    // What the offer shows goes along, so the queue reads
                    // nothing back.
                    let known = Known {
                        summary: Summary::of(interaction, from, key.clone()),
                        contact: interaction.contact,
                    };
                    routing.enqueue_arrival(interaction, seen, known);
                }
            }
            IngestOutcome::Appended {
                interaction,
                message,
            } => {
                debug!(account = %key, interaction = %interaction.id, message = %message, "reply appended");
                // The owner of a closed thread (an auto-reply kept on it)
                // is no longer working it: nothing to tell.
                if interaction.owner.is_some() && interaction.status == InteractionStatus::Open {
                    // Reading what the frames show is I/O: off the mailbox's
                    // loop, so the next mail is not held up by it.
                    let (store, hub) = (self.deps.store.clone(), self.deps.hub.clone());
                    let (id, message) = (interaction.id, *message);
                    actix::spawn(async move {
                        if let Err(e) =
                            crate::http::views::announce_message(&store, &hub, id, message).await
                        {
                            warn!(interaction = %id, error = %e, "could not announce a new message");
                        }
                    });
                }
            }
            IngestOutcome::Bounced {
                interaction: Some(interaction),
                ..
            } if interaction.owner.is_some() => {
                let (store, hub) = (self.deps.store.clone(), self.deps.hub.clone());
                let id = interaction.id;
                actix::spawn(async move {
                    if let Err(e) = crate::http::views::announce_interaction(&store, &hub, id).await
                    {
                        warn!(interaction = %id, error = %e, "could not announce a bounce");
                    }
                });
            }
            _ => {}
        }
        if let Some(sink) = &self.deps.sink {
            // Routing must hear of every new interaction; `do_send` queues
            // even when the recipient's mailbox is at capacity, and recovery
            // on start re-enqueues from the store anyway (nothing is lost if
            // the queue actor restarts).
            sink.do_send(MailIngested {
                account: self.account.id,
                outcome,
            });
        }
    }
}

/// Exponential backoff with full jitter: 1 s, 2 s, 4 s … capped at 60 s,
/// each a random point in [half, full] so many accounts failing together
/// (a provider outage) do not reconnect in lockstep.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    let full = Duration::from_secs(1u64 << exp).min(BACKOFF_CAP);
    let half = full / 2;
    let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter)
}

/// Starts, restarts and stops mailbox actors; the admin API calls it when an
/// account is added, changed or removed, so no server restart is needed.
#[derive(Clone)]
pub struct MailboxRegistry {
    running: Arc<DashMap<AccountId, (Addr<MailboxActor>, SharedStatus)>>,
    deps: MailboxDeps,
    arbiter: ArbiterHandle,
}

impl MailboxRegistry {
    /// `arbiter`: the thread mailbox actors run on (their work is async I/O;
    /// one thread serves many accounts).
    pub fn new(deps: MailboxDeps, arbiter: ArbiterHandle) -> Self {
        MailboxRegistry {
            running: Arc::new(DashMap::new()),
            deps,
            arbiter,
        }
    }

    /// Start (or restart, if running) the mailbox of an account.
    pub fn start(&self, account: Account) {
        self.stop(account.id);
        let status: SharedStatus = Arc::new(Mutex::new(MailboxStatus {
            state: "starting".into(),
            ..Default::default()
        }));
        let actor = MailboxActor {
            account: account.clone(),
            deps: self.deps.clone(),
            status: status.clone(),
            cancel: CancellationToken::new(),
        };
        let addr = MailboxActor::start_in_arbiter(&self.arbiter, |_| actor);
        self.running.insert(account.id, (addr, status));
    }

    pub fn stop(&self, account: AccountId) {
        if let Some((_, (addr, _))) = self.running.remove(&account) {
            addr.do_send(StopMailbox);
        }
    }

    pub fn stop_all(&self) {
        let ids: Vec<AccountId> = self.running.iter().map(|e| *e.key()).collect();
        for id in ids {
            self.stop(id);
        }
    }

    pub fn status(&self, account: AccountId) -> Option<MailboxStatus> {
        self.running
            .get(&account)
            .and_then(|e| e.value().1.lock().ok().map(|s| s.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for failures in 1..20 {
            let d = backoff(failures);
            let exp = (failures - 1).min(6);
            let full = Duration::from_secs(1u64 << exp).min(BACKOFF_CAP);
            assert!(d >= full / 2 && d <= full, "{failures}: {d:?}");
        }
        assert!(backoff(100) <= BACKOFF_CAP);
    }
}
