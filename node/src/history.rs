//! What the node's collector samples, as the families of series its history keeps: [`NODE`]
//! (the machine and the node: CPU, memory, interfaces, connections by role and protocol,
//! streams, relay, bit rates) and [`STREAM`] (one series per stream: its viewers on this node
//! and its bit rate as this node receives it, for the streams with the most viewers).
//! The model and the store are `skein-history`'s.

use skein_history::{Aggregate, Family, MetricInfo};

const DAY_MS: u64 = 86_400_000;

/// Every metric the collector samples.
pub const METRICS: &[MetricInfo] = &[
    MetricInfo::new(
        "cpu",
        "machine CPU use over all cores",
        "ratio",
        Aggregate::Mean,
    ),
    MetricInfo::new(
        "process_cpu",
        "CPU used by the node process",
        "cores",
        Aggregate::Sum,
    ),
    MetricInfo::new(
        "memory_used",
        "machine memory in use",
        "bytes",
        Aggregate::Sum,
    ),
    MetricInfo::new("memory_total", "machine memory", "bytes", Aggregate::Sum),
    MetricInfo::new(
        "process_rss",
        "resident memory of the node process",
        "bytes",
        Aggregate::Sum,
    ),
    MetricInfo::new(
        "net_in_bps",
        "received by the machine's interfaces",
        "bps",
        Aggregate::Sum,
    ),
    MetricInfo::new(
        "net_out_bps",
        "sent by the machine's interfaces",
        "bps",
        Aggregate::Sum,
    ),
    MetricInfo::new(
        "ingress_bps",
        "received from clients and peers by the node",
        "bps",
        Aggregate::Sum,
    ),
    MetricInfo::new(
        "egress_bps",
        "sent to clients and peers by the node",
        "bps",
        Aggregate::Sum,
    ),
    MetricInfo::new(
        "connections",
        "open RTMP and HTTP-FLV connections",
        "count",
        Aggregate::Sum,
    ),
    MetricInfo::new("publishers", "publishing clients", "count", Aggregate::Sum),
    MetricInfo::new("rtmp_players", "RTMP players", "count", Aggregate::Sum),
    MetricInfo::new("flv_players", "HTTP-FLV players", "count", Aggregate::Sum),
    MetricInfo::new(
        "viewers",
        "players of every protocol",
        "count",
        Aggregate::Sum,
    ),
    MetricInfo::new(
        "streams",
        "streams with a publisher on this node",
        "count",
        Aggregate::Sum,
    ),
    MetricInfo::new(
        "relay_pulls",
        "streams pulled from their origin",
        "count",
        Aggregate::Sum,
    ),
    MetricInfo::new(
        "relay_pushes",
        "streams pushed to this node as their origin",
        "count",
        Aggregate::Sum,
    ),
    MetricInfo::new(
        "relay_failovers",
        "pulls resumed from another origin in the interval",
        "count",
        Aggregate::Sum,
    ),
];

/// The node's own figures: one series.
pub static NODE: Family = Family {
    name: "node",
    label: "",
    metrics: METRICS,
    max_retention_ms: u64::MAX,
};

/// One series per stream, for the `history.max_stream_series` streams with the most viewers at
/// each sample; kept a week.
pub static STREAM: Family = Family {
    name: "stream",
    label: "stream",
    metrics: &[
        MetricInfo::new(
            "viewers",
            "players of the stream on the node",
            "count",
            Aggregate::Sum,
        ),
        MetricInfo::new(
            "bitrate_bps",
            "the stream's bit rate as the node receives it",
            "bps",
            Aggregate::Mean,
        ),
    ],
    max_retention_ms: 7 * DAY_MS,
};

/// Every family the node keeps, its own first.
pub static FAMILIES: [&Family; 2] = [&NODE, &STREAM];

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use skein_history::{HistoryStore, RESOLUTIONS, SeriesSample, Snapshot};

    use super::*;

    const FIVE_S: u64 = 5_000;

    /// Removes the test's directory even when an assertion fails.
    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn eight_days_of_every_metric_and_the_default_streams_stay_within_20_mib() {
        let dir = TempDir(
            std::env::temp_dir().join(format!("skein-node-history-{}", std::process::id())),
        );
        let path = dir.0.join("history.redb");
        let store = HistoryStore::open(&path, FIVE_S, &FAMILIES).expect("open");
        let streams = crate::config::HistorySection::default().max_stream_series;
        let start = 1_800_000_000_000 - 1_800_000_000_000 % DAY_MS;
        // Eight simulated days at the default interval, an hour per transaction, pruned hourly
        // (the collector writes every sample and prunes every minute: the same rows).
        let per_hour = 3_600_000 / FIVE_S;
        let mut now = start;
        let mut sizes = Vec::new();
        for hour in 0..8 * 24 {
            let batch: Vec<_> = (0..per_hour)
                .map(|i| {
                    let at = now + i * FIVE_S;
                    let values = METRICS
                        .iter()
                        .map(|m| (m.name, (hour % 24) as f64))
                        .collect();
                    let mut snapshot = Snapshot::of(at, &NODE, values);
                    snapshot.series.extend((0..streams).map(|n| SeriesSample {
                        family: &STREAM,
                        label: format!("live/{n}"),
                        values: vec![("viewers", n as f64), ("bitrate_bps", 2.5e6)],
                    }));
                    snapshot
                })
                .collect();
            store.record(&batch).expect("record");
            now += per_hour * FIVE_S;
            store.prune(now).expect("prune");
            if hour % 24 == 23 {
                sizes.push(store.periods().unwrap());
            }
        }
        let series_bound = |retention_cap: u64| -> u64 {
            RESOLUTIONS
                .iter()
                .map(|r| {
                    r.retention_ms
                        .min(retention_cap)
                        .min(8 * DAY_MS)
                        .div_ceil(r.step_ms(FIVE_S))
                        + 1
                })
                .sum()
        };
        let bound = series_bound(u64::MAX) + streams as u64 * series_bound(STREAM.max_retention_ms);
        let held = store.periods().unwrap();
        assert!(held <= bound, "{held} periods held, bound {bound}");
        // Past the longest retention that applies (7 days for 10 min and for streams), growth
        // is only the node's hourly and daily buckets.
        assert!(sizes[7] - sizes[6] <= 26, "{sizes:?}");
        assert!(
            store.file_bytes() < 20 * 1024 * 1024,
            "{} bytes",
            store.file_bytes()
        );
    }
}
