//! `/api/v1/cluster*` and `/api/v1/relay`: what `skein status`, `skein token create`,
//! `skein leave`, `skein remove` and `skein-dns` talk to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use skein_raft::JoinInfo;

use super::api::{ApiError, authorize, details};
use crate::server::context::Node;
use crate::server::membership::ClusterLink;

fn member(node: &Node) -> Result<&Arc<ClusterLink>, ApiError> {
    node.cluster().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "this node is not in a cluster (start it with skein init or skein join)".into(),
        )
    })
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// Members, regions, roles, health, load, origin pool and leader. The nodes' internal
/// addresses only with [`details`] (GeoDNS needs only the public ones).
pub async fn status(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let link = member(&node)?;
    let status = link.cluster.status().await;
    if details(&node, &headers) {
        return Ok(Json(status).into_response());
    }
    let mut view = serde_json::to_value(status)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    for member in view["nodes"].as_array_mut().into_iter().flatten() {
        if let Some(member) = member.as_object_mut() {
            member.remove("internal_addr");
        }
    }
    Ok(Json(view).into_response())
}

/// This node's relay: routing view, pulls, pushes received, pulls served.
pub async fn relay(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    Ok(Json(member(&node)?.relay.view()).into_response())
}

#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    /// Lifetime in seconds (default one day).
    ttl_secs: Option<u64>,
    /// Consumed by the first successful join (default: reusable until it expires).
    #[serde(default)]
    single_use: bool,
}

/// Admin: a new join token, with the complete join command.
pub async fn create_token(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Json(request): Json<TokenRequest>,
) -> Result<Response, ApiError> {
    authorize(&node, &headers)?;
    let link = member(&node)?;
    let ttl_secs = request.ttl_secs.unwrap_or(86_400);
    if !(60..=30 * 86_400).contains(&ttl_secs) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("ttl_secs = {ttl_secs} is out of range: a join token lives 60 s to 30 days"),
        ));
    }
    let ttl = Duration::from_secs(ttl_secs);
    let token = if request.single_use {
        link.cluster.create_single_use_token(ttl).await
    } else {
        link.cluster.create_token(ttl).await
    }
    .map_err(unavailable)?;
    let ca_pem = link.cluster.state().borrow().ca_cert_pem.clone();
    let ca_hash = skein_raft::pki::ca_hash_pem(&ca_pem)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let status = link.cluster.status().await;
    let mut seeds: Vec<SocketAddr> = status
        .nodes
        .iter()
        .filter(|n| status.voters.contains(&n.id))
        .map(|n| n.internal_addr)
        .collect();
    seeds.sort();
    tracing::info!(
        ttl_secs = ttl.as_secs(),
        single_use = request.single_use,
        "join token created"
    );
    let join = JoinInfo {
        token,
        ca_hash,
        seeds,
    };
    Ok(Json(json!({
        "token": join.token.to_string(),
        "ttl_secs": ttl.as_secs(),
        "ca_hash": join.ca_hash,
        "seeds": join.seeds,
        "command": join.command("REGION"),
    }))
    .into_response())
}

/// Admin: this node leaves the cluster (an origin first lets its streams move), then stops.
pub async fn leave(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&node, &headers)?;
    let link = member(&node)?.clone();
    link.leave()
        .await
        .map_err(|e| unavailable(format!("{e:#}")))?;
    Ok(Json(json!({ "left": link.cluster.node_id() })).into_response())
}

/// Admin: removes another node (by id or name) from the cluster.
pub async fn remove(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Path(target): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&node, &headers)?;
    let link = member(&node)?;
    let id = link
        .resolve(&target)
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))?;
    link.cluster.remove(id).await.map_err(unavailable)?;
    tracing::info!(node = id, "node removed by admin");
    Ok(Json(json!({ "removed": id })).into_response())
}
