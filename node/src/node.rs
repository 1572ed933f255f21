//! A running media node: binds the public listeners and ties the hub, the client table, the
//! monitor and the metrics to the RTMP and HTTP drivers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clients::Clients;
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
    pub metrics: Metrics,
    pub monitor: Arc<Monitor>,
}

impl Node {
    pub fn new(config: Config) -> Arc<Self> {
        let hub = Hub::new(HubConfig::new(&config.hub, config.rtmp.chunk_size));
        let clients = Clients::new(
            config.limits.max_connections,
            config.limits.max_connections_per_ip,
        );
        let metrics = Metrics::new(&clients.traffic);
        Arc::new(Self {
            config,
            hub,
            clients,
            metrics,
            monitor: Monitor::new(),
        })
    }

    /// How players wait: after an unpublish, the republish grace; before the first publisher,
    /// the configured play wait.
    pub fn feed_policy(&self, published: bool) -> FeedPolicy {
        let wait = if published {
            self.config.hub.republish_grace_secs
        } else {
            self.config.hub.play_wait_secs
        };
        FeedPolicy {
            max_skips_per_minute: self.config.hub.max_skips_per_minute,
            wait_for_publisher: Duration::from_secs(wait),
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
    /// Binds the listeners (port 0 picks a free port) and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
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
        Ok(Self {
            node,
            rtmp_addr,
            http_addr,
            shutdown,
            tasks,
        })
    }

    /// Runs until `stop` is cancelled or a serving task ends.
    pub async fn wait(mut self, stop: CancellationToken) {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = self.tasks.join_next() => {}
        }
        self.shutdown.cancel();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}
