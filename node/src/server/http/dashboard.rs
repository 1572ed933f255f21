//! The dashboard: one page and its script, style and HTTP-FLV player (mpegts.js, pinned and
//! vendored) built into the binary and served at `/dashboard/`, so every node serves it with
//! nothing else to run. Its data comes from this node's API, from the other members' through
//! `/api/v1/members/{name}/{view}` (asked by this node, so the page needs no cross-origin
//! calls), and from the GeoDNS servers named by `dashboard.dns` through `/api/v1/dns`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
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

/// The dashboard's routes.
pub fn routes() -> Router<Arc<Node>> {
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
        .route("/api/v1/dns", get(dns))
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
        futures_util::future::join_all(servers.iter().map(|s| get_json(s, "/api/v1/view"))).await;
    let servers: Vec<_> = servers
        .iter()
        .zip(views)
        .map(|(server, view)| json!({ "server": server, "answered": view.is_some(), "view": view }))
        .collect();
    Ok(Json(json!({ "servers": servers })))
}

/// A member's read-only view, asked by this node.
async fn member(
    State(node): State<Arc<Node>>,
    Path((name, view)): Path<(String, String)>,
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
    )
    .await
    .map(Json)
    .ok_or_else(|| ApiError(StatusCode::BAD_GATEWAY, format!("{name} did not answer")))
}
