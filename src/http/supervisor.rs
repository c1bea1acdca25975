//! What supervisors (and admins) see and do live: each queue's status, each
//! agent's presence, load and idle time, and force-pause, resume and logout
//! of an agent.

use std::collections::HashMap;

use actix_web::{HttpResponse, get, post, web};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tracing::info;
use utoipa::ToSchema;

use super::auth::AgentSummary;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Caller;
use super::state::AppState;
use crate::actors::agent::CloseCode;
use crate::domain::{AgentId, PresenceStatus, QueueId, Role};
use crate::presence::{Availability, PresenceState};

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct AgentCounts {
    pub members: usize,
    /// Online and offerable: not paused, connected, under capacity.
    pub online: usize,
    pub paused: usize,
    /// Online and not paused, but owning as many open interactions as their
    /// capacity allows.
    pub full: usize,
    pub offline: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueStatus {
    pub id: QueueId,
    pub name: String,
    pub strategy: String,
    /// In the queue with no offer out.
    pub waiting: usize,
    /// In the queue with at least one live offer.
    pub offered: usize,
    /// How long the oldest interaction in the queue has been there.
    pub oldest_wait_secs: Option<f64>,
    pub agents: AgentCounts,
}

#[derive(Serialize, ToSchema)]
pub struct AgentStatus {
    pub agent: AgentSummary,
    pub presence: PresenceState,
    pub owned: u32,
    pub capacity: u32,
    /// Seconds since the agent last became available or last got an
    /// interaction, while online and not paused; otherwise null.
    pub idle_secs: Option<f64>,
    /// The queues the agent is a member of (names).
    pub queues: Vec<String>,
}

/// Presence of the given agents, by id.
async fn presences(
    state: &AppState,
    ids: &[AgentId],
) -> ApiResult<HashMap<AgentId, PresenceState>> {
    let states = state
        .presence
        .get_many(ids)
        .await
        .map_err(ApiError::internal)?;
    Ok(ids.iter().copied().zip(states).collect())
}

/// Every queue: waiting, offered, and its members online, paused, full and
/// offline.
#[utoipa::path(get, path = "/api/v1/supervisor/queues", tag = "supervisor", security(("bearer" = [])),
    responses((status = 200, body = [QueueStatus]), (status = 403, body = ErrorBody)))]
#[get("/supervisor/queues")]
pub async fn queue_status(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    caller.require(Role::Supervisor)?;
    let queues = state.store.list_queues().await?;
    let agents = state.store.list_agents().await?;
    let ids: Vec<AgentId> = agents.iter().map(|a| a.id).collect();
    let presence = presences(&state, &ids).await?;
    let by_name: HashMap<&str, AgentId> =
        agents.iter().map(|a| (a.username.as_str(), a.id)).collect();
    let routing = state.hub.routing();
    let mut out = Vec::with_capacity(queues.len());
    for q in queues {
        let snapshot = routing.snapshot(q.id).await.unwrap_or_default();
        let mut counts = AgentCounts::default();
        for member in q.agents.iter().filter_map(|u| by_name.get(u.as_str())) {
            counts.members += 1;
            let rt = routing.directory.get(member).map(|r| *r);
            match presence.get(member).map(|p| p.status) {
                Some(PresenceStatus::Paused) => counts.paused += 1,
                Some(PresenceStatus::Online) => match rt {
                    Some(rt) if rt.owned >= rt.capacity => counts.full += 1,
                    _ => counts.online += 1,
                },
                _ => counts.offline += 1,
            }
        }
        out.push(QueueStatus {
            id: q.id,
            name: q.name,
            strategy: q.strategy.to_string(),
            waiting: snapshot.waiting,
            offered: snapshot.offered,
            oldest_wait_secs: snapshot.oldest_wait_secs,
            agents: counts,
        });
    }
    Ok(HttpResponse::Ok().json(out))
}

/// Every agent: presence, open interactions owned, capacity, idle time and
/// queues.
#[utoipa::path(get, path = "/api/v1/supervisor/agents", tag = "supervisor", security(("bearer" = [])),
    responses((status = 200, body = [AgentStatus]), (status = 403, body = ErrorBody)))]
#[get("/supervisor/agents")]
pub async fn agent_status(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    caller.require(Role::Supervisor)?;
    let agents = state.store.list_agents().await?;
    let queues = state.store.list_queues().await?;
    let ids: Vec<AgentId> = agents.iter().map(|a| a.id).collect();
    let mut presence = presences(&state, &ids).await?;
    // Owned counts from the store: the directory only knows agents this node
    // has seen, and this view must be right for all of them.
    let owned = state.store.owned_open_counts().await?;
    let now_ms = Utc::now().timestamp_millis();
    let routing = state.hub.routing();
    let out: Vec<AgentStatus> = agents
        .into_iter()
        .map(|a| {
            let rt = routing.directory.get(&a.id).map(|r| *r);
            let p = presence.remove(&a.id).unwrap_or(PresenceState {
                status: PresenceStatus::Offline,
                reason: None,
                since: None,
                nodes: Vec::new(),
            });
            let idle_secs = match (p.status, rt) {
                (PresenceStatus::Online, Some(rt)) if rt.available => {
                    Some((now_ms - rt.idle_since_ms).max(0) as f64 / 1000.0)
                }
                _ => None,
            };
            AgentStatus {
                queues: queues
                    .iter()
                    .filter(|q| q.agents.contains(&a.username))
                    .map(|q| q.name.clone())
                    .collect(),
                owned: owned.get(&a.id).copied().unwrap_or(0),
                capacity: a.capacity,
                idle_secs,
                presence: p,
                agent: AgentSummary {
                    id: a.id,
                    username: a.username,
                    name: a.name,
                    role: a.role,
                },
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseBody {
    pub reason: Option<String>,
}

/// Pause an agent (their live offers are cancelled and passed on; they keep
/// what they own). Holds across reconnects until they or a supervisor resume.
#[utoipa::path(post, path = "/api/v1/agents/{id}/pause", tag = "supervisor", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = PauseBody,
    responses((status = 200, body = PresenceState), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/agents/{id}/pause")]
pub async fn pause(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<AgentId>,
    body: Option<web::Json<PauseBody>>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Supervisor)?;
    let agent = state.store.agent(id.into_inner()).await?;
    let reason = body
        .and_then(|b| b.into_inner().reason)
        .unwrap_or_else(|| format!("paused by {}", caller.agent.username));
    set(
        &state,
        agent.id,
        Availability::Paused {
            reason: Some(reason),
        },
    )
    .await?;
    info!(supervisor = %caller.agent.id, agent = %agent.id, "agent paused by a supervisor");
    Ok(HttpResponse::Ok().json(
        state
            .presence
            .get(agent.id)
            .await
            .map_err(ApiError::internal)?,
    ))
}

/// Make a paused agent available again.
#[utoipa::path(post, path = "/api/v1/agents/{id}/resume", tag = "supervisor", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = PresenceState), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/agents/{id}/resume")]
pub async fn resume(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<AgentId>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Supervisor)?;
    let agent = state.store.agent(id.into_inner()).await?;
    set(&state, agent.id, Availability::Online).await?;
    info!(supervisor = %caller.agent.id, agent = %agent.id, "agent resumed by a supervisor");
    Ok(HttpResponse::Ok().json(
        state
            .presence
            .get(agent.id)
            .await
            .map_err(ApiError::internal)?,
    ))
}

async fn set(state: &AppState, agent: AgentId, wish: Availability) -> ApiResult<()> {
    state
        .hub
        .set_availability(agent, wish)
        .await
        .map_err(ApiError::internal)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoggedOut {
    /// Sessions (tokens) revoked.
    pub sessions: u64,
}

/// Log an agent out everywhere: every token revoked, every socket closed
/// (4001); their live offers are cancelled and passed on.
#[utoipa::path(post, path = "/api/v1/agents/{id}/logout", tag = "supervisor", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = LoggedOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/agents/{id}/logout")]
pub async fn logout(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<AgentId>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Supervisor)?;
    let agent = state.store.agent(id.into_inner()).await?;
    if agent.role.at_least(Role::Supervisor) && !caller.agent.role.at_least(Role::Admin) {
        return Err(ApiError::forbidden(
            "only an admin may log out a supervisor or an admin",
        ));
    }
    let sessions = state.store.revoke_agent_sessions(agent.id).await?;
    state.hub.kick(
        agent.id,
        None,
        CloseCode::Unauthorized,
        "logged out by a supervisor",
    );
    info!(supervisor = %caller.agent.id, agent = %agent.id, sessions, "agent logged out by a supervisor");
    Ok(HttpResponse::Ok().json(LoggedOut { sessions }))
}
