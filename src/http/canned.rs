//! Canned answers (issue #5, part 11; docs/downloads.md): admins write them,
//! everyone lists them, and agents get them rendered for an interaction
//! with its placeholders filled.
//!
//! Placeholders are `{{name}}` (spaces inside the braces allowed):
//! `contact.first_name`, `contact.last_name`, `contact.email`, `agent.name`,
//! `agent.first_name` (the caller: the agent who will send the answer),
//! `interaction.id`, `interaction.subject`, `account.key`. A value that is
//! unknown for this interaction (no contact, no first name) becomes empty.
//! An unknown placeholder is left as written, so that a typo shows in the
//! agent's editor instead of vanishing. In the HTML body values are
//! HTML-escaped; the HTML itself is sanitised when saved.

use actix_web::{HttpResponse, delete, get, post, put, web};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::access::{Act, check};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Caller;
use super::state::AppState;
use super::views::interaction_view;
use crate::domain::{InteractionId, Role};
use crate::store::{CannedAnswer, CannedAnswerSpec};

/// This module's part of the OpenAPI document (merged in `openapi.rs`).
#[derive(OpenApi)]
#[openapi(
    paths(list, create, get_one, update, remove, rendered),
    components(schemas(CannedAnswer, CannedAnswerBody, RenderedAnswer))
)]
pub struct Doc;

/// Register this module's routes (under `/api/v1`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(remove)
        .service(rendered);
}

const MAX_TITLE: usize = 200;
const MAX_TEXT: usize = 100_000;

/// A canned answer as an admin writes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CannedAnswerBody {
    pub title: String,
    pub text: String,
    /// Sanitised when saved (no scripts, handlers or remote loads).
    pub html: Option<String>,
}

impl CannedAnswerBody {
    fn into_spec(self) -> ApiResult<CannedAnswerSpec> {
        let title = self.title.trim().to_string();
        if title.is_empty() {
            return Err(ApiError::bad_request("title: must not be empty"));
        }
        if title.chars().count() > MAX_TITLE {
            return Err(ApiError::bad_request(format!(
                "title: at most {MAX_TITLE} characters"
            )));
        }
        if self.text.chars().count() > MAX_TEXT {
            return Err(ApiError::bad_request(format!(
                "text: at most {MAX_TEXT} characters"
            )));
        }
        if self
            .html
            .as_ref()
            .is_some_and(|h| h.chars().count() > 2 * MAX_TEXT)
        {
            return Err(ApiError::bad_request(format!(
                "html: at most {} characters",
                2 * MAX_TEXT
            )));
        }
        let html = self
            .html
            .map(|h| crate::mail::parse::sanitize_html(&h))
            .filter(|h| !h.trim().is_empty());
        Ok(CannedAnswerSpec {
            title,
            text: self.text,
            html,
        })
    }
}

/// A canned answer with its placeholders filled for one interaction.
#[derive(Debug, Serialize, ToSchema)]
pub struct RenderedAnswer {
    #[serde(serialize_with = "crate::domain::serialize_as_string")]
    #[schema(value_type = String)]
    pub id: i64,
    pub title: String,
    pub text: String,
    pub html: Option<String>,
}

fn canned_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::not_found("canned answer not found"))
}

/// Every canned answer, by title (any role).
#[utoipa::path(get, path = "/api/v1/canned-answers", tag = "canned answers", security(("bearer" = [])),
    responses((status = 200, body = Vec<CannedAnswer>)))]
#[get("/canned-answers")]
pub async fn list(state: web::Data<AppState>, _caller: Caller) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.store.list_canned_answers().await?))
}

/// One canned answer, as written (any role).
#[utoipa::path(get, path = "/api/v1/canned-answers/{id}", tag = "canned answers", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = CannedAnswer), (status = 404, body = ErrorBody)))]
#[get("/canned-answers/{id}")]
pub async fn get_one(
    state: web::Data<AppState>,
    _caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = canned_id(&id)?;
    Ok(HttpResponse::Ok().json(state.store.canned_answer(id).await?))
}

/// Create a canned answer (admins).
#[utoipa::path(post, path = "/api/v1/canned-answers", tag = "canned answers", security(("bearer" = [])),
    request_body = CannedAnswerBody,
    responses((status = 201, body = CannedAnswer), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[post("/canned-answers")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CannedAnswerBody>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let spec = body.into_inner().into_spec()?;
    let created = state.store.create_canned_answer(spec).await?;
    Ok(HttpResponse::Created().json(created))
}

/// Replace a canned answer's title, text and HTML (admins).
#[utoipa::path(put, path = "/api/v1/canned-answers/{id}", tag = "canned answers", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = CannedAnswerBody,
    responses((status = 200, body = CannedAnswer), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[put("/canned-answers/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<CannedAnswerBody>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let id = canned_id(&id)?;
    let spec = body.into_inner().into_spec()?;
    Ok(HttpResponse::Ok().json(state.store.update_canned_answer(id, spec).await?))
}

/// Delete a canned answer (admins).
#[utoipa::path(delete, path = "/api/v1/canned-answers/{id}", tag = "canned answers", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/canned-answers/{id}")]
pub async fn remove(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(Role::Admin)?;
    let id = canned_id(&id)?;
    state.store.delete_canned_answer(id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Every canned answer rendered for this interaction and the caller
/// (needs read access to the interaction).
#[utoipa::path(get, path = "/api/v1/interactions/{id}/canned-answers", tag = "canned answers", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Vec<RenderedAnswer>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/interactions/{id}/canned-answers")]
pub async fn rendered(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<InteractionId>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let interaction = store.interaction(id.into_inner()).await?;
    check(store, &caller, &interaction, Act::Read).await?;
    let view = interaction_view(store, &interaction).await?;
    let contact = view.contact.as_ref();
    let agent_name = caller.agent.name.trim().to_string();
    let values = Values(vec![
        (
            "contact.first_name",
            contact.map(|c| c.first_name.clone()).unwrap_or_default(),
        ),
        (
            "contact.last_name",
            contact.map(|c| c.last_name.clone()).unwrap_or_default(),
        ),
        (
            "contact.email",
            contact.and_then(|c| c.email.clone()).unwrap_or_default(),
        ),
        (
            "agent.first_name",
            agent_name
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        ("agent.name", agent_name),
        ("interaction.id", view.id.to_string()),
        ("interaction.subject", view.subject.clone()),
        ("account.key", view.account.clone()),
    ]);
    let answers: Vec<RenderedAnswer> = store
        .list_canned_answers()
        .await?
        .into_iter()
        .map(|a| RenderedAnswer {
            id: a.id,
            title: a.title,
            text: fill(&a.text, &values, false),
            html: a.html.map(|h| fill(&h, &values, true)),
        })
        .collect();
    Ok(HttpResponse::Ok().json(answers))
}

/// Placeholder names and their values.
pub struct Values(pub Vec<(&'static str, String)>);

/// `template` with every known `{{ name }}` replaced by its value
/// (HTML-escaped when `html`); unknown placeholders stay as written.
pub fn fill(template: &str, values: &Values, html: bool) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = after[..close].trim();
        match values.0.iter().find(|(k, _)| *k == name) {
            Some((_, value)) if html => out.push_str(&escape_html(value)),
            Some((_, value)) => out.push_str(value),
            None => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values(vec![
            ("contact.first_name", "<Jane>".into()),
            ("agent.name", "Alice Doe".into()),
        ])
    }

    #[test]
    fn placeholders_are_filled_and_unknown_ones_kept() {
        let v = values();
        assert_eq!(
            fill(
                "Hi {{contact.first_name}}, {{ agent.name }} here. {{nope}} {{",
                &v,
                false
            ),
            "Hi <Jane>, Alice Doe here. {{nope}} {{"
        );
        assert_eq!(
            fill("<p>Hi {{contact.first_name}}</p>", &v, true),
            "<p>Hi &lt;Jane&gt;</p>"
        );
        assert_eq!(fill("", &v, false), "");
        assert_eq!(fill("{{}}}}", &v, false), "{{}}}}");
        assert_eq!(fill("é{{agent.name}}é", &v, false), "éAlice Doeé");
    }
}
