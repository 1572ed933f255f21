//! A running media node: binds the public listeners and ties the hub, the client table, the
//! monitor and the metrics to the RTMP and HTTP drivers.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clients::Clients;
use crate::cluster::{self, ClusterLink, Membership};
use crate::config::Config;
use crate::hub::player::FeedPolicy;
use crate::hub::{Hub, HubConfig};
use crate::metrics::Metrics;
use crate::system::Monitor;
use crate::{http, rtmp_server};

/// State shared by every connection of the node.
pub struct Node {
    pub config: Config,
    pub hub: Arc<Hub>,
    pub clients: Arc<Clients>,
    pub metrics: Arc<Metrics>,
    pub monitor: Arc<Monitor>,
    /// Set once at start when the node is a cluster member.
    pub cluster: OnceLock<Arc<ClusterLink>>,
}

impl Node {
    pub fn new(config: Config) -> Arc<Self> {
        let hub = Hub::new(HubConfig::new(&config.hub, config.rtmp.chunk_size));
        let clients = Clients::new(
            config.limits.max_connections,
            config.limits.max_connections_per_ip,
        );
        let metrics = Arc::new(Metrics::new(&clients.traffic));
        Arc::new(Self {
            config,
            hub,
            clients,
            metrics,
            monitor: Monitor::new(),
            cluster: OnceLock::new(),
        })
    }

    /// How players wait: after an unpublish, the republish grace; before the first publisher,
    /// the configured play wait.
    pub fn feed_policy(&self, published: bool) -> FeedPolicy {
        let wait = if published {
            Duration::from_secs(self.config.hub.republish_grace_secs)
        } else {
            let hold = self
                .cluster()
                .map_or(Duration::ZERO, |link| link.relay.pull_hold());
            Duration::from_secs(self.config.hub.play_wait_secs).max(hold)
        };
        FeedPolicy {
            max_skips_per_minute: self.config.hub.max_skips_per_minute,
            wait_for_publisher: wait,
        }
    }

    pub fn cluster(&self) -> Option<&Arc<ClusterLink>> {
        self.cluster.get()
    }

    /// Prepares a play of `stream`: in a cluster, a stream this node does not have and does
    /// not own is pulled from its owner (one pull shared by all local viewers), and the viewer
    /// waits for it. Returns whether the viewer should wait for a publisher.
    pub fn wants_wait(&self, stream: &str) -> bool {
        if self.hub.get(stream).is_some_and(|s| s.is_published()) {
            return false;
        }
        self.cluster().is_some() || self.config.hub.play_wait_secs > 0
    }

    /// Starts the pull for a viewer that subscribed to a stream this node lacks.
    pub fn pull_if_remote(&self, stream: &str) {
        if let Some(link) = self.cluster()
            && link.relay.is_remote(stream)
            && !self.hub.get(stream).is_some_and(|s| s.is_published())
        {
            link.relay.ensure_pull(stream);
        }
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.config.hub.write_timeout_secs)
    }
}

/// Handle on a started node: its bound addresses, and a way to stop it.
pub struct RunningNode {
    pub node: Arc<Node>,
    pub rtmp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    shutdown: CancellationToken,
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
        config.validate()?;
        let rtmp_listener = TcpListener::bind(config.rtmp.listen)
            .await
            .with_context(|| format!("cannot listen for RTMP on {}", config.rtmp.listen))?;
        let http_listener = TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", config.http.listen))?;
        let rtmp_addr = rtmp_listener.local_addr()?;
        let http_addr = http_listener.local_addr()?;
        let node = Node::new(config);
        let shutdown = CancellationToken::new();
        let mut join_info = None;
        if let Some((link, info)) =
            cluster::start(&node, membership, rtmp_addr, http_addr, shutdown.clone()).await?
        {
            join_info = info;
            let _ = node.cluster.set(link);
        }
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
        tasks.spawn(rtmp_server::serve(
            rtmp_listener,
            node.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(http::serve(http_listener, node.clone(), shutdown.clone()));
        tracing::info!(
            name = %node.config.node.name,
            rtmp = %rtmp_addr,
            http = %http_addr,
            "node serving"
        );
        Ok((
            Self {
                node,
                rtmp_addr,
                http_addr,
                shutdown,
                tasks,
            },
            join_info,
        ))
    }

    /// Runs until `stop` is cancelled or a serving task ends.
    /// Runs until `stop` is cancelled, a serving task ends, or the node left its cluster.
    pub async fn wait(mut self, stop: CancellationToken) {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = self.shutdown.cancelled() => {}
            _ = self.tasks.join_next() => {}
        }
        self.shutdown.cancel();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        if let Some(link) = self.node.cluster.get() {
            link.cluster.stop().await;
        }
    }
}
