//! The collector: every `history.interval_secs` it samples the machine (CPU, memory, the
//! interfaces' OS counters) and the node (process CPU and memory, connections by role and
//! protocol, streams, relay pulls and pushes, bit rates from the traffic counters) and the
//! streams with the most viewers (their viewers and bit rate) into the node's
//! [`History`], prunes past retention every minute and keeps the machine inventory; and
//! [`watch_cluster`] records what changes in the cluster into the
//! [`EventLog`](super::events::EventLog).

use std::sync::Arc;
use std::time::{Duration, Instant};

use skein_history::{SeriesSample, Snapshot, now_ms};
use sysinfo::{Networks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::context::Node;
use super::events::{self, Event};
use super::history_store::{History, Interface, Inventory};
use crate::history::{NODE, STREAM};

/// What the collector carries from one sample to the next.
struct Sampler {
    system: System,
    networks: Networks,
    pid: Pid,
    last: Instant,
    last_in: u64,
    last_out: u64,
    last_failovers: u64,
}

impl Sampler {
    fn new(node: &Node) -> Self {
        let mut system = System::new();
        system.refresh_cpu_usage();
        Self {
            system,
            networks: Networks::new_with_refreshed_list(),
            pid: Pid::from_u32(std::process::id()),
            last: Instant::now(),
            last_in: node.clients.traffic.bytes_in.get(),
            last_out: node.clients.traffic.bytes_out.get(),
            last_failovers: node.metrics.relay_failovers_total.get(),
        }
    }

    /// One sample of the node's metrics, and the inventory.
    fn sample(&mut self, node: &Node) -> (Vec<(&'static str, f64)>, Inventory) {
        let system = &mut self.system;
        system.refresh_cpu_usage();
        system.refresh_memory();
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        self.networks.refresh(true);
        let now = Instant::now();
        let secs = now.duration_since(self.last).as_secs_f64().max(0.001);
        let rate = |bytes: u64| bytes as f64 * 8.0 / secs;
        let bytes_in = node.clients.traffic.bytes_in.get();
        let bytes_out = node.clients.traffic.bytes_out.get();
        let failovers = node.metrics.relay_failovers_total.get();
        let (net_in, net_out) = self
            .networks
            .values()
            .fold((0, 0), |(i, o), n| (i + n.received(), o + n.transmitted()));
        let process = system.process(self.pid);
        let (publishers, players, _) = node.clients.roles();
        let flv_players = node.clients.http_flv_players();
        let relay = node.cluster().map(|link| &link.relay);
        let values = vec![
            ("cpu", f64::from(system.global_cpu_usage()) / 100.0),
            (
                "process_cpu",
                process.map_or(0.0, |p| f64::from(p.cpu_usage()) / 100.0),
            ),
            ("memory_used", system.used_memory() as f64),
            ("memory_total", system.total_memory() as f64),
            ("process_rss", process.map_or(0, |p| p.memory()) as f64),
            ("net_in_bps", rate(net_in)),
            ("net_out_bps", rate(net_out)),
            ("ingress_bps", rate(bytes_in - self.last_in)),
            ("egress_bps", rate(bytes_out - self.last_out)),
            ("connections", node.clients.count() as f64),
            ("publishers", publishers as f64),
            ("rtmp_players", players.saturating_sub(flv_players) as f64),
            ("flv_players", flv_players as f64),
            ("viewers", players as f64),
            (
                "streams",
                node.hub
                    .streams()
                    .iter()
                    .filter(|s| s.is_published())
                    .count() as f64,
            ),
            (
                "relay_pulls",
                relay.map_or(0, |r| r.pulled_streams()) as f64,
            ),
            (
                "relay_pushes",
                relay.map_or(0, |r| r.origin_streams().len()) as f64,
            ),
            ("relay_failovers", (failovers - self.last_failovers) as f64),
        ];
        (self.last, self.last_in, self.last_out, self.last_failovers) =
            (now, bytes_in, bytes_out, failovers);
        (values, self.inventory())
    }

    fn inventory(&self) -> Inventory {
        let cpus = self.system.cpus();
        let mut interfaces: Vec<Interface> = self
            .networks
            .iter()
            .map(|(name, data)| Interface {
                name: name.clone(),
                mac: data.mac_address().to_string(),
                addresses: data
                    .ip_networks()
                    .iter()
                    .map(|n| format!("{}/{}", n.addr, n.prefix))
                    .collect(),
                received_bytes: data.total_received(),
                sent_bytes: data.total_transmitted(),
            })
            .collect();
        interfaces.sort_by(|a, b| a.name.cmp(&b.name));
        Inventory {
            host: System::host_name().unwrap_or_default(),
            os: format!(
                "{} ({})",
                System::long_os_version().unwrap_or_default(),
                System::kernel_version().unwrap_or_default()
            ),
            cpu_model: cpus
                .first()
                .map(|c| c.brand().to_owned())
                .unwrap_or_default(),
            cores: cpus.len(),
            physical_cores: System::physical_core_count(),
            memory_bytes: self.system.total_memory(),
            interfaces,
        }
    }
}

/// The series of the `max` streams with the most viewers on this node (ties by name, so the
/// choice is stable): viewers and bit rate.
fn stream_series(node: &Node, max: usize) -> Vec<SeriesSample> {
    if max == 0 {
        return Vec::new();
    }
    let mut streams = node.hub.active_snapshots();
    // Stable: equal viewers keep the name order.
    streams.sort_by_key(|s| std::cmp::Reverse(s.viewers));
    streams
        .into_iter()
        .take(max)
        .map(|s| SeriesSample {
            family: &STREAM,
            label: s.key,
            values: vec![
                ("viewers", s.viewers as f64),
                ("bitrate_bps", s.bitrate_bps as f64),
            ],
        })
        .collect()
}

/// How often the cluster document is compared with the last one for events.
const EVENTS_EVERY: Duration = Duration::from_secs(1);

/// Records what changes in the cluster document into the node's event log, from the moment
/// the node is a member until it stops.
pub async fn watch_cluster(node: Arc<Node>) {
    let Some(link) = node.cluster() else {
        return;
    };
    let mut before = link.cluster.status().await;
    node.events.push(Event {
        at_ms: now_ms(),
        kind: "start",
        text: format!(
            "{} started as a member: {} nodes, leader {}",
            node.config.node.name,
            before.nodes.len(),
            before
                .leader
                .and_then(|id| before.nodes.iter().find(|n| n.id == id))
                .map_or("none", |n| n.name.as_str())
        ),
    });
    let mut tick = tokio::time::interval(EVENTS_EVERY);
    loop {
        tick.tick().await;
        let now = link.cluster.status().await;
        for event in events::changes(&before, &now, now_ms()) {
            node.events.push(event);
        }
        before = now;
    }
}

/// Samples into `history` every interval until the node stops.
pub async fn run(node: Arc<Node>, history: Arc<History>) {
    let mut sampler = Sampler::new(&node);
    let mut tick = tokio::time::interval(Duration::from_millis(history.interval_ms()));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: CPU use needs two readings
    loop {
        tick.tick().await;
        let at_ms = now_ms();
        let (values, inventory) = sampler.sample(&node);
        history.set_inventory(inventory);
        let failovers = values
            .iter()
            .find(|(name, _)| *name == "relay_failovers")
            .map_or(0.0, |&(_, n)| n);
        let mut snapshot = Snapshot::of(at_ms, &NODE, values);
        snapshot
            .series
            .extend(stream_series(&node, node.config.history.max_stream_series));
        if failovers > 0.0 {
            node.events.push(Event {
                at_ms,
                kind: "failover",
                text: format!("{failovers} relay pull(s) resumed from another origin"),
            });
        }
        history.store.write_off_thread(snapshot).await;
    }
}
