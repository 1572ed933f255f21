//! The server's history: every `history.interval_secs` the collector turns the query counters
//! and the health view into rates and states — queries per second by response code, service
//! answers per second by region, each region's and each edge's health, the process's CPU and
//! memory — and records them in a `skein-history` store (the same rollups and retention as a
//! node's), served by `GET /api/v1/history` on the metrics port.
//!
//! [`Sampler`] is the pure part (two readings of the counters in, one snapshot out); [`run`]
//! drives it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skein_history::{
    Aggregate, Family, HistoryStore, MetricInfo, Params, QueryError, RangeQuery, SeriesSample,
    Snapshot, answer, now_ms,
};
use tokio_util::sync::CancellationToken;

use crate::automap::EdgeState;
use crate::config::HistoryConfig;
use crate::metrics::{Metrics, Totals};
use crate::wire::Rcode;

const fn rate(name: &'static str, help: &'static str) -> MetricInfo {
    MetricInfo::new(name, help, "per_s", Aggregate::Sum)
}

/// The server's own figures.
pub static SERVER: Family = Family {
    name: "dns",
    label: "",
    metrics: &[
        rate("queries", "queries answered"),
        rate("noerror", "answers NOERROR"),
        rate("nxdomain", "answers NXDOMAIN"),
        rate("refused", "answers REFUSED (not our zones)"),
        rate("formerr", "answers FORMERR (malformed queries)"),
        rate("servfail", "answers SERVFAIL"),
        rate("other_rcode", "answers NOTIMP or BADVERS"),
        rate("unanswered", "queries dropped: malformed or rate-limited"),
        MetricInfo::new(
            "edges_up",
            "edges passing their probes",
            "count",
            Aggregate::Mean,
        ),
        MetricInfo::new(
            "edges_down",
            "edges failing their probes",
            "count",
            Aggregate::Mean,
        ),
        MetricInfo::new(
            "process_cpu",
            "CPU used by the server",
            "cores",
            Aggregate::Sum,
        ),
        MetricInfo::new(
            "process_rss",
            "resident memory of the server",
            "bytes",
            Aggregate::Sum,
        ),
    ],
    max_retention_ms: u64::MAX,
};

/// One series per region.
pub static REGION: Family = Family {
    name: "region",
    label: "region",
    metrics: &[
        rate("answers", "service answers sent to the region's edges"),
        MetricInfo::new(
            "edges_up",
            "the region's edges passing their probes",
            "count",
            Aggregate::Mean,
        ),
        MetricInfo::new("edges", "the region's edges", "count", Aggregate::Mean),
    ],
    max_retention_ms: u64::MAX,
};

/// One series per edge: the share of the period it was up, its load.
pub static EDGE: Family = Family {
    name: "edge",
    label: "edge",
    metrics: &[
        MetricInfo::new(
            "up",
            "1 while passing its probes, else 0 (the mean: the share of the time up)",
            "ratio",
            Aggregate::Mean,
        ),
        MetricInfo::new(
            "utilization",
            "its reported load against its capacity",
            "ratio",
            Aggregate::Mean,
        ),
        MetricInfo::new(
            "probe_ms",
            "its last probe's latency",
            "ms",
            Aggregate::Mean,
        ),
    ],
    max_retention_ms: 7 * 86_400_000,
};

/// Every family the server keeps, its own first.
pub static FAMILIES: [&Family; 3] = [&SERVER, &REGION, &EDGE];

/// What the collector carries from one reading to the next.
pub struct Sampler {
    last: Option<(Totals, u64)>,
}

/// The metric of a response code.
fn rcode_metric(rcode: Rcode) -> &'static str {
    match rcode {
        Rcode::NoError => "noerror",
        Rcode::NxDomain => "nxdomain",
        Rcode::Refused => "refused",
        Rcode::FormErr => "formerr",
        Rcode::ServFail => "servfail",
        Rcode::NotImp | Rcode::BadVers => "other_rcode",
    }
}

impl Sampler {
    /// A sampler with no reading yet.
    pub fn new() -> Self {
        Sampler { last: None }
    }

    /// The series for `totals`, read `elapsed` after the previous reading, with the process's
    /// CPU seconds so far and its resident bytes. The first reading only sets the base: rates
    /// need two.
    pub fn sample(
        &mut self,
        totals: Totals,
        elapsed: Duration,
        cpu_micros: u64,
        rss_bytes: u64,
    ) -> Vec<SeriesSample> {
        let Some((before, cpu_before)) = self.last.replace((totals.clone(), cpu_micros)) else {
            return Vec::new();
        };
        let secs = elapsed.as_secs_f64().max(0.001);
        let per_s = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        let mut server: BTreeMap<&'static str, f64> = BTreeMap::new();
        for (&(rcode, now), &(_, then)) in totals.per_rcode.iter().zip(&before.per_rcode) {
            *server.entry(rcode_metric(rcode)).or_default() += per_s(now, then);
            *server.entry("queries").or_default() += per_s(now, then);
        }
        server.insert("unanswered", per_s(totals.unanswered, before.unanswered));
        let up = |e: &&crate::metrics::EdgeExport| e.state == EdgeState::Up;
        let down = |e: &&crate::metrics::EdgeExport| e.state == EdgeState::Down;
        server.insert("edges_up", totals.edges.iter().filter(up).count() as f64);
        server.insert(
            "edges_down",
            totals.edges.iter().filter(down).count() as f64,
        );
        server.insert(
            "process_cpu",
            cpu_micros.saturating_sub(cpu_before) as f64 / 1e6 / secs,
        );
        server.insert("process_rss", rss_bytes as f64);
        let mut out = vec![SeriesSample {
            family: &SERVER,
            label: String::new(),
            values: server.into_iter().collect(),
        }];
        let mut regions: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for edge in &totals.edges {
            let counts = regions.entry(&edge.region).or_default();
            counts.1 += 1.0;
            if edge.state == EdgeState::Up {
                counts.0 += 1.0;
            }
            let mut values = vec![
                ("up", f64::from(u8::from(edge.state == EdgeState::Up))),
                ("utilization", edge.utilization),
            ];
            if let Some(probe) = edge.last_probe {
                values.push(("probe_ms", probe.as_secs_f64() * 1e3));
            }
            out.push(SeriesSample {
                family: &EDGE,
                label: edge.edge.clone(),
                values,
            });
        }
        let names: std::collections::BTreeSet<&str> = regions
            .keys()
            .copied()
            .chain(totals.regions.keys().map(String::as_str))
            .collect();
        for region in names {
            let (up, all) = regions.get(region).copied().unwrap_or_default();
            let now = totals.regions.get(region).copied().unwrap_or(0);
            let then = before.regions.get(region).copied().unwrap_or(now);
            out.push(SeriesSample {
                family: &REGION,
                label: region.to_owned(),
                values: vec![
                    ("answers", per_s(now, then)),
                    ("edges_up", up),
                    ("edges", all),
                ],
            });
        }
        out
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

/// The process's CPU time so far (µs) and resident memory (bytes), from `/proc/self`.
fn process_usage() -> (u64, u64) {
    // SAFETY: sysconf only reads a system constant.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK).max(1) as u64,
            libc::sysconf(libc::_SC_PAGESIZE).max(1) as u64,
        )
    };
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name (which may hold spaces) closed by ')'.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) * 1_000_000 / ticks)
        })
        .unwrap_or(0);
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page);
    (cpu, rss)
}

/// Opens the store `config` names: its file, or memory.
pub fn open(config: &HistoryConfig) -> anyhow::Result<HistoryStore> {
    let interval_ms = config.interval_secs * 1000;
    if config.path.as_os_str().is_empty() {
        tracing::info!(
            "history is kept in memory only (set history.path to keep it across restarts)"
        );
        HistoryStore::in_memory(interval_ms, &FAMILIES)
    } else {
        HistoryStore::open(&config.path, interval_ms, &FAMILIES)
    }
}

/// Samples `metrics` into `store` every interval until `stop`.
pub async fn run(metrics: Arc<Metrics>, store: Arc<HistoryStore>, stop: CancellationToken) {
    let mut sampler = Sampler::new();
    let mut tick = tokio::time::interval(Duration::from_millis(store.interval_ms()));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let (cpu, rss) = process_usage();
        let now = Instant::now();
        let series = sampler.sample(metrics.totals(), now - last, cpu, rss);
        last = now;
        if series.is_empty() {
            continue;
        }
        store
            .write_off_thread(Snapshot {
                at_ms: now_ms(),
                series,
            })
            .await;
    }
}

/// `GET /api/v1/history?QUERY` on the metrics port: the catalogue without a metric, else the
/// series (`region=a`, `edge=NAME` for theirs). Status and JSON body.
pub fn serve(store: &HistoryStore, name: &str, query: &str) -> (u16, String) {
    let refused = |e: QueryError| {
        (
            400,
            serde_json::json!({ "error": e.to_string() }).to_string(),
        )
    };
    let params = match Params::from_query(query) {
        Ok(params) => params,
        Err(e) => return refused(e),
    };
    if params.metric.is_none() && params.range.is_none() && params.step.is_none() {
        return (200, answer::catalogue(store, name).to_string());
    }
    if params
        .node
        .as_deref()
        .is_some_and(|n| n != "self" && n != name)
    {
        return refused(QueryError::Malformed(
            "a GeoDNS server answers only its own history (node=self)".into(),
        ));
    }
    let now = now_ms();
    let query = match RangeQuery::parse(store.families(), &params, now, store.interval_ms()) {
        Ok(query) => query,
        Err(e) => return refused(e),
    };
    match answer::own_series(store, name, &query, now) {
        Ok(series) => (200, series.to_string()),
        Err(e) => (
            500,
            serde_json::json!({ "error": format!("{e:#}") }).to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::EdgeExport;

    fn edge(region: &str, name: &str, state: EdgeState) -> EdgeExport {
        EdgeExport {
            region: region.into(),
            edge: name.into(),
            state,
            weight: 1.0,
            utilization: 0.25,
            last_probe: Some(Duration::from_millis(2)),
        }
    }

    fn totals(noerror: u64, refused: u64, a: u64, edges: Vec<EdgeExport>) -> Totals {
        Totals {
            per_rcode: vec![
                (Rcode::NoError, noerror),
                (Rcode::Refused, refused),
                (Rcode::BadVers, 0),
            ],
            unanswered: 0,
            regions: [("a".to_string(), a)].into(),
            edges,
        }
    }

    fn value(series: &[SeriesSample], family: &str, label: &str, metric: &str) -> Option<f64> {
        series
            .iter()
            .find(|s| s.family.name == family && s.label == label)?
            .values
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, v)| *v)
    }

    #[test]
    fn two_readings_make_rates_by_rcode_and_region_and_each_edges_state() {
        let mut sampler = Sampler::new();
        let edges = || {
            vec![
                edge("a", "a1", EdgeState::Up),
                edge("a", "a2", EdgeState::Down),
                edge("b", "b1", EdgeState::Up),
            ]
        };
        assert!(
            sampler
                .sample(totals(10, 0, 5, edges()), Duration::from_secs(5), 0, 1)
                .is_empty()
        );
        let s = sampler.sample(
            totals(60, 10, 30, edges()),
            Duration::from_secs(5),
            500_000,
            4096,
        );
        assert_eq!(value(&s, "dns", "", "queries"), Some(12.0));
        assert_eq!(value(&s, "dns", "", "noerror"), Some(10.0));
        assert_eq!(value(&s, "dns", "", "refused"), Some(2.0));
        assert_eq!(value(&s, "dns", "", "other_rcode"), Some(0.0));
        assert_eq!(value(&s, "dns", "", "edges_up"), Some(2.0));
        assert_eq!(value(&s, "dns", "", "process_cpu"), Some(0.1));
        assert_eq!(value(&s, "region", "a", "answers"), Some(5.0));
        assert_eq!(value(&s, "region", "a", "edges_up"), Some(1.0));
        assert_eq!(value(&s, "region", "a", "edges"), Some(2.0));
        // Region b has edges but no answers yet: a zero rate, not a missing series.
        assert_eq!(value(&s, "region", "b", "answers"), Some(0.0));
        assert_eq!(value(&s, "edge", "a1", "up"), Some(1.0));
        assert_eq!(value(&s, "edge", "a2", "up"), Some(0.0));
        assert_eq!(value(&s, "edge", "b1", "probe_ms"), Some(2.0));
    }

    #[test]
    fn the_history_api_refuses_bad_queries_and_serves_a_regions_series() {
        let store = HistoryStore::in_memory(5_000, &FAMILIES).unwrap();
        let mut sampler = Sampler::new();
        let edges = vec![edge("a", "a1", EdgeState::Up)];
        sampler.sample(totals(0, 0, 0, edges.clone()), Duration::from_secs(5), 0, 0);
        let series = sampler.sample(totals(50, 0, 50, edges), Duration::from_secs(5), 0, 0);
        store
            .record(&[Snapshot {
                at_ms: now_ms() - 1_000,
                series,
            }])
            .unwrap();
        let (status, body) = serve(&store, "dns-1", "metric=answers&region=a&range=5m&step=5s");
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["region"], "a");
        let means: Vec<f64> = answer["points"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["mean"].as_f64())
            .collect();
        assert_eq!(means, [10.0]);
        for bad in [
            "metric=answers&region=a&range=1h&step=3s",
            "metric=nope",
            "metric=answers&stream=x",
            "metric=queries&node=cluster",
        ] {
            let (status, body) = serve(&store, "dns-1", bad);
            assert_eq!(status, 400, "{bad}: {body}");
            assert!(body.contains("error"), "{body}");
        }
        let (status, catalogue) = serve(&store, "dns-1", "");
        assert_eq!(status, 200);
        assert!(catalogue.contains("\"region\""), "{catalogue}");
    }
}
