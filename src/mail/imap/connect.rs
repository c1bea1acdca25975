//! Getting to an authenticated session: TCP (with TCP_NODELAY), TLS from the
//! first byte or after STARTTLS, the greeting, and LOGIN or AUTHENTICATE
//! (PLAIN, XOAUTH2) through async-imap's pluggable `Authenticator`.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_imap::imap_proto::{Response, ResponseCode, Status};
use async_imap::{Authenticator, Client, Session};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::tls::tls_handshake;
use super::wire::{capability_name, imap_error, io_error, outcome_text, server_text};
use super::{AuthMethod, ImapConfig, ImapError};
use crate::domain::TlsMode;
use crate::secret::Secret;

/// The byte stream under the session: TCP or TLS over TCP, behind one type
/// so that the session type does not depend on the TLS mode.
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Transport for T {}

pub(super) type Stream = Box<dyn Transport>;

/// async-imap writes a command as several small writes (tag, text, CRLF),
/// then flushes. Buffering until that flush sends one packet (one TLS
/// record) per command instead of four; with TCP_NODELAY that matters.
pub(super) fn buffered<T: Transport + 'static>(inner: T) -> Stream {
    Box::new(BufWriter::new(inner))
}

/// TCP, then TLS as `cfg.tls` says, the greeting and the login, all before
/// `deadline`. Returns the session and, if the login answer listed them,
/// the capabilities.
pub(super) async fn open(
    cfg: &ImapConfig,
    deadline: Instant,
    budget: Duration,
) -> Result<(Session<Stream>, Option<Vec<String>>), ImapError> {
    let within = |during: &'static str| Stage::new(deadline, budget, during);

    let target = format!("{}:{}", cfg.host, cfg.port);
    let tcp = within("TCP connect")
        .run(TcpStream::connect((cfg.host.as_str(), cfg.port)))
        .await?
        .map_err(|source| ImapError::Connect {
            target: target.clone(),
            source,
        })?;
    // Commands and IDLE's DONE are small and answered at once: waiting
    // for Nagle to fill a packet only adds latency.
    tcp.set_nodelay(true)
        .map_err(|source| ImapError::Connect { target, source })?;

    let client: Client<Stream> = match cfg.tls {
        TlsMode::None => {
            let mut client = Client::new(buffered(tcp));
            within("greeting").run(read_greeting(&mut client)).await??;
            client
        }
        TlsMode::Tls => {
            let tls = within("TLS handshake")
                .run(tls_handshake(cfg, tcp))
                .await??;
            let mut client = Client::new(buffered(tls));
            within("greeting").run(read_greeting(&mut client)).await??;
            client
        }
        TlsMode::Starttls => {
            // A concrete stream type first, so that the TcpStream can be
            // taken back out for the handshake after STARTTLS.
            let mut client = Client::new(BufWriter::new(tcp));
            let greeted = within("greeting").run(read_greeting(&mut client)).await??;
            let capabilities = match greeted {
                Some(capabilities) => capabilities,
                None => {
                    within("CAPABILITY")
                        .run(pre_login_capabilities(&mut client))
                        .await??
                }
            };
            if !capabilities.iter().any(|c| c == "STARTTLS") {
                return Err(ImapError::Unsupported("STARTTLS"));
            }
            within("STARTTLS")
                .run(client.run_command_and_check_ok("STARTTLS", None))
                .await?
                .map_err(|e| imap_error("STARTTLS", e))?;
            let tcp = client.into_inner().into_inner();
            let tls = within("TLS handshake")
                .run(tls_handshake(cfg, tcp))
                .await??;
            // No greeting after STARTTLS (RFC 3501 6.2.1).
            Client::new(buffered(tls))
        }
    };

    let (session, capabilities) = within("login").run(log_in(client, cfg)).await??;
    Ok((session, capabilities))
}

/// One stage of connecting, run against the overall deadline.
pub(super) struct Stage {
    deadline: Instant,
    budget: Duration,
    during: &'static str,
}

impl Stage {
    pub(super) fn new(deadline: Instant, budget: Duration, during: &'static str) -> Stage {
        Stage {
            deadline,
            budget,
            during,
        }
    }

    pub(super) async fn run<T>(self, fut: impl Future<Output = T>) -> Result<T, ImapError> {
        timeout_at(self.deadline, fut)
            .await
            .map_err(|_| ImapError::Timeout {
                during: self.during,
                after: self.budget,
            })
    }
}

/// Reads the greeting; returns the capabilities if the server listed them.
async fn read_greeting<T: Transport>(
    client: &mut Client<T>,
) -> Result<Option<Vec<String>>, ImapError> {
    let response = client
        .read_response()
        .await
        .map_err(io_error)?
        .ok_or_else(|| {
            ImapError::Closed("the server closed the connection before its greeting".to_string())
        })?;
    match response.parsed() {
        Response::Data {
            status: Status::Ok,
            outcome,
        } => Ok(match &outcome.code {
            Some(ResponseCode::Capabilities(list)) => {
                Some(list.iter().map(capability_name).collect())
            }
            _ => None,
        }),
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Err(ImapError::Closed(format!(
            "the server refused the connection: {}",
            outcome_text(outcome)
        ))),
        Response::Data {
            status: Status::PreAuth,
            ..
        } => Err(ImapError::Protocol {
            command: "greeting",
            reason: "pre-authenticated connections are not supported".to_string(),
        }),
        other => Err(ImapError::Protocol {
            command: "greeting",
            reason: format!("unexpected greeting {other:?}"),
        }),
    }
}

/// `CAPABILITY` before login. async-imap has no such call for an
/// unauthenticated client, so the command is written directly; its tag
/// cannot collide with async-imap's (`a1`, `a2`, ...).
async fn pre_login_capabilities<T: Transport>(
    client: &mut Client<T>,
) -> Result<Vec<String>, ImapError> {
    const TAG: &str = "mr0";
    let stream = client.get_mut();
    stream
        .write_all(format!("{TAG} CAPABILITY\r\n").as_bytes())
        .await
        .map_err(io_error)?;
    stream.flush().await.map_err(io_error)?;
    let mut capabilities = Vec::new();
    loop {
        let response = client
            .read_response()
            .await
            .map_err(io_error)?
            .ok_or_else(|| {
                ImapError::Closed("the server closed the connection during CAPABILITY".to_string())
            })?;
        match response.parsed() {
            Response::Capabilities(list) => {
                capabilities = list.iter().map(capability_name).collect();
            }
            Response::Done {
                tag,
                status,
                outcome,
            } if tag.0 == TAG => {
                return match status {
                    Status::Ok => Ok(capabilities),
                    _ => Err(ImapError::Protocol {
                        command: "CAPABILITY",
                        reason: outcome_text(outcome),
                    }),
                };
            }
            _ => {}
        }
    }
}

async fn log_in(
    client: Client<Stream>,
    cfg: &ImapConfig,
) -> Result<(Session<Stream>, Option<Vec<String>>), ImapError> {
    let refused = |(error, _client): (async_imap::error::Error, Client<Stream>)| {
        auth_error(&cfg.username, error)
    };
    match &cfg.auth {
        AuthMethod::Login => {
            let (session, capabilities) = client
                .login_with_capabilities(&cfg.username, cfg.password.expose())
                .await
                .map_err(refused)?;
            let capabilities = capabilities.map(|list| {
                list.iter()
                    .map(|c| match c {
                        async_imap::types::Capability::Imap4rev1 => "IMAP4REV1".to_string(),
                        async_imap::types::Capability::Auth(m) => {
                            format!("AUTH={}", m.to_ascii_uppercase())
                        }
                        async_imap::types::Capability::Atom(a) => a.to_ascii_uppercase(),
                    })
                    .collect()
            });
            Ok((session, capabilities))
        }
        AuthMethod::Plain => {
            let plain = PlainAuth {
                username: &cfg.username,
                password: &cfg.password,
            };
            let session = client.authenticate("PLAIN", plain).await.map_err(refused)?;
            Ok((session, None))
        }
        AuthMethod::XOAuth2 { token } => {
            let xoauth2 = XOAuth2 {
                username: &cfg.username,
                token,
                sent: false,
            };
            let session = client
                .authenticate("XOAUTH2", xoauth2)
                .await
                .map_err(refused)?;
            Ok((session, None))
        }
    }
}

/// SASL PLAIN (RFC 4616): `\0username\0password`.
struct PlainAuth<'a> {
    username: &'a str,
    password: &'a Secret,
}

impl Authenticator for PlainAuth<'_> {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        [
            b"\0",
            self.username.as_bytes(),
            b"\0",
            self.password.expose().as_bytes(),
        ]
        .concat()
    }
}

/// XOAUTH2 (Google's and Microsoft's SASL mechanism for OAuth 2 tokens).
/// On failure the server sends a JSON error as a challenge and expects an
/// empty answer before its final `NO`; the token is sent only once.
struct XOAuth2<'a> {
    username: &'a str,
    token: &'a Secret,
    sent: bool,
}

impl Authenticator for XOAuth2<'_> {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        if std::mem::replace(&mut self.sent, true) {
            return Vec::new();
        }
        format!(
            "user={}\x01auth=Bearer {}\x01\x01",
            self.username,
            self.token.expose()
        )
        .into_bytes()
    }
}

/// A login failure. The reason is the server's text: async-imap's errors
/// never echo the command, so no password can reach it.
fn auth_error(username: &str, error: async_imap::error::Error) -> ImapError {
    use async_imap::error::Error;
    let reason = match error {
        Error::No(text) | Error::Bad(text) => server_text(&text),
        Error::Validate(_) => "the username or password contains a line break".to_string(),
        Error::Parse(e) => e.to_string(),
        other => return imap_error("login", other),
    };
    ImapError::Auth {
        username: username.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticators_send_sasl_plain_and_xoauth2_once() {
        let password = Secret::new("pw");
        let mut plain = PlainAuth {
            username: "u@example.test",
            password: &password,
        };
        assert_eq!(plain.process(b""), b"\0u@example.test\0pw".to_vec());

        let token = Secret::new("tok");
        let mut xoauth2 = XOAuth2 {
            username: "u@example.test",
            token: &token,
            sent: false,
        };
        assert_eq!(
            xoauth2.process(b""),
            b"user=u@example.test\x01auth=Bearer tok\x01\x01".to_vec()
        );
        // The error challenge gets an empty answer, not the token again.
        assert_eq!(xoauth2.process(b"{\"status\":\"401\"}"), Vec::<u8>::new());
    }
}
