//! What every handler can reach. Cloned into each HTTP worker (all fields are
//! handles to shared state).

use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::actors::agent::AgentHub;
use crate::actors::mailbox::MailboxRegistry;
use crate::config::Settings;
use crate::domain::threading::MessageIdSigner;
use crate::presence::Presence;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub settings: std::sync::Arc<Settings>,
    pub store: Store,
    pub presence: Presence,
    pub hub: AgentHub,
    pub mailboxes: MailboxRegistry,
    /// The outbox senders, one per account (woken after each compose).
    pub senders: crate::actors::sender::SenderRegistry,
    /// The thread queue actors run on (admin changes restart them there).
    pub queue_arbiter: actix::ArbiterHandle,
    /// Signs and verifies our Message-IDs (one secret per deployment).
    pub signer: MessageIdSigner,
    pub metrics: PrometheusHandle,
    pub started_at: Instant,
}
