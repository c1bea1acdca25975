//! The WebSocket endpoint `GET /ws?token=TOKEN`: authenticate, then hand the
//! socket to a [`session::WsSession`] actor bound to the agent's actor.

pub mod protocol;
pub mod session;

use actix_web::{HttpRequest, HttpResponse, get, web};

use super::error::ApiError;
use super::extract::{authenticate, request_token};
use super::state::AppState;
use crate::actors::agent::AgentIdentity;

/// Open an agent session. The token is checked before the upgrade: a
/// missing, expired or revoked token gets 401 and no socket.
#[get("/ws")]
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&state, request_token(&req)).await?;
    let (response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::bad_request(format!("not a WebSocket upgrade: {e}")))?;
    let identity = AgentIdentity {
        id: caller.agent.id,
        username: caller.agent.username.clone(),
        name: caller.agent.name.clone(),
        role: caller.agent.role,
        capacity: caller.agent.capacity,
    };
    let agent = state.hub.get_or_start(&identity);
    session::WsSession::start(
        state.hub.next_session_key(),
        identity,
        caller.token_hash,
        caller.expires_at,
        agent,
        state.hub.routing().clone(),
        state.settings.ws.heartbeat,
        state.settings.ws.send_buffer,
        session,
        stream,
    );
    Ok(response)
}
