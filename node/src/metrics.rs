//! Prometheus metrics. Event counters are incremented where things happen; gauges (connections,
//! streams, load) are read from the live state when `/metrics` is scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Label set `{protocol}`: `rtmp` or `http-flv`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    /// The client protocol, from [`Protocol::label`](crate::server::clients::Protocol::label).
    pub protocol: &'static str,
}

/// Label set `{reason}` for refusals, errors and dropped players.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A short snake_case reason, e.g. `max_connections` or `too_slow`.
    pub reason: &'static str,
}

/// Label set `{action, reason}` for publishes and plays that were not authorised.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabel {
    /// `publish` or `play`.
    pub action: &'static str,
    /// Why, from [`Denial::reason`](crate::auth::Denial::reason), e.g. `token_expired`.
    pub reason: &'static str,
}

/// The node's Prometheus registry (prefix `skein_`) and the metrics the node updates.
pub struct Metrics {
    registry: Registry,
    /// `skein_connections_total{protocol}`: connections accepted.
    pub connections_total: Family<ProtocolLabel, Counter>,
    /// `skein_connections_refused_total{reason}`: connections refused by a limit.
    pub connections_refused_total: Family<ReasonLabel, Counter>,
    /// `skein_connection_errors_total{reason}`: connections closed for bad input or a timeout.
    pub connection_errors_total: Family<ReasonLabel, Counter>,
    /// `skein_publishes_total`: publishes accepted.
    pub publishes_total: Counter,
    /// `skein_publishes_refused_total`: publishes refused (key taken or invalid).
    pub publishes_refused_total: Counter,
    /// `skein_plays_total{protocol}`: plays started.
    pub plays_total: Family<ProtocolLabel, Counter>,
    /// `skein_plays_refused_total`: plays refused (no such stream).
    pub plays_refused_total: Counter,
    /// `skein_auth_refused_total{action, reason}`: publishes and plays not authorised.
    pub auth_refused_total: Family<AuthLabel, Counter>,
    /// `skein_player_skips_total`: times a slow player skipped to the next keyframe.
    pub player_skips_total: Counter,
    /// `skein_players_dropped_total{reason}`: players disconnected by the node.
    pub players_dropped_total: Family<ReasonLabel, Counter>,
    /// `skein_open_connections`: open connections, set at scrape time.
    pub connections: Gauge,
    /// `skein_active_streams`: streams with a publisher.
    pub streams: Gauge,
    /// `skein_active_players`: connected players.
    pub players: Gauge,
    /// `skein_active_publishers`: connected publishers.
    pub publishers: Gauge,
    /// `skein_machine_cpu_ratio`: machine CPU use, 0..1 over all cores.
    pub cpu_ratio: Gauge<f64, AtomicU64>,
    /// `skein_process_cpu_cores`: CPU used by this process, in cores.
    pub process_cpu_cores: Gauge<f64, AtomicU64>,
    /// `skein_process_resident_memory_bytes`: resident memory of this process.
    pub memory_rss_bytes: Gauge,
    /// `skein_egress_bits_per_second`: egress bit rate over the last second.
    pub egress_bps: Gauge,
    /// `skein_ingress_bits_per_second`: ingress bit rate over the last second.
    pub ingress_bps: Gauge,
    /// `skein_relay_pushes`: streams this node pushes to their origin.
    pub relay_pushes: Gauge,
    /// `skein_relay_pulls`: streams this node pulls from their origin.
    pub relay_pulls: Gauge,
    /// `skein_relay_served_bytes_total`: relay bytes (headers and media) sent to nodes that
    /// pull streams from this one — an origin's egress to edges, or a relay edge's to its
    /// region.
    pub relay_served_bytes_total: Counter,
    /// `skein_relay_failovers_total`: pulled streams that resumed from another origin.
    pub relay_failovers_total: Counter,
    /// `skein_relay_gap_seconds`: media gap seen by viewers across an origin failover.
    pub relay_gap_seconds: Histogram,
    /// `skein_relay_peers_lost_total`: relay peers taken as dead.
    pub relay_peers_lost_total: Counter,
    /// `skein_cluster_certificate_expiry_timestamp_seconds`: when this node's cluster
    /// certificate expires (unix seconds), set at scrape time; 0 outside a cluster.
    pub cluster_cert_expiry: Gauge,
    /// `skein_history_store_bytes`: size of the history store's file, set at scrape time.
    pub history_store_bytes: Gauge,
    /// `skein_cluster_leader`: 1 when this node knows a Raft leader, set at scrape time.
    pub cluster_leader: Gauge,
    /// `skein_cluster_origins_active`: origins in the pool, as this node sees it.
    pub cluster_origins_active: Gauge,
    /// `skein_cluster_origin_target`: origins the cluster keeps.
    pub cluster_origin_target: Gauge,
    /// `skein_cluster_nodes_down`: members whose committed health is down.
    pub cluster_nodes_down: Gauge,
}

impl Metrics {
    /// Creates and registers every metric; `traffic`'s byte counters are exported as
    /// `skein_received_bytes_total` and `skein_sent_bytes_total`.
    pub fn new(traffic: &Traffic) -> Self {
        let mut registry = Registry::with_prefix("skein");
        let m = Self {
            connections_total: Family::default(),
            connections_refused_total: Family::default(),
            connection_errors_total: Family::default(),
            publishes_total: Counter::default(),
            publishes_refused_total: Counter::default(),
            plays_total: Family::default(),
            plays_refused_total: Counter::default(),
            auth_refused_total: Family::default(),
            player_skips_total: Counter::default(),
            players_dropped_total: Family::default(),
            connections: Gauge::default(),
            streams: Gauge::default(),
            players: Gauge::default(),
            publishers: Gauge::default(),
            cpu_ratio: Gauge::default(),
            process_cpu_cores: Gauge::default(),
            memory_rss_bytes: Gauge::default(),
            egress_bps: Gauge::default(),
            ingress_bps: Gauge::default(),
            relay_pushes: Gauge::default(),
            relay_pulls: Gauge::default(),
            relay_failovers_total: Counter::default(),
            relay_served_bytes_total: Counter::default(),
            relay_gap_seconds: Histogram::new([
                0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
            ]),
            relay_peers_lost_total: Counter::default(),
            cluster_cert_expiry: Gauge::default(),
            history_store_bytes: Gauge::default(),
            cluster_leader: Gauge::default(),
            cluster_origins_active: Gauge::default(),
            cluster_origin_target: Gauge::default(),
            cluster_nodes_down: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "connections",
            "Connections accepted",
            m.connections_total.clone(),
        );
        r.register(
            "connections_refused",
            "Connections refused by a limit",
            m.connections_refused_total.clone(),
        );
        r.register(
            "connection_errors",
            "Connections closed because of bad input or a timeout",
            m.connection_errors_total.clone(),
        );
        r.register("publishes", "Publishes accepted", m.publishes_total.clone());
        r.register(
            "publishes_refused",
            "Publishes refused (not authorised, key taken or invalid)",
            m.publishes_refused_total.clone(),
        );
        r.register("plays", "Plays started", m.plays_total.clone());
        r.register(
            "plays_refused",
            "Plays refused (not authorised, no such stream)",
            m.plays_refused_total.clone(),
        );
        r.register(
            "auth_refused",
            "Publishes and plays not authorised (missing or bad token, hook refusal)",
            m.auth_refused_total.clone(),
        );
        r.register(
            "player_skips",
            "Times a slow player skipped to the next keyframe",
            m.player_skips_total.clone(),
        );
        r.register(
            "players_dropped",
            "Players disconnected by the node",
            m.players_dropped_total.clone(),
        );
        r.register(
            "received_bytes",
            "Bytes received from clients",
            traffic.bytes_in.clone(),
        );
        r.register(
            "sent_bytes",
            "Bytes sent to clients",
            traffic.bytes_out.clone(),
        );
        r.register(
            "open_connections",
            "Open connections",
            m.connections.clone(),
        );
        r.register(
            "active_streams",
            "Streams with a publisher",
            m.streams.clone(),
        );
        r.register("active_players", "Connected players", m.players.clone());
        r.register(
            "active_publishers",
            "Connected publishers",
            m.publishers.clone(),
        );
        r.register(
            "machine_cpu_ratio",
            "Machine CPU use, 0..1 over all cores",
            m.cpu_ratio.clone(),
        );
        r.register(
            "process_cpu_cores",
            "CPU used by this process, in cores",
            m.process_cpu_cores.clone(),
        );
        r.register(
            "process_resident_memory_bytes",
            "Resident memory of this process",
            m.memory_rss_bytes.clone(),
        );
        r.register(
            "egress_bits_per_second",
            "Egress bit rate over the last second",
            m.egress_bps.clone(),
        );
        r.register(
            "ingress_bits_per_second",
            "Ingress bit rate over the last second",
            m.ingress_bps.clone(),
        );
        r.register(
            "relay_pushes",
            "Streams this node pushes to their origin",
            m.relay_pushes.clone(),
        );
        r.register(
            "relay_pulls",
            "Streams this node pulls from their origin (one per stream, shared by its viewers)",
            m.relay_pulls.clone(),
        );
        r.register(
            "relay_served_bytes",
            "Relay bytes sent to nodes that pull streams from this one",
            m.relay_served_bytes_total.clone(),
        );
        r.register(
            "relay_failovers",
            "Pulled streams that lost their origin and resumed from another",
            m.relay_failovers_total.clone(),
        );
        r.register(
            "relay_gap_seconds",
            "Media gap seen by a pulled stream's viewers across an origin failover",
            m.relay_gap_seconds.clone(),
        );
        r.register(
            "relay_peers_lost",
            "Relay peers taken as dead (connection failed or silent past the relay timeout)",
            m.relay_peers_lost_total.clone(),
        );
        r.register(
            "cluster_certificate_expiry_timestamp_seconds",
            "When this node's cluster certificate expires, unix seconds (renewed at two thirds of its lifetime)",
            m.cluster_cert_expiry.clone(),
        );
        r.register(
            "history_store_bytes",
            "Size of the history store's file (0 when it is kept in memory)",
            m.history_store_bytes.clone(),
        );
        r.register(
            "cluster_leader",
            "1 when this node knows a Raft leader (0 outside a cluster)",
            m.cluster_leader.clone(),
        );
        r.register(
            "cluster_origins_active",
            "Origins in the pool, as this node sees it",
            m.cluster_origins_active.clone(),
        );
        r.register(
            "cluster_origin_target",
            "Origins the cluster keeps",
            m.cluster_origin_target.clone(),
        );
        r.register(
            "cluster_nodes_down",
            "Members whose committed health is down",
            m.cluster_nodes_down.clone(),
        );
        Self { registry, ..m }
    }

    /// The registry in the Prometheus text exposition format, for `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Node-wide byte counters; every connection adds to them as it goes. They are Prometheus
/// counters, so `/metrics` exports them as they are.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Bytes received from clients.
    pub bytes_in: Counter,
    /// Bytes sent to clients.
    pub bytes_out: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every node metric the Grafana dashboard and the alert rules in `docs/monitoring/` use
    /// is one the node exports.
    #[test]
    fn the_monitoring_files_use_exported_metrics() {
        let exported = Metrics::new(&Traffic::default()).encode();
        let files = [
            include_str!("../../docs/monitoring/grafana-dashboard.json"),
            include_str!("../../docs/monitoring/skein-alerts.yml"),
        ];
        let mut used = 0;
        for text in files {
            for (start, _) in text.match_indices("skein_") {
                let name: String = text[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if name.starts_with("skein_dns_") {
                    continue;
                }
                used += 1;
                assert!(
                    exported.contains(&format!("\n{name} "))
                        || exported.contains(&format!("\n{name}{{")),
                    "{name} is not exported"
                );
            }
        }
        assert!(used > 10);
    }
}
