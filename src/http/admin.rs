//! The admin API: agents, queues and accounts (the same entities the config
//! provisions). Admin role only. Passwords are write-only: no answer ever
//! contains a password or a hash.
//!
//! Bodies use the same keys as the config file's `[[agents]]`, `[[queues]]`
//! and `[[accounts]]` tables and go through the same reader, so a body gets
//! every problem reported at once, each with its key.

use actix_web::{HttpResponse, delete, get, post, put, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Caller;
use super::state::AppState;
use crate::actors::agent::CloseCode;
use crate::auth;
use crate::config;
use crate::domain::{AgentId, EmailAddress, QueueId, Role};
use crate::presence::PresenceState;
use crate::secret::Secret;
use crate::store::{Account, Agent, AgentPatch, Queue};

// ---- agents ---------------------------------------------------------------

/// List agents.
#[utoipa::path(get, path = "/api/v1/agents", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = [Agent]), (status = 403, body = ErrorBody)))]
#[get("/agents")]
pub async fn list_agents(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    Ok(HttpResponse::Ok().json(state.store.list_agents().await?))
}

/// Create an agent. Body: the keys of a config `[[agents]]` table
/// (`username`, `password` or `password_hash`, `name`, `email`, `role`, `capacity`).
#[utoipa::path(post, path = "/api/v1/agents", tag = "admin", security(("bearer" = [])),
    request_body(content = Object, description = "as a config [[agents]] table"),
    responses((status = 201, body = Agent), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/agents")]
pub async fn create_agent(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<Value>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let cfg = config::parse_agent(&body)?;
    let spec = crate::provision::agent_spec(cfg)
        .await
        .map_err(ApiError::internal)?;
    let agent = state.store.create_agent(spec).await?;
    info!(admin = %caller.agent.id, agent = %agent.id, "agent created");
    Ok(HttpResponse::Created().json(agent))
}

#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Agent), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/agents/{id}")]
pub async fn get_agent(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<AgentId>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    Ok(HttpResponse::Ok().json(state.store.agent(id.into_inner()).await?))
}

/// A partial update of an agent; absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentUpdate {
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, with = "serde_with_null")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    pub role: Option<Role>,
    pub capacity: Option<u32>,
    /// Write-only.
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<Secret>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
mod serde_with_null {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[utoipa::path(put, path = "/api/v1/agents/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = AgentUpdate,
    responses((status = 200, body = Agent), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[put("/agents/{id}")]
pub async fn update_agent(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<AgentId>,
    body: web::Json<AgentUpdate>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let AgentUpdate {
        name,
        email,
        role,
        capacity,
        password,
    } = body.into_inner();
    let email = match email {
        Some(Some(e)) => Some(Some(
            EmailAddress::parse(&e)
                .map_err(|e| ApiError::bad_request(format!("email: {e}")))?
                .to_string(),
        )),
        other => other.map(|_| None),
    };
    if let Some(n) = &name
        && n.trim().is_empty()
    {
        return Err(ApiError::bad_request("name: cannot be empty"));
    }
    let password_hash = match password {
        Some(p) if p.is_empty() => return Err(ApiError::bad_request("password: cannot be empty")),
        Some(p) => Some(
            auth::hash_password_blocking(p)
                .await
                .map_err(ApiError::internal)?,
        ),
        None => None,
    };
    let changed_password = password_hash.is_some();
    let id = id.into_inner();
    let agent = state
        .store
        .update_agent(
            id,
            AgentPatch {
                name,
                email,
                role,
                capacity,
                password_hash,
            },
        )
        .await?;
    if changed_password {
        // A new password ends the agent's other sessions.
        state.store.revoke_agent_sessions(id).await?;
        state
            .hub
            .kick(id, None, CloseCode::Unauthorized, "password changed");
    }
    info!(admin = %caller.agent.id, agent = %id, "agent updated");
    Ok(HttpResponse::Ok().json(agent))
}

#[utoipa::path(delete, path = "/api/v1/agents/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/agents/{id}")]
pub async fn delete_agent(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<AgentId>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let id = id.into_inner();
    if id == caller.agent.id {
        return Err(ApiError::conflict("you cannot delete yourself"));
    }
    state.store.delete_agent(id).await?;
    state
        .hub
        .kick(id, None, CloseCode::Unauthorized, "agent deleted");
    info!(admin = %caller.agent.id, agent = %id, "agent deleted");
    Ok(HttpResponse::NoContent().finish())
}

// ---- queues ---------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/queues", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = [Queue]), (status = 403, body = ErrorBody)))]
#[get("/queues")]
pub async fn list_queues(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    Ok(HttpResponse::Ok().json(state.store.list_queues().await?))
}

/// Create a queue. Body: the keys of a config `[[queues]]` table.
#[utoipa::path(post, path = "/api/v1/queues", tag = "admin", security(("bearer" = [])),
    request_body(content = Object, description = "as a config [[queues]] table"),
    responses((status = 201, body = Queue), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/queues")]
pub async fn create_queue(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<Value>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let spec = config::parse_queue(&body)?;
    let queue = state.store.create_queue(spec).await?;
    state
        .hub
        .routing()
        .start_queue(
            &state.store,
            &state.hub,
            queue.clone(),
            &state.queue_arbiter,
        )
        .await?;
    info!(admin = %caller.agent.id, queue = %queue.id, "queue created");
    Ok(HttpResponse::Created().json(queue))
}

#[utoipa::path(get, path = "/api/v1/queues/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Queue), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/queues/{id}")]
pub async fn get_queue(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<QueueId>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    Ok(HttpResponse::Ok().json(state.store.queue(id.into_inner()).await?))
}

/// Replace a queue's settings and members. Body: a whole `[[queues]]` table.
#[utoipa::path(put, path = "/api/v1/queues/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)), request_body(content = Object, description = "as a config [[queues]] table"),
    responses((status = 200, body = Queue), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[put("/queues/{id}")]
pub async fn update_queue(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<QueueId>,
    body: web::Json<Value>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let spec = config::parse_queue(&body)?;
    let queue = state.store.update_queue(id.into_inner(), spec).await?;
    // New members, strategy or timeouts take effect now: restart the actor
    // (its live offers are cancelled and the waiting list re-read).
    state
        .hub
        .routing()
        .start_queue(
            &state.store,
            &state.hub,
            queue.clone(),
            &state.queue_arbiter,
        )
        .await?;
    info!(admin = %caller.agent.id, queue = %queue.id, "queue updated");
    Ok(HttpResponse::Ok().json(queue))
}

#[utoipa::path(delete, path = "/api/v1/queues/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/queues/{id}")]
pub async fn delete_queue(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<QueueId>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let id = id.into_inner();
    state.store.delete_queue(id).await?;
    state.hub.routing().stop_queue(id);
    Ok(HttpResponse::NoContent().finish())
}

// ---- accounts -------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/accounts", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = [Account]), (status = 403, body = ErrorBody)))]
#[get("/accounts")]
pub async fn list_accounts(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    Ok(HttpResponse::Ok().json(state.store.list_accounts().await?))
}

/// Create an account. Body: the keys of a config `[[accounts]]` table;
/// passwords are write-only.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "admin", security(("bearer" = [])),
    request_body(content = Object, description = "as a config [[accounts]] table"),
    responses((status = 201, body = Account), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/accounts")]
pub async fn create_account(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<Value>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let spec = config::parse_account(&body)?;
    let account = state.store.create_account(spec).await?;
    // Persisted first; the mailbox starts from the stored account.
    state.mailboxes.start(account.clone());
    state.senders.start(account.clone());
    info!(admin = %caller.agent.id, account = %account.key, "account created");
    Ok(HttpResponse::Created().json(account))
}

#[utoipa::path(get, path = "/api/v1/accounts/{key}", tag = "admin", security(("bearer" = [])),
    params(("key" = String, Path)),
    responses((status = 200, body = Account), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/accounts/{key}")]
pub async fn get_account(
    state: web::Data<AppState>,
    caller: Caller,
    key: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    Ok(HttpResponse::Ok().json(
        state
            .store
            .account_by_key(&key.to_ascii_uppercase())
            .await?,
    ))
}

/// Replace an account's settings. Absent passwords keep the stored ones.
#[utoipa::path(put, path = "/api/v1/accounts/{key}", tag = "admin", security(("bearer" = [])),
    params(("key" = String, Path)), request_body(content = Object, description = "as a config [[accounts]] table"),
    responses((status = 200, body = Account), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[put("/accounts/{key}")]
pub async fn update_account(
    state: web::Data<AppState>,
    caller: Caller,
    key: web::Path<String>,
    body: web::Json<Value>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let key = key.to_ascii_uppercase();
    let mut body = body.into_inner();
    if let Value::Object(map) = &mut body {
        match map.get("key").and_then(Value::as_str) {
            None => {
                map.insert("key".into(), Value::from(key.clone()));
            }
            Some(k) if k.eq_ignore_ascii_case(&key) => {}
            Some(_) => return Err(ApiError::bad_request("key: an account's key cannot change")),
        }
    }
    let spec = config::parse_account(&body)?;
    let existing = state.store.account_by_key(&key).await?;
    let account = state.store.update_account(existing.id, spec).await?;
    // A changed server, folder or password takes effect now: restart.
    state.mailboxes.start(account.clone());
    state.senders.start(account.clone());
    info!(admin = %caller.agent.id, account = %account.key, "account updated");
    Ok(HttpResponse::Ok().json(account))
}

#[utoipa::path(delete, path = "/api/v1/accounts/{key}", tag = "admin", security(("bearer" = [])),
    params(("key" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/accounts/{key}")]
pub async fn delete_account(
    state: web::Data<AppState>,
    caller: Caller,
    key: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let existing = state
        .store
        .account_by_key(&key.to_ascii_uppercase())
        .await?;
    state.store.delete_account(existing.id).await?;
    state.mailboxes.stop(existing.id);
    state.senders.stop(existing.id);
    info!(admin = %caller.agent.id, account = %existing.key, "account deleted");
    Ok(HttpResponse::NoContent().finish())
}

// ---- presence -------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct AgentPresence {
    pub agent: super::auth::AgentSummary,
    pub presence: PresenceState,
}

/// Every agent's presence (supervisors and admins).
#[utoipa::path(get, path = "/api/v1/presence", tag = "supervisor", security(("bearer" = [])),
    responses((status = 200, body = [AgentPresence]), (status = 403, body = ErrorBody)))]
#[get("/presence")]
pub async fn list_presence(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    caller.require(Role::Supervisor)?;
    let agents = state.store.list_agents().await?;
    let ids: Vec<AgentId> = agents.iter().map(|a| a.id).collect();
    let states = state
        .presence
        .get_many(&ids)
        .await
        .map_err(ApiError::internal)?;
    let out: Vec<AgentPresence> = agents
        .into_iter()
        .zip(states)
        .map(|(a, presence)| AgentPresence {
            agent: super::auth::AgentSummary {
                id: a.id,
                username: a.username,
                name: a.name,
                role: a.role,
            },
            presence,
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}
