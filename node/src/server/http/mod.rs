//! The node's HTTP side (axum): HTTP-FLV playback, the JSON API and Prometheus `/metrics`.

mod api;
mod cluster;
mod flv;
mod listener;
mod stream_keys;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;

use crate::server::context::Node;
use listener::{CappedListener, PeerAddr};

/// Every route of the public HTTP port.
fn router(node: Arc<Node>) -> Router {
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
        .route(
            "/api/v1/stream-keys",
            get(stream_keys::list).post(stream_keys::add),
        )
        .route("/api/v1/stream-keys/{id}", delete(stream_keys::retire))
        .route("/api/v1/stream-tokens", post(stream_keys::mint))
        .route("/metrics", get(api::metrics))
        .route("/{app}/{file}", get(flv::play))
        .with_state(node)
}

/// Serves HTTP until the node stops, with at most `http.max_connections` connections open.
pub(super) async fn serve(listener: TcpListener, node: Arc<Node>) {
    let listener = CappedListener::new(listener, node.config.http.max_connections);
    let shutdown = node.shutdown.clone();
    let app = router(node).into_make_service_with_connect_info::<PeerAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "http server stopped");
    }
}
