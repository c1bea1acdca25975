//! IDLE (RFC 2177): wait for the server to report a change, with an
//! absolute deadline and a stop handle, and always end with DONE.

use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::wire::{IdleEvent, idle_event, imap_error};
use super::{ImapError, ImapSession, drain, note_async_imap, poisoned_error};

/// How an [`ImapSession::idle`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleOutcome {
    /// The folder changed (EXISTS, RECENT, EXPUNGE or FETCH): fetch now.
    NewData,
    /// The timeout passed without news: IDLE again (servers drop an IDLE
    /// older than 30 minutes, so callers stay below 29).
    Timeout,
    /// [`IdleStop::stop`] was called.
    Stopped,
}

/// Ends an [`ImapSession::idle`] early from elsewhere (another task, the
/// actor on shutdown or when it needs the session for a command). Cloneable;
/// one-shot: once stopped it stays stopped, and every later `idle` given
/// this handle returns [`IdleOutcome::Stopped`] at once, so a stop sent just
/// before the IDLE began is not lost. Use a fresh one for each wait that
/// may be interrupted separately.
#[derive(Debug, Clone, Default)]
pub struct IdleStop(CancellationToken);

impl IdleStop {
    pub fn new() -> IdleStop {
        IdleStop::default()
    }

    /// Ends the IDLE waiting on this handle (or the next one to start).
    pub fn stop(&self) {
        self.0.cancel();
    }

    pub fn is_stopped(&self) -> bool {
        self.0.is_cancelled()
    }
}

impl ImapSession {
    /// Waits in IDLE until the folder changes, `timeout` passes or `stop`
    /// is triggered, then ends the IDLE with DONE and hands the session back.
    ///
    /// It consumes the session because async-imap's IDLE handle owns the
    /// connection while the server is in IDLE: no command may be sent until
    /// DONE, and taking `self` makes that a compile error instead of a
    /// protocol error. On error the connection is in an unknown state and is
    /// dropped; reconnect.
    ///
    /// After [`IdleOutcome::NewData`] the caller must fetch: the notice is
    /// consumed here. A change the server reported during an earlier command
    /// makes this return `NewData` at once, without IDLE. Check
    /// [`ImapSession::has_idle`] first: without IDLE this fails with
    /// [`ImapError::Unsupported`].
    pub async fn idle(
        self,
        timeout: Duration,
        stop: IdleStop,
    ) -> Result<(ImapSession, IdleOutcome), ImapError> {
        let ImapSession { session, mut state } = self;
        if state.poisoned {
            return Err(poisoned_error());
        }
        drain(&session, &mut state);
        if stop.is_stopped() {
            return Ok((ImapSession { session, state }, IdleOutcome::Stopped));
        }
        if state.changed {
            state.changed = false;
            return Ok((ImapSession { session, state }, IdleOutcome::NewData));
        }
        if !state.capabilities.iter().any(|c| c == "IDLE") {
            return Err(ImapError::Unsupported("IDLE"));
        }

        let started = Instant::now();
        let deadline = started + timeout;
        let limit = state.command_timeout;
        // async-imap routes what arrives before the server's "+ idling" to
        // the session's unsolicited channel, where the IDLE wait never looks:
        // a mail delivered as the IDLE starts would wait for the timeout.
        // A clone of the receiver lets us look after `init`.
        let unsolicited = session.unsolicited_responses.clone();
        let mut handle = session.idle();
        tokio::time::timeout(limit, handle.init())
            .await
            .map_err(|_| ImapError::Timeout {
                during: "IDLE",
                after: limit,
            })?
            .map_err(|e| imap_error("IDLE", e))?;
        while let Ok(response) = unsolicited.try_recv() {
            note_async_imap(&mut state, response);
        }

        let outcome = if state.changed {
            IdleOutcome::NewData
        } else {
            loop {
                // async-imap's own timeout restarts at every keepalive line
                // ("* OK Still here"), so it is only a backstop: the
                // deadline here is absolute. Dropping the wait future when the
                // deadline or the stop wins is safe: async-imap keeps partial
                // reads in the stream's buffer, and DONE's reply reading picks
                // up whatever the server sent meanwhile.
                let remaining = deadline.saturating_duration_since(Instant::now());
                let (wait, _interrupt) =
                    handle.wait_with_timeout(remaining + Duration::from_secs(1));
                tokio::select! {
                    result = wait => match result.map_err(|e| imap_error("IDLE", e))? {
                        IdleResponse::NewData(response) => match idle_event(response.parsed()) {
                            IdleEvent::Changed => break IdleOutcome::NewData,
                            IdleEvent::Bye(text) => {
                                return Err(ImapError::Closed(format!("BYE during IDLE: {text}")));
                            }
                            IdleEvent::Other => continue,
                        },
                        IdleResponse::Timeout => break IdleOutcome::Timeout,
                        // `_interrupt` is alive, so this is the end of the
                        // stream, not a stop.
                        IdleResponse::ManualInterrupt => {
                            return Err(ImapError::Closed(
                                "the server closed the connection during IDLE".to_string(),
                            ));
                        }
                    },
                    () = tokio::time::sleep_until(deadline) => break IdleOutcome::Timeout,
                    () = stop.0.cancelled() => break IdleOutcome::Stopped,
                }
            }
        };

        let session = tokio::time::timeout(limit, handle.done())
            .await
            .map_err(|_| ImapError::Timeout {
                during: "IDLE DONE",
                after: limit,
            })?
            .map_err(|e| imap_error("IDLE DONE", e))?;
        drain(&session, &mut state);
        let outcome = match outcome {
            // The caller fetches now, which covers whatever came with it.
            IdleOutcome::NewData => {
                state.changed = false;
                IdleOutcome::NewData
            }
            // News that raced the deadline: report it rather than sit on it.
            IdleOutcome::Timeout if state.changed => {
                state.changed = false;
                IdleOutcome::NewData
            }
            other => other,
        };
        debug!(
            outcome = ?outcome,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "IMAP IDLE ended"
        );
        Ok((ImapSession { session, state }, outcome))
    }
}
