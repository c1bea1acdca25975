//! `/health` (the process answers), `/ready` (its dependencies answer) and
//! `/metrics` (Prometheus text).

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use super::state::AppState;

/// Liveness: 200 while the process serves HTTP.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "alive", example = json!({"status": "ok"}))))]
#[get("/health")]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: 200 when the store (and Redis, if configured) answer, else 503.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, description = "ready"), (status = 503, description = "a dependency is down")))]
#[get("/ready")]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.ping().await;
    let presence = state.presence.ping().await;
    let body = json!({
        "status": if store.is_ok() && presence.is_ok() { "ok" } else { "unavailable" },
        "store": { "backend": state.store.backend(), "ok": store.is_ok() },
        "presence": { "backend": state.presence.backend(), "ok": presence.is_ok() },
    });
    if let Err(e) = &store {
        tracing::warn!(error = %e, "readiness: store unavailable");
    }
    if let Err(e) = &presence {
        tracing::warn!(error = %e, "readiness: presence unavailable");
    }
    if store.is_ok() && presence.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics; every name starts with `mailroom_`.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
