//! What a metric is — its unit and how the cluster figure is made of the nodes' (a sum for
//! connections and bandwidth, a mean for CPU) — and the families of series that share a
//! catalogue of metrics. The catalogues themselves belong to the programs that sample them.

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

impl MetricInfo {
    /// A metric: its name, what it is, its unit and how nodes make the cluster's figure.
    pub const fn new(
        name: &'static str,
        help: &'static str,
        unit: &'static str,
        aggregate: Aggregate,
    ) -> Self {
        Self {
            name,
            help,
            unit,
            aggregate,
        }
    }
}

/// A family of series that share one catalogue of metrics: a node's own figures (one series,
/// no label), or one series per stream, per DNS region, per edge (the label names it).
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Family {
    /// Its name in the API and the store's keys; no `/`.
    pub name: &'static str,
    /// What the label names (`stream`, `region`, ...); empty for a family of one series.
    pub label: &'static str,
    /// Every metric a series of the family holds, in the order the store keeps them.
    pub metrics: &'static [MetricInfo],
    /// How long its series are kept at most, whatever the resolution's retention (a family of
    /// many series is kept for less, so the store stays bounded).
    pub max_retention_ms: u64,
}

impl Family {
    /// The metric named `name`.
    pub fn metric(&self, name: &str) -> Option<&'static MetricInfo> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// Where `name` sits in a row of this family.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.metrics.iter().position(|m| m.name == name)
    }

    /// The metrics' names, comma-separated, for error messages.
    pub fn names(&self) -> String {
        self.metrics
            .iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}
