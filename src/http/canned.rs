//! (issue #5) — routes of this module are registered by [`routes`].

use actix_web::web;
use utoipa::OpenApi;

/// This module's part of the OpenAPI document (merged in `openapi.rs`).
#[derive(OpenApi)]
#[openapi()]
pub struct Doc;

/// Register this module's routes (under `/api/v1`).
pub fn routes(_cfg: &mut web::ServiceConfig) {}
