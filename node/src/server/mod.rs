//! Everything of the node that owns a socket or a task. [`RunningNode`] binds the public
//! listeners, makes the node a cluster member, spawns the drivers and background duties, and
//! drains and stops them; the drivers (`rtmp`, `http`) see only the shared [`Node`] context
//! and the one [`admission`] path.
//!
//! Stopping is first-class: [`RunningNode::stop`] reports `draining: true` on the health
//! endpoint (GeoDNS stops sending viewers), refuses new plays and publishes, lets an origin leave the
//! ring so its streams move, then ends every connection cleanly (players get an end of stream)
//! and waits — with a bound — for the connection tasks.

pub mod admission;
pub mod clients;
pub mod collector;
mod context;
pub mod events;
pub mod history_store;
pub mod hooks;
mod http;
pub mod membership;
pub mod monitor;
mod net;
mod rtmp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use skein_raft::LoadReport;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::{Action, Policy};
use crate::config::Config;
use crate::relay::Relay;
pub use context::Node;
use membership::{ClusterLink, Membership};

/// Connection tasks get this long to finish after they were told to stop.
const CONNECTIONS_CLOSE_BOUND: Duration = Duration::from_secs(3);

/// Heartbeats to the leader carry the node's load; they are not log entries.
async fn report_load(node: Arc<Node>, link: Arc<ClusterLink>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let load = node.monitor.load();
        link.cluster.report_load(LoadReport {
            connections: node.clients.count() as u64,
            cpu: load.cpu,
            egress_bps: load.egress_bps,
            capacity_bps: node.config.limits.max_egress_mbps * 1_000_000,
            origin_streams: link.relay.origin_streams(),
            edge_streams: link.relay.pulled_streams() as u64,
        });
    }
}

/// Handle on a started node: its bound addresses, and a way to stop it.
pub struct RunningNode {
    /// The context the drivers share.
    pub node: Arc<Node>,
    /// Where the RTMP listener is bound.
    pub rtmp_addr: SocketAddr,
    /// Where the HTTP listener is bound.
    pub http_addr: SocketAddr,
    /// Where the admin HTTP listener is bound, when `http.admin_listen` is set.
    pub admin_addr: Option<SocketAddr>,
    /// Cancelled by the cluster side once the node has left its cluster.
    left_cluster: CancellationToken,
    /// Listeners and background duties (connection tasks are in `node.tasks`).
    tasks: JoinSet<()>,
}

impl RunningNode {
    /// Binds the listeners (port 0 picks a free port) and starts serving a standalone node.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        Ok(Self::start_member(config, Membership::Standalone).await?.0)
    }

    /// Binds the listeners, becomes a cluster member as `membership` says, and starts serving.
    /// After `init`, also returns what `skein join` needs.
    pub async fn start_member(
        config: Config,
        membership: Membership,
    ) -> anyhow::Result<(Self, Option<skein_raft::JoinInfo>)> {
        let mut config = config;
        config.resolve_admin_token()?;
        config.validate()?;
        if !config.dashboard.public && config.http.admin_token.is_empty() {
            anyhow::bail!(
                "dashboard.public = false keeps the read-only views for the admin token, but this \
                 node has none (set http.admin_token, http.admin_token_file or SKEIN_ADMIN_TOKEN)"
            );
        }
        let rtmp_listener = TcpListener::bind(config.rtmp.listen)
            .await
            .with_context(|| format!("cannot listen for RTMP on {}", config.rtmp.listen))?;
        let http_listener = TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", config.http.listen))?;
        let admin_listener = match config.http.admin_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen for the admin API on {addr} (http.admin_listen)")
            })?),
            None => None,
        };
        let rtmp_addr = rtmp_listener.local_addr()?;
        let http_addr = http_listener.local_addr()?;
        let admin_addr = admin_listener
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()?;
        let node = Node::new(config);
        let http_server = http::HttpServer::new(&node)?;
        let mut left_cluster = CancellationToken::new();
        let public = membership::public_addrs(&node.config, rtmp_addr, http_addr);
        let mut join_info = None;
        if let Some((cluster, info)) = membership::join(&node.config, membership, public).await? {
            join_info = info;
            let relay = Relay::start(
                cluster.clone(),
                node.hub.clone(),
                node.metrics.clone(),
                membership::relay_settings(&node.config),
                node.tasks.clone(),
                node.shutdown.clone(),
            );
            let link = Arc::new(ClusterLink::new(cluster, relay));
            left_cluster = link.left();
            node.spawn(report_load(node.clone(), link.clone()));
            let wanted = membership::RegionFacts::from_config(&node.config);
            if !wanted.is_empty() {
                node.spawn(membership::publish_region(link.clone(), wanted));
            }
            node.set_cluster(link);
        }
        if node.config.history.enabled {
            let history = history_store::History::open(&node.config)?;
            node.set_history(history.clone());
            node.spawn(collector::run(node.clone(), history));
        }
        node.spawn(collector::watch_cluster(node.clone()));
        let mut tasks = JoinSet::new();

        let monitor_node = node.clone();
        tasks.spawn(async move {
            let hub = monitor_node.hub.clone();
            monitor_node
                .monitor
                .clone()
                .run(monitor_node.clients.traffic.clone(), move |elapsed| {
                    hub.tick(elapsed)
                })
                .await;
        });
        tasks.spawn(rtmp::serve(rtmp_listener, node.clone()));
        if let Some(listener) = admin_listener {
            tasks.spawn(http_server.clone().serve_admin(listener));
        }
        tasks.spawn(http_server.serve_public(http_listener));
        tracing::info!(
            name = %node.config.node.name,
            rtmp = %rtmp_addr,
            http = %http_addr,
            admin = ?admin_addr,
            tls = node.config.http.tls_cert.is_some(),
            "node serving"
        );
        if node.cluster().is_none()
            && [Action::Publish, Action::Play]
                .into_iter()
                .any(|action| node.config.auth.uses(action, Policy::Token))
            && node.stream_keys().is_empty()
        {
            tracing::warn!(
                keys_file = %node.key_file().display(),
                "tokens are required (auth) but there is no stream signing key yet: every publish or play that needs a token is refused until one exists — mint a token with `skein token publish APP/KEY --keys-file FILE` (it creates the first key), or set [auth] publish = \"open\""
            );
        }
        Ok((
            Self {
                node,
                rtmp_addr,
                http_addr,
                admin_addr,
                left_cluster,
                tasks,
            },
            join_info,
        ))
    }

    /// Serves until `stop` is cancelled, the node left its cluster, or a serving task ended;
    /// then stops gracefully.
    pub async fn wait(mut self, stop: CancellationToken) {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = self.left_cluster.cancelled() => {}
            _ = self.tasks.join_next() => {
                tracing::error!("a serving task ended; stopping");
            }
        }
        self.stop().await;
    }

    /// Drains and stops the node: health says `draining`, new plays and publishes are
    /// refused, an origin lets its streams move, and after the drain window every connection
    /// ends cleanly. Bounded by the drain window plus a few seconds.
    pub async fn stop(mut self) {
        let node = &self.node;
        node.start_draining();
        let drain = Duration::from_millis(node.config.http.drain_ms);
        tracing::info!(
            connections = node.clients.count(),
            drain_ms = drain.as_millis() as u64,
            "draining: health reports draining, new plays and publishes refused"
        );
        let origin_moved = async {
            if let Some(link) = node.cluster() {
                link.drain_origin(drain).await;
            }
        };
        tokio::join!(origin_moved, node.health.announced_draining(drain));
        node.shutdown.cancel();
        node.tasks.close();
        let open = node.clients.count();
        if tokio::time::timeout(CONNECTIONS_CLOSE_BOUND, node.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = node.tasks.len(),
                "connections still open after {CONNECTIONS_CLOSE_BOUND:?}; abandoning them"
            );
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        if let Some(link) = node.cluster() {
            link.cluster.stop().await;
        }
        tracing::info!(closed = open, "node stopped");
    }
}
