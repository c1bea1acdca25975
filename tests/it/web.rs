//! The agent desktop served from the binary (src/http/webui.rs): `/` is the
//! page with its security headers, its modules come with a JavaScript type
//! and an ETag, unknown paths are 404, and every API route still wins.

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use serde_json::Value;

use crate::support::app::{Options, spawn_app};

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{} has no {name} header", res.url()))
        .to_str()
        .unwrap()
}

/// The `src` of every `<script type="module" src="...">` in the page.
fn module_scripts(html: &str) -> Vec<String> {
    html.split("<script")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>')?];
            let start = tag.find("src=\"")? + 5;
            let len = tag[start..].find('"')?;
            Some(tag[start..start + len].to_string())
        })
        .collect()
}

#[tokio::test]
async fn the_desktop_is_served_at_the_root_with_a_strict_policy() {
    let app = spawn_app(Options::default()).await;
    let res = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "text/html; charset=utf-8");
    let csp = header(&res, "content-security-policy").to_string();
    for directive in [
        "default-src 'self'",
        "script-src 'self';",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "CSP lacks {directive}: {csp}");
    }
    assert!(
        !csp.contains("unsafe-eval")
            && !csp
                .split("script-src")
                .nth(1)
                .unwrap()
                .starts_with(" 'self' 'unsafe-inline'"),
        "scripts must not run inline or from eval: {csp}"
    );
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");
    assert_eq!(header(&res, "referrer-policy"), "no-referrer");
    assert_eq!(header(&res, CACHE_CONTROL.as_str()), "no-cache");
    let html = res.text().await.unwrap();
    assert!(
        html.to_ascii_lowercase().starts_with("<!doctype html>"),
        "{html}"
    );
    // No inline script: every script is a file of this server.
    let scripts = module_scripts(&html);
    assert!(!scripts.is_empty(), "the page loads no module: {html}");
    assert_eq!(
        html.matches("<script").count(),
        scripts.len(),
        "a script without src: {html}"
    );

    // Each module the page names is served, as JavaScript, relative to `/`.
    for src in &scripts {
        assert!(!src.contains("://"), "scripts come from this server: {src}");
        let path = format!("/{}", src.trim_start_matches("./").trim_start_matches('/'));
        let res = app.http.get(app.url(&path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(
            header(&res, CONTENT_TYPE.as_str()),
            "text/javascript; charset=utf-8",
            "{path}"
        );
        assert_eq!(header(&res, "x-content-type-options"), "nosniff");
        let etag = header(&res, ETAG.as_str()).to_string();
        let body = res.bytes().await.unwrap();
        assert!(!body.is_empty(), "{path} is empty");

        // Revalidation with the ETag answers 304 without the body.
        let res = app
            .http
            .get(app.url(&path))
            .header(IF_NONE_MATCH, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert!(res.bytes().await.unwrap().is_empty());
        // A stale tag gets the file again.
        let res = app
            .http
            .get(app.url(&path))
            .header(IF_NONE_MATCH, "\"0000\"")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.bytes().await.unwrap(), body);
    }
}

#[tokio::test]
async fn unknown_paths_are_404_and_api_routes_win() {
    let app = spawn_app(Options::default()).await;
    for path in [
        "/nope.js",
        "/js/nope.js",
        "/js/",
        "/js",
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/.hidden",
    ] {
        let res = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }

    // Paths sent as they are (an HTTP client would normalise the dots away).
    for path in [
        "/../Cargo.toml",
        "/js/../../Cargo.toml",
        "/js/./app.js",
        "/js//app.js",
    ] {
        let status = raw_get_status(&app.url("/"), path).await;
        assert_eq!(status, 404, "{path}");
    }

    // The API answers as it always did, in JSON, whatever the desktop holds.
    let res = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");
    let res = app.http.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        !header(&res, CONTENT_TYPE.as_str()).starts_with("text/html"),
        "metrics are not the desktop"
    );
    let res = app.http.get(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .http
        .get(app.url("/api/v1/no-such-thing"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    // A file name of the desktop under the API is not the file.
    let res = app
        .http
        .get(app.url("/api/index.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = app.http.get(app.url("/ws")).send().await.unwrap();
    assert_ne!(res.status(), 200, "/ws without an upgrade is not the page");
    assert!(
        !res.headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/html"))
    );
    // Only GET and HEAD read the desktop.
    let res = app.http.post(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = app.http.head(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "text/html; charset=utf-8");
}

/// The status of `GET path` sent byte for byte over TCP to the server of `base`.
async fn raw_get_status(base: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let head = String::from_utf8_lossy(&answer);
    head.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head}"))
}
