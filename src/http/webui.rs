//! The agent desktop (issue #8, docs/desktop.md): the files under
//! `assets/desk/` are embedded in the binary at compile time (every profile,
//! so `cargo run --release -- serve` on a fresh machine needs nothing beside
//! the binary) and served at `/`: `index.html` at `/`, every other file at
//! its path (`/js/app.js`, `/desk.css`). Nothing is fetched from elsewhere.
//!
//! The API, the socket and the probes are registered before this and always
//! win: the fallback never answers under `/api/`, and `/ws`, `/health`,
//! `/ready` and `/metrics` are exact routes matched first.
//!
//! Every answer carries a strict Content-Security-Policy: scripts only from
//! this server (no inline script, no `eval`), nothing framed but the
//! sandboxed `srcdoc` iframes that show mail, no plugins, no `<base>`, and the
//! desktop itself may not be framed (clickjacking).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use include_dir::{Dir, include_dir};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// The desktop's files, read by the compiler (build.rs reruns the build
/// when anything under the folder changes, files added included).
static DESK: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets/desk");

/// The policy of every desktop answer.
///
/// - `style-src-attr 'unsafe-inline'`: a `srcdoc` iframe inherits its
///   parent's policy, and mail HTML keeps (sanitised) `style` attributes —
///   without it every mail would lose its layout. `<style>` elements stay
///   forbidden (the sanitiser drops them anyway), and the desktop's own CSS
///   comes from files.
/// - `img-src data: blob:`: inline images of a mail (`cid:` parts are turned
///   into `data:`/`blob:` URLs by the desktop) and attachment previews; remote
///   images stay blocked (the sanitiser also defuses them).
/// - `frame-src 'self' about: data: blob:`: the mail iframes (`about:srcdoc`)
///   and previews of attachments opened from a `blob:`.
/// - `connect-src 'self' ws: wss:`: the REST API and the WebSocket on this
///   server (`'self'` alone does not cover `ws:` in every browser).
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    style-src-attr 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' data: blob:; \
    font-src 'self'; frame-src 'self' about: data: blob:; connect-src 'self' ws: wss:; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Strong ETags (the hex SHA-256 of each file, quoted), computed once.
static ETAGS: LazyLock<HashMap<&'static str, String>> = LazyLock::new(|| {
    let mut tags = HashMap::new();
    collect(&DESK, &mut tags);
    tags
});

fn collect(dir: &'static Dir<'static>, tags: &mut HashMap<&'static str, String>) {
    for file in dir.files() {
        if let Some(path) = file.path().to_str() {
            tags.insert(path, etag_of(file.contents()));
        }
    }
    for sub in dir.dirs() {
        collect(sub, tags);
    }
}

/// A strong ETag: the first 128 bits of the SHA-256, in hex, quoted.
fn etag_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// For working on the desktop only: `MAILROOM_DESK_DIR=assets/desk` serves
/// the files from that folder as they are on disk, so a change shows on
/// reload without a rebuild. Unset (always, in production and in the tests)
/// the embedded copy is served.
static DISK: LazyLock<Option<PathBuf>> = LazyLock::new(|| {
    std::env::var_os("MAILROOM_DESK_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
});

/// `GET /`: the desktop's page.
pub async fn index(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    serve(&req, "index.html").ok_or_else(no_route)
}

/// Every request no route took: a desktop file for a `GET` or `HEAD` outside
/// the API, else the API's JSON 404.
pub async fn fallback(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let method = req.method();
    let path = req.path();
    if (method != Method::GET && method != Method::HEAD)
        || path.starts_with("/api/")
        || path == "/api"
    {
        return Err(no_route());
    }
    let relative = path.trim_start_matches('/');
    if relative.is_empty() {
        return index(req.clone()).await;
    }
    serve(&req, relative).ok_or_else(no_route)
}

fn no_route() -> ApiError {
    ApiError::not_found("no such route")
}

/// The answer for the embedded file at `relative` (exact match: no
/// directory listings, no `..`), or `None`.
fn serve(req: &HttpRequest, relative: &str) -> Option<HttpResponse> {
    if relative
        .split('/')
        .any(|part| part.is_empty() || part.starts_with('.'))
    {
        return None;
    }
    let (contents, etag): (Cow<'static, [u8]>, Cow<'static, str>) = match DISK.as_deref() {
        Some(dir) => {
            let bytes = std::fs::read(dir.join(relative)).ok()?;
            let etag = etag_of(&bytes);
            (Cow::Owned(bytes), Cow::Owned(etag))
        }
        None => (
            Cow::Borrowed(DESK.get_file(relative)?.contents()),
            Cow::Borrowed(ETAGS.get(relative)?.as_str()),
        ),
    };
    let etag = etag.as_ref();
    let not_modified = if_none_match(req, etag);
    let mut res = HttpResponse::build(if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    });
    res.insert_header((header::CONTENT_TYPE, content_type(relative)))
        .insert_header((header::ETAG, etag))
        // Revalidate every time: a new binary must never run with last
        // version's modules from the cache (there is no build step to
        // fingerprint file names); the ETag keeps the revalidation cheap.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    Some(if not_modified {
        res.finish()
    } else {
        match contents {
            Cow::Borrowed(bytes) => res.body(bytes),
            Cow::Owned(bytes) => res.body(bytes),
        }
    })
}

fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// By extension; anything unknown is served as bytes (and, with nosniff,
/// never run as a script or styled as CSS).
fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("js/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("desk.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("x.unknown"), "application/octet-stream");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    #[test]
    fn every_embedded_file_has_an_etag() {
        fn count(dir: &Dir<'_>) -> usize {
            dir.files().count() + dir.dirs().map(count).sum::<usize>()
        }
        assert_eq!(ETAGS.len(), count(&DESK));
        assert!(ETAGS.values().all(|t| t.len() == 34 && t.starts_with('"')));
    }
}
