//! Skein's history: what a program samples at a fixed interval, rolled up into buckets at
//! several resolutions and kept in an embedded redb database, bounded by retention; and the
//! queries over it. The media node (`skein`) and the GeoDNS server (`skein-dns`) each keep
//! their own, with their own catalogue of metrics.
//!
//! The model is sans-IO: [`MetricInfo`] and [`Family`] (a catalogue of metrics and the series
//! that share it: a node's own figures, or one series per stream, per region, per edge),
//! [`Bucket`] (mean as sum and count, min, max, and the samples expected, so a period with
//! missing samples is partial rather than averaged with zeros), [`Resolution`] (raw, 1 m,
//! 5 m, 10 m, 1 h, 1 d, 7 d with their retention), [`RangeQuery`] (a request's [`Params`]
//! checked into a clear error; buckets grouped into one [`Point`] per step with gaps) and
//! [`merge_nodes`] (several nodes' points into the cluster's [`ClusterPoint`]s, each with the
//! count of nodes behind it). [`HistoryStore`] does the I/O; [`answer`] makes the JSON a
//! program serves for its own series.

pub mod answer;
pub mod bucket;
pub mod metric;
pub mod query;
pub mod resolution;
pub mod store;

pub use bucket::Bucket;
pub use metric::{Aggregate, Family, MetricInfo};
pub use query::{ClusterPoint, Params, Point, QueryError, RangeQuery, merge_nodes};
pub use resolution::{RESOLUTIONS, Resolution};
pub use store::{HistoryStore, SeriesSample, Snapshot, now_ms, series_key};
