//! HTTP: one file per resource, wired here. Every error answer has the shape
//! `{"error":{"code","message"}}` (see [`error`]).

pub mod access;
pub mod admin;
pub mod auth;
pub mod canned;
pub mod compose;
pub mod contacts;
pub mod desk;
pub mod dispositions;
pub mod downloads;
pub mod error;
pub mod extract;
pub mod health;
pub mod interactions;
pub mod mailboxes;
pub mod openapi;
pub mod state;
pub mod supervisor;
pub mod transcript;
pub mod views;
pub mod webui;
pub mod work;
pub mod ws;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use utoipa_swagger_ui::SwaggerUi;

/// Register every route on an `App`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(error::json_config())
        .app_data(error::query_config())
        .app_data(error::path_config())
        .service(health::health)
        .service(health::ready)
        .service(health::metrics)
        .service(ws::connect)
        .service(
            SwaggerUi::new("/api/v1/docs/{_:.*}").url("/api/v1/openapi.json", openapi::document()),
        )
        .service(web::redirect("/api/v1/docs", "/api/v1/docs/"))
        .service(
            web::scope("/api/v1")
                .service(auth::login)
                .service(auth::logout)
                .service(auth::me)
                .service(admin::list_agents)
                .service(admin::create_agent)
                .service(admin::get_agent)
                .service(admin::update_agent)
                .service(admin::delete_agent)
                .service(admin::list_queues)
                .service(admin::create_queue)
                .service(admin::get_queue)
                .service(admin::update_queue)
                .service(admin::delete_queue)
                .service(admin::list_accounts)
                .service(admin::create_account)
                .service(admin::get_account)
                .service(admin::update_account)
                .service(admin::delete_account)
                .service(admin::list_presence)
                .service(mailboxes::status)
                .service(mailboxes::list_quarantine)
                .service(mailboxes::quarantine_raw)
                .service(mailboxes::retry_quarantine)
                .service(mailboxes::delete_quarantine)
                .service(work::transfer)
                .service(work::close)
                .service(work::reopen)
                .service(work::transfer_targets)
                .service(supervisor::queue_status)
                .service(supervisor::agent_status)
                .service(supervisor::pause)
                .service(supervisor::resume)
                .service(supervisor::logout)
                .configure(interactions::routes)
                .configure(dispositions::routes)
                .configure(contacts::routes)
                .configure(compose::routes)
                .configure(desk::routes)
                .configure(downloads::routes)
                .configure(canned::routes),
        )
        // The desktop (docs/desktop.md): `/` and, for whatever no route above
        // took, its embedded files; the API's JSON 404 otherwise.
        .route("/", web::get().to(webui::index))
        .default_service(web::to(webui::fallback));
}

/// Count and time every request by its route pattern (not its path, which
/// would give one time series per id).
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let res = next.call(req).await?;
    let status = res.status().as_u16().to_string();
    metrics::counter!(crate::metrics::HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(crate::metrics::HTTP_DURATION, "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    Ok(res)
}
