//! `GET /api/v1/history` (a node's or the cluster's series of one metric), `GET /api/v1/node`
//! (this machine's inventory) and `GET /api/v1/events` (what this node saw happen in the
//! cluster).
//!
//! A cluster series is made here: the members listed in the cluster document are asked for
//! their own series of the same range and step over their HTTP API, all at once with a
//! timeout; a member that does not answer, or answers under another name, is a gap. The
//! points are merged per step ([`merge_nodes`]), each marked with how many nodes are behind it.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use skein_history::{Params, Point, QueryError, RangeQuery, answer, merge_nodes, now_ms};
use skein_raft::{ClusterStatus, NodeStatus};

use super::api::{ApiError, details};
use crate::server::context::Node;
use crate::server::history_store::History;

/// How long a member has to answer for a cluster series.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(2);
/// A member's answer larger than this is refused (2 000 points are far less).
const MAX_MEMBER_ANSWER: usize = 1 << 20;

static CLIENT: LazyLock<Client<HttpConnector, Empty<Bytes>>> = LazyLock::new(|| {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(MEMBER_TIMEOUT));
    Client::builder(TokioExecutor::new()).build(connector)
});

fn history_of(node: &Node) -> Result<&Arc<History>, ApiError> {
    node.history().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "history is off on this node (history.enabled = false)".into(),
        )
    })
}

fn refused(e: QueryError) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, e.to_string())
}

/// The series, or without `metric` the catalogue: families, metrics, resolutions, store
/// size. `node` is `self` (default), `cluster`, or a member's name; a label such as
/// `stream=live/cam` asks for that stream's series.
pub async fn history(
    State(node): State<Arc<Node>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let history = history_of(&node)?.clone();
    let params = Params::from_query(query.as_deref().unwrap_or_default()).map_err(refused)?;
    if params.metric.is_none() && params.range.is_none() && params.step.is_none() {
        let name = node.config.node.name.clone();
        let catalogue =
            tokio::task::spawn_blocking(move || answer::catalogue(&history.store, &name))
                .await
                .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        return Ok(Json(catalogue).into_response());
    }
    let now = now_ms();
    let query = RangeQuery::parse(
        history.store.families(),
        &params,
        now,
        history.interval_ms(),
    )
    .map_err(refused)?;
    let me = &node.config.node.name;
    let auth = headers.get(axum::http::header::AUTHORIZATION);
    match params.node.as_deref().unwrap_or("self") {
        "self" => own_series(&node, &history, query, now).await,
        "cluster" => cluster_series(&node, query, auth).await,
        name if name == me => own_series(&node, &history, query, now).await,
        name => member_series(&node, name, query, auth).await,
    }
}

async fn own_series(
    node: &Node,
    history: &Arc<History>,
    query: RangeQuery,
    now: u64,
) -> Result<Response, ApiError> {
    let history = history.clone();
    let name = node.config.node.name.clone();
    let series =
        tokio::task::spawn_blocking(move || answer::own_series(&history.store, &name, &query, now))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    Ok(Json(series).into_response())
}

/// `GET http://{addr}{path}` as JSON, with the caller's `Authorization` when there is one (a
/// member that keeps its views for the admin token needs it); `None` when it does not answer
/// in time, answers an error, or answers too much.
pub(super) async fn get_json(
    addr: &str,
    path: &str,
    auth: Option<&HeaderValue>,
) -> Option<serde_json::Value> {
    let mut request = Request::get(format!("http://{addr}{path}"));
    if let Some(auth) = auth {
        request = request.header(axum::http::header::AUTHORIZATION, auth);
    }
    let request = request.body(Empty::new()).ok()?;
    let answer = async {
        let response = CLIENT.request(request).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = Limited::new(response.into_body(), MAX_MEMBER_ANSWER)
            .collect()
            .await
            .ok()?
            .to_bytes();
        serde_json::from_slice::<serde_json::Value>(&body).ok()
    };
    tokio::time::timeout(MEMBER_TIMEOUT, answer).await.ok()?
}

/// A member's own series of `query`, asked over its HTTP API; `None` when it does not answer,
/// or answers as another node.
async fn ask_member(
    http: std::net::SocketAddr,
    name: &str,
    query: &RangeQuery,
    auth: Option<&HeaderValue>,
) -> Option<Vec<Point>> {
    let path = format!("/api/v1/history?{}", query.to_query_string());
    let answer = get_json(&http.to_string(), &path, auth).await?;
    if answer["node"].as_str() != Some(name) {
        tracing::warn!(%http, expected = name, answered = ?answer["node"], "a member answered history under another name; left out");
        return None;
    }
    serde_json::from_value(answer["points"].clone()).ok()
}

/// The cluster document, or 404 outside a cluster.
pub(super) async fn cluster_status(node: &Node) -> Result<ClusterStatus, ApiError> {
    let link = node.cluster().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "this node is not in a cluster: only its own views (node=self) answer".into(),
        )
    })?;
    Ok(link.cluster.status().await)
}

/// The member named `name`, or 404.
pub(super) fn member_named<'a>(
    status: &'a ClusterStatus,
    name: &str,
) -> Result<&'a NodeStatus, ApiError> {
    status
        .nodes
        .iter()
        .find(|n| n.name == name)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no node named {name:?}")))
}

async fn cluster_series(
    node: &Node,
    query: RangeQuery,
    auth: Option<&HeaderValue>,
) -> Result<Response, ApiError> {
    let status = cluster_status(node).await?;
    let asks = status
        .nodes
        .iter()
        .map(|member| ask_member(member.public_addr.http, &member.name, &query, auth));
    let series = futures_util::future::join_all(asks).await;
    let steps = (query.from_ms..query.to_ms).step_by(query.step_ms as usize);
    let points = merge_nodes(query.metric.aggregate, steps, &series);
    let nodes: Vec<_> = status
        .nodes
        .iter()
        .zip(&series)
        .map(|(member, series)| {
            json!({
                "id": member.id,
                "name": member.name,
                "region": member.region,
                "health": member.health,
                "answered": series.is_some(),
                "points": series,
            })
        })
        .collect();
    let mut answer = json!({
        "metric": query.metric.name,
        "unit": query.metric.unit,
        "aggregate": query.metric.aggregate,
        "node": "cluster",
        "from": query.from_ms,
        "to": query.to_ms,
        "step_ms": query.step_ms,
        "points": points,
        "nodes": nodes,
    });
    label(&mut answer, &query);
    Ok(Json(answer).into_response())
}

/// Names the series' label in an answer, as a node's own answer does.
fn label(answer: &mut serde_json::Value, query: &RangeQuery) {
    if !query.label.is_empty() {
        answer[query.family.label] = query.label.clone().into();
    }
}

async fn member_series(
    node: &Node,
    name: &str,
    query: RangeQuery,
    auth: Option<&HeaderValue>,
) -> Result<Response, ApiError> {
    let status = cluster_status(node).await?;
    let member = member_named(&status, name)?;
    let points = ask_member(member.public_addr.http, name, &query, auth)
        .await
        .ok_or_else(|| {
            ApiError(
                StatusCode::BAD_GATEWAY,
                format!("{name} did not answer its history"),
            )
        })?;
    let mut answer = json!({
        "metric": query.metric.name,
        "unit": query.metric.unit,
        "node": name,
        "from": query.from_ms,
        "to": query.to_ms,
        "step_ms": query.step_ms,
        "points": points,
    });
    label(&mut answer, &query);
    Ok(Json(answer).into_response())
}

/// This node: name, region, roles, the machine inventory (interface addresses only with the
/// admin token or `http.public_details`), and where the dashboard finds the GeoDNS servers.
pub async fn node_view(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
) -> Json<serde_json::Value> {
    let mut inventory = node.history().and_then(|h| h.inventory());
    if !details(&node, &headers) {
        for interface in inventory.iter_mut().flat_map(|i| i.interfaces.iter_mut()) {
            interface.addresses.clear();
            interface.mac.clear();
        }
    }
    let relay = node.cluster().map(|link| link.relay.view());
    Json(json!({
        "name": node.config.node.name,
        "region": node.config.node.region,
        "member": node.cluster().is_some(),
        "history": node.history().is_some(),
        "inventory": inventory,
        "relay": relay,
        "dashboard": { "dns": node.config.dashboard.dns },
    }))
}

/// What this node saw happen in the cluster, newest first.
pub async fn events(State(node): State<Arc<Node>>) -> Json<serde_json::Value> {
    Json(json!({ "node": node.config.node.name, "events": node.events.recent() }))
}
