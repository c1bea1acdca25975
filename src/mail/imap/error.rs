//! The one error type of the IMAP boundary.

use std::io;
use std::time::Duration;

/// Everything that can go wrong, shaped for the caller's decision: back off
/// and retry ([`ImapError::is_transient`]) or stop and tell an admin
/// ([`ImapError::needs_attention`]). No variant ever carries a password or
/// token: auth errors hold the username and the server's words only.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// The TCP connection could not be made (refused, unreachable, DNS).
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: io::Error,
    },
    /// The TLS handshake failed for a reason other than the certificate.
    #[error("TLS with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    /// The server's certificate is not trusted (self-signed, expired, wrong name).
    #[error(
        "the certificate of {host} is not trusted ({reason}); accept_invalid_certs allows a self-signed server"
    )]
    Certificate { host: String, reason: String },
    /// The server lacks something the settings need (`STARTTLS`, `IDLE`).
    #[error("the server does not support {0}")]
    Unsupported(&'static str),
    /// The server refused the credentials.
    #[error("login as {username} refused: {reason}")]
    Auth { username: String, reason: String },
    /// SELECT or APPEND named a folder that does not exist (or may not be opened).
    #[error("folder {folder:?} cannot be opened: {reason}")]
    NoSuchFolder { folder: String, reason: String },
    /// A stage of the connection or a command took longer than allowed.
    #[error("{during} timed out after {after:?}")]
    Timeout {
        during: &'static str,
        after: Duration,
    },
    /// The server answered `NO` or `BAD`, or something this client cannot use.
    #[error("{command}: {reason}")]
    Protocol {
        command: &'static str,
        reason: String,
    },
    /// The caller asked for something that cannot be sent (a line break in a
    /// folder name, malformed flags). Nothing was sent.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The connection is gone (closed by the server, `BYE`, or this session
    /// failed earlier and must be replaced).
    #[error("connection closed: {0}")]
    Closed(String),
    /// Reading or writing the socket failed.
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
}

impl ImapError {
    /// The server refused the credentials. Retrying soon only repeats the
    /// refusal (and may lock the account on some servers).
    pub fn is_auth(&self) -> bool {
        matches!(self, ImapError::Auth { .. })
    }

    /// Retrying with the same settings fails the same way until someone
    /// changes them: credentials, certificate trust, TLS mode or folder.
    /// The caller should surface it and retry slowly, if at all.
    pub fn needs_attention(&self) -> bool {
        matches!(
            self,
            ImapError::Auth { .. }
                | ImapError::Certificate { .. }
                | ImapError::Unsupported(_)
                | ImapError::NoSuchFolder { .. }
                | ImapError::Invalid(_)
        )
    }

    /// A network or server hiccup: reconnect with backoff.
    pub fn is_transient(&self) -> bool {
        !self.needs_attention()
    }

    /// After this error the connection is in an unknown state (a reply may be
    /// half read), so the session refuses further commands.
    pub(super) fn breaks_session(&self) -> bool {
        matches!(
            self,
            ImapError::Io(_) | ImapError::Closed(_) | ImapError::Timeout { .. }
        )
    }
}
