//! Who may do what with an interaction (docs/permissions.md). Every
//! interaction endpoint asks here, so the rules live in one place:
//!
//! - **agents** read the interactions of their queues (the queue it waits in
//!   or the queue its account routes to), and those they own or first
//!   handled; they act only on those they own;
//! - **supervisors** read everything, and may add notes (also notes for the
//!   agent only), transfer, close and reopen;
//! - **admins** do everything.

use super::error::ApiError;
use super::extract::Caller;
use crate::domain::{AgentId, Role};
use crate::store::{Interaction, Store, StoreResult};

/// What the caller wants to do with an interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Read it, its messages and its attachments.
    Read,
    /// Owner's work: reply, forward, drafts, tags, sub-status, unread.
    Work,
    /// Add an internal note.
    Note,
    Transfer,
    Close,
    /// Reopen a closed interaction (an agent who may read it takes it).
    Reopen,
}

/// Whether an agent may read an interaction: a member of its queue or of
/// its account's queue, or its owner or first agent. Supervisors and admins
/// read everything.
pub async fn may_read(
    store: &Store,
    who: &crate::store::Agent,
    i: &Interaction,
) -> StoreResult<bool> {
    if who.role.at_least(Role::Supervisor) || involved(who.id, i) {
        return Ok(true);
    }
    let queues = store.list_queues().await?;
    let member_of = |queue| {
        queues
            .iter()
            .any(|q| q.id == queue && q.agents.contains(&who.username))
    };
    if member_of(i.queue) {
        return Ok(true);
    }
    let account = store.account(i.account).await?;
    Ok(member_of(account.queue_id))
}

fn involved(agent: AgentId, i: &Interaction) -> bool {
    i.owner == Some(agent) || i.first_agent == Some(agent)
}

/// Check `act` for the caller on `i`: 403 with the rule that refuses it.
pub async fn check(
    store: &Store,
    caller: &Caller,
    i: &Interaction,
    act: Act,
) -> Result<(), ApiError> {
    let who = &caller.agent;
    if !may_read(store, who, i).await? {
        return Err(ApiError::forbidden(
            "agents may only see interactions of their queues",
        ));
    }
    let owner = i.owner == Some(who.id);
    let allowed = match act {
        Act::Read | Act::Reopen => true,
        _ if owner || who.role.at_least(Role::Admin) => true,
        Act::Note | Act::Transfer | Act::Close => who.role.at_least(Role::Supervisor),
        Act::Work => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(match act {
            Act::Work => "only the owner (or an admin) may do this",
            _ => "only the owner, a supervisor or an admin may do this",
        }))
    }
}
