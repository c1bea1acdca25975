//! The OpenAPI document (`/api/v1/openapi.json`) and its viewer
//! (`/api/v1/docs`, Swagger UI vendored into the binary: nothing is fetched
//! at run time).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "mailroom", description = "The email channel of a contact center. WebSocket protocol: docs/protocol.md."),
    paths(
        super::health::health, super::health::ready, super::health::metrics,
        super::auth::login, super::auth::logout, super::auth::me,
        super::admin::list_agents, super::admin::create_agent, super::admin::get_agent,
        super::admin::update_agent, super::admin::delete_agent,
        super::admin::list_queues, super::admin::create_queue, super::admin::get_queue,
        super::admin::update_queue, super::admin::delete_queue,
        super::admin::list_accounts, super::admin::create_account, super::admin::get_account,
        super::admin::update_account, super::admin::delete_account,
        super::admin::list_presence,
        super::mailboxes::status, super::mailboxes::list_quarantine, super::mailboxes::quarantine_raw,
        super::mailboxes::retry_quarantine, super::mailboxes::delete_quarantine,
        super::work::transfer, super::work::close, super::work::reopen, super::work::transfer_targets,
        super::supervisor::queue_status, super::supervisor::agent_status, super::supervisor::pause,
        super::supervisor::resume, super::supervisor::logout,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Login, logout, the caller."),
        (name = "admin", description = "Agents, queues and accounts (admin role)."),
        (name = "supervisor", description = "Views for supervisors and admins."),
        (name = "interactions", description = "Working an interaction."),
        (name = "contacts", description = "Customers and their journeys."),
        (name = "health", description = "Liveness, readiness, metrics."),
    )
)]
pub struct ApiDoc;

/// The whole document: [`ApiDoc`] and each resource module's own `Doc`, so
/// a module adds its paths without touching this file.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::interactions::Doc::openapi());
    doc.merge(super::dispositions::Doc::openapi());
    doc.merge(super::contacts::Doc::openapi());
    doc.merge(super::compose::Doc::openapi());
    doc.merge(super::desk::Doc::openapi());
    doc.merge(super::downloads::Doc::openapi());
    doc.merge(super::canned::Doc::openapi());
    doc
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
