//! The control loop: owns membership (static config or cluster), runs a prober per edge,
//! applies probe results to the health trackers, reloads the config file when it changes, and
//! publishes a new [`Snapshot`] after every change.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::answer::Snapshot;
use crate::automap::{EdgeState, EdgeView, RegionView};
use crate::cluster;
use crate::config::{Config, EdgeConfig, HealthConfig, RegionConfig};
use crate::geo::GeoDb;
use crate::health::{ProbeResult, Tracker, timed_probe};
use crate::metrics::{EdgeExport, Event};
use crate::server::Shared;
use crate::zone::Zones;

/// A validated config with everything built from it that can fail.
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Zone data built from it.
    pub zones: Arc<Zones>,
    /// Its geolocation database, opened.
    pub geo: Option<Arc<GeoDb>>,
}

impl Loaded {
    /// Loads a file and everything built from it.
    pub fn load(path: &Path) -> anyhow::Result<Loaded> {
        let config = Config::load(path)?;
        Loaded::from_config(config)
    }

    /// Builds the zones and opens the geo database of a config.
    pub fn from_config(config: Config) -> anyhow::Result<Loaded> {
        let zones = Zones::build(&config.zones)?;
        let geo = GeoDb::open(&config.geo)?.map(Arc::new);
        Ok(Loaded {
            config,
            zones: Arc::new(zones),
            geo,
        })
    }
}

/// Identity of a probed edge: changing any part starts a new prober with fresh state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EdgeKey {
    region: String,
    name: String,
    rtmp: SocketAddr,
    http: SocketAddr,
}

fn edge_key(region: &str, e: &EdgeConfig) -> Option<EdgeKey> {
    let ip = e.probe_ip()?;
    Some(EdgeKey {
        region: region.to_string(),
        name: e.name.clone(),
        rtmp: SocketAddr::new(ip, e.rtmp_port),
        http: SocketAddr::new(ip, e.http_port),
    })
}

struct EdgeRuntime {
    tracker: Tracker,
    last_latency: Option<Duration>,
    task: JoinHandle<()>,
}

enum Msg {
    Probe(EdgeKey, ProbeResult),
    Config(Box<Loaded>),
    Cluster(cluster::Update),
}

/// Where regions come from.
pub enum Membership {
    /// The `[[regions]]` of the config file.
    Static,
    /// Polled from the cluster API.
    Cluster {
        /// Node API addresses (`host:port`).
        seeds: Vec<String>,
    },
}

/// The control loop and the state it owns.
pub struct Control {
    loaded: Loaded,
    /// Cancelled at shutdown: every task of the control loop ends.
    stop: CancellationToken,
    tasks: TaskTracker,
    membership: Membership,
    regions: Vec<RegionConfig>,
    edges: HashMap<EdgeKey, EdgeRuntime>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    degraded: bool,
}

impl Control {
    /// Builds the first snapshot (every edge unknown) so the drivers can start answering. The
    /// tasks the loop starts are tracked by `tasks` and end when `stop` is cancelled.
    pub fn new(
        loaded: Loaded,
        membership: Membership,
        shared_metrics: Arc<crate::metrics::Metrics>,
        stop: CancellationToken,
        tasks: TaskTracker,
    ) -> (Control, Arc<Shared>) {
        let regions = match &membership {
            Membership::Static => loaded.config.regions.clone(),
            Membership::Cluster { .. } => match cluster::load_cache(&loaded.config.cluster.cache) {
                Some((r, written)) => {
                    shared_metrics.membership_confirmed(written, true);
                    tracing::info!(
                        path = %loaded.config.cluster.cache.display(),
                        regions = r.len(),
                        "using cached cluster membership until the cluster answers"
                    );
                    r
                }
                None => loaded.config.regions.clone(),
            },
        };
        let views = views(&regions, &HashMap::new());
        let snap = Snapshot::new(
            loaded.zones.clone(),
            loaded.geo.clone(),
            &views,
            &loaded.config,
        );
        let shared = Arc::new(Shared::new(snap, shared_metrics));
        let (tx, rx) = mpsc::channel(1024);
        let control = Control {
            loaded,
            stop,
            tasks,
            membership,
            regions,
            edges: HashMap::new(),
            shared: shared.clone(),
            tx,
            rx,
            degraded: false,
        };
        (control, shared)
    }

    /// Runs until the stop token is cancelled; the config watcher, the cluster watcher and the
    /// probers are tracked tasks that end with it.
    pub async fn run(mut self, config_path: PathBuf) {
        let watcher = watch_config(config_path, self.tx.clone(), self.shared.clone());
        spawn_until_stopped(&self.stop, &self.tasks, watcher);
        if let Membership::Cluster { seeds } = &self.membership {
            let (ctx, mut crx) = mpsc::channel(16);
            let c = &self.loaded.config.cluster;
            let last = cluster::load_cache(&c.cache).map(|(r, _)| r);
            let watcher = cluster::watch(
                seeds.clone(),
                Duration::from_millis(c.poll_interval_ms),
                c.cache.clone(),
                last,
                ctx,
            );
            spawn_until_stopped(&self.stop, &self.tasks, watcher);
            let tx = self.tx.clone();
            // Ends when the watcher has ended and dropped its sender.
            self.tasks.spawn(async move {
                while let Some(u) = crx.recv().await {
                    if tx.send(Msg::Cluster(u)).await.is_err() {
                        return;
                    }
                }
            });
        }
        self.reconcile(None);
        self.publish();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut dirty = false;
        let stop = self.stop.clone();
        loop {
            tokio::select! {
                msg = self.rx.recv() => {
                    let Some(msg) = msg else { break };
                    dirty |= self.handle(msg);
                }
                _ = tick.tick() => {
                    if dirty {
                        self.publish();
                        dirty = false;
                    }
                }
                () = stop.cancelled() => break,
            }
        }
        tracing::info!(probers = self.edges.len(), "control loop stopped");
    }

    /// Applies a message; true if the snapshot needs rebuilding.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Probe(key, r) => {
                let Some(rt) = self.edges.get_mut(&key) else {
                    return false;
                };
                self.shared.metrics.probe(r.latency);
                let h = &self.loaded.config.health;
                let err = r.result.as_ref().err().cloned();
                if r.result.is_ok() {
                    rt.last_latency = Some(r.latency);
                }
                if let Some(state) = rt.tracker.observe(r.result, h.fall, h.rise) {
                    self.shared.metrics.event(Event::Transition);
                    match state {
                        EdgeState::Up => {
                            tracing::info!(region = %key.region, edge = %key.name, "edge up")
                        }
                        _ => tracing::warn!(
                            region = %key.region, edge = %key.name, state = state.as_str(),
                            error = err.as_deref().unwrap_or(""), "edge {}", state.as_str()
                        ),
                    }
                }
                true
            }
            Msg::Config(loaded) => {
                let old_health = self.loaded.config.health.clone();
                if loaded.config.listen.udp != self.loaded.config.listen.udp
                    || loaded.config.listen.tcp != self.loaded.config.listen.tcp
                    || loaded.config.listen.metrics != self.loaded.config.listen.metrics
                {
                    tracing::warn!("listen addresses changed: they take effect after a restart");
                }
                self.loaded = *loaded;
                if matches!(self.membership, Membership::Static) {
                    self.regions = self.loaded.config.regions.clone();
                }
                tracing::info!("configuration reloaded");
                self.reconcile(Some(old_health));
                true
            }
            Msg::Cluster(cluster::Update::Membership(regions)) => {
                self.shared.metrics.event(Event::ClusterUpdate);
                self.shared
                    .metrics
                    .membership_confirmed(SystemTime::now(), false);
                tracing::info!(
                    regions = regions.len(),
                    edges = regions.iter().map(|r| r.edges.len()).sum::<usize>(),
                    "cluster membership changed"
                );
                self.regions = regions;
                self.reconcile(None);
                true
            }
            Msg::Cluster(cluster::Update::Confirmed) => {
                self.shared
                    .metrics
                    .membership_confirmed(SystemTime::now(), false);
                false
            }
            Msg::Cluster(cluster::Update::Error(e)) => {
                self.shared.metrics.event(Event::ClusterError);
                tracing::warn!(error = %e, "cluster unreachable; keeping the last membership");
                false
            }
        }
    }

    /// Starts probers for new edges, stops them for removed ones; restarts all when the health
    /// settings changed (keeping the trackers).
    fn reconcile(&mut self, old_health: Option<HealthConfig>) {
        let h = self.loaded.config.health.clone();
        let restart_all = old_health.is_some_and(|o| o != h);
        let mut wanted = HashMap::new();
        for r in &self.regions {
            for e in &r.edges {
                if let Some(k) = edge_key(&r.name, e) {
                    wanted.insert(k, ());
                }
            }
        }
        self.edges.retain(|k, rt| {
            let keep = wanted.contains_key(k);
            if !keep || restart_all {
                rt.task.abort();
            }
            if !keep {
                tracing::info!(region = %k.region, edge = %k.name, "edge removed");
            }
            keep
        });
        for k in wanted.into_keys() {
            let spawn = |k: &EdgeKey| {
                spawn_until_stopped(
                    &self.stop,
                    &self.tasks,
                    probe_forever(k.clone(), h.clone(), self.tx.clone()),
                )
            };
            match self.edges.get_mut(&k) {
                Some(rt) if restart_all => rt.task = spawn(&k),
                Some(_) => {}
                None => {
                    tracing::info!(region = %k.region, edge = %k.name, rtmp = %k.rtmp, http = %k.http, "edge added (unknown until probed)");
                    let task = spawn(&k);
                    self.edges.insert(
                        k,
                        EdgeRuntime {
                            tracker: Tracker::default(),
                            last_latency: None,
                            task,
                        },
                    );
                }
            }
        }
    }

    fn publish(&mut self) {
        let trackers: HashMap<EdgeKey, &Tracker> = self
            .edges
            .iter()
            .map(|(k, v)| (k.clone(), &v.tracker))
            .collect();
        let views = views(&self.regions, &trackers);
        // After a change of regions or overrides this walks the whole geo database (seconds
        // for a full-size one): the runtime moves this thread's other tasks, such as the
        // hickory engine's queries, to another thread meanwhile. (`app` runs the control loop
        // on a multi-threaded runtime, which `block_in_place` needs.)
        let mut snap = tokio::task::block_in_place(|| {
            Snapshot::new(
                self.loaded.zones.clone(),
                self.loaded.geo.clone(),
                &views,
                &self.loaded.config,
            )
        });
        let metrics = &self.shared.metrics;
        snap.region_answers = (0..snap.plan.region_count())
            .map(|i| metrics.region_counter(snap.plan.region_name(i)))
            .collect();
        let degraded = !snap.plan.degraded.is_empty();
        if degraded != self.degraded {
            if degraded {
                let mode = if self.loaded.config.answer.fail_closed {
                    "answering NODATA (fail_closed)"
                } else {
                    "answering the least-bad edges"
                };
                tracing::error!(families = ?snap.plan.degraded, "no healthy edge with spare capacity anywhere: {mode}");
            } else {
                tracing::info!("healthy edges available again");
            }
            self.degraded = degraded;
        }
        let hw = self.loaded.config.answer.high_water;
        let mut export = Vec::new();
        for r in &views {
            for (e, cfg) in r.edges.iter().zip(
                self.regions
                    .iter()
                    .find(|c| c.name == r.name)
                    .map(|c| c.edges.as_slice())
                    .unwrap_or_default(),
            ) {
                let latency = edge_key(&r.name, cfg)
                    .and_then(|k| self.edges.get(&k))
                    .and_then(|rt| rt.last_latency);
                export.push(EdgeExport {
                    region: r.name.clone(),
                    edge: e.name.clone(),
                    state: e.state,
                    weight: e.weight(hw),
                    utilization: e.utilization(),
                    last_probe: latency,
                });
            }
        }
        let edges: Vec<serde_json::Value> = export
            .iter()
            .map(|e| {
                serde_json::json!({
                    "region": e.region,
                    "edge": e.edge,
                    "state": e.state.as_str(),
                    "weight": e.weight,
                    "utilization": e.utilization,
                    "last_probe_ms": e.last_probe.map(|d| d.as_secs_f64() * 1000.0),
                })
            })
            .collect();
        let view = serde_json::json!({
            "regions": snap.plan.describe(),
            "edges": edges,
            "degraded": !snap.plan.degraded.is_empty(),
        });
        self.shared.store_view(view.to_string());
        metrics.set_edges(export);
        self.shared.store(snap);
    }
}

fn views(regions: &[RegionConfig], trackers: &HashMap<EdgeKey, &Tracker>) -> Vec<RegionView> {
    regions
        .iter()
        .map(|r| RegionView {
            name: r.name.clone(),
            lat: r.lat,
            lon: r.lon,
            vips: r.vips.clone(),
            edges: r
                .edges
                .iter()
                .map(|e| {
                    let t = edge_key(&r.name, e).and_then(|k| trackers.get(&k).copied());
                    EdgeView {
                        name: e.name.clone(),
                        addrs: e.addrs.clone(),
                        state: t.map_or(EdgeState::Unknown, |t| t.state),
                        load: t.and_then(|t| t.load),
                        max_connections: e.max_connections,
                        max_egress_bps: e.max_egress_bps,
                    }
                })
                .collect(),
        })
        .collect()
}

/// Runs `task` as a task of `tasks` that is dropped when `stop` is cancelled.
fn spawn_until_stopped(
    stop: &CancellationToken,
    tasks: &TaskTracker,
    task: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let stop = stop.clone();
    tasks.spawn(async move {
        stop.run_until_cancelled(task).await;
    })
}

/// Probes one edge every interval, until the control loop is gone.
async fn probe_forever(key: EdgeKey, h: HealthConfig, tx: mpsc::Sender<Msg>) {
    let mut tick = tokio::time::interval(Duration::from_millis(h.interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout = Duration::from_millis(h.timeout_ms);
    loop {
        tick.tick().await;
        let r = timed_probe(key.rtmp, key.http, timeout).await;
        if tx.send(Msg::Probe(key.clone(), r)).await.is_err() {
            return;
        }
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Polls the config file's mtime every second; a valid new file replaces the config, an
/// invalid one is logged and the old config kept.
async fn watch_config(path: PathBuf, tx: mpsc::Sender<Msg>, shared: Arc<Shared>) {
    let mut last = mtime(&path);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = mtime(&path);
        if now == last {
            continue;
        }
        last = now;
        let p = path.clone();
        let loaded = tokio::task::spawn_blocking(move || Loaded::load(&p)).await;
        match loaded {
            Ok(Ok(l)) => {
                shared.metrics.event(Event::ReloadOk);
                if tx.send(Msg::Config(Box::new(l))).await.is_err() {
                    return;
                }
            }
            Ok(Err(e)) => {
                shared.metrics.event(Event::ReloadFailed);
                tracing::error!(error = %format!("{e:#}"), "new configuration rejected; keeping the old one");
            }
            Err(e) => tracing::error!(error = %e, "config reload task failed"),
        }
    }
}
