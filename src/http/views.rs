//! The API's shape of stored things, where it differs from the store's:
//! names instead of row ids (`account` is the key, `queue` the name, `owner`
//! a username), as DESIGN.md's Interaction fixes it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{AgentId, ContactId, InteractionId, InteractionStatus};
use crate::store::{Interaction, LastMessage, Store, StoreError, StoreResult};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContactView {
    pub id: ContactId,
    pub email: Option<String>,
    pub first_name: String,
    pub last_name: String,
}

/// An interaction as the API and the `interaction_updated` frame show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InteractionView {
    pub id: InteractionId,
    /// The account's key.
    pub account: String,
    /// The queue's name.
    pub queue: String,
    pub subject: String,
    pub status: InteractionStatus,
    pub substatus: Option<String>,
    /// The owner's username.
    pub owner: Option<String>,
    /// The username of the first agent who owned it.
    pub first_agent: Option<String>,
    pub contact: Option<ContactView>,
    pub tags: Vec<String>,
    pub unread: bool,
    pub unread_count: u32,
    pub reopened: bool,
    /// The path it was closed with.
    pub disposition: Option<Vec<String>>,
    pub priority: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The last customer or outgoing mail (never a note or an auto-reply);
    /// its `preview` is empty when the account turns previews off.
    pub last_message: Option<LastMessage>,
    pub continues: Option<InteractionId>,
    pub continued_in: Option<InteractionId>,
    /// Later interactions of the same conversation (threads 2, 3, … that
    /// continue this one) that no agent has handled yet.
    pub new_in_conversation: u32,
}

/// A username for an agent id. A deleted agent keeps their id in history:
/// shown as the id rather than failing the whole view.
async fn username(store: &Store, id: Option<AgentId>) -> StoreResult<Option<String>> {
    let Some(id) = id else { return Ok(None) };
    match store.agent(id).await {
        Ok(a) => Ok(Some(a.username)),
        Err(StoreError::NotFound(_)) => Ok(Some(id.to_string())),
        Err(e) => Err(e),
    }
}

/// Views of many interactions (a list page): accounts, queues and agents
/// are read once for the page, not once per item.
pub async fn interaction_views(
    store: &Store,
    items: &[Interaction],
) -> StoreResult<Vec<InteractionView>> {
    use std::collections::HashMap;
    let accounts: HashMap<_, _> = store
        .list_accounts()
        .await?
        .into_iter()
        .map(|a| (a.id, (a.key, a.options.show_preview)))
        .collect();
    let queues: HashMap<_, _> = store
        .list_queues()
        .await?
        .into_iter()
        .map(|q| (q.id, q.name))
        .collect();
    let agents: HashMap<_, _> = store
        .list_agents()
        .await?
        .into_iter()
        .map(|a| (a.id, a.username))
        .collect();
    let ids: Vec<InteractionId> = items.iter().map(|i| i.id).collect();
    let mut tags = store.tags_of(&ids).await?;
    let mut out = Vec::with_capacity(items.len());
    for i in items {
        let name = |id: Option<AgentId>| {
            id.map(|a| agents.get(&a).cloned().unwrap_or_else(|| a.to_string()))
        };
        let mut view = base_view(i, name(i.owner), name(i.first_agent));
        match accounts.get(&i.account) {
            Some((key, show_preview)) => {
                view.account = key.clone();
                if !show_preview {
                    hide_preview(&mut view);
                }
            }
            None => view.account = i.account.to_string(),
        }
        view.new_in_conversation = new_in_conversation(store, i).await?;
        view.queue = queues
            .get(&i.queue)
            .cloned()
            .unwrap_or_else(|| i.queue.to_string());
        view.contact = contact_view(store, i.contact).await?;
        view.tags = tags.remove(&i.id).unwrap_or_default();
        out.push(view);
    }
    Ok(out)
}

async fn contact_view(store: &Store, id: Option<ContactId>) -> StoreResult<Option<ContactView>> {
    let Some(id) = id else { return Ok(None) };
    match store.contact(id).await {
        Ok(c) => Ok(Some(ContactView {
            id: c.id,
            email: c.emails.first().cloned(),
            first_name: c.first_name,
            last_name: c.last_name,
        })),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Everything but the names that need a lookup.
fn base_view(
    i: &Interaction,
    owner: Option<String>,
    first_agent: Option<String>,
) -> InteractionView {
    InteractionView {
        id: i.id,
        account: String::new(),
        queue: String::new(),
        subject: i.subject.clone(),
        status: i.status,
        substatus: i.substatus.clone(),
        owner,
        first_agent,
        contact: None,
        tags: Vec::new(),
        unread: i.unread,
        unread_count: i.unread_count,
        reopened: i.reopened,
        disposition: i.disposition.clone(),
        priority: i.priority,
        created_at: i.created_at,
        updated_at: i.updated_at,
        closed_at: i.closed_at,
        last_message: i.last_message.clone(),
        continues: i.continues,
        continued_in: i.continued_in,
        new_in_conversation: 0,
    }
}

pub async fn interaction_view(store: &Store, i: &Interaction) -> StoreResult<InteractionView> {
    let (account, show_preview) = match store.account(i.account).await {
        Ok(a) => (a.key, a.options.show_preview),
        Err(StoreError::NotFound(_)) => (i.account.to_string(), true),
        Err(e) => return Err(e),
    };
    let queue = match store.queue(i.queue).await {
        Ok(q) => q.name,
        Err(StoreError::NotFound(_)) => i.queue.to_string(),
        Err(e) => return Err(e),
    };
    let mut view = base_view(
        i,
        username(store, i.owner).await?,
        username(store, i.first_agent).await?,
    );
    view.account = account;
    view.queue = queue;
    view.contact = contact_view(store, i.contact).await?;
    view.tags = store.interaction_tags(i.id).await?;
    view.new_in_conversation = new_in_conversation(store, i).await?;
    if !show_preview {
        hide_preview(&mut view);
    }
    Ok(view)
}

fn hide_preview(view: &mut InteractionView) {
    if let Some(last) = &mut view.last_message {
        last.preview.clear();
    }
}

/// Walk the conversation forward (`continued_in`) and count the threads no
/// agent has handled yet. Nothing to read for the common case (no later
/// thread); a conversation is a short chain.
async fn new_in_conversation(store: &Store, i: &Interaction) -> StoreResult<u32> {
    let mut count = 0;
    let mut next = i.continued_in;
    let mut steps = 0;
    while let Some(id) = next {
        let later = store.interaction(id).await?;
        if later.first_agent.is_none() {
            count += 1;
        }
        next = later.continued_in;
        steps += 1;
        if steps >= 50 {
            break;
        }
    }
    Ok(count)
}

/// Tell an interaction's owner (every tab) what a new message changed: the
/// message as the API shows it to them (`message_added`), then the
/// interaction's new state (`interaction_updated`). For ingest, which
/// commits first and announces after (invariant 3). Nothing to do when the
/// interaction has no owner (its queue offers it instead).
pub async fn announce_message(
    store: &Store,
    hub: &crate::actors::agent::AgentHub,
    interaction: InteractionId,
    message: crate::domain::MessageId,
) -> StoreResult<()> {
    use crate::http::ws::protocol::ServerFrame;
    let i = store.interaction(interaction).await?;
    let Some(owner) = i.owner else { return Ok(()) };
    let reader = store.agent(owner).await?;
    let messages = store.messages(interaction).await?;
    if let Some(m) = messages.iter().find(|m| m.id == message) {
        let json = crate::http::interactions::message_view(m, &reader)
            .map_err(|e| StoreError::Task(e.to_string()))?;
        hub.push(
            owner,
            ServerFrame::MessageAdded {
                interaction_id: interaction,
                message: json,
            },
        );
    }
    let view = interaction_view(store, &i).await?;
    let json = serde_json::to_value(&view).map_err(|e| StoreError::Task(e.to_string()))?;
    hub.push(owner, ServerFrame::InteractionUpdated { interaction: json });
    Ok(())
}

/// Tell an interaction's owner its new state (`interaction_updated`).
pub async fn announce_interaction(
    store: &Store,
    hub: &crate::actors::agent::AgentHub,
    interaction: InteractionId,
) -> StoreResult<()> {
    use crate::http::ws::protocol::ServerFrame;
    let i = store.interaction(interaction).await?;
    let Some(owner) = i.owner else { return Ok(()) };
    let view = interaction_view(store, &i).await?;
    let json = serde_json::to_value(&view).map_err(|e| StoreError::Task(e.to_string()))?;
    hub.push(owner, ServerFrame::InteractionUpdated { interaction: json });
    Ok(())
}
