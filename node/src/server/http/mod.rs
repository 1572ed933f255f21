//! The node's HTTP side: HTTP-FLV playback, the JSON API and Prometheus `/metrics`, over plain
//! HTTP or HTTPS (`tls`), on the public listener and, when `http.admin_listen` is set, on an
//! admin listener that alone serves the admin calls.
//!
//! The accept loop is ours (hyper's HTTP/1 connection under axum's router) so that every
//! connection passes the limits of `listener`, gets `http.header_read_timeout_ms` for its TLS
//! handshake and for every request header — an idle keep-alive connection included — and is
//! closed gracefully when the node stops.
//!
//! With TLS on, a connection whose first byte is not a TLS handshake record gets plain HTTP
//! with only `/api/v1/health` and `/api/v1/cluster`: GeoDNS (`skein-dns`) and load balancers
//! read those in plain HTTP; everything else answers 403 and asks for HTTPS.

mod api;
mod cluster;
mod dashboard;
mod flv;
mod history;
mod hls;
mod listener;
mod stream_keys;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::Request;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{delete, get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::metrics::ReasonLabel;
use crate::server::context::Node;
use listener::{ConnectionSlot, HttpAdmission, PeerAddr};
use tls::TlsFiles;

/// The read-only routes every listener serves: health and the cluster document (always open:
/// load balancers and GeoDNS read them), the API views and the dashboard's data (open unless
/// `dashboard.public = false`, then for the admin token), the dashboard's files. Views that
/// show addresses need the admin token unless `http.public_details` is set.
fn read_only_routes(node: &Arc<Node>) -> Router<Arc<Node>> {
    let views = Router::new()
        .route("/api/v1/streams", get(api::streams))
        .route("/api/v1/clients", get(api::clients))
        .route("/api/v1/summary", get(api::summary))
        .route("/api/v1/relay", get(cluster::relay))
        .route("/api/v1/history", get(history::history))
        .route("/api/v1/node", get(history::node_view))
        .route("/api/v1/events", get(history::events))
        .merge(dashboard::views())
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            api::views_gate,
        ));
    Router::new()
        .route("/api/v1/health", get(api::health))
        .route("/api/v1/cluster", get(cluster::status))
        .merge(views)
        .merge(dashboard::files())
}

/// The admin calls (they need the admin token).
fn admin_routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/clients/{id}", delete(api::kick_client))
        .route("/api/v1/cluster/tokens", post(cluster::create_token))
        .route("/api/v1/cluster/leave", post(cluster::leave))
        .route("/api/v1/cluster/nodes/{node}", delete(cluster::remove))
        .route(
            "/api/v1/stream-keys",
            get(stream_keys::list).post(stream_keys::add),
        )
        .route("/api/v1/stream-keys/{id}", delete(stream_keys::retire))
        .route("/api/v1/stream-tokens", post(stream_keys::mint))
}

/// The public listener's routes: without the admin calls when they have a listener of their own.
fn public_router(node: Arc<Node>) -> Router {
    let http = &node.config.http;
    let mut routes = read_only_routes(&node).route("/{app}/{file}", get(play));
    if http.admin_listen.is_none() {
        routes = routes.merge(admin_routes());
    }
    if http.public_metrics || http.admin_listen.is_none() {
        routes = routes.route("/metrics", get(api::metrics));
    }
    routes
        .layer(Extension(Arc::new(hls::HlsStreams::default())))
        .with_state(node)
}

/// `GET /{app}/{file}`: HLS resources by their names, anything else an HTTP-FLV play.
async fn play(
    State(node): State<Arc<Node>>,
    Extension(hls_streams): Extension<Arc<hls::HlsStreams>>,
    connect: ConnectInfo<PeerAddr>,
    Path((app, file)): Path<(String, String)>,
    query: RawQuery,
) -> Response {
    if hls::is_hls(&file) {
        let peer = connect.0.0;
        return hls::serve(node, hls_streams, peer, &app, &file, query.0.as_deref()).await;
    }
    flv::play(State(node), connect, Path((app, file)), query).await
}

/// The admin listener's routes: the admin calls, the read-only API and `/metrics`, no playback.
fn admin_router(node: Arc<Node>) -> Router {
    read_only_routes(&node)
        .merge(admin_routes())
        .route("/metrics", get(api::metrics))
        .with_state(node)
}

/// What a plain-HTTP connection gets on a TLS listener: what GeoDNS reads.
fn plain_on_tls_router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/api/v1/health", get(api::health))
        .route("/api/v1/cluster", get(cluster::status))
        .fallback(|| async {
            (
                axum::http::StatusCode::FORBIDDEN,
                "this port serves HTTPS; only /api/v1/health and /api/v1/cluster answer plain HTTP\n",
            )
        })
        .with_state(node)
}

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The HTTP listeners' shared parts: the node, the connection limits and the TLS pair.
#[derive(Clone)]
pub(super) struct HttpServer {
    node: Arc<Node>,
    admission: Arc<HttpAdmission>,
    tls: Option<Arc<TlsFiles>>,
}

impl HttpServer {
    /// Loads the TLS pair if one is configured (an unreadable one stops the start).
    pub(super) fn new(node: &Arc<Node>) -> anyhow::Result<Self> {
        let http = &node.config.http;
        let tls = match (&http.tls_cert, &http.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles::load(cert, key)?),
            _ => None,
        };
        Ok(Self {
            node: node.clone(),
            admission: HttpAdmission::new(
                http.max_connections,
                node.config.limits.max_connections_per_ip,
            ),
            tls,
        })
    }

    /// Serves the public routes on `listener` until the node stops, and keeps the TLS pair
    /// up to date meanwhile.
    pub(super) async fn serve_public(self, listener: TcpListener) {
        if let Some(tls) = &self.tls {
            self.node.spawn(tls.clone().watch());
        }
        let routes = public_router(self.node.clone());
        self.serve(listener, routes).await;
    }

    /// Serves the admin routes on `listener` until the node stops.
    pub(super) async fn serve_admin(self, listener: TcpListener) {
        let routes = admin_router(self.node.clone());
        self.serve(listener, routes).await;
    }

    async fn serve(self, listener: TcpListener, routes: Router) {
        let shutdown = self.node.shutdown.clone();
        let plain_routes = plain_on_tls_router(self.node.clone());
        loop {
            let room = tokio::select! {
                _ = shutdown.cancelled() => return,
                room = self.admission.room() => room,
            };
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = self.admission.admit(peer, room) else {
                self.node
                    .metrics
                    .connections_refused_total
                    .get_or_create(&ReasonLabel {
                        reason: "http_max_connections_per_ip",
                    })
                    .inc();
                tracing::debug!(%peer, limit = self.admission.max_per_network(), "http connection refused: too many from this address");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let routes = (routes.clone(), plain_routes.clone());
            self.node
                .tasks
                .spawn(server.connection(stream, peer, slot, routes));
        }
    }

    /// One connection: the TLS handshake if configured, then HTTP/1 until either side closes
    /// it, a header is late, or the node stops. `routes` are the listener's routes and those
    /// for plain HTTP on a TLS listener.
    async fn connection(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        slot: ConnectionSlot,
        (routes, plain_routes): (Router, Router),
    ) {
        let timeout = Duration::from_millis(self.node.config.http.header_read_timeout_ms);
        match &self.tls {
            None => self.http(stream, peer, routes, timeout).await,
            Some(tls) => {
                let mut first = [0u8; 1];
                match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
                    Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
                    Ok(Ok(1)) => return self.http(stream, peer, plain_routes, timeout).await,
                    _ => return, // closed, failed or silent: nothing to serve
                }
                let handshake = tokio::time::timeout(timeout, tls.acceptor().accept(stream));
                match handshake.await {
                    Ok(Ok(stream)) => self.http(stream, peer, routes, timeout).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "https handshake failed"),
                    Err(_) => tracing::debug!(%peer, "https handshake not done in time; closed"),
                }
            }
        }
        drop(slot);
    }

    async fn http<Io>(&self, io: Io, peer: SocketAddr, routes: Router, timeout: Duration)
    where
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = routes.map_request(move |mut request: Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(PeerAddr(peer)));
            request
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(timeout)
            .keep_alive(true);
        let connection =
            builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        let mut connection = std::pin::pin!(connection);
        let outcome = tokio::select! {
            outcome = connection.as_mut() => outcome,
            _ = self.node.shutdown.cancelled() => {
                // Answers in flight finish (HTTP-FLV bodies end at shutdown), then it closes.
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = outcome {
            tracing::debug!(%peer, error = %e, "http connection ended");
        }
    }
}
