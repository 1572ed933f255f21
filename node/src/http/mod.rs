//! The node's HTTP side (axum): HTTP-FLV playback, the JSON API and Prometheus `/metrics`.

mod api;
mod cluster;
mod flv;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::node::Node;

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/api/v1/health", get(api::health))
        .route("/api/v1/streams", get(api::streams))
        .route("/api/v1/clients", get(api::clients))
        .route("/api/v1/clients/{id}", delete(api::kick_client))
        .route("/api/v1/summary", get(api::summary))
        .route("/api/v1/cluster", get(cluster::status))
        .route("/api/v1/cluster/tokens", post(cluster::create_token))
        .route("/api/v1/cluster/leave", post(cluster::leave))
        .route("/api/v1/cluster/nodes/{node}", delete(cluster::remove))
        .route("/api/v1/relay", get(cluster::relay))
        .route("/metrics", get(api::metrics))
        .route("/{app}/{file}", get(flv::play))
        .with_state(node)
}

pub async fn serve(listener: TcpListener, node: Arc<Node>, shutdown: CancellationToken) {
    let app = router(node).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "http server stopped");
    }
}
