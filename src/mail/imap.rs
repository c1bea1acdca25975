//! One IMAP session to one mailbox: connect (plain, STARTTLS or TLS), log in,
//! SELECT, batched UID FETCH and IDLE. Protocol only: what a fetched mail
//! becomes, the watermark and the reconnect policy belong to the mailbox
//! actor that drives this.
//!
//! Built on async-imap (tokio runtime) for the framing, login and IDLE, with
//! rustls (ring) for TLS. Several async-imap commands do not check how a
//! command ended: `fetch`, `uid_search` and `noop` treat a tagged `NO`, and
//! even a closed connection, as a normal end of results. An ingest loop that
//! trusted them could advance its watermark over mail it never saw, so
//! those commands are sent here through `ImapSession::exchange`, which
//! reads up to the tagged completion and fails unless it is `OK`.
//!
//! Nothing here logs a password or token. async-imap traces every command it
//! sends (LOGIN included) through the `log` facade at trace level; the crate
//! compiles `log` with `max_level_debug`, which removes those lines at build
//! time (a unit test below keeps that true).
//!
//! - `connect`: TCP, TLS or STARTTLS, the greeting and the login.
//! - `idle`: [`ImapSession::idle`] and its [`IdleStop`].
//! - `error`: [`ImapError`], shaped for the caller's retry decision.
//! - `tls`: the rustls client configurations (webpki roots, or any certificate).
//! - `wire`: encoding requests (quoting, UTF-7 folder names, UID sets) and
//!   decoding answers (FETCH items, dates, what is news for IDLE).

mod connect;
mod error;
mod idle;
mod tls;
mod wire;

pub use self::error::ImapError;
pub use self::idle::{IdleOutcome, IdleStop};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use async_imap::Session;
use async_imap::imap_proto::{MailboxDatum, Outcome, Response, ResponseCode, Status};
use async_imap::types::UnsolicitedResponse;
use chrono::{DateTime, Utc};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, timeout};
use tracing::{debug, trace, warn};

use self::connect::{Stage, Stream};
use self::wire::{
    FetchParts, IdleEvent, capability_name, encode_folder, idle_event, imap_error, io_error,
    outcome_text, quoted, uid_set, valid_flag_list,
};
use crate::domain::TlsMode;
use crate::secret::Secret;
use crate::store::ImapSettings;

/// How long one command (or one `fetch_*` call) may take before the session
/// is given up, unless changed with [`ImapSession::set_command_timeout`].
/// Generous, because a batch may carry large mails over a slow link.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// UIDs per `UID FETCH` command: keeps command lines short (servers cap
/// them, Dovecot at 64 KiB) whatever the caller asks for.
const FETCH_CHUNK: usize = 500;

/// What is fetched for every mail. `BODY.PEEK[]` leaves `\Seen` alone: the
/// mailbox stays as the customer's other clients (and agents' webmail) see it.
const FETCH_ITEMS: &str = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])";

/// Where and how to log in. Built from the stored account with
/// [`ImapConfig::from_settings`].
#[derive(Debug, Clone, PartialEq)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    /// Used by [`AuthMethod::Login`] and [`AuthMethod::Plain`].
    pub password: Secret,
    /// The folder the caller selects (the session itself selects nothing).
    pub folder: String,
    /// Accept any server certificate (self-signed servers). The handshake
    /// signature is still checked, so the server must hold the key of the
    /// certificate it shows; only who issued it is not.
    pub accept_invalid_certs: bool,
    pub auth: AuthMethod,
}

impl ImapConfig {
    /// The session settings of a stored account, logging in with `LOGIN`.
    pub fn from_settings(settings: &ImapSettings, password: Secret) -> ImapConfig {
        ImapConfig {
            host: settings.host.clone(),
            port: settings.port,
            tls: settings.tls,
            username: settings.username.clone(),
            password,
            folder: settings.folder.clone(),
            accept_invalid_certs: settings.accept_invalid_certs,
            auth: AuthMethod::Login,
        }
    }
}

/// How the session authenticates.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthMethod {
    /// `LOGIN user password`: what every server takes.
    Login,
    /// `AUTHENTICATE PLAIN` (RFC 4616) with the username and password.
    Plain,
    /// `AUTHENTICATE XOAUTH2` with an OAuth 2 access token (Gmail, Office 365);
    /// the password is not used.
    XOAuth2 { token: Secret },
}

/// What SELECT reports about a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxInfo {
    /// Changes when the server renumbered the folder: stored UIDs are void.
    pub uid_validity: u32,
    /// The UID the next mail will get, if the server said.
    pub uid_next: Option<u32>,
    /// How many mails the folder holds.
    pub exists: u32,
}

/// One mail as fetched, with its raw bytes exactly as the server holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMail {
    pub uid: u32,
    /// As the server writes them, e.g. `\Seen`, `$Forwarded`.
    pub flags: Vec<String>,
    /// When the server received the mail (INTERNALDATE).
    pub internal_date: Option<DateTime<Utc>>,
    /// RFC822.SIZE as the server reports it.
    pub size: Option<u32>,
    /// The whole message (`BODY[]`); empty if the server answered NIL.
    pub body: Vec<u8>,
}

/// An authenticated IMAP connection. Commands take `&mut self`: IMAP is one
/// conversation, and the borrow checker keeps it to one command at a time.
pub struct ImapSession {
    session: Session<Stream>,
    state: State,
}

/// Everything but the connection itself (split so that [`ImapSession::idle`]
/// can hand the connection to async-imap's IDLE handle and take it back).
#[derive(Debug)]
struct State {
    host: String,
    /// Upper-case names, e.g. `IDLE`, `AUTH=PLAIN`.
    capabilities: Vec<String>,
    command_timeout: Duration,
    /// Set when a command starts and cleared when it ends cleanly: a command
    /// that failed mid-reply, timed out, or whose future was dropped leaves
    /// it set, and the session then refuses to talk (a half-read reply would
    /// be taken for the answer to the next command).
    poisoned: bool,
    /// The server reported a change (EXISTS, RECENT, EXPUNGE, FETCH) outside
    /// IDLE. The next `idle` returns `NewData` at once instead of waiting:
    /// the server will not repeat that notice.
    changed: bool,
    uid_next: Option<u32>,
}

impl fmt::Debug for ImapSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapSession")
            .field("host", &self.state.host)
            .field("capabilities", &self.state.capabilities)
            .field("poisoned", &self.state.poisoned)
            .finish_non_exhaustive()
    }
}

/// How the server ended a command that did not succeed.
struct Refusal {
    status: &'static str,
    text: String,
    try_create: bool,
}

impl Refusal {
    fn into_error(self, command: &'static str) -> ImapError {
        ImapError::Protocol {
            command,
            reason: format!("{} {}", self.status, self.text),
        }
    }
}

impl ImapSession {
    /// Connects, reads the greeting, upgrades to TLS as `cfg.tls` says and
    /// logs in. `timeout` bounds the whole of it; the error names the stage
    /// that ran out of time.
    ///
    /// With [`TlsMode::Starttls`] the server must announce `STARTTLS`;
    /// nothing, and certainly no password, is sent in the clear otherwise.
    pub async fn connect(cfg: &ImapConfig, timeout: Duration) -> Result<ImapSession, ImapError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let (session, capabilities) = connect::open(cfg, deadline, timeout).await?;
        let mut session = ImapSession {
            session,
            state: State {
                host: cfg.host.clone(),
                capabilities: capabilities.unwrap_or_default(),
                command_timeout: DEFAULT_COMMAND_TIMEOUT,
                poisoned: false,
                changed: false,
                uid_next: None,
            },
        };
        session.drain_unsolicited();
        // Capabilities change at login (RFC 3501 7.2.1): ask again unless
        // the login answer listed them.
        if session.state.capabilities.is_empty() {
            let capabilities = Stage::new(deadline, timeout, "CAPABILITY")
                .run(session.exchange("CAPABILITY", "CAPABILITY", None, |_| false))
                .await??
                .map_err(|refusal| refusal.into_error("CAPABILITY"))?;
            session.state.capabilities = capabilities.0;
        }
        debug!(
            host = %cfg.host,
            port = cfg.port,
            tls = %cfg.tls,
            idle = session.has_idle(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "IMAP session ready"
        );
        Ok(session)
    }

    /// The server supports IDLE (RFC 2177). Without it the caller polls.
    pub fn has_idle(&self) -> bool {
        self.has_capability("IDLE")
    }

    /// The server announced `name` (case-insensitive) after login.
    pub fn has_capability(&self, name: &str) -> bool {
        self.state
            .capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
    }

    /// How long each later command may take (default
    /// [`DEFAULT_COMMAND_TIMEOUT`]). A command that runs out of time leaves
    /// the session unusable.
    pub fn set_command_timeout(&mut self, limit: Duration) {
        self.state.command_timeout = limit;
    }

    /// Opens `folder` (UTF-8; encoded to IMAP's modified UTF-7 here) for
    /// fetching and IDLE.
    pub async fn select(&mut self, folder: &str) -> Result<MailboxInfo, ImapError> {
        let line = format!("SELECT {}", quoted(&encode_folder(folder))?);
        let (mut uid_validity, mut uid_next, mut exists) = (None, None, 0);
        self.begin()?;
        let limit = self.state.command_timeout;
        let result = timeout(
            limit,
            self.exchange("SELECT", &line, None, |response| {
                // SELECT describes the whole folder: nothing in its answer is
                // news for a later IDLE, so it all stops here.
                match response {
                    Response::MailboxData(MailboxDatum::Exists(n)) => exists = *n,
                    Response::Data {
                        status: Status::Ok,
                        outcome:
                            Outcome {
                                code: Some(code), ..
                            },
                    } => match code {
                        ResponseCode::UidValidity(v) => uid_validity = Some(*v),
                        ResponseCode::UidNext(n) => uid_next = Some(*n),
                        _ => {}
                    },
                    _ => {}
                }
                true
            }),
        )
        .await;
        match self.finish("SELECT", result)? {
            Ok(_) => {}
            Err(refusal) if refusal.status == "NO" => {
                return Err(ImapError::NoSuchFolder {
                    folder: folder.to_string(),
                    reason: refusal.text,
                });
            }
            Err(refusal) => return Err(refusal.into_error("SELECT")),
        }
        let uid_validity = uid_validity.ok_or(ImapError::Protocol {
            command: "SELECT",
            reason: "the answer has no UIDVALIDITY".to_string(),
        })?;
        self.state.changed = false;
        self.state.uid_next = uid_next;
        debug!(
            folder,
            uid_validity,
            ?uid_next,
            exists,
            "IMAP folder selected"
        );
        Ok(MailboxInfo {
            uid_validity,
            uid_next,
            exists,
        })
    }

    /// Up to `max` mails of the selected folder with a UID above
    /// `last_uid`, oldest (lowest UID) first. Never sets `\Seen`.
    ///
    /// The UIDs are found first with `UID SEARCH`, then fetched by exact
    /// set: one more round trip than a bare `UID FETCH last+1:*`, but that
    /// form cannot be bounded (it would pull every new mail into memory on a
    /// first sync of a large folder). Either form answers with the highest
    /// mail even when its UID is below `last+1` (`n:*` always includes `*`),
    /// so results at or below `last_uid` are dropped.
    pub async fn fetch_after(
        &mut self,
        last_uid: u32,
        max: u32,
    ) -> Result<Vec<FetchedMail>, ImapError> {
        if max == 0 || last_uid == u32::MAX {
            return Ok(Vec::new());
        }
        self.begin()?;
        let limit = self.state.command_timeout;
        let result = timeout(limit, self.fetch_after_inner(last_uid, max)).await;
        self.finish("UID FETCH", result)
    }

    /// UIDs of mails whose INTERNALDATE is on or after the day of `since`,
    /// one day earlier to be safe: servers compare dates only, in their own
    /// time zone. The caller filters by `internal_date` to the second.
    pub async fn uids_since(&mut self, since: DateTime<Utc>) -> Result<Vec<u32>, ImapError> {
        let day = since.date_naive();
        let day = day.checked_sub_days(chrono::Days::new(1)).unwrap_or(day);
        let criteria = format!("SINCE {}", day.format("%d-%b-%Y"));
        self.begin()?;
        let limit = self.state.command_timeout;
        let result = timeout(limit, self.search(&criteria)).await;
        let mut uids = self.finish("UID SEARCH", result)?;
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// The mails with these UIDs that still exist, sorted by UID. Never sets
    /// `\Seen`.
    pub async fn fetch_uids(&mut self, uids: &[u32]) -> Result<Vec<FetchedMail>, ImapError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        self.begin()?;
        let limit = self.state.command_timeout;
        let result = timeout(limit, self.fetch_uids_inner(uids)).await;
        self.finish("UID FETCH", result)
    }

    /// Stores `content` (a whole RFC 5322 message) in `folder`, with `flags`
    /// such as `(\Seen)` if given.
    pub async fn append(
        &mut self,
        folder: &str,
        flags: Option<&str>,
        content: &[u8],
    ) -> Result<(), ImapError> {
        let flags = match flags {
            Some(flags) if valid_flag_list(flags) => format!("{flags} "),
            Some(flags) => {
                return Err(ImapError::Invalid(format!(
                    "flags must look like (\\Seen $Label), not {flags:?}"
                )));
            }
            None => String::new(),
        };
        let line = format!(
            "APPEND {} {flags}{{{}}}",
            quoted(&encode_folder(folder))?,
            content.len()
        );
        self.begin()?;
        let limit = self.state.command_timeout;
        let result = timeout(
            limit,
            self.exchange("APPEND", &line, Some(content), |_| false),
        )
        .await;
        match self.finish("APPEND", result)? {
            Ok(_) => Ok(()),
            Err(refusal) if refusal.try_create || refusal.text.contains("NONEXISTENT") => {
                Err(ImapError::NoSuchFolder {
                    folder: folder.to_string(),
                    reason: refusal.text,
                })
            }
            Err(refusal) => Err(refusal.into_error("APPEND")),
        }
    }

    /// A round trip: proves the connection is alive and lets the server
    /// report changes (for callers that poll without IDLE).
    pub async fn noop(&mut self) -> Result<(), ImapError> {
        self.begin()?;
        let limit = self.state.command_timeout;
        let result = timeout(limit, self.exchange("NOOP", "NOOP", None, |_| false)).await;
        self.finish("NOOP", result)?
            .map(|_| ())
            .map_err(|refusal| refusal.into_error("NOOP"))
    }

    /// Says goodbye (best effort, a few seconds at most) and closes.
    pub async fn logout(mut self) {
        if self.state.poisoned {
            return;
        }
        match timeout(Duration::from_secs(5), self.session.logout()).await {
            Ok(Ok(())) => trace!("IMAP logged out"),
            Ok(Err(e)) => debug!(error = %e, "IMAP LOGOUT failed"),
            Err(_) => debug!("IMAP LOGOUT timed out"),
        }
    }

    async fn fetch_after_inner(
        &mut self,
        last_uid: u32,
        max: u32,
    ) -> Result<Vec<FetchedMail>, ImapError> {
        let max = max as usize;
        let mut uids = Vec::new();
        // Search in growing windows below UIDNEXT, so that a first sync of a
        // folder with 100 000 mails does not list all of them for every
        // batch; the last window is open-ended (`lo:*`), which also catches
        // mail that arrived after SELECT. UIDs may have gaps of any size.
        let mut lo = u64::from(last_uid) + 1;
        let mut span = (max as u64 * 2).max(256);
        loop {
            let hi = lo + span - 1;
            let open = self
                .state
                .uid_next
                .is_none_or(|next| hi + 1 >= u64::from(next));
            let criteria = if open {
                format!("UID {lo}:*")
            } else {
                format!("UID {lo}:{hi}")
            };
            let found = self.search(&criteria).await?;
            uids.extend(found.into_iter().filter(|&uid| uid > last_uid));
            if open || uids.len() >= max {
                break;
            }
            lo = hi + 1;
            span = span.saturating_mul(4);
        }
        uids.sort_unstable();
        uids.dedup();
        uids.truncate(max);
        self.fetch_uids_inner(&uids).await
    }

    async fn search(&mut self, criteria: &str) -> Result<Vec<u32>, ImapError> {
        let line = format!("UID SEARCH {criteria}");
        let mut uids = Vec::new();
        self.exchange("UID SEARCH", &line, None, |response| match response {
            Response::MailboxData(MailboxDatum::Search(found)) => {
                uids.extend_from_slice(found);
                true
            }
            _ => false,
        })
        .await?
        .map_err(|refusal| refusal.into_error("UID SEARCH"))?;
        Ok(uids)
    }

    async fn fetch_uids_inner(&mut self, uids: &[u32]) -> Result<Vec<FetchedMail>, ImapError> {
        let wanted: BTreeSet<u32> = uids.iter().copied().collect();
        let wanted: Vec<u32> = wanted.into_iter().collect();
        let started = Instant::now();
        let mut parts: BTreeMap<u32, FetchParts> = BTreeMap::new();
        for chunk in wanted.chunks(FETCH_CHUNK) {
            let line = format!("UID FETCH {} {FETCH_ITEMS}", uid_set(chunk));
            self.exchange("UID FETCH", &line, None, |response| {
                let Response::Fetch(_, attributes) = response else {
                    return false;
                };
                let fetched = FetchParts::from_attributes(attributes);
                // A FETCH for a mail we did not ask for is a flag change
                // made elsewhere: news for IDLE, not a result.
                match fetched.uid {
                    Some(uid) if chunk.binary_search(&uid).is_ok() => {
                        parts.entry(uid).or_default().merge(fetched);
                        true
                    }
                    _ => false,
                }
            })
            .await?
            .map_err(|refusal| refusal.into_error("UID FETCH"))?;
        }

        let mut mails = Vec::with_capacity(parts.len());
        for (uid, part) in parts {
            // The server named the mail but sent no body. Skipping it would
            // let the caller's watermark pass a mail it never saw.
            let Some(body) = part.body else {
                return Err(ImapError::Protocol {
                    command: "UID FETCH",
                    reason: format!("the answer for UID {uid} has no BODY[]"),
                });
            };
            mails.push(FetchedMail {
                uid,
                flags: part.flags.unwrap_or_default(),
                internal_date: part.internal_date,
                size: part.size,
                body,
            });
        }
        debug!(
            asked = wanted.len(),
            fetched = mails.len(),
            bytes = mails.iter().map(|m| m.body.len()).sum::<usize>(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "IMAP fetch"
        );
        Ok(mails)
    }

    /// Sends one tagged command and reads up to its tagged completion.
    /// Untagged data goes to `on_data` first; what it does not take is
    /// noted as news for IDLE. With `literal`, the bytes are sent when the
    /// server asks for them (`+`). The outer error is the connection's; the
    /// inner one, the server's `NO` or `BAD`.
    ///
    /// The [`Capabilities`] in the answer are those of any `CAPABILITY`
    /// line that came by, whatever the command (servers may send one unasked).
    async fn exchange<F>(
        &mut self,
        command: &'static str,
        line: &str,
        mut literal: Option<&[u8]>,
        mut on_data: F,
    ) -> Result<Result<Capabilities, Refusal>, ImapError>
    where
        F: FnMut(&Response<'_>) -> bool + Send,
    {
        let tag = self
            .session
            .run_command(line)
            .await
            .map_err(|e| imap_error(command, e))?;
        let mut capabilities = Capabilities(Vec::new());
        let mut bye = None;
        loop {
            let Some(response) = self.session.read_response().await.map_err(io_error)? else {
                return Err(ImapError::Closed(match bye {
                    Some(text) => format!("BYE during {command}: {text}"),
                    None => format!("the server closed the connection during {command}"),
                }));
            };
            match response.parsed() {
                Response::Done {
                    tag: done,
                    status,
                    outcome,
                } if *done == tag => {
                    return Ok(match status {
                        Status::Ok => Ok(capabilities),
                        other => Err(Refusal {
                            status: match other {
                                Status::No => "NO",
                                Status::Bad => "BAD",
                                _ => "unexpected",
                            },
                            text: outcome_text(outcome),
                            try_create: matches!(outcome.code, Some(ResponseCode::TryCreate)),
                        }),
                    });
                }
                Response::Continue { .. } => {
                    let Some(bytes) = literal.take() else {
                        return Err(ImapError::Protocol {
                            command,
                            reason: "the server asked for data that was never announced"
                                .to_string(),
                        });
                    };
                    let stream = self.session.get_mut();
                    stream.write_all(bytes).await.map_err(io_error)?;
                    stream.write_all(b"\r\n").await.map_err(io_error)?;
                    stream.flush().await.map_err(io_error)?;
                }
                Response::Capabilities(list) => {
                    capabilities.0 = list.iter().map(capability_name).collect();
                }
                Response::Data {
                    status: Status::Bye,
                    outcome,
                } => bye = Some(outcome_text(outcome)),
                Response::Data {
                    status: status @ (Status::No | Status::Bad),
                    outcome,
                } => warn!(command, ?status, text = %outcome_text(outcome), "IMAP server warning"),
                other => {
                    if !on_data(other) {
                        self.state.note(other);
                    }
                }
            }
        }
    }

    /// Marks a command as started (see [`State::poisoned`]).
    fn begin(&mut self) -> Result<(), ImapError> {
        if self.state.poisoned {
            return Err(poisoned_error());
        }
        self.state.poisoned = true;
        Ok(())
    }

    /// Ends what [`ImapSession::begin`] started: the session stays usable
    /// unless the command timed out or broke the connection.
    fn finish<T>(
        &mut self,
        during: &'static str,
        result: Result<Result<T, ImapError>, tokio::time::error::Elapsed>,
    ) -> Result<T, ImapError> {
        match result {
            Err(_) => Err(ImapError::Timeout {
                during,
                after: self.state.command_timeout,
            }),
            Ok(Err(e)) => {
                self.state.poisoned = e.breaks_session();
                Err(e)
            }
            Ok(Ok(value)) => {
                self.state.poisoned = false;
                Ok(value)
            }
        }
    }

    /// Takes what async-imap's own commands (login, DONE) set aside.
    fn drain_unsolicited(&mut self) {
        drain(&self.session, &mut self.state);
    }
}

/// Capability names from a `CAPABILITY` line, upper-case.
struct Capabilities(Vec<String>);

impl State {
    /// Something the server said that no command asked for.
    fn note(&mut self, response: &Response<'_>) {
        if let IdleEvent::Changed = idle_event(response) {
            trace!("IMAP folder changed (noted for the next IDLE)");
            self.changed = true;
        }
    }
}

fn drain(session: &Session<Stream>, state: &mut State) {
    while let Ok(response) = session.unsolicited_responses.try_recv() {
        note_async_imap(state, response);
    }
}

fn note_async_imap(state: &mut State, response: UnsolicitedResponse) {
    match response {
        UnsolicitedResponse::Exists(_)
        | UnsolicitedResponse::Recent(_)
        | UnsolicitedResponse::Expunge(_) => state.changed = true,
        UnsolicitedResponse::Other(data) => state.note(data.parsed()),
        UnsolicitedResponse::Status { .. } => {}
    }
}

fn poisoned_error() -> ImapError {
    ImapError::Closed("an earlier command failed or was cancelled mid-reply; reconnect".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: async-imap logs every command it sends, LOGIN with its
    /// password included, through `log` at trace level. The crate builds
    /// `log` with `max_level_debug` so those lines do not exist.
    #[test]
    fn commands_with_passwords_are_never_logged() {
        assert!(log::STATIC_MAX_LEVEL <= log::LevelFilter::Debug);
    }

    #[test]
    fn configs_print_no_secrets() {
        let cfg = ImapConfig {
            host: "imap.example.test".into(),
            port: 993,
            tls: TlsMode::Tls,
            username: "u@example.test".into(),
            password: Secret::new("hunter2"),
            folder: "INBOX".into(),
            accept_invalid_certs: false,
            auth: AuthMethod::XOAuth2 {
                token: Secret::new("ya29.token"),
            },
        };
        let printed = format!("{cfg:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("ya29"),
            "{printed}"
        );
    }

    #[test]
    fn session_futures_are_send() {
        fn is_send<T: Send>(_: &T) {}
        let cfg = ImapConfig {
            host: "localhost".into(),
            port: 1,
            tls: TlsMode::None,
            username: "u".into(),
            password: Secret::new("p"),
            folder: "INBOX".into(),
            accept_invalid_certs: false,
            auth: AuthMethod::Login,
        };
        let connect = ImapSession::connect(&cfg, Duration::from_secs(1));
        is_send(&connect);
        #[allow(dead_code)]
        async fn uses(mut s: ImapSession) {
            let fut = s.fetch_after(0, 1);
            fn check<T: Send>(_: &T) {}
            check(&fut);
            let _ = fut.await;
            let idle = s.idle(Duration::from_secs(1), IdleStop::new());
            check(&idle);
        }
    }
}
