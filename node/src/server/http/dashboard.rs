//! The dashboard: one page and its script, style and HTTP-FLV player (mpegts.js, pinned and
//! vendored) built into the binary and served at `/dashboard/`, so every node serves it with
//! nothing else to run. Its data comes from this node's API, from the other members' through
//! `/api/v1/members/{name}/{view}` (asked by this node, so the page needs no cross-origin
//! calls), and from the GeoDNS servers named by `dashboard.dns` through `/api/v1/dns` (their
//! live views) and `/api/v1/dns/history` (their stored series). With `dashboard.public = false`
//! the data routes need the admin token (the page asks for it and sends it); the files do not.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde_json::json;

use super::api::ApiError;
use super::history::{cluster_status, get_json, member_named};
use crate::server::context::Node;

/// The page's files: name, content type, bytes.
const FILES: [(&str, &str, &[u8]); 4] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../../dashboard/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../dashboard/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../dashboard/style.css"),
    ),
    (
        "mpegts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../dashboard/vendor/mpegts.js"),
    ),
];

/// Member views the proxy passes on (all read-only and public).
const MEMBER_VIEWS: [&str; 5] = ["summary", "node", "streams", "relay", "events"];

/// The dashboard's files (no data in them: open even when the views are not).
pub fn files() -> Router<Arc<Node>> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/dashboard/") }))
        .route(
            "/dashboard",
            get(|| async { Redirect::permanent("/dashboard/") }),
        )
        .route(
            "/dashboard/",
            get(|s| file(s, Path("index.html".to_owned()))),
        )
        .route("/dashboard/{file}", get(file))
}

/// The views the dashboard reads through this node: the GeoDNS servers' and the members'.
pub fn views() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/dns", get(dns))
        .route("/api/v1/dns/history", get(dns_history))
        .route("/api/v1/members/{name}/{view}", get(member))
}

fn enabled(node: &Node) -> Result<(), ApiError> {
    if node.config.dashboard.enabled {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            "the dashboard is off (dashboard.enabled = false)".into(),
        ))
    }
}

async fn file(State(node): State<Arc<Node>>, Path(name): Path<String>) -> Response {
    if let Err(e) = enabled(&node) {
        return e.into_response();
    }
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such dashboard file\n").into_response(),
    }
}

/// Each GeoDNS server of `dashboard.dns`: whether it answered, and its view (each region's
/// answer, each edge's health as it sees it).
async fn dns(State(node): State<Arc<Node>>) -> Result<Json<serde_json::Value>, ApiError> {
    enabled(&node)?;
    let servers = &node.config.dashboard.dns;
    let views =
        futures_util::future::join_all(servers.iter().map(|s| get_json(s, "/api/v1/view", None)))
            .await;
    let servers: Vec<_> = servers
        .iter()
        .zip(views)
        .map(|(server, view)| json!({ "server": server, "answered": view.is_some(), "view": view }))
        .collect();
    Ok(Json(json!({ "servers": servers })))
}

/// A GeoDNS server's stored series: `server` is its place in `dashboard.dns` (default 0), the
/// rest of the query string is passed on to its `/api/v1/history`.
async fn dns_history(
    State(node): State<Arc<Node>>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    enabled(&node)?;
    let (server, passed) = dns_server_and_query(query.as_deref().unwrap_or_default())?;
    let servers = &node.config.dashboard.dns;
    let address = servers.get(server).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no GeoDNS server {server}: dashboard.dns names {}",
                servers.len()
            ),
        )
    })?;
    let path = format!("/api/v1/history?{passed}");
    get_json(address, &path, None)
        .await
        .map(Json)
        .ok_or_else(|| {
            ApiError(
                StatusCode::BAD_GATEWAY,
                format!("{address} did not answer its history (or refused the query)"),
            )
        })
}

/// Splits `server=N` (default 0) off a query string; the rest is the GeoDNS server's query.
fn dns_server_and_query(query: &str) -> Result<(usize, String), ApiError> {
    let mut server = 0;
    let mut passed = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "server" {
            server = value.parse().map_err(|_| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("server = {value:?} is not a number"),
                )
            })?;
        } else {
            passed.append_pair(&key, &value);
        }
    }
    Ok((server, passed.finish()))
}

/// A member's read-only view, asked by this node (with the caller's token, if any).
async fn member(
    State(node): State<Arc<Node>>,
    Path((name, view)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    enabled(&node)?;
    if !MEMBER_VIEWS.contains(&view.as_str()) {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no member view {view:?}; known: {}",
                MEMBER_VIEWS.join(", ")
            ),
        ));
    }
    let status = cluster_status(&node).await?;
    let member = member_named(&status, &name)?;
    get_json(
        &member.public_addr.http.to_string(),
        &format!("/api/v1/{view}"),
        headers.get(header::AUTHORIZATION),
    )
    .await
    .map(Json)
    .ok_or_else(|| ApiError(StatusCode::BAD_GATEWAY, format!("{name} did not answer")))
}
