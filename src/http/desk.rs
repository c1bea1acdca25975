//! The agent's desk (issue #5, DESIGN.md "Working an interaction"): drafts,
//! internal notes, tags, sub-status and unread — everything done with an
//! interaction besides sending mail, transferring and closing. The rules
//! live in the store (`store/work.rs`); this module checks who may act
//! (`access::check`), shapes the answers, and tells the owner's sockets
//! after the store committed (invariant 3). docs/working.md is the
//! integrator's guide.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, delete, get, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use tracing::info;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::access::{Act, check};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Caller;
use super::interactions::message_view;
use super::state::AppState;
use super::views::{InteractionView, interaction_view};
use super::ws::protocol::ServerFrame;
use crate::domain::{AttachmentId, InteractionId, MessageId, Role};
use crate::mail::Mailbox;
use crate::store::{
    Draft, DraftContent, DraftListing, DraftMode, DraftOutcome, DraftSave, Interaction, NewNote,
    StoreError, Substatus, Tag,
};

/// This module's part of the OpenAPI document (merged in `openapi.rs`).
#[derive(OpenApi)]
#[openapi(paths(
    get_draft,
    put_draft,
    delete_draft,
    my_drafts,
    add_note,
    list_tags,
    create_tag,
    delete_tag,
    set_tags,
    list_substatuses,
    create_substatus,
    delete_substatus,
    set_substatus,
    mark_unread
))]
pub struct Doc;

/// Register this module's routes (under `/api/v1`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_draft)
        .service(put_draft)
        .service(delete_draft)
        .service(my_drafts)
        .service(add_note)
        .service(list_tags)
        .service(create_tag)
        .service(delete_tag)
        .service(set_tags)
        .service(list_substatuses)
        .service(create_substatus)
        .service(delete_substatus)
        .service(set_substatus)
        .service(mark_unread);
}

// ---- shared ---------------------------------------------------------------------

/// The interaction's view, pushed to its owner's sockets (every tab) as
/// `interaction_updated` — after the store committed the change.
async fn tell_owner(state: &AppState, i: &Interaction) -> ApiResult<InteractionView> {
    let view = interaction_view(&state.store, i).await?;
    if let Some(owner) = i.owner {
        let json = serde_json::to_value(&view).map_err(ApiError::internal)?;
        state
            .hub
            .push(owner, ServerFrame::InteractionUpdated { interaction: json });
    }
    Ok(view)
}

/// A 4xx answer with the usual `error` object and more fields beside it.
fn error_with(status: StatusCode, code: &str, message: String, extra: Value) -> HttpResponse {
    let mut body = json!({"error": {"code": code, "message": message}});
    if let (Some(obj), Value::Object(more)) = (body.as_object_mut(), extra) {
        obj.extend(more);
    }
    HttpResponse::build(status).json(body)
}

// ---- drafts ---------------------------------------------------------------------

/// An address as the draft was given it: `Name <addr>` is split, anything
/// else is kept whole as the address. Drafts are work in progress, so
/// nothing is validated here; sending checks the addresses.
fn draft_address(item: &str) -> Mailbox {
    let s = item.trim();
    if let (Some(open), Some(rest)) = (s.rfind('<'), s.strip_suffix('>')) {
        let name = rest[..open].trim().trim_matches('"').trim();
        return Mailbox {
            name: (!name.is_empty()).then(|| name.to_string()),
            address: rest[open + 1..].trim().to_string(),
        };
    }
    Mailbox {
        name: None,
        address: s.to_string(),
    }
}

/// The other way: what `POST /interactions/{id}/messages` takes.
fn address_text(m: &Mailbox) -> String {
    match m.name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) if name.contains([',', ';', '"', '<', '>', '@', ':']) => {
            format!("\"{}\" <{}>", name.replace('"', ""), m.address)
        }
        Some(name) => format!("{name} <{}>", m.address),
        None => m.address.clone(),
    }
}

/// A draft as saved: the fields of `POST /interactions/{id}/messages`, so
/// that a client can send what it restores.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DraftBody {
    /// Default `reply`.
    pub mode: Option<DraftMode>,
    /// The mail of this interaction to reply to or forward; default: the
    /// last customer mail, as when sending.
    pub message: Option<MessageId>,
    /// Addresses as typed (`a@x.test` or `Name <a@x.test>`); not validated
    /// until sent.
    pub to: Option<Vec<String>>,
    pub cc: Option<Vec<String>>,
    pub bcc: Option<Vec<String>>,
    pub subject: Option<String>,
    pub text: Option<String>,
    /// Sanitised when stored.
    pub html: Option<String>,
    /// The caller's uploads, or attachments of this interaction's messages.
    pub attachments: Option<Vec<AttachmentId>>,
}

impl DraftBody {
    fn into_content(self) -> DraftContent {
        let list = |l: Option<Vec<String>>| {
            l.unwrap_or_default()
                .iter()
                .filter(|a| !a.trim().is_empty())
                .map(|a| draft_address(a))
                .collect()
        };
        DraftContent {
            mode: self.mode.unwrap_or(DraftMode::Reply),
            message: self.message,
            to: list(self.to),
            cc: list(self.cc),
            bcc: list(self.bcc),
            subject: self.subject.unwrap_or_default(),
            text: self.text,
            html: self.html,
            attachments: self.attachments.unwrap_or_default(),
        }
    }
}

/// A stored draft.
#[derive(Debug, Serialize, ToSchema)]
pub struct DraftView {
    pub interaction_id: InteractionId,
    /// The username of the agent who saved it (always the caller: drafts
    /// are private).
    pub owner: String,
    pub mode: DraftMode,
    pub message: Option<MessageId>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: String,
    pub text: Option<String>,
    /// Already sanitised.
    pub html: Option<String>,
    pub attachments: Vec<AttachmentId>,
    pub created_at: DateTime<Utc>,
    /// Send it back as `?base=` with the next save (see docs/working.md).
    pub updated_at: DateTime<Utc>,
}

fn draft_view(d: Draft, owner: String) -> DraftView {
    let texts = |l: &[Mailbox]| l.iter().map(address_text).collect();
    DraftView {
        interaction_id: d.interaction,
        owner,
        mode: d.content.mode,
        message: d.content.message,
        to: texts(&d.content.to),
        cc: texts(&d.content.cc),
        bcc: texts(&d.content.bcc),
        subject: d.content.subject,
        text: d.content.text,
        html: d.content.html,
        attachments: d.content.attachments,
        created_at: d.created_at,
        updated_at: d.updated_at,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DraftQuery {
    /// Overwrite whatever draft is stored, whoever saved it.
    pub replace: Option<bool>,
    /// The `updated_at` of the caller's draft as they last saw it (RFC 3339).
    /// If their draft was saved since (another tab), the save is refused
    /// with 409 `draft_changed` — unless the content is the same.
    pub base: Option<DateTime<Utc>>,
}

/// The 409 of a refused save: who holds the draft and since when.
#[derive(Serialize, ToSchema)]
pub struct DraftConflict {
    pub error: super::error::ErrorDetail,
    pub draft: DraftHolder,
}

#[derive(Serialize, ToSchema)]
pub struct DraftHolder {
    /// The username of the agent whose draft is stored.
    pub owner: String,
    /// Their display name.
    pub owner_name: String,
    pub updated_at: DateTime<Utc>,
}

/// The caller's draft of an interaction. Another agent's draft is not
/// shown: 404 as if there were none.
#[utoipa::path(get, path = "/api/v1/interactions/{id}/draft", tag = "desk", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = DraftView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/interactions/{id}/draft")]
pub async fn get_draft(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<InteractionId>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let interaction = store.interaction(id.into_inner()).await?;
    check(store, &caller, &interaction, Act::Read).await?;
    match store.draft(interaction.id).await {
        Ok(d) if d.agent == caller.agent.id => {
            Ok(HttpResponse::Ok().json(draft_view(d, caller.agent.username.clone())))
        }
        Ok(_) | Err(StoreError::NotFound(_)) => Err(no_draft()),
        Err(e) => Err(e.into()),
    }
}

fn no_draft() -> ApiError {
    ApiError::not_found("you have no draft on this interaction")
}

/// Save the caller's draft (autosave: idempotent). Over another agent's
/// draft, or over the caller's own draft saved since `base`, it needs
/// `?replace=true`; else 409 `draft_exists` / `draft_changed` with the
/// stored draft's owner and time.
#[utoipa::path(put, path = "/api/v1/interactions/{id}/draft", tag = "desk", security(("bearer" = [])),
    params(("id" = String, Path), DraftQuery), request_body = DraftBody,
    responses((status = 200, body = DraftView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = DraftConflict, description = "draft_exists (another agent's), draft_changed (saved since `base`), or the interaction is closed")))]
#[put("/interactions/{id}/draft")]
pub async fn put_draft(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<InteractionId>,
    query: web::Query<DraftQuery>,
    body: web::Json<DraftBody>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let interaction = store.interaction(id.into_inner()).await?;
    check(store, &caller, &interaction, Act::Work).await?;
    let save = if query.replace.unwrap_or(false) {
        DraftSave::Replace
    } else {
        DraftSave::Check { base: query.base }
    };
    let me = caller.agent.id;
    let outcome = store
        .save_draft(interaction.id, me, body.into_inner().into_content(), save)
        .await?;
    let (code, message, held) = match outcome {
        DraftOutcome::Saved(d) => {
            info!(agent = %me, interaction = %interaction.id, "draft saved");
            return Ok(HttpResponse::Ok().json(draft_view(d, caller.agent.username.clone())));
        }
        DraftOutcome::OwnedByOther(d) => (
            "draft_exists",
            "another agent saved a draft of this interaction; save with ?replace=true to replace it",
            d,
        ),
        DraftOutcome::Changed(d) => (
            "draft_changed",
            "your draft was saved since `base` (in another tab or window); reload it, or save with ?replace=true",
            d,
        ),
    };
    let (owner, owner_name) = match store.agent(held.agent).await {
        Ok(a) => (a.username, a.name),
        Err(StoreError::NotFound(_)) => (held.agent.to_string(), String::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(error_with(
        StatusCode::CONFLICT,
        code,
        format!(
            "{message} (saved by {owner} at {})",
            held.updated_at.to_rfc3339()
        ),
        json!({"draft": {"owner": owner, "owner_name": owner_name, "updated_at": held.updated_at}}),
    ))
}

/// Delete the caller's draft (discard). Another agent's draft: 404.
#[utoipa::path(delete, path = "/api/v1/interactions/{id}/draft", tag = "desk", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/interactions/{id}/draft")]
pub async fn delete_draft(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<InteractionId>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let interaction = store.interaction(id.into_inner()).await?;
    check(store, &caller, &interaction, Act::Read).await?;
    match store.delete_draft(interaction.id, caller.agent.id).await {
        Ok(()) => Ok(HttpResponse::NoContent().finish()),
        Err(StoreError::NotFound(_)) => Err(no_draft()),
        Err(e) => Err(e.into()),
    }
}

/// One of "my drafts".
#[derive(Debug, Serialize, ToSchema)]
pub struct DraftListItem {
    #[serde(flatten)]
    pub draft: DraftView,
    /// The account's key.
    pub account: String,
    /// `KEY - TO` (the first To address), else `KEY - SUBJECT`, else `KEY - Untitled`.
    pub display_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DraftList {
    /// The most recently saved first.
    pub items: Vec<DraftListItem>,
}

/// The caller's drafts, each with the guide's display name.
#[utoipa::path(get, path = "/api/v1/drafts", tag = "desk", security(("bearer" = [])),
    responses((status = 200, body = DraftList)))]
#[get("/drafts")]
pub async fn my_drafts(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    let items = state
        .store
        .drafts_of(caller.agent.id)
        .await?
        .into_iter()
        .map(|l: DraftListing| DraftListItem {
            draft: draft_view(l.draft, caller.agent.username.clone()),
            account: l.account,
            display_name: l.display_name,
        })
        .collect();
    Ok(HttpResponse::Ok().json(DraftList { items }))
}

// ---- notes ----------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    pub text: Option<String>,
    /// Ids of the caller's uploads (`POST /attachments`) not used yet.
    pub attachments: Option<Vec<AttachmentId>>,
    /// Supervisors and admins: a note for the owner (`supervisor_note`).
    pub for_agent: Option<bool>,
}

/// Add an internal note (never sent; not the last message; does not mark
/// the interaction unread). With `for_agent: true` (supervisors and admins)
/// it is a `supervisor_note` for the owner. The owner's sockets get
/// `message_added`. The answer is the new message, with `author`.
#[utoipa::path(post, path = "/api/v1/interactions/{id}/notes", tag = "desk", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = NoteBody,
    responses((status = 201, body = Object, description = "the new Message (kind `note` or `supervisor_note`) with `author`"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "for_agent on an interaction without owner")))]
#[post("/interactions/{id}/notes")]
pub async fn add_note(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<InteractionId>,
    body: web::Json<NoteBody>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let interaction = store.interaction(id.into_inner()).await?;
    check(store, &caller, &interaction, Act::Note).await?;
    let body = body.into_inner();
    let for_agent = if body.for_agent.unwrap_or(false) {
        caller.require(Role::Supervisor).map_err(|_| {
            ApiError::forbidden("only supervisors and admins write notes for the agent")
        })?;
        Some(interaction.owner.ok_or_else(|| {
            ApiError::conflict("the interaction has no owner to address the note to")
        })?)
    } else {
        None
    };
    let text = body.text.unwrap_or_default();
    let attachments = body.attachments.unwrap_or_default();
    if text.trim().is_empty() && attachments.is_empty() {
        return Err(ApiError::bad_request(
            "a note needs a text or an attachment",
        ));
    }
    let message = store
        .add_note(NewNote {
            interaction: interaction.id,
            author: caller.agent.id,
            for_agent,
            text,
            attachments,
        })
        .await?;
    let mut view = message_view(&message, &caller.agent)?;
    if let Some(obj) = view.as_object_mut() {
        obj.insert("author".into(), Value::from(caller.agent.username.clone()));
    }
    if let Some(owner) = interaction.owner {
        state.hub.push(
            owner,
            ServerFrame::MessageAdded {
                interaction_id: interaction.id,
                message: view.clone(),
            },
        );
    }
    info!(agent = %caller.agent.id, interaction = %interaction.id, kind = %message.kind, "note added");
    Ok(HttpResponse::Created().json(view))
}

// ---- tags -----------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NameBody {
    /// 1 to 64 characters (trimmed).
    pub name: String,
}

/// The admin list of tags, by name (every role may read it).
#[utoipa::path(get, path = "/api/v1/tags", tag = "desk", security(("bearer" = [])),
    responses((status = 200, body = Vec<Tag>)))]
#[get("/tags")]
pub async fn list_tags(state: web::Data<AppState>, _caller: Caller) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.store.tags().await?))
}

/// Admin: add a tag to the list.
#[utoipa::path(post, path = "/api/v1/tags", tag = "desk", security(("bearer" = [])), request_body = NameBody,
    responses((status = 201, body = Tag), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/tags")]
pub async fn create_tag(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<NameBody>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let tag = state.store.create_tag(&body.name).await?;
    info!(agent = %caller.agent.id, tag = %tag.name, "tag created");
    Ok(HttpResponse::Created().json(tag))
}

/// Admin: remove a tag from the list and from every interaction.
#[utoipa::path(delete, path = "/api/v1/tags/{name}", tag = "desk", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/tags/{name}")]
pub async fn delete_tag(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    state.store.delete_tag(&name).await?;
    info!(agent = %caller.agent.id, tag = %name, "tag deleted");
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagsBody {
    /// The whole new set (names from `GET /tags`); `[]` removes all.
    pub tags: Vec<String>,
}

/// Replace an interaction's tags. Unknown names: 400 with `unknown` and
/// `valid` listed beside the error. The owner's sockets get
/// `interaction_updated`.
#[utoipa::path(put, path = "/api/v1/interactions/{id}/tags", tag = "desk", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = TagsBody,
    responses((status = 200, body = InteractionView), (status = 400, body = ErrorBody, description = "also `unknown` and `valid`"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[put("/interactions/{id}/tags")]
pub async fn set_tags(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<InteractionId>,
    body: web::Json<TagsBody>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let interaction = store.interaction(id.into_inner()).await?;
    check(store, &caller, &interaction, Act::Work).await?;
    let wanted = body.into_inner().tags;
    // Checked here for a structured answer; the store checks again inside
    // its transaction (a tag deleted meanwhile is a plain 400 there).
    let valid: Vec<String> = store.tags().await?.into_iter().map(|t| t.name).collect();
    let mut unknown: Vec<String> = wanted
        .iter()
        .filter(|t| !valid.contains(t))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        unknown.sort();
        unknown.dedup();
        return Ok(error_with(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "unknown tag(s): {}; the valid ones are listed in `valid`",
                unknown.join(", ")
            ),
            json!({"unknown": unknown, "valid": valid}),
        ));
    }
    store.set_interaction_tags(interaction.id, wanted).await?;
    let view = tell_owner(&state, &store.interaction(interaction.id).await?).await?;
    info!(agent = %caller.agent.id, interaction = %interaction.id, tags = ?view.tags, "tags set");
    Ok(HttpResponse::Ok().json(view))
}

// ---- sub-statuses -------------------------------------------------------------------

/// The admin list of sub-statuses (`Pending` built in), by name.
#[utoipa::path(get, path = "/api/v1/substatuses", tag = "desk", security(("bearer" = [])),
    responses((status = 200, body = Vec<Substatus>)))]
#[get("/substatuses")]
pub async fn list_substatuses(
    state: web::Data<AppState>,
    _caller: Caller,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.store.substatuses().await?))
}

/// Admin: add a sub-status to the list.
#[utoipa::path(post, path = "/api/v1/substatuses", tag = "desk", security(("bearer" = [])), request_body = NameBody,
    responses((status = 201, body = Substatus), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/substatuses")]
pub async fn create_substatus(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<NameBody>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let s = state.store.create_substatus(&body.name).await?;
    info!(agent = %caller.agent.id, substatus = %s.name, "sub-status created");
    Ok(HttpResponse::Created().json(s))
}

/// Admin: remove a sub-status (cleared where set). `Pending` cannot be
/// deleted (409).
#[utoipa::path(delete, path = "/api/v1/substatuses/{name}", tag = "desk", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/substatuses/{name}")]
pub async fn delete_substatus(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    state.store.delete_substatus(&name).await?;
    info!(agent = %caller.agent.id, substatus = %name, "sub-status deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// `substatus` must be present: a name, or `null` to clear.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubstatusBody {
    /// A name from `GET /substatuses`, or `null` to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub substatus: Option<Option<String>>,
}

/// Set or clear the sub-status of an open interaction (a customer's reply
/// clears it again; an auto-reply does not). The owner's sockets get
/// `interaction_updated`.
#[utoipa::path(put, path = "/api/v1/interactions/{id}/substatus", tag = "desk", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = SubstatusBody,
    responses((status = 200, body = InteractionView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "closed")))]
#[put("/interactions/{id}/substatus")]
pub async fn set_substatus(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<InteractionId>,
    body: web::Json<SubstatusBody>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let interaction = store.interaction(id.into_inner()).await?;
    check(store, &caller, &interaction, Act::Work).await?;
    let Some(substatus) = body.into_inner().substatus else {
        return Err(ApiError::bad_request(
            "give `substatus`: a name from GET /api/v1/substatuses, or null to clear it",
        ));
    };
    let updated = store.set_substatus(interaction.id, substatus).await?;
    let view = tell_owner(&state, &updated).await?;
    info!(agent = %caller.agent.id, interaction = %updated.id, substatus = ?updated.substatus, "sub-status set");
    Ok(HttpResponse::Ok().json(view))
}

// ---- unread -----------------------------------------------------------------------

/// Mark an interaction unread, where its account allows it (else 403). The
/// owner opening it (`GET /interactions/{id}`) marks it read again. The
/// owner's sockets get `interaction_updated`.
#[utoipa::path(post, path = "/api/v1/interactions/{id}/unread", tag = "desk", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = InteractionView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/interactions/{id}/unread")]
pub async fn mark_unread(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<InteractionId>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let interaction = store.interaction(id.into_inner()).await?;
    check(store, &caller, &interaction, Act::Work).await?;
    let account = store.account(interaction.account).await?;
    if !account.options.allow_mark_unread {
        return Err(ApiError::forbidden(format!(
            "account {} does not allow marking interactions unread",
            account.key
        )));
    }
    let updated = store.mark_unread(interaction.id).await?;
    let view = tell_owner(&state, &updated).await?;
    info!(agent = %caller.agent.id, interaction = %updated.id, "marked unread");
    Ok(HttpResponse::Ok().json(view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_addresses_round_trip() {
        for (typed, name, address, back) in [
            ("jane@x.test", None, "jane@x.test", "jane@x.test"),
            (
                " Jane Doe <jane@x.test> ",
                Some("Jane Doe"),
                "jane@x.test",
                "Jane Doe <jane@x.test>",
            ),
            (
                "\"Doe, Jane\" <jane@x.test>",
                Some("Doe, Jane"),
                "jane@x.test",
                "\"Doe, Jane\" <jane@x.test>",
            ),
            ("jane@", None, "jane@", "jane@"),
        ] {
            let m = draft_address(typed);
            assert_eq!(
                (m.name.as_deref(), m.address.as_str()),
                (name, address),
                "{typed}"
            );
            assert_eq!(address_text(&m), back);
            assert_eq!(draft_address(&address_text(&m)), m);
        }
    }
}
