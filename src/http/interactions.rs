//! Reading interactions: the list (`GET /api/v1/interactions`, filtered,
//! newest activity first, with the caller's read rights applied inside the
//! query) and one interaction with its messages in order
//! (`GET /api/v1/interactions/{id}`; its owner opening it marks it read).

use actix_web::{HttpResponse, get, post, web};
use serde::Serialize;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::access::{Act, check};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Caller;
use super::state::AppState;
use super::views::{InteractionView, interaction_view, interaction_views};
use crate::domain::{InteractionId, InteractionStatus, Role};
use crate::store::listing::{Cursor, ListFilter, Reader, Scope};
use crate::store::{Agent, StoredMessage};

#[derive(OpenApi)]
#[openapi(paths(list_interactions, advanced_search, get_interaction))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list_interactions)
        .service(advanced_search)
        .service(get_interaction);
}

#[derive(Serialize, ToSchema)]
pub struct InteractionList {
    pub items: Vec<InteractionView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Read the list's query string. Hand-parsed because `tag` repeats.
pub(super) fn list_filter(query: &str, caller: &Caller) -> Result<ListFilter, ApiError> {
    let reader = if caller.agent.role.at_least(Role::Supervisor) {
        Reader::Everything(caller.agent.id)
    } else {
        Reader::Agent(caller.agent.id)
    };
    let mut f = ListFilter {
        reader,
        // Agents start from their own work; supervisors from everything.
        scope: match reader {
            Reader::Agent(_) => Scope::Me,
            Reader::Everything(_) => Scope::All,
        },
        status: None,
        substatus: None,
        unread: None,
        account: None,
        queue: None,
        first_agent: None,
        tags: Vec::new(),
        from: None,
        to: None,
        q: None,
        contact: None,
        advanced: None,
        cursor: None,
        limit: 50,
    };
    let mut errors: Vec<String> = Vec::new();
    let time = |key: &str, v: &str, errors: &mut Vec<String>| {
        chrono::DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|_| errors.push(format!("{key}: `{v}` is not an RFC 3339 time")))
            .ok()
    };
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let v = value.as_ref();
        match key.as_ref() {
            "scope" => match v {
                "me" => f.scope = Scope::Me,
                "unassigned" => f.scope = Scope::Unassigned,
                "all" => f.scope = Scope::All,
                _ => errors.push(format!("scope: `{v}` (valid: me, unassigned, all)")),
            },
            "status" => match v.parse::<InteractionStatus>() {
                Ok(s) => f.status = Some(s),
                Err(_) => errors.push(format!(
                    "status: `{v}` (valid: open, closed, closed_unmanaged)"
                )),
            },
            "substatus" => f.substatus = Some(v.to_string()),
            "unread" => match v {
                "true" => f.unread = Some(true),
                "false" => f.unread = Some(false),
                _ => errors.push(format!("unread: `{v}` (valid: true, false)")),
            },
            "account" => f.account = Some(v.to_string()),
            "queue" => f.queue = Some(v.to_string()),
            "agent" => f.first_agent = Some(v.to_string()),
            "tag" => f.tags.push(v.to_string()),
            "from" => f.from = time("from", v, &mut errors),
            "to" => f.to = time("to", v, &mut errors),
            "cursor" => match Cursor::decode(v) {
                Ok(c) => f.cursor = Some(c),
                Err(e) => errors.push(e),
            },
            "limit" => match v.parse::<u32>() {
                Ok(n) if (1..=500).contains(&n) => f.limit = n,
                _ => errors.push(format!("limit: `{v}` (1 to 500)")),
            },
            "q" => {
                if v.chars().count() > 200 {
                    errors.push("q: at most 200 characters".into());
                } else {
                    f.q = Some(v.to_string());
                }
            }
            "token" => {}
            other => errors.push(format!(
                "unknown parameter `{other}` (valid: q, scope, status, substatus, unread, account, queue, agent, tag, from, to, cursor, limit)"
            )),
        }
    }
    if errors.is_empty() {
        Ok(f)
    } else {
        Err(ApiError::bad_request(errors.join("; ")))
    }
}

/// The interactions list: filters as in DESIGN.md, sorted by last activity
/// (newest first), a page at a time. Agents see their queues' interactions
/// and their own (`scope=me` by default); supervisors and admins see all.
#[utoipa::path(get, path = "/api/v1/interactions", tag = "interactions", security(("bearer" = [])),
    params(
        ("scope" = Option<String>, Query, description = "me | unassigned | all"),
        ("status" = Option<String>, Query, description = "open | closed | closed_unmanaged"),
        ("substatus" = Option<String>, Query), ("unread" = Option<bool>, Query),
        ("account" = Option<String>, Query, description = "account key"),
        ("queue" = Option<String>, Query, description = "queue name"),
        ("agent" = Option<String>, Query, description = "first agent's username"),
        ("tag" = Option<Vec<String>>, Query, description = "repeatable: any of"),
        ("from" = Option<String>, Query, description = "created at or after (RFC 3339)"),
        ("to" = Option<String>, Query, description = "created before (RFC 3339)"),
        ("q" = Option<String>, Query, description = "search: the id exactly, words (prefixes) of the subject or of any message, the contact's names or email"),
        ("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query, description = "1 to 500, default 50"),
    ),
    responses((status = 200, body = InteractionList), (status = 400, body = ErrorBody)))]
#[get("/interactions")]
pub async fn list_interactions(
    state: web::Data<AppState>,
    caller: Caller,
    req: actix_web::HttpRequest,
) -> ApiResult<HttpResponse> {
    let filter = list_filter(req.query_string(), &caller)?;
    let page = state.store.list_interactions(filter).await?;
    Ok(HttpResponse::Ok().json(InteractionList {
        items: interaction_views(&state.store, &page.items).await?,
        next_cursor: page.next_cursor.map(|c| c.encode()),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct InteractionWithMessages {
    #[serde(flatten)]
    pub interaction: InteractionView,
    /// Every message, oldest first. A message where the reader is in Cc or
    /// Bcc carries `you_are: "cc" | "bcc"`.
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<Value>,
}

/// A message as the API shows it to `reader`.
pub fn message_view(m: &StoredMessage, reader: &Agent) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(m).map_err(ApiError::internal)?;
    if let (Some(email), Some(obj)) = (&reader.email, v.as_object_mut()) {
        let is = |list: &[crate::mail::Mailbox]| {
            list.iter().any(|mb| mb.address.eq_ignore_ascii_case(email))
        };
        let you_are = if is(&m.cc) {
            Some("cc")
        } else if is(&m.bcc) {
            Some("bcc")
        } else {
            None
        };
        if let Some(role) = you_are {
            obj.insert("you_are".into(), Value::from(role));
        }
    }
    Ok(v)
}

/// Advanced search: `{"match": "all"|"any", "conditions": [{"field", "op",
/// "value", "enabled"}], "cursor"?, "limit"?}` over everything the caller
/// may read, whatever the list's filters. Unknown fields or operators, or
/// values of the wrong type, are a 400 listing the valid ones.
#[utoipa::path(post, path = "/api/v1/interactions/search", tag = "interactions", security(("bearer" = [])),
    request_body(content = Object, description = "{match, conditions: [{field, op, value, enabled}], cursor?, limit?}"),
    responses((status = 200, body = InteractionList), (status = 400, body = ErrorBody)))]
#[post("/interactions/search")]
pub async fn advanced_search(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<Value>,
) -> ApiResult<HttpResponse> {
    let search = crate::store::advanced::parse(&body).map_err(ApiError::bad_request)?;
    let mut filter = list_filter("scope=all", &caller)?;
    filter.advanced = Some(search);
    if let Some(c) = body.get("cursor").filter(|c| !c.is_null()) {
        let c = c
            .as_str()
            .ok_or_else(|| ApiError::bad_request("cursor: a string"))?;
        filter.cursor = Some(Cursor::decode(c).map_err(ApiError::bad_request)?);
    }
    if let Some(l) = body.get("limit").filter(|l| !l.is_null()) {
        filter.limit = l
            .as_u64()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| ApiError::bad_request("limit: 1 to 500"))? as u32;
    }
    let page = state.store.list_interactions(filter).await?;
    Ok(HttpResponse::Ok().json(InteractionList {
        items: interaction_views(&state.store, &page.items).await?,
        next_cursor: page.next_cursor.map(|c| c.encode()),
    }))
}

/// One interaction and its messages. The owner opening it marks it read.
#[utoipa::path(get, path = "/api/v1/interactions/{id}", tag = "interactions", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = InteractionWithMessages), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/interactions/{id}")]
pub async fn get_interaction(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<InteractionId>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let mut interaction = store.interaction(id.into_inner()).await?;
    check(store, &caller, &interaction, Act::Read).await?;
    if interaction.owner == Some(caller.agent.id) && interaction.unread {
        interaction = store.mark_read(interaction.id).await?;
    }
    let messages = store
        .messages(interaction.id)
        .await?
        .iter()
        .map(|m| message_view(m, &caller.agent))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(InteractionWithMessages {
        interaction: interaction_view(store, &interaction).await?,
        messages,
    }))
}
