//! `Caller`: the authenticated agent behind a request. Every handler under
//! `/api/v1` (but login and the OpenAPI document) takes one, so a route
//! cannot forget authentication; role checks are one call (`caller.require`).

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, web};
use chrono::{DateTime, Utc};

use super::error::ApiError;
use super::state::AppState;
use crate::auth;
use crate::domain::Role;
use crate::store::{Agent, StoreError};

#[derive(Debug, Clone)]
pub struct Caller {
    pub agent: Agent,
    pub token_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

impl Caller {
    /// 403 unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.agent.role.at_least(role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this needs the {role} role")))
        }
    }
}

/// The token of a request: `Authorization: Bearer …`, else `?token=` (for
/// WebSockets and downloads opened by a browser, which cannot set headers).
pub fn request_token(req: &HttpRequest) -> Option<String> {
    if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION)
        && let Ok(text) = value.to_str()
    {
        let mut parts = text.splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (parts.next(), parts.next())
            && scheme.eq_ignore_ascii_case("bearer")
        {
            return Some(token.trim().to_string());
        }
    }
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("token").cloned())
}

/// Look a token up in the store: the session must exist, be unexpired and
/// unrevoked, and its agent not deleted.
pub async fn authenticate(state: &AppState, token: Option<String>) -> Result<Caller, ApiError> {
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    let hash = auth::token_hash(&token);
    match state.store.session(&hash, Utc::now()).await {
        Ok(session) => Ok(Caller {
            agent: session.agent,
            token_hash: hash,
            expires_at: session.expires_at,
        }),
        Err(StoreError::NotFound(_)) => {
            Err(ApiError::unauthorized("invalid, expired or revoked token"))
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = request_token(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("app state missing"))?;
            authenticate(&state, token).await
        })
    }
}
