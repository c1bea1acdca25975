//! The routing side of the store (issue #4): offers and their outcomes, the
//! waiting list for recovery, and what routing needs to know about agents.
//!
//! The heart is [`Store::accept_offer`]: one transaction that claims the
//! interaction with the conditional update of invariant 2, marks the offer
//! accepted and every other live offer of the interaction rescinded
//! (`taken`). However many agents accept at once, on however many nodes,
//! one transaction wins; the others find the offer no longer live.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Interaction, Store, StoreError, StoreResult};
use crate::domain::{
    AgentId, ContactId, InteractionId, OfferId, OfferStatus, QueueId, RescindReason,
};

/// One offer as stored (every offer is kept, for reporting).
#[derive(Debug, Clone, PartialEq)]
pub struct OfferRow {
    pub id: OfferId,
    pub interaction: InteractionId,
    pub queue: QueueId,
    pub agent: AgentId,
    pub status: OfferStatus,
    /// Why it was rescinded (`taken`, `timeout`, `cancelled`), when it was.
    pub reason: Option<RescindReason>,
    pub offered_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// The result of [`Store::accept_offer`].
// Returned once per accept and consumed at once, never stored in bulk: the
// size difference between the variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum AcceptOutcome {
    /// The agent owns the interaction; these other offers were rescinded (taken).
    Won {
        interaction: Interaction,
        rescinded: Vec<OfferRow>,
    },
    /// The offer was no longer live (decided, expired, or the interaction
    /// was taken or closed): `offer_gone`.
    Gone,
}

/// Where a transfer sends an interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferTarget {
    /// Back to waiting in this queue: owner cleared, unread.
    Queue(QueueId),
    /// Straight to this agent (the caller has checked they are online and
    /// not paused; the store checks capacity).
    Agent(AgentId),
}

/// The result of [`Store::transfer`].
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum TransferOutcome {
    Moved {
        interaction: Interaction,
        previous_owner: Option<AgentId>,
        previous_queue: QueueId,
        /// Live offers of the interaction, rescinded by the move: `taken`
        /// when it went to an agent, `cancelled` when back to a queue.
        rescinded: Vec<OfferRow>,
    },
    /// The interaction is not at `expected_version` any more (someone else
    /// moved, took or closed it), or is closed: nothing changed.
    Changed(Interaction),
    /// The target agent already owns as many open interactions as their
    /// capacity allows.
    OverCapacity,
}

/// The result of [`Store::reopen`].
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ReopenOutcome {
    Reopened(Interaction),
    /// Not closed, or not at the expected version: nothing changed.
    Changed(Interaction),
    /// The agent it was to go to is at capacity.
    OverCapacity,
}

/// An interaction waiting in a queue, in the order it is to be offered.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitingInteraction {
    pub id: InteractionId,
    pub version: i64,
    pub priority: i32,
    pub enqueued_at: DateTime<Utc>,
    pub contact: Option<ContactId>,
}

/// The outcomes [`Store::decide_offer`] may record: accepting goes through
/// the claim ([`Store::accept_offer`]), and `offered` is not an outcome.
pub(crate) fn decidable(status: OfferStatus) -> StoreResult<()> {
    match status {
        OfferStatus::Rejected | OfferStatus::Expired | OfferStatus::Rescinded => Ok(()),
        OfferStatus::Offered | OfferStatus::Accepted => Err(StoreError::Invalid(format!(
            "an offer cannot be decided as `{status}`"
        ))),
    }
}

impl Store {
    /// Record offers of an interaction to these agents (one transaction).
    /// An agent already holding a live offer for it is skipped.
    pub async fn create_offers(
        &self,
        interaction: InteractionId,
        queue: QueueId,
        agents: &[AgentId],
        expires_at: DateTime<Utc>,
    ) -> StoreResult<Vec<OfferRow>> {
        dispatch!(self.create_offers(interaction, queue, agents, expires_at))
    }

    /// Decide a live offer as rejected, expired or rescinded. `None` when the
    /// offer was not live any more (repeats are harmless).
    pub async fn decide_offer(
        &self,
        offer: OfferId,
        status: OfferStatus,
        reason: Option<RescindReason>,
    ) -> StoreResult<Option<OfferRow>> {
        dispatch!(self.decide_offer(offer, status, reason))
    }

    /// Accept: claim + offer accepted + other live offers rescinded (taken),
    /// in one transaction. `agent` must be the offer's agent.
    pub async fn accept_offer(&self, offer: OfferId, agent: AgentId) -> StoreResult<AcceptOutcome> {
        dispatch!(self.accept_offer(offer, agent))
    }

    /// Open, unowned interactions of a queue, by priority (high first) then
    /// age (oldest first): what recovery re-enqueues on start.
    pub async fn waiting_interactions(
        &self,
        queue: QueueId,
    ) -> StoreResult<Vec<WaitingInteraction>> {
        dispatch!(self.waiting_interactions(queue))
    }

    /// Rescind (cancelled) every live offer: offers in flight at a crash
    /// count as cancelled and are re-offered. Returns how many.
    pub async fn cancel_live_offers(&self) -> StoreResult<u64> {
        dispatch!(self.cancel_live_offers())
    }

    /// Open interactions owned, per agent (agents owning none are absent).
    pub async fn owned_open_counts(&self) -> StoreResult<HashMap<AgentId, u32>> {
        dispatch!(self.owned_open_counts())
    }

    /// The agent who last owned an interaction of this contact (for sticky
    /// routing), other than `except`.
    pub async fn last_agent_of_contact(
        &self,
        contact: ContactId,
        except: InteractionId,
    ) -> StoreResult<Option<AgentId>> {
        dispatch!(self.last_agent_of_contact(contact, except))
    }

    /// Move an open interaction to a queue or an agent, if it is still at
    /// `expected_version` (the version the caller checked its rights on),
    /// in one transaction that also rescinds its live offers. For an agent,
    /// their open interactions are counted in the same transaction (their
    /// agent row locked on Postgres), so two transfers cannot both take an
    /// agent's last free slot.
    pub async fn transfer(
        &self,
        id: InteractionId,
        expected_version: i64,
        target: TransferTarget,
    ) -> StoreResult<TransferOutcome> {
        dispatch!(self.transfer(id, expected_version, target))
    }

    /// Reopen a closed interaction at `expected_version`: open again,
    /// unread, flagged `reopened`, its disposition cleared; owned by `to`
    /// (an agent reopening it, capacity checked as for a transfer), or
    /// unowned and back in its queue (a supervisor or admin reopening it).
    pub async fn reopen(
        &self,
        id: InteractionId,
        expected_version: i64,
        to: Option<AgentId>,
    ) -> StoreResult<ReopenOutcome> {
        dispatch!(self.reopen(id, expected_version, to))
    }

    /// Remember round_robin's place (survives restarts).
    pub async fn set_round_robin_last(&self, queue: QueueId, agent: AgentId) -> StoreResult<()> {
        dispatch!(self.set_round_robin_last(queue, agent))
    }

    /// Round_robin's remembered place.
    pub async fn round_robin_last(&self, queue: QueueId) -> StoreResult<Option<AgentId>> {
        dispatch!(self.round_robin_last(queue))
    }
}
