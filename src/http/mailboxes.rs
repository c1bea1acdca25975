//! The live state of each account's mailbox, and its quarantine.
//!
//! - `GET /api/v1/accounts/{key}/status` (supervisors and admins)
//! - `GET /api/v1/accounts/{key}/quarantine` (admins): mail that could not be
//!   ingested, kept raw;
//! - `GET /api/v1/accounts/{key}/quarantine/{id}/raw`: the raw bytes (`.eml`);
//! - `POST /api/v1/accounts/{key}/quarantine/{id}/retry`: parse and ingest
//!   again (e.g. after an upgrade fixed the parser); resolved on success;
//! - `DELETE /api/v1/accounts/{key}/quarantine/{id}`: resolve without ingesting.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Caller;
use super::state::AppState;
use crate::actors::mailbox::MailboxStatus;
use crate::domain::Role;
use crate::domain::threading::reply_refs;
use crate::mail::parse::parse;
use crate::store::{IngestMail, IngestOutcome, QuarantineEntry};

#[derive(Serialize, ToSchema)]
pub struct AccountStatus {
    pub key: String,
    pub address: String,
    /// Absent when the account's mailbox is not running on this node.
    pub mailbox: Option<MailboxStatus>,
}

/// The live state of an account's mailbox: connected, idle, backing off,
/// last error, last mail, watermark.
#[utoipa::path(get, path = "/api/v1/accounts/{key}/status", tag = "supervisor", security(("bearer" = [])),
    params(("key" = String, Path)),
    responses((status = 200, body = AccountStatus), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/accounts/{key}/status")]
pub async fn status(
    state: web::Data<AppState>,
    caller: Caller,
    key: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Supervisor)?;
    let account = state
        .store
        .account_by_key(&key.to_ascii_uppercase())
        .await?;
    let mailbox = state.mailboxes.status(account.id);
    Ok(HttpResponse::Ok().json(AccountStatus {
        key: account.key,
        address: account.address,
        mailbox,
    }))
}

#[utoipa::path(get, path = "/api/v1/accounts/{key}/quarantine", tag = "admin", security(("bearer" = [])),
    params(("key" = String, Path)),
    responses((status = 200, body = [QuarantineEntry]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/accounts/{key}/quarantine")]
pub async fn list_quarantine(
    state: web::Data<AppState>,
    caller: Caller,
    key: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let account = state
        .store
        .account_by_key(&key.to_ascii_uppercase())
        .await?;
    Ok(HttpResponse::Ok().json(state.store.list_quarantine(account.id).await?))
}

#[utoipa::path(get, path = "/api/v1/accounts/{key}/quarantine/{id}/raw", tag = "admin", security(("bearer" = [])),
    params(("key" = String, Path), ("id" = String, Path)),
    responses((status = 200, content_type = "message/rfc822"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/accounts/{key}/quarantine/{id}/raw")]
pub async fn quarantine_raw(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, i64)>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let (key, id) = path.into_inner();
    let account = state
        .store
        .account_by_key(&key.to_ascii_uppercase())
        .await?;
    let raw = state.store.quarantine_raw(account.id, id).await?;
    Ok(HttpResponse::Ok()
        .content_type("message/rfc822")
        .insert_header((
            "Content-Disposition",
            format!(
                "attachment; filename=\"{}-quarantine-{id}.eml\"",
                account.key
            ),
        ))
        .body(raw))
}

#[derive(Serialize, ToSchema)]
pub struct RetryResult {
    /// `created`, `appended`, `continued`, `duplicate` or `bounced`.
    pub outcome: String,
    pub interaction: Option<String>,
}

/// Parse and ingest a quarantined mail again; on success it is resolved.
#[utoipa::path(post, path = "/api/v1/accounts/{key}/quarantine/{id}/retry", tag = "admin", security(("bearer" = [])),
    params(("key" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = RetryResult), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/accounts/{key}/quarantine/{id}/retry")]
pub async fn retry_quarantine(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, i64)>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let (key, id) = path.into_inner();
    let account = state
        .store
        .account_by_key(&key.to_ascii_uppercase())
        .await?;
    let raw = state.store.quarantine_raw(account.id, id).await?;
    let parsed = parse(&raw)
        .map_err(|e| ApiError::bad_request(format!("the mail still does not parse: {e}")))?;
    let refs = reply_refs(&parsed, &state.signer, &account.key);
    let outcome = state
        .store
        .ingest_mail(IngestMail {
            account: account.id,
            account_key: account.key.clone(),
            queue: account.queue_id,
            position: None,
            internal_date: None,
            raw,
            parsed,
            refs,
        })
        .await?;
    state.store.resolve_quarantine(account.id, id).await?;
    let (label, interaction) = match &outcome {
        IngestOutcome::Duplicate { .. } => ("duplicate", None),
        IngestOutcome::Created { interaction, .. } => ("created", Some(interaction.id)),
        IngestOutcome::Appended { interaction, .. } => ("appended", Some(interaction.id)),
        IngestOutcome::Continued { interaction, .. } => ("continued", Some(interaction.id)),
        IngestOutcome::Bounced { interaction, .. } => {
            ("bounced", interaction.as_ref().map(|i| i.id))
        }
    };
    Ok(HttpResponse::Ok().json(RetryResult {
        outcome: label.into(),
        interaction: interaction.map(|i| i.to_string()),
    }))
}

#[utoipa::path(delete, path = "/api/v1/accounts/{key}/quarantine/{id}", tag = "admin", security(("bearer" = [])),
    params(("key" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/accounts/{key}/quarantine/{id}")]
pub async fn delete_quarantine(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, i64)>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let (key, id) = path.into_inner();
    let account = state
        .store
        .account_by_key(&key.to_ascii_uppercase())
        .await?;
    state.store.resolve_quarantine(account.id, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
