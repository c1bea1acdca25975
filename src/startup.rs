//! Building and running the application.
//!
//! [`App::build`] connects and migrates the store, connects presence,
//! provisions the config's entities, starts the actor threads and binds the
//! HTTP listener (port 0 works: tests read [`App::addr`]).
//! [`App::run_until_stopped`] serves until the shutdown future resolves, then
//! closes every WebSocket with a close frame, stops accepting and drains
//! requests in flight — no sleeps.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Instant;

use actix::Arbiter;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{HttpServer, web};
use tracing::info;

use crate::actors::agent::{AgentHub, CloseCode};
use crate::actors::mailbox::{MailboxDeps, MailboxRegistry};
use crate::actors::queue::Routing;
use crate::actors::sender::{SenderDeps, SenderRegistry};
use crate::config::Settings;
use crate::domain::threading::MessageIdSigner;
use crate::http::state::AppState;
use crate::presence::{Presence, PresenceError};
use crate::provision::{ProvisionError, provision};
use crate::secret::redact_url;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("store ({url}): {source}")]
    Store { url: String, source: StoreError },
    #[error("presence ({url}): {source}")]
    Presence { url: String, source: PresenceError },
    #[error("provisioning: {0}")]
    Provision(#[from] ProvisionError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the app thread failed: {0}")]
    Thread(String),
}

pub struct App {
    server: Server,
    state: AppState,
    addr: SocketAddr,
    // Kept so the actor threads live as long as the app.
    _arbiters: Vec<Arbiter>,
}

/// Open and migrate the store named in the settings.
pub async fn open_store(settings: &Settings) -> Result<Store, StartupError> {
    let url = settings.store.url.expose();
    let err = |source| StartupError::Store {
        url: redact_url(url),
        source,
    };
    let store = Store::connect(url).await.map_err(err)?;
    store.migrate().await.map_err(err)?;
    Ok(store)
}

impl App {
    /// Must run inside an actix `System` (`#[actix_web::main]`, or
    /// [`spawn_in_thread`]).
    pub async fn build(settings: Settings) -> Result<App, StartupError> {
        let metrics = crate::metrics::install();
        raise_fd_limit();
        return_large_frees_to_the_os();
        let started_at = Instant::now();
        let store = open_store(&settings).await?;
        // A socket's liveness entry must outlast the gap between two pongs,
        // with slack for a slow network: 2.5 heartbeats.
        let ttl = settings.ws.heartbeat * 5 / 2;
        let presence_url = settings.presence.url.expose();
        let presence = Presence::connect(presence_url, ttl, &settings.presence.prefix)
            .await
            .map_err(|source| StartupError::Presence {
                url: redact_url(presence_url),
                source,
            })?;
        provision(&store, &settings).await?;
        let secret = store
            .server_secret("message_id_signing")
            .await
            .map_err(|source| StartupError::Store {
                url: redact_url(settings.store.url.expose()),
                source,
            })?;
        let signer =
            MessageIdSigner::new(&secret).map_err(|e| StartupError::Thread(e.to_string()))?;

        // Agent actors run on their own threads, not on HTTP workers (see
        // AgentHub::new). Two are plenty: an agent actor's work is tiny.
        let arbiters: Vec<Arbiter> = (0..2).map(|_| Arbiter::new()).collect();
        // Mailboxes get a thread of their own: their loops do I/O only, and
        // keeping them off the agents' threads means a burst of mail never
        // delays a frame to an agent.
        let mail_arbiter = Arbiter::new();
        let routing = Routing::new();
        let hub = AgentHub::new(
            presence.clone(),
            settings.node.id.clone(),
            arbiters.iter().map(|a| a.handle()).collect(),
            routing.clone(),
        );
        // Recovery: offers in flight at a crash count as cancelled; every
        // open, unowned interaction is offered again by its queue.
        let store_err = |source| StartupError::Store {
            url: redact_url(settings.store.url.expose()),
            source,
        };
        let cancelled = store.cancel_live_offers().await.map_err(store_err)?;
        if cancelled > 0 {
            info!(
                cancelled,
                "offers in flight at the last stop were cancelled"
            );
        }
        routing.load_owned(&store).await.map_err(store_err)?;
        let queue_arbiter = Arbiter::new();
        for queue in store.list_queues().await.map_err(store_err)? {
            routing
                .start_queue(&store, &hub, queue, &queue_arbiter.handle())
                .await
                .map_err(store_err)?;
        }
        let mailboxes = MailboxRegistry::new(
            MailboxDeps {
                store: store.clone(),
                signer: signer.clone(),
                hub: hub.clone(),
                sink: None,
                routing: Some(routing.clone()),
            },
            mail_arbiter.handle(),
        );
        let accounts = store
            .list_accounts()
            .await
            .map_err(|source| StartupError::Store {
                url: redact_url(settings.store.url.expose()),
                source,
            })?;
        // Senders get their own thread too: SMTP I/O never delays ingest or
        // an agent's frames. Each picks up its account's queued mail at once
        // (mail committed before a stop or a crash is delivered now).
        let sender_arbiter = Arbiter::new();
        let senders = SenderRegistry::new(
            SenderDeps {
                store: store.clone(),
                hub: hub.clone(),
                settings: settings.outbox.clone(),
            },
            sender_arbiter.handle(),
        );
        for account in accounts {
            senders.start(account.clone());
            mailboxes.start(account);
        }
        let listen = settings.http.listen;
        let state = AppState {
            settings: Arc::new(settings),
            store,
            presence,
            hub,
            mailboxes,
            senders,
            queue_arbiter: queue_arbiter.handle(),
            signer,
            metrics,
            started_at,
        };
        let listener = TcpListener::bind(listen).map_err(|source| StartupError::Bind {
            addr: listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: listen,
            source,
        })?;
        let factory_state = state.clone();
        let server = HttpServer::new(move || {
            actix_web::App::new()
                .app_data(web::Data::new(factory_state.clone()))
                .wrap(from_fn(crate::http::track))
                .configure(crate::http::configure)
        })
        // We handle SIGINT/SIGTERM ourselves so that WebSockets get a close
        // frame before the server stops.
        .disable_signals()
        // Frames to agents are small and must leave at once: with Nagle's
        // algorithm on (actix's default), a frame written right after
        // another waits for the client's delayed ACK, up to ~40 ms, which
        // set every tail of offer → accept and taken-by-another
        // (docs/performance.md, Routing).
        .tcp_nodelay(true)
        .shutdown_timeout(10)
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            addr: listen,
            source,
        })?
        .run();
        let mut arbiters = arbiters;
        arbiters.push(mail_arbiter);
        arbiters.push(sender_arbiter);
        arbiters.push(queue_arbiter);
        Ok(App {
            server,
            state,
            addr,
            _arbiters: arbiters,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serve until `shutdown` resolves, then stop gracefully.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let App {
            server,
            state,
            addr,
            _arbiters,
        } = self;
        let handle = server.handle();
        info!(
            store = state.store.backend(),
            presence = state.presence.backend(),
            node = %state.settings.node.id,
            startup_ms = state.started_at.elapsed().as_millis() as u64,
            "listening on http://{addr}"
        );
        let mut server = std::pin::pin!(server);
        tokio::select! {
            res = &mut server => return res,
            () = shutdown => {}
        }
        info!("shutting down: closing sockets, draining requests");
        state
            .hub
            .kick_all(CloseCode::GoingAway, "server shutting down");
        // Mailboxes stop between mails: a commit in flight completes (the
        // watermark moves with it), nothing half-done is left.
        state.mailboxes.stop_all();
        // Senders stop between attempts; a mail in flight is recorded.
        state.senders.stop_all();
        // Graceful: stop accepting, let requests in flight (and the close
        // frames just queued) finish, up to shutdown_timeout. The server
        // future processes the stop command itself, so it must be polled
        // while we wait for the stop to complete.
        let ((), res) = tokio::join!(handle.stop(true), server);
        info!("stopped");
        res
    }
}

/// Raise this process's soft limit on open files to its hard limit, and log
/// both. Every agent's WebSocket is a file descriptor; the usual soft limit
/// (1024) would refuse connections long before 10,000 agents, while the hard
/// limit (what an unprivileged process may raise itself to) is usually far
/// higher. Idempotent, so tests that build several apps may call it freely.
pub fn raise_fd_limit() {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read or write the struct given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-files limit");
            return;
        }
        let before = lim.rlim_cur;
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim = raised;
            } else {
                tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the open-files limit");
            }
        }
        info!(
            soft = lim.rlim_cur,
            hard = lim.rlim_max,
            was = before,
            "open-files limit (each WebSocket uses one)"
        );
    }
}

/// Make glibc give every allocation of 256 KiB or more its own mapping,
/// returned to the OS when freed.
///
/// Why: argon2 allocates its whole memory cost (1–19 MiB) for each login.
/// glibc serves the first such block with mmap, but its default *dynamic*
/// threshold then rises to that size, so later blocks come from the
/// per-thread arenas, and freed arena memory stays resident. Logins run on
/// tokio's blocking pool, dozens of threads and up to 16 arenas: 1,000
/// logins left ~620 MiB resident for good, 10,000 left ~1.3 GiB — 95 % of
/// the server's memory with 10,000 agents connected (docs/performance.md,
/// "10,000 agents on one node"). Setting the threshold explicitly turns the
/// dynamic adjustment off. The cost is an mmap/munmap pair and fresh page
/// faults per large block, small beside argon2's own tens of ms.
pub fn return_large_frees_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const THRESHOLD: libc::c_int = 256 * 1024;
        // SAFETY: mallopt only sets an allocator parameter; it is
        // thread-safe and takes effect for later allocations.
        if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) } != 1 {
            tracing::warn!("could not set malloc's mmap threshold");
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// An app running on its own thread with its own actix `System`, for tests,
/// benches and the load harness: the caller's runtime stays free for
/// clients. Dropping it stops the app and joins the thread.
pub struct RunningApp {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/ws?token={}", self.addr, token)
    }

    /// Stop gracefully and wait for the thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningApp {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub fn spawn_in_thread(settings: Settings) -> Result<RunningApp, StartupError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("mailroom-app".into())
        .spawn(move || {
            let system = actix::System::new();
            system.block_on(async move {
                match App::build(settings).await {
                    Ok(app) => {
                        let _ = ready_tx.send(Ok((app.addr(), app.state().clone())));
                        let _ = app
                            .run_until_stopped(async {
                                let _ = stop_rx.await;
                            })
                            .await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| StartupError::Thread(e.to_string()))?;
    match ready_rx.recv() {
        Ok(Ok((addr, state))) => Ok(RunningApp {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(StartupError::Thread(
            "the app thread ended before it was ready".into(),
        )),
    }
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn the_open_files_soft_limit_is_raised_to_the_hard_limit() {
        let read = || {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit only writes the struct given.
            assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
            lim
        };
        // Start from a soft limit below the hard one (as on most systems),
        // so that the raise has something to do.
        let hard = read().rlim_max;
        let low = libc::rlimit {
            rlim_cur: hard.min(256),
            rlim_max: hard,
        };
        // SAFETY: setrlimit only reads the struct given.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
        super::raise_fd_limit();
        let lim = read();
        assert_eq!((lim.rlim_cur, lim.rlim_max), (hard, hard));
    }
}
