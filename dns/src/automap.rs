//! Load-aware answers ("Automap"): edge weights from free capacity, shedding above the
//! high-water mark, spilling a failed or full region's clients over the next regions in
//! proportion to their spare capacity, and weighted choice of K addresses. Pure: the plan is
//! rebuilt from health and load state; queries only read it.

use std::net::IpAddr;

use crate::config::AnswerConfig;
use crate::geo::distance_km;

/// Health state of an edge as seen by our own probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeState {
    /// Not probed successfully yet: not handed out.
    Unknown,
    /// Passing its probes: handed out while it has spare capacity.
    Up,
    /// Failing its probes: handed out only as a last resort, when no edge is available.
    Down,
}

impl EdgeState {
    /// Lowercase name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeState::Unknown => "unknown",
            EdgeState::Up => "up",
            EdgeState::Down => "down",
        }
    }
}

/// Load an edge reports on its health endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Load {
    /// Open viewer connections.
    pub connections: u64,
    /// Connection capacity; 0 = not reported.
    pub max_connections: u64,
    /// CPU utilisation, 0..1.
    pub cpu: f64,
    /// Outgoing bits per second.
    pub egress_bps: u64,
    /// 0 = unlimited.
    pub max_egress_bps: u64,
    /// Leaving: takes no new viewers.
    pub draining: bool,
}

/// An edge as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeView {
    /// Edge name.
    pub name: String,
    /// Addresses handed out.
    pub addrs: Vec<IpAddr>,
    /// Probe state.
    pub state: EdgeState,
    /// Last reported load.
    pub load: Option<Load>,
    /// Configured limits override what the edge reports.
    pub max_connections: Option<u64>,
    /// Configured egress limit (bits per second).
    pub max_egress_bps: Option<u64>,
}

/// Connection capacity assumed when neither config nor the edge says.
const DEFAULT_CAPACITY: u64 = 1000;

impl EdgeView {
    fn capacity(&self) -> u64 {
        self.max_connections
            .or_else(|| self.load.map(|l| l.max_connections))
            .filter(|&c| c > 0)
            .unwrap_or(DEFAULT_CAPACITY)
    }

    /// Highest of connection, CPU and egress utilisation (0 when no load is known).
    pub fn utilization(&self) -> f64 {
        let Some(l) = self.load else { return 0.0 };
        let conns = l.connections as f64 / self.capacity() as f64;
        let egress_limit = self
            .max_egress_bps
            .or(Some(l.max_egress_bps))
            .filter(|&m| m > 0);
        let egress = egress_limit.map_or(0.0, |m| l.egress_bps as f64 / m as f64);
        conns.max(l.cpu).max(egress)
    }

    /// Spare capacity in connection slots below the high-water mark; 0 = not handed out.
    pub fn weight(&self, high_water: f64) -> f64 {
        if self.state != EdgeState::Up || self.load.is_some_and(|l| l.draining) {
            return 0.0;
        }
        let headroom = high_water - self.utilization();
        if headroom <= 0.0 {
            return 0.0;
        }
        headroom * self.capacity() as f64
    }
}

#[derive(Debug, Clone, PartialEq)]
/// A region as the planner sees it.
pub struct RegionView {
    /// Region name.
    pub name: String,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    /// Virtual IPs handed out instead of edge addresses, if any.
    pub vips: Vec<IpAddr>,
    /// Its edges.
    pub edges: Vec<EdgeView>,
}

/// Address family of a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 (A).
    V4,
    /// IPv6 (AAAA).
    V6,
}

impl Family {
    fn matches(self, a: &IpAddr) -> bool {
        match self {
            Family::V4 => a.is_ipv4(),
            Family::V6 => a.is_ipv6(),
        }
    }
}

/// Weighted addresses of one region for one family.
#[derive(Debug, Clone, Default)]
struct Pool {
    addrs: Vec<IpAddr>,
    weights: Vec<f64>,
    total: f64,
}

/// Where the clients of a home region are sent, per family.
#[derive(Debug, Clone)]
enum Route {
    /// The home region's own pool.
    Local,
    /// Other regions, chosen per client in proportion to their spare capacity.
    Spill { regions: Vec<usize>, cum: Vec<f64> },
    /// Nothing available: the least-bad addresses (fail-open).
    LeastBad(Vec<IpAddr>),
    /// Nothing available and fail-closed: NODATA.
    Nothing,
}

#[derive(Debug, Clone)]
struct RegionPlan {
    name: String,
    lat: f64,
    lon: f64,
    pools: [Pool; 2],
    routes: [Route; 2],
}

/// Index of the region nearest to a location among `coordinates` (latitude, longitude), all
/// regions, healthy or not: failover is the route's job.
pub fn nearest(coordinates: &[(f64, f64)], lat: f64, lon: f64) -> Option<usize> {
    coordinates
        .iter()
        .enumerate()
        .map(|(i, &(rlat, rlon))| (distance_km(lat, lon, rlat, rlon), i))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, i)| i)
}

/// The answer plan: rebuilt on every health/load/membership change.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    regions: Vec<RegionPlan>,
    k: usize,
    /// Families for which nothing at all is available (for logging).
    pub degraded: Vec<Family>,
}

/// The addresses chosen for one answer; the default is no address at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    /// Region whose addresses are answered (None for least-bad / nothing).
    pub region: Option<usize>,
    /// Addresses in answer order.
    pub addrs: Vec<IpAddr>,
}

/// SplitMix64: a small, fast generator for weighted choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn idx(f: Family) -> usize {
    match f {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

impl Plan {
    /// Builds the plan for the current regions, edge states and loads.
    pub fn build(regions: &[RegionView], policy: &AnswerConfig) -> Plan {
        let hw = policy.high_water;
        let mut plans: Vec<RegionPlan> = regions
            .iter()
            .map(|r| {
                let pools = [Family::V4, Family::V6].map(|f| region_pool(r, f, hw));
                RegionPlan {
                    name: r.name.clone(),
                    lat: r.lat,
                    lon: r.lon,
                    pools,
                    routes: [Route::Local, Route::Local],
                }
            })
            .collect();
        let mut degraded = Vec::new();
        for f in [Family::V4, Family::V6] {
            let fi = idx(f);
            let any_available = plans.iter().any(|p| p.pools[fi].total > 0.0);
            if !any_available
                && regions
                    .iter()
                    .any(|r| r.edges.iter().any(|e| e.addrs.iter().any(|a| f.matches(a))))
            {
                degraded.push(f);
            }
            for h in 0..plans.len() {
                let route = if plans[h].pools[fi].total > 0.0 {
                    Route::Local
                } else if any_available {
                    let mut others: Vec<(f64, usize)> = plans
                        .iter()
                        .enumerate()
                        .filter(|(i, p)| *i != h && p.pools[fi].total > 0.0)
                        .map(|(i, p)| {
                            let d = distance_km(plans[h].lat, plans[h].lon, p.lat, p.lon);
                            (d, i)
                        })
                        .collect();
                    others.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    others.truncate(policy.spill_regions.max(1));
                    let mut acc = 0.0;
                    let cum = others
                        .iter()
                        .map(|&(_, i)| {
                            acc += plans[i].pools[fi].total;
                            acc
                        })
                        .collect();
                    Route::Spill {
                        regions: others.into_iter().map(|(_, i)| i).collect(),
                        cum,
                    }
                } else if policy.fail_closed {
                    Route::Nothing
                } else {
                    Route::LeastBad(least_bad(regions, h, f, policy.k))
                };
                plans[h].routes[fi] = route;
            }
        }
        Plan {
            regions: plans,
            k: policy.k,
            degraded,
        }
    }

    /// Number of regions.
    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    /// Name of region `i` ("" when out of range).
    pub fn region_name(&self, i: usize) -> &str {
        self.regions.get(i).map_or("", |r| r.name.as_str())
    }

    /// Index of the region called `name`.
    pub fn region_index(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.name == name)
    }

    /// Latitude and longitude of every region, by index.
    pub fn coordinates(&self) -> Vec<(f64, f64)> {
        self.regions.iter().map(|r| (r.lat, r.lon)).collect()
    }

    /// What each region's clients are answered with now, for the HTTP view: per family, the
    /// route (`local`, `spill`, `least-bad`, `nothing`), the regions spilled to, and the
    /// weighted addresses of the region answered.
    pub fn describe(&self) -> serde_json::Value {
        let regions: Vec<serde_json::Value> = self
            .regions
            .iter()
            .map(|r| {
                let family = |fi: usize| {
                    let pool = |p: &Pool| {
                        p.addrs
                            .iter()
                            .zip(&p.weights)
                            .map(|(a, w)| serde_json::json!({ "addr": a, "weight": w }))
                            .collect::<Vec<_>>()
                    };
                    match &r.routes[fi] {
                        Route::Local => serde_json::json!({ "route": "local", "addrs": pool(&r.pools[fi]) }),
                        Route::Spill { regions, .. } => serde_json::json!({
                            "route": "spill",
                            "to": regions.iter().map(|i| self.region_name(*i)).collect::<Vec<_>>(),
                        }),
                        Route::LeastBad(addrs) => serde_json::json!({ "route": "least-bad", "addrs": addrs }),
                        Route::Nothing => serde_json::json!({ "route": "nothing" }),
                    }
                };
                serde_json::json!({ "region": r.name, "lat": r.lat, "lon": r.lon, "a": family(0), "aaaa": family(1) })
            })
            .collect();
        serde_json::Value::Array(regions)
    }

    /// Chooses the addresses for a client whose home region is `home`. `client_hash` keeps a
    /// client on the same spill region; `rng` spreads load inside a region.
    pub fn choose(&self, home: usize, family: Family, client_hash: u64, rng: &mut Rng) -> Choice {
        let fi = idx(family);
        let Some(h) = self.regions.get(home) else {
            return Choice::default();
        };
        let region = match &h.routes[fi] {
            Route::Local => home,
            Route::Spill { regions, cum } => {
                let total = cum.last().copied().unwrap_or(0.0);
                // Map the client hash to [0, total).
                let x = (client_hash >> 11) as f64 / (1u64 << 53) as f64 * total;
                let j = cum.iter().position(|&c| x < c).unwrap_or(cum.len() - 1);
                regions[j]
            }
            Route::LeastBad(addrs) => {
                return Choice {
                    region: None,
                    addrs: addrs.clone(),
                };
            }
            Route::Nothing => return Choice::default(),
        };
        let pool = &self.regions[region].pools[fi];
        Choice {
            region: Some(region),
            addrs: pick(pool, self.k, rng),
        }
    }
}

fn region_pool(r: &RegionView, f: Family, hw: f64) -> Pool {
    let mut pool = Pool::default();
    let region_weight: f64 = r.edges.iter().map(|e| e.weight(hw)).sum();
    let vips: Vec<IpAddr> = r.vips.iter().copied().filter(|a| f.matches(a)).collect();
    if !vips.is_empty() {
        if region_weight > 0.0 {
            let each = region_weight / vips.len() as f64;
            for v in vips {
                pool.addrs.push(v);
                pool.weights.push(each);
            }
            pool.total = region_weight;
        }
        return pool;
    }
    for e in &r.edges {
        let w = e.weight(hw);
        if w <= 0.0 {
            continue;
        }
        if let Some(a) = e.addrs.iter().find(|a| f.matches(a)) {
            pool.addrs.push(*a);
            pool.weights.push(w);
            pool.total += w;
        }
    }
    pool
}

/// Weighted choice of up to `k` distinct addresses, in draw order.
fn pick(pool: &Pool, k: usize, rng: &mut Rng) -> Vec<IpAddr> {
    let mut out = Vec::with_capacity(k.min(pool.addrs.len()));
    let mut taken: Vec<usize> = Vec::with_capacity(k);
    let mut remaining = pool.total;
    while out.len() < k && taken.len() < pool.addrs.len() && remaining > 0.0 {
        let mut x = rng.next_f64() * remaining;
        let mut chosen = None;
        for (i, w) in pool.weights.iter().enumerate() {
            if taken.contains(&i) {
                continue;
            }
            chosen = Some(i);
            if x < *w {
                break;
            }
            x -= w;
        }
        let Some(i) = chosen else { break };
        taken.push(i);
        remaining -= pool.weights[i];
        out.push(pool.addrs[i]);
    }
    out
}

/// When nothing is available: up-but-full edges first (least utilised), then unknown, then
/// down; nearer regions first within a class.
fn least_bad(regions: &[RegionView], home: usize, f: Family, k: usize) -> Vec<IpAddr> {
    let (hlat, hlon) = regions.get(home).map_or((0.0, 0.0), |r| (r.lat, r.lon));
    let mut all: Vec<(u8, f64, f64, IpAddr)> = Vec::new();
    for r in regions {
        let d = distance_km(hlat, hlon, r.lat, r.lon);
        for e in &r.edges {
            // A draining edge is about to stop: worse than one failing its probes, and left
            // out altogether while any other edge remains (full edges are all "least bad" when
            // a loaded machine reports high CPU, and a draining one must not come back then).
            let rank = match e.state {
                _ if e.load.is_some_and(|l| l.draining) => 3,
                EdgeState::Up => 0,
                EdgeState::Unknown => 1,
                EdgeState::Down => 2,
            };
            if let Some(a) = e.addrs.iter().find(|a| f.matches(a)) {
                all.push((rank, e.utilization(), d, *a));
            }
        }
    }
    all.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(a.2.total_cmp(&b.2))
            .then(a.1.total_cmp(&b.1))
    });
    if all.iter().any(|x| x.0 < 3) {
        all.retain(|x| x.0 < 3);
    }
    all.into_iter().take(k).map(|x| x.3).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(name: &str, addr: &str, state: EdgeState, conns: u64) -> EdgeView {
        EdgeView {
            name: name.into(),
            addrs: vec![addr.parse().unwrap()],
            state,
            load: Some(Load {
                connections: conns,
                max_connections: 100,
                ..Load::default()
            }),
            max_connections: None,
            max_egress_bps: None,
        }
    }

    fn region(name: &str, lat: f64, lon: f64, edges: Vec<EdgeView>) -> RegionView {
        RegionView {
            name: name.into(),
            lat,
            lon,
            vips: vec![],
            edges,
        }
    }

    /// A region with one edge, named after it ("a" has "a1").
    fn one_edge(
        name: &str,
        lat: f64,
        lon: f64,
        addr: &str,
        state: EdgeState,
        conns: u64,
    ) -> RegionView {
        region(
            name,
            lat,
            lon,
            vec![edge(&format!("{name}1"), addr, state, conns)],
        )
    }

    fn policy() -> AnswerConfig {
        AnswerConfig::default()
    }

    #[test]
    fn the_view_says_what_each_region_is_answered_with() {
        let regions = vec![
            one_edge("a", 50.0, 8.0, "127.0.1.1", EdgeState::Up, 10),
            one_edge("b", 40.0, -75.0, "127.0.2.1", EdgeState::Down, 0),
        ];
        let view = Plan::build(&regions, &policy()).describe();
        assert_eq!(view[0]["region"], "a");
        assert_eq!(view[0]["a"]["route"], "local");
        assert_eq!(view[0]["a"]["addrs"][0]["addr"], "127.0.1.1");
        assert!(view[0]["a"]["addrs"][0]["weight"].as_f64().unwrap() > 0.0);
        assert_eq!(view[1]["a"]["route"], "spill");
        assert_eq!(view[1]["a"]["to"][0], "a");
        assert_ne!(view[0]["aaaa"]["route"], "local", "no IPv6 edge: {view}");
    }

    #[test]
    fn weights_follow_free_capacity_and_shed_above_high_water() {
        let e = edge("e", "127.0.1.1", EdgeState::Up, 10);
        assert!((e.weight(0.85) - 75.0).abs() < 1e-9);
        let full = edge("e", "127.0.1.1", EdgeState::Up, 90);
        assert_eq!(full.weight(0.85), 0.0);
        let mut cpu = edge("e", "127.0.1.1", EdgeState::Up, 0);
        cpu.load.as_mut().unwrap().cpu = 0.95;
        assert_eq!(cpu.weight(0.85), 0.0);
        let mut eg = edge("e", "127.0.1.1", EdgeState::Up, 0);
        eg.load.as_mut().unwrap().egress_bps = 900;
        eg.max_egress_bps = Some(1000);
        assert_eq!(eg.weight(0.85), 0.0);
        let mut drain = edge("e", "127.0.1.1", EdgeState::Up, 0);
        drain.load.as_mut().unwrap().draining = true;
        assert_eq!(drain.weight(0.85), 0.0);
        assert_eq!(
            edge("e", "127.0.1.1", EdgeState::Unknown, 0).weight(0.85),
            0.0
        );
        assert_eq!(edge("e", "127.0.1.1", EdgeState::Down, 0).weight(0.85), 0.0);
    }

    #[test]
    fn local_answers_pick_k_distinct_by_weight() {
        let r = vec![region(
            "a",
            50.0,
            8.0,
            vec![
                edge("a1", "127.0.1.1", EdgeState::Up, 0),
                edge("a2", "127.0.1.2", EdgeState::Up, 80),
                edge("a3", "127.0.1.3", EdgeState::Up, 90),
            ],
        )];
        let plan = Plan::build(&r, &policy());
        let mut rng = Rng::new(7);
        let mut first_a1 = 0;
        for _ in 0..1000 {
            let c = plan.choose(0, Family::V4, 1, &mut rng);
            assert_eq!(c.region, Some(0));
            assert_eq!(c.addrs.len(), 2);
            assert!(
                !c.addrs.contains(&"127.0.1.3".parse().unwrap()),
                "over high water"
            );
            assert_ne!(c.addrs[0], c.addrs[1]);
            if c.addrs[0] == "127.0.1.1".parse::<IpAddr>().unwrap() {
                first_a1 += 1;
            }
        }
        // weights 85 vs 5: a1 first ~94% of the time
        assert!(first_a1 > 850, "{first_a1}");
        assert!(plan.choose(0, Family::V6, 1, &mut rng).addrs.is_empty());
    }

    #[test]
    fn failed_region_spills_in_proportion_to_spare_capacity() {
        let r = vec![
            one_edge("a", 50.0, 8.0, "127.0.1.1", EdgeState::Down, 0),
            // b is nearest to a, but has little spare capacity
            one_edge("b", 48.0, 2.0, "127.0.2.1", EdgeState::Up, 65),
            one_edge("c", 40.0, -74.0, "127.0.3.1", EdgeState::Up, 5),
        ];
        let plan = Plan::build(&r, &policy());
        let mut rng = Rng::new(1);
        let (mut b, mut c) = (0, 0);
        for client in 0..4000u64 {
            let h = Rng::new(client).next_u64();
            match plan.choose(0, Family::V4, h, &mut rng).region {
                Some(1) => b += 1,
                Some(2) => c += 1,
                other => panic!("{other:?}"),
            }
        }
        // spare: b 20, c 80 → 20% / 80%
        let share_b = b as f64 / 4000.0;
        assert!((0.15..0.25).contains(&share_b), "b got {share_b}");
        assert!(c > b);
        // the same client always lands on the same region
        let h = 12345;
        let first = plan.choose(0, Family::V4, h, &mut rng).region;
        for _ in 0..10 {
            assert_eq!(plan.choose(0, Family::V4, h, &mut rng).region, first);
        }
    }

    #[test]
    fn full_region_spills_too_and_vips_replace_edges() {
        let mut b = one_edge("b", 48.0, 2.0, "127.0.2.1", EdgeState::Up, 10);
        b.vips = vec!["127.0.2.100".parse().unwrap()];
        let r = vec![one_edge("a", 50.0, 8.0, "127.0.1.1", EdgeState::Up, 99), b];
        let plan = Plan::build(&r, &policy());
        let c = plan.choose(0, Family::V4, 0, &mut Rng::new(3));
        assert_eq!(c.region, Some(1));
        assert_eq!(c.addrs, vec!["127.0.2.100".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn nothing_available_least_bad_or_fail_closed() {
        let r = vec![
            one_edge("a", 50.0, 8.0, "127.0.1.1", EdgeState::Down, 0),
            region(
                "b",
                40.0,
                -74.0,
                vec![
                    edge("b1", "127.0.2.1", EdgeState::Unknown, 0),
                    edge("b2", "127.0.2.2", EdgeState::Up, 99),
                ],
            ),
        ];
        let plan = Plan::build(&r, &policy());
        assert_eq!(plan.degraded, vec![Family::V4]);
        let c = plan.choose(0, Family::V4, 0, &mut Rng::new(1));
        assert_eq!(c.region, None);
        let want: Vec<IpAddr> = vec!["127.0.2.2".parse().unwrap(), "127.0.2.1".parse().unwrap()];
        assert_eq!(c.addrs, want);
        let closed = Plan::build(
            &r,
            &AnswerConfig {
                fail_closed: true,
                ..policy()
            },
        );
        assert!(
            closed
                .choose(0, Family::V4, 0, &mut Rng::new(1))
                .addrs
                .is_empty()
        );
    }

    #[test]
    fn a_draining_edge_is_least_bad_only_when_nothing_else_is_left() {
        let mut drain = edge("a1", "127.0.1.1", EdgeState::Up, 99);
        drain.load.as_mut().unwrap().draining = true;
        let full = edge("a2", "127.0.1.2", EdgeState::Up, 99);
        let r = vec![region("a", 50.0, 8.0, vec![drain.clone(), full])];
        let plan = Plan::build(&r, &policy());
        let c = plan.choose(0, Family::V4, 0, &mut Rng::new(1));
        assert_eq!(c.addrs, vec!["127.0.1.2".parse::<IpAddr>().unwrap()]);
        let alone = Plan::build(&[region("a", 50.0, 8.0, vec![drain])], &policy());
        let c = alone.choose(0, Family::V4, 0, &mut Rng::new(1));
        assert_eq!(c.addrs, vec!["127.0.1.1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn nearest_region() {
        let r = vec![
            region("a", 50.0, 8.0, vec![]),
            region("b", 40.0, -74.0, vec![]),
        ];
        let plan = Plan::build(&r, &policy());
        assert_eq!(nearest(&plan.coordinates(), 41.0, -70.0), Some(1));
        assert_eq!(nearest(&plan.coordinates(), 48.0, 2.0), Some(0));
        assert_eq!(plan.region_index("b"), Some(1));
    }
}
