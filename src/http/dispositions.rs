//! The disposition tree: everyone reads it (agents pick from it when they
//! close), admins change it.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::Deserialize;
use tracing::info;
use utoipa::{OpenApi, ToSchema};

use super::error::{ApiResult, ErrorBody};
use super::extract::Caller;
use super::state::AppState;
use crate::domain::{DispositionId, Role};
use crate::store::Disposition;

#[derive(OpenApi)]
#[openapi(paths(list, create, remove))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(create).service(remove);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDisposition {
    pub name: String,
    /// The parent node's id; a root when absent.
    pub parent: Option<DispositionId>,
}

/// Every node, parents before children. A close names a path of names from
/// a root to a leaf, e.g. `["Sales", "Won"]`.
#[utoipa::path(get, path = "/api/v1/dispositions", tag = "interactions", security(("bearer" = [])),
    responses((status = 200, body = [Disposition])))]
#[get("/dispositions")]
pub async fn list(state: web::Data<AppState>, _caller: Caller) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.store.list_dispositions().await?))
}

#[utoipa::path(post, path = "/api/v1/dispositions", tag = "admin", security(("bearer" = [])),
    request_body = NewDisposition,
    responses((status = 201, body = Disposition), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/dispositions")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<NewDisposition>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let node = state
        .store
        .create_disposition(&body.name, body.parent)
        .await?;
    info!(admin = %caller.agent.id, disposition = %node.id, "disposition created");
    Ok(HttpResponse::Created().json(node))
}

/// Remove a node and everything under it. Closed interactions keep the
/// path they were closed with.
#[utoipa::path(delete, path = "/api/v1/dispositions/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/dispositions/{id}")]
pub async fn remove(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<DispositionId>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    state.store.delete_disposition(id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
