//! Contacts: search, create, edit, merge, and a contact's journey (their
//! interactions across channels; email for now). Every role reads and edits
//! contacts; merging is for supervisors and admins. The journey lists only
//! what the caller may read (the list's rule, inside the query).

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::Deserialize;
use tracing::info;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Caller;
use super::interactions::{InteractionList, list_filter};
use super::state::AppState;
use super::views::interaction_views;
use crate::domain::{ContactId, Role};
use crate::store::Contact;
use crate::store::contacts::ContactSpec;

#[derive(OpenApi)]
#[openapi(paths(search, create, get_contact, update, remove, merge, journey))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(search)
        .service(create)
        .service(get_contact)
        .service(update)
        .service(remove)
        .service(merge)
        .service(journey);
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SearchQuery {
    /// Words of the names (prefixes, all of them), or the start of an address.
    pub q: Option<String>,
    /// 1 to 500, default 50.
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactBody {
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    pub emails: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeBody {
    /// The contact merged away (its interactions and addresses move here).
    pub from: ContactId,
}

#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts", security(("bearer" = [])),
    params(SearchQuery), responses((status = 200, body = [Contact])))]
#[get("/contacts")]
pub async fn search(
    state: web::Data<AppState>,
    _caller: Caller,
    query: web::Query<SearchQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.q.clone().unwrap_or_default();
    if q.chars().count() > 200 {
        return Err(ApiError::bad_request("q: at most 200 characters"));
    }
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("limit: 1 to 500"));
    }
    Ok(HttpResponse::Ok().json(state.store.search_contacts(&q, limit).await?))
}

#[utoipa::path(post, path = "/api/v1/contacts", tag = "contacts", security(("bearer" = [])),
    request_body = ContactBody,
    responses((status = 201, body = Contact), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/contacts")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<ContactBody>,
) -> ApiResult<HttpResponse> {
    let spec = ContactSpec::new(&body.first_name, &body.last_name, &body.emails)?;
    let contact = state.store.create_contact(spec).await?;
    info!(agent = %caller.agent.id, contact = %contact.id, "contact created");
    Ok(HttpResponse::Created().json(contact))
}

/// A contact; one merged into another answers as that other.
#[utoipa::path(get, path = "/api/v1/contacts/{id}", tag = "contacts", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Contact), (status = 404, body = ErrorBody)))]
#[get("/contacts/{id}")]
pub async fn get_contact(
    state: web::Data<AppState>,
    _caller: Caller,
    id: web::Path<ContactId>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.store.current_contact(id.into_inner()).await?))
}

/// Replace a contact's names and addresses (at least one address; an
/// address of another contact is a 409: merge them instead).
#[utoipa::path(put, path = "/api/v1/contacts/{id}", tag = "contacts", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ContactBody,
    responses((status = 200, body = Contact), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[put("/contacts/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<ContactId>,
    body: web::Json<ContactBody>,
) -> ApiResult<HttpResponse> {
    let spec = ContactSpec::new(&body.first_name, &body.last_name, &body.emails)?;
    let contact = state.store.update_contact(id.into_inner(), spec).await?;
    info!(agent = %caller.agent.id, contact = %contact.id, "contact updated");
    Ok(HttpResponse::Ok().json(contact))
}

/// Delete a contact with no interactions (one with interactions is a 409:
/// merge it instead). Supervisors and admins.
#[utoipa::path(delete, path = "/api/v1/contacts/{id}", tag = "contacts", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/contacts/{id}")]
pub async fn remove(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<ContactId>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Supervisor)?;
    let id = id.into_inner();
    state.store.delete_contact(id).await?;
    info!(agent = %caller.agent.id, contact = %id, "contact deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// Merge another contact into this one: its interactions and addresses move
/// here. Supervisors and admins.
#[utoipa::path(post, path = "/api/v1/contacts/{id}/merge", tag = "contacts", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = MergeBody,
    responses((status = 200, body = Contact), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/contacts/{id}/merge")]
pub async fn merge(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<ContactId>,
    body: web::Json<MergeBody>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Supervisor)?;
    let into = id.into_inner();
    let contact = state.store.merge_contacts(into, body.from).await?;
    info!(agent = %caller.agent.id, into = %into, from = %body.from, "contacts merged");
    Ok(HttpResponse::Ok().json(contact))
}

/// A contact's interactions, newest activity first: `channel` (only
/// `email` exists yet), `from`/`to` (creation time), `cursor`, `limit`.
#[utoipa::path(get, path = "/api/v1/contacts/{id}/journey", tag = "contacts", security(("bearer" = [])),
    params(("id" = String, Path),
        ("channel" = Option<String>, Query, description = "email (the only channel so far)"),
        ("from" = Option<String>, Query), ("to" = Option<String>, Query),
        ("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = InteractionList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/contacts/{id}/journey")]
pub async fn journey(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<ContactId>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let contact = state.store.current_contact(id.into_inner()).await?;
    // The list's own parameters, minus those a journey fixes; `channel` is
    // checked here: each channel will have its own source of interactions.
    let mut kept: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match k.as_ref() {
            "channel" if v == "email" => {}
            "channel" => {
                return Err(ApiError::bad_request(format!(
                    "channel: `{v}` (valid: email)"
                )));
            }
            "from" | "to" | "cursor" | "limit" | "token" => {
                kept.push((k.into_owned(), v.into_owned()))
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter `{other}` (valid: channel, from, to, cursor, limit)"
                )));
            }
        }
    }
    let mut query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .finish();
    query.push_str(if query.is_empty() {
        "scope=all"
    } else {
        "&scope=all"
    });
    let mut filter = list_filter(&query, &caller)?;
    filter.contact = Some(contact.id);
    let page = state.store.list_interactions(filter).await?;
    Ok(HttpResponse::Ok().json(InteractionList {
        items: interaction_views(&state.store, &page.items).await?,
        next_cursor: page.next_cursor.map(|c| c.encode()),
    }))
}
