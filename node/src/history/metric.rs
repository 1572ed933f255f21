//! The metrics a node's collector samples, with how the cluster figure is made of the nodes'
//! (a sum for connections and bandwidth, a mean for CPU) and the unit the dashboard shows.

use serde::Serialize;

/// How nodes' values make the cluster's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// Connections, bandwidth, memory: the cluster's is the sum.
    Sum,
    /// Ratios: the cluster's is the mean over the nodes that reported.
    Mean,
}

/// One metric of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MetricInfo {
    /// Its name in the API and the store.
    pub name: &'static str,
    /// What it is.
    pub help: &'static str,
    /// `ratio`, `cores`, `bytes`, `bps` or `count`.
    pub unit: &'static str,
    /// How the cluster figure is made.
    pub aggregate: Aggregate,
}

const fn m(
    name: &'static str,
    help: &'static str,
    unit: &'static str,
    aggregate: Aggregate,
) -> MetricInfo {
    MetricInfo {
        name,
        help,
        unit,
        aggregate,
    }
}

/// Every metric the collector samples.
pub const METRICS: [MetricInfo; 18] = [
    m(
        "cpu",
        "machine CPU use over all cores",
        "ratio",
        Aggregate::Mean,
    ),
    m(
        "process_cpu",
        "CPU used by the node process",
        "cores",
        Aggregate::Sum,
    ),
    m(
        "memory_used",
        "machine memory in use",
        "bytes",
        Aggregate::Sum,
    ),
    m("memory_total", "machine memory", "bytes", Aggregate::Sum),
    m(
        "process_rss",
        "resident memory of the node process",
        "bytes",
        Aggregate::Sum,
    ),
    m(
        "net_in_bps",
        "received by the machine's interfaces",
        "bps",
        Aggregate::Sum,
    ),
    m(
        "net_out_bps",
        "sent by the machine's interfaces",
        "bps",
        Aggregate::Sum,
    ),
    m(
        "ingress_bps",
        "received from clients and peers by the node",
        "bps",
        Aggregate::Sum,
    ),
    m(
        "egress_bps",
        "sent to clients and peers by the node",
        "bps",
        Aggregate::Sum,
    ),
    m(
        "connections",
        "open RTMP and HTTP-FLV connections",
        "count",
        Aggregate::Sum,
    ),
    m("publishers", "publishing clients", "count", Aggregate::Sum),
    m("rtmp_players", "RTMP players", "count", Aggregate::Sum),
    m("flv_players", "HTTP-FLV players", "count", Aggregate::Sum),
    m(
        "viewers",
        "players of every protocol",
        "count",
        Aggregate::Sum,
    ),
    m(
        "streams",
        "streams with a publisher on this node",
        "count",
        Aggregate::Sum,
    ),
    m(
        "relay_pulls",
        "streams pulled from their origin",
        "count",
        Aggregate::Sum,
    ),
    m(
        "relay_pushes",
        "streams pushed to this node as their origin",
        "count",
        Aggregate::Sum,
    ),
    m(
        "relay_failovers",
        "pulls resumed from another origin in the interval",
        "count",
        Aggregate::Sum,
    ),
];

/// The metric named `name`.
pub fn metric(name: &str) -> Option<&'static MetricInfo> {
    METRICS.iter().find(|m| m.name == name)
}
