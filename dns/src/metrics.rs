//! Prometheus text metrics: queries by rcode and qtype, answers by region, rate limiting,
//! truncation, and the health view (edge states, probe latency) the control loop publishes.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::answer::Outcome;
use crate::automap::EdgeState;
use crate::wire::{Rcode, rtype};

const QTYPES: [(u16, &str); 12] = [
    (rtype::A, "A"),
    (rtype::AAAA, "AAAA"),
    (rtype::NS, "NS"),
    (rtype::SOA, "SOA"),
    (rtype::TXT, "TXT"),
    (rtype::CNAME, "CNAME"),
    (rtype::MX, "MX"),
    (rtype::SRV, "SRV"),
    (rtype::PTR, "PTR"),
    (rtype::CAA, "CAA"),
    (rtype::HTTPS, "HTTPS"),
    (rtype::ANY, "ANY"),
];
const OTHER_QTYPE: usize = QTYPES.len();
const RCODES: [Rcode; 7] = [
    Rcode::NoError,
    Rcode::FormErr,
    Rcode::ServFail,
    Rcode::NxDomain,
    Rcode::NotImp,
    Rcode::Refused,
    Rcode::BadVers,
];
const PROBE_BUCKETS: [f64; 8] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

/// Health of one edge as exported.
#[derive(Debug, Clone)]
pub struct EdgeExport {
    pub region: String,
    pub edge: String,
    pub state: EdgeState,
    pub weight: f64,
    pub utilization: f64,
    pub last_probe: Option<Duration>,
}

/// The counters at one instant (see [`Metrics::totals`]).
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Queries answered, by response code.
    pub per_rcode: Vec<(Rcode, u64)>,
    /// Queries not answered: dropped as malformed or rate-limited.
    pub unanswered: u64,
    /// Service answers by region.
    pub regions: BTreeMap<String, u64>,
    /// Every edge's health and load.
    pub edges: Vec<EdgeExport>,
}

pub struct Metrics {
    queries: Vec<AtomicU64>,
    dropped: AtomicU64,
    truncated: AtomicU64,
    rate_limited_drop: AtomicU64,
    rate_limited_slip: AtomicU64,
    tcp_rejected: AtomicU64,
    regions: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    edges: Mutex<Vec<EdgeExport>>,
    transitions: AtomicU64,
    probe_buckets: [AtomicU64; PROBE_BUCKETS.len()],
    probe_count: AtomicU64,
    probe_sum_us: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    cluster_updates: AtomicU64,
    cluster_errors: AtomicU64,
    /// When the membership in use was last known true (Unix ms; 0: none yet), and whether it
    /// came from the disk copy rather than the cluster.
    membership_confirmed_ms: AtomicU64,
    membership_from_cache: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            queries: (0..RCODES.len() * (OTHER_QTYPE + 1))
                .map(|_| AtomicU64::new(0))
                .collect(),
            dropped: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
            rate_limited_drop: AtomicU64::new(0),
            rate_limited_slip: AtomicU64::new(0),
            tcp_rejected: AtomicU64::new(0),
            regions: Mutex::new(BTreeMap::new()),
            edges: Mutex::new(Vec::new()),
            transitions: AtomicU64::new(0),
            probe_buckets: Default::default(),
            probe_count: AtomicU64::new(0),
            probe_sum_us: AtomicU64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            cluster_updates: AtomicU64::new(0),
            cluster_errors: AtomicU64::new(0),
            membership_confirmed_ms: AtomicU64::new(0),
            membership_from_cache: AtomicBool::new(false),
        }
    }
}

/// Per-event counters the drivers and the control loop bump.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    RateLimitedDrop,
    RateLimitedSlip,
    TcpRejected,
    Transition,
    ReloadOk,
    ReloadFailed,
    ClusterUpdate,
    ClusterError,
}

impl Metrics {
    /// Counts one handled query.
    pub fn query(&self, o: &Outcome, region_counter: Option<&AtomicU64>) {
        if !o.send {
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        if o.truncated {
            self.truncated.fetch_add(1, Relaxed);
        }
        let r = RCODES.iter().position(|&r| r == o.rcode).unwrap_or(0);
        let q = QTYPES
            .iter()
            .position(|&(t, _)| t == o.qtype)
            .unwrap_or(OTHER_QTYPE);
        if let Some(c) = self.queries.get(r * (OTHER_QTYPE + 1) + q) {
            c.fetch_add(1, Relaxed);
        }
        if let Some(c) = region_counter {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn event(&self, e: Event) {
        let c = match e {
            Event::RateLimitedDrop => &self.rate_limited_drop,
            Event::RateLimitedSlip => &self.rate_limited_slip,
            Event::TcpRejected => &self.tcp_rejected,
            Event::Transition => &self.transitions,
            Event::ReloadOk => &self.reloads_ok,
            Event::ReloadFailed => &self.reloads_failed,
            Event::ClusterUpdate => &self.cluster_updates,
            Event::ClusterError => &self.cluster_errors,
        };
        c.fetch_add(1, Relaxed);
    }

    /// The cluster membership in use was true at `at`: read from the cluster, or (`from_cache`)
    /// from the disk copy written then.
    pub fn membership_confirmed(&self, at: SystemTime, from_cache: bool) {
        let ms = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.membership_confirmed_ms.store(ms, Relaxed);
        self.membership_from_cache.store(from_cache, Relaxed);
    }

    /// The answer counter of a region (created on first use, kept across reloads).
    pub fn region_counter(&self, region: &str) -> Arc<AtomicU64> {
        let mut m = self.regions.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(region.to_string()).or_default().clone()
    }

    pub fn probe(&self, latency: Duration) {
        let s = latency.as_secs_f64();
        for (i, b) in PROBE_BUCKETS.iter().enumerate() {
            if s <= *b {
                self.probe_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.probe_count.fetch_add(1, Relaxed);
        self.probe_sum_us.fetch_add(
            latency.as_micros().min(u128::from(u64::MAX)) as u64,
            Relaxed,
        );
    }

    pub fn set_edges(&self, edges: Vec<EdgeExport>) {
        *self.edges.lock().unwrap_or_else(|e| e.into_inner()) = edges;
    }

    /// The counters the history samples: queries answered by rcode (in [`Rcode`] order of
    /// `RCODES`), queries not answered (dropped, rate-limited), service answers by region, and
    /// the edges as last exported.
    pub fn totals(&self) -> Totals {
        let per_rcode = RCODES
            .iter()
            .enumerate()
            .map(|(ri, &rcode)| {
                let counts = &self.queries[ri * (OTHER_QTYPE + 1)..(ri + 1) * (OTHER_QTYPE + 1)];
                (rcode, counts.iter().map(|q| q.load(Relaxed)).sum())
            })
            .collect();
        let regions = self
            .regions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, c)| (name.clone(), c.load(Relaxed)))
            .collect();
        Totals {
            per_rcode,
            unanswered: self.dropped.load(Relaxed) + self.rate_limited_drop.load(Relaxed),
            regions,
            edges: self.edges.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// The answer counters for the HTTP view: service answers by region, queries by rcode.
    pub fn counts(&self) -> serde_json::Value {
        let answers: serde_json::Map<String, serde_json::Value> = self
            .regions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, c)| (name.clone(), c.load(Relaxed).into()))
            .collect();
        let rcodes: serde_json::Map<String, serde_json::Value> = RCODES
            .iter()
            .enumerate()
            .map(|(ri, r)| {
                let per_qtype = &self.queries[ri * (OTHER_QTYPE + 1)..(ri + 1) * (OTHER_QTYPE + 1)];
                let n: u64 = per_qtype.iter().map(|q| q.load(Relaxed)).sum();
                (r.name().to_string(), n.into())
            })
            .collect();
        serde_json::json!({ "answers": answers, "rcodes": rcodes })
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(4096);
        s.push_str("# HELP skein_dns_queries_total DNS queries answered, by response code and query type.\n# TYPE skein_dns_queries_total counter\n");
        for (ri, r) in RCODES.iter().enumerate() {
            for qi in 0..=OTHER_QTYPE {
                let v = self.queries[ri * (OTHER_QTYPE + 1) + qi].load(Relaxed);
                if v == 0 {
                    continue;
                }
                let qt = QTYPES.get(qi).map_or("other", |q| q.1);
                let _ = writeln!(
                    s,
                    "skein_dns_queries_total{{rcode=\"{}\",qtype=\"{qt}\"}} {v}",
                    r.name()
                );
            }
        }
        let counter = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            &mut s,
            "skein_dns_dropped_total",
            "Packets dropped without answer (responses, runts).",
            self.dropped.load(Relaxed),
        );
        counter(
            &mut s,
            "skein_dns_truncated_total",
            "Responses sent with TC over UDP.",
            self.truncated.load(Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP skein_dns_rate_limited_total Responses withheld by rate limiting.\n# TYPE skein_dns_rate_limited_total counter\nskein_dns_rate_limited_total{{action=\"drop\"}} {}\nskein_dns_rate_limited_total{{action=\"slip\"}} {}",
            self.rate_limited_drop.load(Relaxed),
            self.rate_limited_slip.load(Relaxed)
        );
        counter(
            &mut s,
            "skein_dns_tcp_rejected_total",
            "TCP connections refused at the connection limit.",
            self.tcp_rejected.load(Relaxed),
        );
        counter(
            &mut s,
            "skein_dns_health_transitions_total",
            "Edge health state changes.",
            self.transitions.load(Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP skein_dns_config_reloads_total Configuration reloads.\n# TYPE skein_dns_config_reloads_total counter\nskein_dns_config_reloads_total{{result=\"ok\"}} {}\nskein_dns_config_reloads_total{{result=\"error\"}} {}",
            self.reloads_ok.load(Relaxed),
            self.reloads_failed.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP skein_dns_cluster_polls_total Cluster membership polls.\n# TYPE skein_dns_cluster_polls_total counter\nskein_dns_cluster_polls_total{{result=\"changed\"}} {}\nskein_dns_cluster_polls_total{{result=\"error\"}} {}",
            self.cluster_updates.load(Relaxed),
            self.cluster_errors.load(Relaxed)
        );
        let confirmed = self.membership_confirmed_ms.load(Relaxed);
        if confirmed > 0 {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let _ = writeln!(
                s,
                "# HELP skein_dns_cluster_membership_age_seconds How old the cluster membership in use is: since the cluster last answered, or since the disk copy in use was written.\n# TYPE skein_dns_cluster_membership_age_seconds gauge\nskein_dns_cluster_membership_age_seconds {:.3}",
                now.saturating_sub(confirmed) as f64 / 1000.0
            );
            let _ = writeln!(
                s,
                "# HELP skein_dns_cluster_membership_from_cache 1 while the membership in use is the disk copy (the cluster has not answered since the start).\n# TYPE skein_dns_cluster_membership_from_cache gauge\nskein_dns_cluster_membership_from_cache {}",
                u8::from(self.membership_from_cache.load(Relaxed))
            );
        }
        s.push_str("# HELP skein_dns_answers_total Service-name answers, by the region whose addresses were given.\n# TYPE skein_dns_answers_total counter\n");
        for (name, c) in self
            .regions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                s,
                "skein_dns_answers_total{{region=\"{}\"}} {}",
                esc(name),
                c.load(Relaxed)
            );
        }
        s.push_str("# HELP skein_dns_probe_duration_seconds Duration of edge probes (RTMP + health).\n# TYPE skein_dns_probe_duration_seconds histogram\n");
        for (i, b) in PROBE_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "skein_dns_probe_duration_seconds_bucket{{le=\"{b}\"}} {}",
                self.probe_buckets[i].load(Relaxed)
            );
        }
        let count = self.probe_count.load(Relaxed);
        let _ = writeln!(
            s,
            "skein_dns_probe_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            s,
            "skein_dns_probe_duration_seconds_sum {}",
            self.probe_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "skein_dns_probe_duration_seconds_count {count}");
        let edges = self.edges.lock().unwrap_or_else(|e| e.into_inner());
        s.push_str("# HELP skein_dns_edge_health Edge health state (1 for the current state).\n# TYPE skein_dns_edge_health gauge\n");
        for e in edges.iter() {
            for st in [EdgeState::Up, EdgeState::Down, EdgeState::Unknown] {
                let _ = writeln!(
                    s,
                    "skein_dns_edge_health{{region=\"{}\",edge=\"{}\",state=\"{}\"}} {}",
                    esc(&e.region),
                    esc(&e.edge),
                    st.as_str(),
                    u8::from(e.state == st)
                );
            }
        }
        s.push_str("# HELP skein_dns_edge_weight Edge weight (spare capacity below the high-water mark).\n# TYPE skein_dns_edge_weight gauge\n");
        for e in edges.iter() {
            let _ = writeln!(
                s,
                "skein_dns_edge_weight{{region=\"{}\",edge=\"{}\"}} {}",
                esc(&e.region),
                esc(&e.edge),
                e.weight
            );
        }
        s.push_str("# HELP skein_dns_edge_utilization Highest of connection, CPU and egress utilisation.\n# TYPE skein_dns_edge_utilization gauge\n");
        for e in edges.iter() {
            let _ = writeln!(
                s,
                "skein_dns_edge_utilization{{region=\"{}\",edge=\"{}\"}} {}",
                esc(&e.region),
                esc(&e.edge),
                e.utilization
            );
        }
        s.push_str("# HELP skein_dns_edge_probe_seconds Duration of the last successful probe.\n# TYPE skein_dns_edge_probe_seconds gauge\n");
        for e in edges.iter() {
            if let Some(l) = e.last_probe {
                let _ = writeln!(
                    s,
                    "skein_dns_edge_probe_seconds{{region=\"{}\",edge=\"{}\"}} {}",
                    esc(&e.region),
                    esc(&e.edge),
                    l.as_secs_f64()
                );
            }
        }
        let mut regions: BTreeMap<&str, bool> = BTreeMap::new();
        for e in edges.iter() {
            *regions.entry(e.region.as_str()).or_default() |= e.state == EdgeState::Up;
        }
        s.push_str("# HELP skein_dns_region_up Whether any edge of the region is up.\n# TYPE skein_dns_region_up gauge\n");
        for (r, up) in regions {
            let _ = writeln!(
                s,
                "skein_dns_region_up{{region=\"{}\"}} {}",
                esc(r),
                u8::from(up)
            );
        }
        s
    }
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_health() {
        let m = Metrics::default();
        let region = m.region_counter("a");
        m.query(
            &Outcome {
                send: true,
                rcode: Rcode::NxDomain,
                qtype: rtype::AAAA,
                region: None,
                truncated: false,
            },
            None,
        );
        m.query(
            &Outcome {
                send: true,
                rcode: Rcode::NoError,
                qtype: rtype::A,
                region: Some(0),
                truncated: false,
            },
            Some(&region),
        );
        m.set_edges(vec![EdgeExport {
            region: "a".into(),
            edge: "a1".into(),
            state: EdgeState::Up,
            weight: 10.0,
            utilization: 0.1,
            last_probe: Some(Duration::from_millis(2)),
        }]);
        m.probe(Duration::from_millis(2));
        let text = m.render();
        assert!(
            text.contains("skein_dns_queries_total{rcode=\"NXDOMAIN\",qtype=\"AAAA\"} 1"),
            "{text}"
        );
        assert!(text.contains("skein_dns_answers_total{region=\"a\"} 1"));
        assert!(text.contains("skein_dns_edge_health{region=\"a\",edge=\"a1\",state=\"up\"} 1"));
        assert!(text.contains("skein_dns_region_up{region=\"a\"} 1"));
        let counts = m.counts();
        assert_eq!(counts["answers"]["a"], 1, "{counts}");
        assert_eq!(
            counts["rcodes"]
                .as_object()
                .unwrap()
                .values()
                .filter_map(|v| v.as_u64())
                .sum::<u64>(),
            2,
            "{counts}"
        );
        assert!(text.contains("skein_dns_probe_duration_seconds_count 1"));
    }
}
