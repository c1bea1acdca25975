//! Working an interaction (DESIGN.md "Working an interaction"): so far
//! transfer and close, and the list of transfer targets. Each action is one
//! version-checked store transaction; routing and the agents' sockets hear
//! of it only after it is committed (invariant 3).

use actix_web::{HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use tracing::info;
use utoipa::{IntoParams, ToSchema};

use super::access::{Act, check};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Caller;
use super::state::AppState;
use super::views::{InteractionView, interaction_view};
use crate::actors::queue::AgentRuntime;
use actix_web::http::StatusCode;
use chrono::Utc;

use crate::actors::queue::Origin;
use crate::domain::{AgentId, AssignedVia, InteractionId, InteractionStatus, QueueId, Role};
use crate::http::ws::protocol::ServerFrame;
use crate::presence::Availability;
use crate::store::{
    Agent, Queue, ReopenOutcome, Store, StoreError, TransferOutcome, TransferTarget,
    check_disposition_path,
};

/// `{queue}` or `{agent}`: a queue's name (or id), an agent's username (or id).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    pub queue: Option<String>,
    pub agent: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// The disposition path, 1 to 3 levels, e.g. `["Sales", "Won"]`.
    pub disposition: Option<Vec<String>>,
}

async fn queue_named(store: &Store, name: &str) -> ApiResult<Queue> {
    match store.queue_by_name(name).await {
        Err(StoreError::NotFound(_)) => match name.parse::<i64>() {
            Ok(id) => Ok(store.queue(QueueId(id)).await?),
            Err(_) => Err(ApiError::not_found(format!("no queue named {name:?}"))),
        },
        other => Ok(other?),
    }
}

async fn agent_named(store: &Store, name: &str) -> ApiResult<Agent> {
    match store.agent_by_username(name).await {
        Err(StoreError::NotFound(_)) => match name.parse::<i64>() {
            Ok(id) => Ok(store.agent(AgentId(id)).await?),
            Err(_) => Err(ApiError::not_found(format!("no agent named {name:?}"))),
        },
        other => Ok(other?),
    }
}

/// Whether an agent can take an interaction now: online, not paused,
/// connected here, and under capacity (live offers not counted: a transfer
/// is not an offer).
fn eligibility(rt: Option<AgentRuntime>) -> Result<(), ApiError> {
    match rt {
        Some(rt) if rt.available && rt.owned < rt.capacity => Ok(()),
        Some(rt) if rt.available => Err(over_capacity()),
        _ => Err(ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "not_available",
            "the agent is not online, or is paused",
        )),
    }
}

fn over_capacity() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::CONFLICT,
        "over_capacity",
        "the agent already owns as many open interactions as their capacity allows",
    )
}

/// Transfer an interaction to a queue (owner cleared, unread, offered again;
/// the agent who passed it on is left out of the first round) or to an
/// agent who is online, not paused and under capacity (they get
/// `assigned{via:"transfer"}`).
#[utoipa::path(post, path = "/api/v1/interactions/{id}/transfer", tag = "interactions", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = TransferBody,
    responses((status = 200, body = InteractionView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "closed, changed meanwhile, not_available or over_capacity")))]
#[post("/interactions/{id}/transfer")]
pub async fn transfer(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<InteractionId>,
    body: web::Json<TransferBody>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let current = store.interaction(id.into_inner()).await?;
    check(store, &caller, &current, Act::Transfer).await?;
    if current.status != InteractionStatus::Open {
        return Err(ApiError::conflict(
            "the interaction is closed; reopen it first",
        ));
    }
    let target = match (&body.queue, &body.agent) {
        (Some(q), None) => TransferTarget::Queue(queue_named(store, q).await?.id),
        (None, Some(a)) => {
            let agent = agent_named(store, a).await?;
            if current.owner == Some(agent.id) {
                return Err(ApiError::bad_request("the interaction is already theirs"));
            }
            let routing = state.hub.routing();
            eligibility(routing.directory.get(&agent.id).map(|r| *r))?;
            TransferTarget::Agent(agent.id)
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `queue` (a queue's name) or `agent` (a username)",
            ));
        }
    };
    match store.transfer(current.id, current.version, target).await? {
        TransferOutcome::Moved {
            interaction,
            previous_owner,
            previous_queue,
            rescinded: _,
        } => {
            let view = interaction_view(store, &interaction).await?;
            let json = serde_json::to_value(&view).map_err(ApiError::internal)?;
            state.hub.routing().transferred(
                &state.hub,
                &interaction,
                previous_owner,
                previous_queue,
                json,
            );
            info!(agent = %caller.agent.id, interaction = %interaction.id, target = ?target, "transferred");
            Ok(HttpResponse::Ok().json(view))
        }
        TransferOutcome::OverCapacity => Err(over_capacity()),
        TransferOutcome::Changed(_) => Err(ApiError::conflict(
            "the interaction changed meanwhile (taken, moved or closed); reload it",
        )),
    }
}

/// Close an interaction (status `closed`). The owner's capacity frees at
/// once; a draft is deleted; live offers are withdrawn.
#[utoipa::path(post, path = "/api/v1/interactions/{id}/close", tag = "interactions", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = CloseBody,
    responses((status = 200, body = InteractionView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/interactions/{id}/close")]
pub async fn close(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<InteractionId>,
    body: Option<web::Json<CloseBody>>,
) -> ApiResult<HttpResponse> {
    let disposition = body.and_then(|b| b.into_inner().disposition);
    let view = close_interaction(&state, &caller, id.into_inner(), disposition).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Close an interaction as `caller` (the close endpoint, and "send and
/// close" after a reply): rights checked, the disposition required by the
/// queue enforced, then routing and the owner's sockets told.
pub async fn close_interaction(
    state: &AppState,
    caller: &Caller,
    id: InteractionId,
    disposition: Option<Vec<String>>,
) -> ApiResult<InteractionView> {
    let store = &state.store;
    let current = store.interaction(id).await?;
    check(store, caller, &current, Act::Close).await?;
    if current.status != InteractionStatus::Open {
        return Err(ApiError::conflict("the interaction is already closed"));
    }
    if let Some(path) = &disposition {
        let tree = store.list_dispositions().await?;
        check_disposition_path(&tree, path).map_err(ApiError::bad_request)?;
    } else if store.queue(current.queue).await?.disposition_required {
        // The owner may not take new work until they dispose of it: paused
        // with reason `disposition`, lifted by the close that names one.
        if current.owner == Some(caller.agent.id) {
            pause_for_disposition(state, caller.agent.id).await?;
        }
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "disposition_required",
            "this queue requires a disposition to close; you are paused until you close it with one",
        ));
    }
    // Closed without ever being accepted (an admin or supervisor closing
    // what nobody took): `closed_unmanaged`, for reporting.
    let status = match current.first_agent {
        None => InteractionStatus::ClosedUnmanaged,
        Some(_) => InteractionStatus::Closed,
    };
    let closed = store
        .close_interaction(current.id, status, disposition)
        .await?;
    let view = interaction_view(store, &closed).await?;
    let json = serde_json::to_value(&view).map_err(ApiError::internal)?;
    state.hub.routing().closed(&state.hub, &closed, json);
    if let Some(owner) = closed.owner {
        end_disposition_pause(state, owner).await?;
    }
    info!(agent = %caller.agent.id, interaction = %closed.id, status = %closed.status, "closed");
    Ok(view)
}

/// The reason of the pause a mandatory disposition imposes.
pub const DISPOSITION_PAUSE: &str = "disposition";

async fn pause_for_disposition(state: &AppState, agent: AgentId) -> ApiResult<()> {
    state
        .hub
        .set_availability(
            agent,
            Availability::Paused {
                reason: Some(DISPOSITION_PAUSE.into()),
            },
        )
        .await
        .map_err(ApiError::internal)
}

/// Lift a disposition pause once nothing the agent owns waits for one.
async fn end_disposition_pause(state: &AppState, agent: AgentId) -> ApiResult<()> {
    let wish = state
        .presence
        .availability(agent)
        .await
        .map_err(ApiError::internal)?;
    if wish
        == (Availability::Paused {
            reason: Some(DISPOSITION_PAUSE.into()),
        })
    {
        state
            .hub
            .set_availability(agent, Availability::Online)
            .await
            .map_err(ApiError::internal)?;
    }
    Ok(())
}

/// Reopen a closed interaction. A supervisor or admin sends it back to its
/// queue (unread, no owner); an agent who may see it takes it
/// (`assigned{via:"reopen"}`), within their capacity.
#[utoipa::path(post, path = "/api/v1/interactions/{id}/reopen", tag = "interactions", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = InteractionView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not closed, changed meanwhile, or over_capacity")))]
#[post("/interactions/{id}/reopen")]
pub async fn reopen(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<InteractionId>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let current = store.interaction(id.into_inner()).await?;
    check(store, &caller, &current, Act::Reopen).await?;
    if current.status == InteractionStatus::Open {
        return Err(ApiError::conflict("the interaction is open"));
    }
    let to = (!caller.agent.role.at_least(Role::Supervisor)).then_some(caller.agent.id);
    let reopened = match store.reopen(current.id, current.version, to).await? {
        ReopenOutcome::Reopened(i) => i,
        ReopenOutcome::OverCapacity => return Err(over_capacity()),
        ReopenOutcome::Changed(_) => {
            return Err(ApiError::conflict(
                "the interaction changed meanwhile; reload it",
            ));
        }
    };
    let routing = state.hub.routing();
    match reopened.owner {
        Some(owner) => {
            routing.owned_changed(owner, 1);
            state.hub.push(
                owner,
                ServerFrame::Assigned {
                    interaction_id: reopened.id,
                    via: AssignedVia::Reopen,
                },
            );
        }
        None => routing.enqueue_with(
            reopened.queue,
            reopened.id,
            Origin::Reopen,
            Some((reopened.priority, Utc::now())),
        ),
    }
    info!(agent = %caller.agent.id, interaction = %reopened.id, "reopened");
    Ok(HttpResponse::Ok().json(interaction_view(store, &reopened).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct TargetsQuery {
    /// Leave out this interaction's owner.
    pub interaction: Option<InteractionId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueTarget {
    pub id: QueueId,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentTarget {
    pub id: AgentId,
    pub username: String,
    pub name: String,
    pub owned: u32,
    pub capacity: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransferTargets {
    pub queues: Vec<QueueTarget>,
    /// Agents who can take an interaction now: online, not paused, under
    /// capacity; never the caller (nor the interaction's owner, if given).
    pub agents: Vec<AgentTarget>,
}

/// Where the caller can transfer to: every queue, and the eligible agents.
#[utoipa::path(get, path = "/api/v1/transfer-targets", tag = "interactions", security(("bearer" = [])),
    params(TargetsQuery), responses((status = 200, body = TransferTargets), (status = 404, body = ErrorBody)))]
#[get("/transfer-targets")]
pub async fn transfer_targets(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<TargetsQuery>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let owner = match query.interaction {
        Some(id) => store.interaction(id).await?.owner,
        None => None,
    };
    let queues = store
        .list_queues()
        .await?
        .into_iter()
        .map(|q| QueueTarget {
            id: q.id,
            name: q.name,
        })
        .collect();
    let directory = &state.hub.routing().directory;
    let agents = store
        .list_agents()
        .await?
        .into_iter()
        .filter(|a| a.id != caller.agent.id && Some(a.id) != owner)
        .filter_map(|a| {
            let rt = directory.get(&a.id).map(|r| *r)?;
            eligibility(Some(rt)).ok()?;
            Some(AgentTarget {
                id: a.id,
                username: a.username,
                name: a.name,
                owned: rt.owned,
                capacity: rt.capacity,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(TransferTargets { queues, agents }))
}
