//! The browser client, embedded in the binary (rust-embed, also in debug
//! builds) or served from `--client-dir` during development; compressed
//! (brotli or gzip, as the browser accepts) by tower-http's compression
//! layer on these routes only, so the API's own encoding stays untouched.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;
use tower_http::compression::{CompressionLayer, CompressionLevel};

use crate::state::AppState;

#[derive(RustEmbed)]
#[folder = "../client/"]
#[exclude = "node_modules/*"]
#[exclude = "tests/*"]
#[exclude = "package*.json"]
struct Client;

/// Content-Security-Policy for the client: same-origin scripts, styles and sockets only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Routes serving the client.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/wall", get(index))
        .route("/{*path}", get(file))
        // the first page is ~0.5 MB of text: ~115 KB gzip, less with brotli
        // (brotli at its default, 11, costs ~100 ms a file in a debug build; 4 is
        // within a few % of its size at a fraction of the time)
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .br(true)
                .quality(CompressionLevel::Precise(4)),
        )
}

async fn index(State(st): State<AppState>) -> Response {
    serve(&st, "index.html").await
}

async fn file(State(st): State<AppState>, Path(path): Path<String>) -> Response {
    if path.starts_with("api/") {
        return crate::error::AppError::NotFound("no such route".into()).into_response();
    }
    serve(&st, &path).await
}

async fn serve(st: &AppState, path: &str) -> Response {
    let mime = mime_for(path);
    let body: Option<Vec<u8>> = match &st.options.client_dir {
        Some(dir) => match under(dir, path).await {
            Some(file) => tokio::fs::read(file).await.ok(),
            None => None,
        },
        None => Client::get(path).map(|f| f.data.into_owned()),
    };
    match body {
        Some(bytes) => {
            let mut resp = (StatusCode::OK, bytes).into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            resp
        }
        None => crate::error::AppError::NotFound(format!("no file {path:?}")).into_response(),
    }
}

/// The file `path` names inside `dir`, if it is one: only plain name
/// components (no root, drive, `..`; `.` is skipped), and after resolving
/// symbolic links it must still lie under `dir` (issue 16.10: `dir.join`
/// of an absolute path would replace `dir`).
async fn under(dir: &std::path::Path, path: &str) -> Option<std::path::PathBuf> {
    use std::path::Component;
    let mut rel = std::path::PathBuf::new();
    for c in std::path::Path::new(path).components() {
        match c {
            Component::Normal(name) => rel.push(name),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => return None,
        }
    }
    let root = tokio::fs::canonicalize(dir).await.ok()?;
    let file = tokio::fs::canonicalize(root.join(rel)).await.ok()?;
    file.starts_with(&root).then_some(file)
}

fn mime_for(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}
