//! The history model, sans-IO: a node's samples (`metric`), the buckets they are rolled up into
//! at each resolution with their retention (`bucket`, `resolution`), and the queries over
//! them — ranges and steps checked, buckets re-grouped to the asked step, and the series of
//! several nodes merged into a cluster series (`query`). The store (`server::history_store`)
//! and the collector (`server::collector`) do the I/O.

pub mod bucket;
pub mod metric;
pub mod query;
pub mod resolution;

pub use bucket::Bucket;
pub use metric::{Aggregate, METRICS, MetricInfo, metric};
pub use query::{ClusterPoint, Point, QueryError, RangeQuery, merge_nodes};
pub use resolution::{RESOLUTIONS, Resolution};
