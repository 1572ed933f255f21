//! [`Node`]: the state every driver of a running node receives — configuration, hub, client
//! table, metrics, machine monitor, the stream signing keys and hooks, the cluster side once the node is a member, its history and event log, the tracker of
//! connection tasks and the drain flag. Drivers reach the node through this and through
//! [`admission`](super::admission), never through the assembly in [`server`](super).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::clients::Clients;
use super::events::EventLog;
use super::history_store::History;
use super::hooks::Hooks;
use super::membership::ClusterLink;
use super::monitor::Monitor;
use crate::auth::KeyRing;
use crate::auth::keys::WatchedKeyFile;
use crate::config::Config;
use crate::hub::{Hub, HubConfig};
use crate::metrics::Metrics;

/// State shared by every connection of the node.
pub struct Node {
    /// The settings the node was started with.
    pub config: Config,
    /// The streams this node holds.
    pub hub: Arc<Hub>,
    /// Every RTMP and HTTP-FLV connection, against the connection limits.
    pub clients: Arc<Clients>,
    /// The Prometheus registry.
    pub metrics: Arc<Metrics>,
    /// CPU, memory and traffic of the machine and the process.
    pub monitor: Arc<Monitor>,
    /// The `[auth.hooks]` client.
    pub hooks: Arc<Hooks>,
    /// A standalone node's stream signing keys (a member's are in the cluster state).
    key_file: WatchedKeyFile,
    /// Set once at start when the node is a cluster member.
    cluster: OnceLock<Arc<ClusterLink>>,
    /// Set once at start when `history.enabled`.
    history: OnceLock<Arc<History>>,
    /// What this node saw happen in the cluster.
    pub events: EventLog,
    /// Connection tasks, awaited (with a bound) when the node stops.
    pub tasks: TaskTracker,
    /// Cancelled when the node stops serving: every connection ends cleanly.
    pub shutdown: CancellationToken,
    /// Who reads the health endpoint, and whether they have been told the node drains.
    pub health: HealthWatch,
    draining: AtomicBool,
}

impl Node {
    /// A node for `config`, not yet serving.
    pub fn new(config: Config) -> Arc<Self> {
        let hub = Hub::new(HubConfig::new(&config.hub, config.rtmp.chunk_size));
        let clients = Clients::new(
            config.limits.max_connections,
            config.limits.max_connections_per_ip,
        );
        let metrics = Arc::new(Metrics::new(&clients.traffic));
        let hooks = Arc::new(Hooks::new(&config.auth.hooks));
        let key_file = WatchedKeyFile::new(config.auth.keys_path(&config.cluster.data_dir));
        Arc::new(Self {
            config,
            hub,
            clients,
            metrics,
            monitor: Monitor::new(),
            hooks,
            key_file,
            cluster: OnceLock::new(),
            history: OnceLock::new(),
            events: EventLog::default(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            health: HealthWatch::default(),
            draining: AtomicBool::new(false),
        })
    }

    /// The node's cluster side, when it is a member.
    pub fn cluster(&self) -> Option<&Arc<ClusterLink>> {
        self.cluster.get()
    }

    /// The stream signing keys tokens are verified with: the cluster's for a member, the key
    /// file's for a standalone node.
    pub fn stream_keys(&self) -> KeyRing {
        match self.cluster() {
            Some(link) => KeyRing::from_records(link.cluster.state().borrow().stream_keys.values()),
            None => self.key_file.keys(),
        }
    }

    /// Where a standalone node keeps its stream signing keys.
    pub fn key_file(&self) -> &std::path::Path {
        self.key_file.path()
    }

    /// The node's history, when `history.enabled`.
    pub fn history(&self) -> Option<&Arc<History>> {
        self.history.get()
    }

    pub(super) fn set_history(&self, history: Arc<History>) {
        let _ = self.history.set(history);
    }

    pub(super) fn set_cluster(&self, link: Arc<ClusterLink>) {
        let _ = self.cluster.set(link);
    }

    /// Whether the node is stopping: health says so (GeoDNS stops sending viewers) and new
    /// publishes and plays are refused.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(super) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Runs a background duty, tracked with the connection tasks, until it ends or the node
    /// stops.
    pub fn spawn(&self, duty: impl Future<Output = ()> + Send + 'static) {
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = duty => {}
            }
        });
    }

    /// How long a player's socket may accept nothing before the player is dropped.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.config.hub.write_timeout_secs)
    }
}

/// A prober that read the health endpoint this recently is taken to be still watching.
const PROBER_MEMORY: Duration = Duration::from_secs(10);
/// Health readers remembered at most (GeoDNS servers and load balancers are a handful).
const MAX_HEALTH_READERS: usize = 256;

/// The health endpoint's readers (GeoDNS servers, load balancers), by address, and whether
/// each has been answered `draining: true` yet. A stopping node waits until every recent reader
/// was told, so they stop sending viewers before the listeners close.
#[derive(Default)]
pub struct HealthWatch {
    /// Last read, and whether that answer said draining.
    readers: Mutex<HashMap<IpAddr, (Instant, bool)>>,
    told: Notify,
}

impl HealthWatch {
    /// Records that `reader` was answered, saying `draining` or not.
    pub fn answered(&self, reader: IpAddr, draining: bool) {
        let now = Instant::now();
        let mut readers = self.readers.lock();
        // Anyone may read the health endpoint: keep only recent readers, and a bounded number.
        if readers.len() >= MAX_HEALTH_READERS {
            readers.retain(|_, (at, _)| now.duration_since(*at) < PROBER_MEMORY);
        }
        if readers.len() < MAX_HEALTH_READERS || readers.contains_key(&reader) {
            readers.insert(reader, (now, draining));
        }
        drop(readers);
        if draining {
            self.told.notify_one();
        }
    }

    fn untold(&self) -> usize {
        let now = Instant::now();
        self.readers
            .lock()
            .values()
            .filter(|(at, told)| !told && now.duration_since(*at) < PROBER_MEMORY)
            .count()
    }

    /// Waits until every recent reader has been told the node drains, at most `bound`. Returns
    /// at once when nobody reads the health endpoint.
    pub async fn announced_draining(&self, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        while self.untold() > 0 {
            if tokio::time::timeout_at(deadline, self.told.notified())
                .await
                .is_err()
            {
                tracing::warn!(
                    untold = self.untold(),
                    "drain window over before every health reader saw it"
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[tokio::test]
    async fn a_stopping_node_waits_for_its_health_readers_to_be_told() {
        let watch = Arc::new(HealthWatch::default());
        tokio::time::timeout(
            Duration::from_secs(1),
            watch.announced_draining(Duration::from_secs(30)),
        )
        .await
        .expect("nobody reads the health endpoint: no wait");

        watch.answered(ip(1), false);
        watch.answered(ip(2), false);
        let telling = watch.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            telling.answered(ip(1), true);
            tokio::time::sleep(Duration::from_millis(50)).await;
            telling.answered(ip(2), true);
        });
        tokio::time::timeout(
            Duration::from_secs(5),
            watch.announced_draining(Duration::from_secs(30)),
        )
        .await
        .expect("both readers told: the wait ends");
        assert_eq!(watch.untold(), 0);

        watch.answered(ip(3), false);
        tokio::time::timeout(
            Duration::from_secs(5),
            watch.announced_draining(Duration::from_millis(100)),
        )
        .await
        .expect("a reader that never comes back does not hold the stop beyond the bound");
    }

    #[test]
    fn readers_are_bounded() {
        let watch = HealthWatch::default();
        for i in 0..2 * MAX_HEALTH_READERS as u32 {
            watch.answered(IpAddr::from(i.to_be_bytes()), false);
        }
        assert!(watch.readers.lock().len() <= MAX_HEALTH_READERS);
    }
}
