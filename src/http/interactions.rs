//! Reading one interaction: `GET /api/v1/interactions/{id}`, with its
//! messages in order. When its owner opens it, it is marked read.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::access::{Act, check};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Caller;
use super::state::AppState;
use super::views::{InteractionView, interaction_view};
use crate::domain::InteractionId;
use crate::store::{Agent, StoredMessage};

#[derive(OpenApi)]
#[openapi(paths(get_interaction))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_interaction);
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
