//! `/api/v1/*` and `/metrics`.
//!
//! Health, summary and `/metrics` are open (GeoDNS and monitoring read them). Views that show
//! client or internal addresses need the admin token unless `http.public_details` is set:
//! `/api/v1/clients` answers 401 without it, `/api/v1/streams` and `/api/v1/cluster` answer a
//! view with the addresses left out.

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::listener::PeerAddr;
use crate::server::context::Node;

/// Health and load, read by GeoDNS every probe interval for load-aware answers.
pub async fn health(
    State(node): State<Arc<Node>>,
    ConnectInfo(reader): ConnectInfo<PeerAddr>,
) -> Json<serde_json::Value> {
    let load = node.monitor.load();
    let draining = node.is_draining();
    node.health.answered(reader.0.ip(), draining);
    Json(json!({
        "status": "ok",
        "node": node.config.node.name,
        "region": node.config.node.region,
        "connections": node.clients.count(),
        "max_connections": node.clients.max_connections(),
        "cpu": load.cpu,
        "egress_bps": load.egress_bps,
        "max_egress_bps": node.config.limits.max_egress_mbps * 1_000_000,
        "draining": draining,
    }))
}

/// Every stream with a publisher or viewers; publisher addresses only with [`details`].
pub async fn streams(State(node): State<Arc<Node>>, headers: HeaderMap) -> Json<serde_json::Value> {
    let mut view = json!({ "streams": node.hub.active_snapshots() });
    if !details(&node, &headers) {
        for stream in view["streams"].as_array_mut().into_iter().flatten() {
            if let Some(publisher) = stream["publisher"].as_object_mut() {
                publisher.remove("peer");
            }
        }
    }
    Json(view)
}

/// Every connection with its address: needs [`details`].
pub async fn clients(State(node): State<Arc<Node>>, headers: HeaderMap) -> Response {
    if !details(&node, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "the client list shows client addresses: send Authorization: Bearer <admin token>, or set http.public_details = true",
        );
    }
    Json(json!({ "clients": node.clients.list() })).into_response()
}

/// Lets a request through to a read-only view when `dashboard.public` is on or it carries the
/// admin token; else answers why not.
pub(super) async fn views_gate(
    State(node): State<Arc<Node>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !node.config.dashboard.public
        && let Err(refused) = authorize(&node, request.headers())
    {
        return refused.into_response();
    }
    next.run(request).await
}

/// Whether this request may see addresses: `http.public_details` is set, or it carries the
/// admin token.
pub(super) fn details(node: &Node, headers: &HeaderMap) -> bool {
    node.config.http.public_details || authorize(node, headers).is_ok()
}

#[derive(Serialize)]
pub struct Summary {
    node: String,
    region: String,
    uptime_secs: f64,
    connections: usize,
    publishers: usize,
    players: usize,
    streams: usize,
    cpu: f64,
    process_cpu_cores: f64,
    memory_rss_bytes: u64,
    egress_bps: u64,
    ingress_bps: u64,
    bytes_sent: u64,
    bytes_received: u64,
}

fn summarize(node: &Node) -> Summary {
    let load = node.monitor.load();
    let (publishers, players, _) = node.clients.roles();
    Summary {
        node: node.config.node.name.clone(),
        region: node.config.node.region.clone(),
        uptime_secs: node.monitor.uptime().as_secs_f64(),
        connections: node.clients.count(),
        publishers,
        players,
        streams: node
            .hub
            .streams()
            .iter()
            .filter(|s| s.is_published())
            .count(),
        cpu: load.cpu,
        process_cpu_cores: load.process_cpu_cores,
        memory_rss_bytes: load.memory_rss_bytes,
        egress_bps: load.egress_bps,
        ingress_bps: load.ingress_bps,
        bytes_sent: node.clients.traffic.bytes_out.get(),
        bytes_received: node.clients.traffic.bytes_in.get(),
    }
}

pub async fn summary(State(node): State<Arc<Node>>) -> Json<Summary> {
    Json(summarize(&node))
}

pub async fn metrics(State(node): State<Arc<Node>>) -> Response {
    let s = summarize(&node);
    let m = &node.metrics;
    m.connections.set(s.connections as i64);
    m.streams.set(s.streams as i64);
    m.players.set(s.players as i64);
    m.publishers.set(s.publishers as i64);
    m.cpu_ratio.set(s.cpu);
    m.process_cpu_cores.set(s.process_cpu_cores);
    m.memory_rss_bytes.set(s.memory_rss_bytes as i64);
    m.egress_bps.set(s.egress_bps as i64);
    m.ingress_bps.set(s.ingress_bps as i64);
    let cert_expiry_ms = node
        .cluster()
        .and_then(|link| link.cluster.cert_expires_at_ms())
        .unwrap_or(0);
    m.cluster_cert_expiry.set((cert_expiry_ms / 1000) as i64);
    m.history_store_bytes
        .set(node.history().map_or(0, |h| h.store.file_bytes()) as i64);
    if let Some(link) = node.cluster() {
        let status = link.cluster.status().await;
        m.cluster_leader.set(i64::from(status.leader.is_some()));
        m.cluster_origins_active
            .set(status.origin_pool.active.len() as i64);
        m.cluster_origin_target
            .set(status.origin_pool.target as i64);
        let down = status
            .nodes
            .iter()
            .filter(|n| n.health == skein_raft::NodeHealth::Down)
            .count();
        m.cluster_nodes_down.set(down as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Admin: disconnect one client. Needs `Authorization: Bearer <http.admin_token>`.
pub async fn kick_client(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = authorize(&node, &headers) {
        return refused.into_response();
    }
    let Ok(id) = id.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, "client id must be a number");
    };
    if node.clients.kick(id) {
        tracing::info!(client = id, "client disconnected by admin");
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "no such client")
    }
}

/// An API error: status and message, sent as `{"error": message}`.
pub(super) struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0, &self.1)
    }
}

/// Admin calls need `Authorization: Bearer <http.admin_token>`.
pub(super) fn authorize(node: &Node, headers: &HeaderMap) -> Result<(), ApiError> {
    let expected = &node.config.http.admin_token;
    if expected.is_empty() {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "admin API disabled: set http.admin_token (or SKEIN_ADMIN_TOKEN) to enable it".into(),
        ));
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), expected.as_bytes())) {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token (Authorization: Bearer <token>)".into(),
        ));
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
