//! Login, logout and "who am I".

use actix_web::{HttpResponse, get, post, web};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tracing::info;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Caller;
use super::state::AppState;
use crate::actors::agent::CloseCode;
use crate::auth;
use crate::domain::{AgentId, Role};
use crate::presence::PresenceState;
use crate::secret::Secret;
use crate::store::StoreError;

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    #[schema(value_type = String, format = Password)]
    pub password: Secret,
}

/// The public face of an agent, as login returns it.
#[derive(Serialize, ToSchema)]
pub struct AgentSummary {
    pub id: AgentId,
    pub username: String,
    pub name: String,
    pub role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer TOKEN`, or `/ws?token=TOKEN`.
    pub token: String,
    pub expires_at: chrono::DateTime<Utc>,
    pub agent: AgentSummary,
}

/// Exchange a username and password for a token.
#[utoipa::path(post, path = "/api/v1/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody)))]
#[post("/login")]
pub async fn login(
    state: web::Data<AppState>,
    body: web::Json<LoginRequest>,
) -> ApiResult<HttpResponse> {
    let LoginRequest { username, password } = body.into_inner();
    let found = state.store.agent_credentials(username.trim()).await;
    let (agent, phc) = match found {
        Ok((agent, phc)) => (Some(agent), phc),
        Err(StoreError::NotFound(_)) => (None, auth::dummy_hash().to_string()),
        Err(e) => return Err(ApiError::internal(e)),
    };
    // Verify even for unknown users (against a dummy hash): same cost, so
    // timing does not reveal which usernames exist.
    let ok = auth::verify_password_blocking(password, phc)
        .await
        .map_err(ApiError::internal)?;
    let Some(agent) = agent.filter(|_| ok) else {
        metrics::counter!(crate::metrics::LOGINS, "outcome" => "bad_credentials").increment(1);
        return Err(ApiError::unauthorized("wrong username or password"));
    };
    let (token, hash) = auth::new_token();
    let ttl =
        chrono::Duration::from_std(state.settings.auth.token_ttl).map_err(ApiError::internal)?;
    let expires_at = Utc::now() + ttl;
    state
        .store
        .create_session(&hash, agent.id, expires_at)
        .await?;
    metrics::counter!(crate::metrics::LOGINS, "outcome" => "ok").increment(1);
    info!(agent = %agent.id, username = %agent.username, "login");
    Ok(HttpResponse::Ok().json(LoginResponse {
        token: token.expose().to_string(),
        expires_at,
        agent: AgentSummary {
            id: agent.id,
            username: agent.username,
            name: agent.name,
            role: agent.role,
        },
    }))
}

/// Revoke the caller's token and close the sockets opened with it.
#[utoipa::path(post, path = "/api/v1/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
#[post("/logout")]
pub async fn logout(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    state.store.revoke_session(&caller.token_hash).await?;
    state.hub.kick(
        caller.agent.id,
        Some(caller.token_hash.clone()),
        CloseCode::Unauthorized,
        "logged out",
    );
    info!(agent = %caller.agent.id, "logout");
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    #[serde(flatten)]
    pub agent: crate::store::Agent,
    pub presence: PresenceState,
}

/// The caller, with their presence.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
#[get("/me")]
pub async fn me(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    let presence = state
        .presence
        .get(caller.agent.id)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(Me {
        agent: caller.agent,
        presence,
    }))
}
