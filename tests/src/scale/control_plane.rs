//! The Raft group under churn and at size: nodes fail and return at a given rate while the
//! leader's real policies ([`super::leader::Leader`]) write what they decide; the bytes of
//! heartbeats, entries and snapshots are measured on the real encodings
//! (`skein_raft::wire_size`), and the rates they imply are computed from them.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};
use skein_raft::ring::Ring;
use skein_raft::{Command, LoadReport, NodeHealth, NodeId, StreamLoad, wire_size};

use super::Stream;
use super::leader::{Leader, LogCount};

const DAY_MS: f64 = 86_400_000.0;

/// How nodes fail and come back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChurnRate {
    /// Failures per node per day (crashes, reboots, restarts for upgrades).
    pub failures_per_node_day: f64,
    /// Mean time a failed node stays silent, seconds (exponentially distributed).
    pub mean_down_secs: f64,
    /// Simulated time, days.
    pub days: f64,
}

/// What the churn cost the log and the ring.
#[derive(Clone, Debug, PartialEq)]
pub struct ChurnResult {
    /// Failures simulated.
    pub failures: usize,
    /// Entries written during the churn.
    pub log: LogCount,
    /// Mean entries per second.
    pub entries_per_sec: f64,
    /// Most entries in one second.
    pub busiest_second: u64,
    /// Times the committed live origin set changed.
    pub ring_changes: u64,
    /// Streams that changed owner, summed over all changes.
    pub streams_moved: u64,
}

/// One failure: who, when it goes silent, when it speaks again (ms).
struct Outage {
    node: NodeId,
    from_ms: u64,
    until_ms: u64,
}

fn outages(nodes: &[NodeId], rate: &ChurnRate, seed: u64) -> Vec<Outage> {
    let mut rng = StdRng::seed_from_u64(seed);
    let end = rate.days * DAY_MS;
    let per_ms = rate.failures_per_node_day / DAY_MS;
    let mut out = Vec::new();
    for &node in nodes {
        let mut t = 0.0;
        loop {
            t += -(1.0 - rng.random::<f64>()).ln() / per_ms;
            if t >= end {
                break;
            }
            let down = -(1.0 - rng.random::<f64>()).ln() * rate.mean_down_secs * 1000.0;
            out.push(Outage {
                node,
                from_ms: t as u64,
                until_ms: (t + down) as u64,
            });
            t += down;
        }
    }
    out.sort_by_key(|o| o.from_ms);
    out
}

/// Runs the churn on `leader` (the leader itself never fails: its failover is measured by
/// the cluster benchmark), re-routing `streams` whenever the committed live origins change.
pub fn churn(leader: &mut Leader, rate: &ChurnRate, streams: &[Stream], seed: u64) -> ChurnResult {
    let nodes: Vec<NodeId> = leader
        .state
        .nodes
        .keys()
        .copied()
        .filter(|&n| n != 1)
        .collect();
    let outages = outages(&nodes, rate, seed);
    // Policy decisions only change when a node goes silent, crosses one of the settings'
    // thresholds, or speaks again: those ticks (and every tick after one that acted) are run.
    let s = leader.state.settings.clone();
    let mut events: BTreeMap<u64, Vec<(NodeId, bool)>> = BTreeMap::new();
    let mut ticks: BTreeSet<u64> = BTreeSet::new();
    let tick_ms = leader.timings.policy_tick_ms;
    let tick_of = |ms: u64| ms.div_ceil(tick_ms);
    for o in &outages {
        events.entry(o.from_ms).or_default().push((o.node, false));
        events.entry(o.until_ms).or_default().push((o.node, true));
        for after in [
            0,
            s.down_after_ms,
            s.origin_grace_ms,
            s.voter_replace_after_ms,
        ] {
            if o.from_ms + after < o.until_ms {
                ticks.insert(tick_of(o.from_ms + after) + 1);
            }
        }
        ticks.insert(tick_of(o.until_ms) + 1);
    }
    let start = leader.log.clone();
    let mut per_second: BTreeMap<u64, u64> = BTreeMap::new();
    let mut origins = leader.state.live_origins();
    let mut owners: Vec<NodeId> = {
        let ring = Ring::new(origins.iter().copied());
        streams
            .iter()
            .map(|st| ring.owner(&st.key).unwrap_or(0))
            .collect()
    };
    let (mut ring_changes, mut streams_moved) = (0, 0);
    let base_ms = leader.now_ms;
    while let Some(tick) = ticks.pop_first() {
        let now = tick * tick_ms;
        while let Some(entry) = events.first_entry() {
            if *entry.key() > now {
                break;
            }
            leader.now_ms = base_ms + entry.key();
            for (node, back) in entry.remove() {
                if back {
                    leader.recover(node);
                } else {
                    leader.fail(node);
                }
            }
        }
        leader.now_ms = base_ms + now;
        let before = leader.log.total();
        if leader.tick() {
            ticks.insert(tick + 1);
        }
        let written = leader.log.total() - before;
        if written > 0 {
            *per_second.entry(now / 1000).or_default() += written;
        }
        let live = leader.state.live_origins();
        if live != origins {
            let ring = Ring::new(live.iter().copied());
            for (owner, st) in owners.iter_mut().zip(streams) {
                let new = ring.owner(&st.key).unwrap_or(0);
                streams_moved += u64::from(new != *owner);
                *owner = new;
            }
            ring_changes += 1;
            origins = live;
        }
    }
    let mut log = leader.log.clone();
    for (name, n) in &start.commands {
        if let Some(count) = log.commands.get_mut(name) {
            *count -= n;
        }
    }
    log.commands.retain(|_, n| *n > 0);
    log.membership -= start.membership;
    ChurnResult {
        failures: outages.len(),
        entries_per_sec: log.total() as f64 / (rate.days * 86_400.0),
        log,
        busiest_second: per_second.values().copied().max().unwrap_or(0),
        ring_changes,
        streams_moved,
    }
}

/// A whole region goes silent at once: ticks until the policies are done, and entries written.
pub fn region_storm(leader: &mut Leader, region: &str) -> (u64, u64) {
    let members: Vec<NodeId> = leader
        .state
        .nodes
        .values()
        .filter(|n| n.region == region && n.id != 1)
        .map(|n| n.id)
        .collect();
    for &n in &members {
        leader.fail(n);
    }
    let before = leader.log.total();
    // Past the voter replacement time, so every threshold has been crossed.
    let tick_ms = leader.timings.policy_tick_ms;
    let deadline = leader.now_ms + leader.state.settings.voter_replace_after_ms + 10 * tick_ms;
    let mut acting = 0;
    while leader.now_ms < deadline {
        leader.now_ms += tick_ms;
        acting += u64::from(leader.tick());
    }
    (acting, leader.log.total() - before)
}

/// Bytes of the control plane for one cluster state, measured on the real encodings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sizes {
    /// Registered nodes.
    pub nodes: usize,
    /// One Raft heartbeat to one follower.
    pub heartbeat: usize,
    /// One `SetNodeHealth` entry appended to one follower.
    pub health_entry: usize,
    /// One membership entry appended to one follower.
    pub membership_entry: usize,
    /// A load report of an edge.
    pub edge_report: usize,
    /// A load report of an origin with its streams.
    pub origin_report: usize,
    /// The snapshot, stored and sent.
    pub snapshot: wire_size::SnapshotSize,
}

/// Measures the sizes on `leader`'s state; an origin reports `streams_per_origin` streams.
pub fn sizes(leader: &Leader, streams_per_origin: usize) -> Sizes {
    let state = &leader.state;
    let some_node = state.nodes.keys().copied().last().unwrap_or(1);
    let edge = LoadReport {
        connections: 850,
        cpu: 0.45,
        egress_bps: 4_000_000_000,
        capacity_bps: 10_000_000_000,
        origin_streams: Vec::new(),
        edge_streams: 300,
    };
    let origin = LoadReport {
        origin_streams: (0..streams_per_origin)
            .map(|i| StreamLoad {
                key: format!("live/s{i:06}"),
                bitrate_bps: 4_500_000,
            })
            .collect(),
        ..edge.clone()
    };
    Sizes {
        nodes: state.nodes.len(),
        heartbeat: wire_size::heartbeat(state),
        health_entry: wire_size::append_commands(
            state,
            &[Command::SetNodeHealth {
                node: some_node,
                health: NodeHealth::Down,
            }],
        ),
        membership_entry: wire_size::append_membership(state),
        edge_report: wire_size::load_report(some_node, &edge),
        origin_report: wire_size::load_report(some_node, &origin),
        snapshot: wire_size::snapshot(state),
    }
}

/// One node in this many is an origin in [`sized_cluster`] (as in the full model: 1,000 of
/// 6,000).
pub const ORIGIN_EVERY: u64 = 6;

/// A registered cluster of `nodes` nodes over `regions` regions, one in [`ORIGIN_EVERY`] an origin,
/// five voters and every other node a learner (what the policies converge to), built without
/// running the policies so that large sizes stay quick.
pub fn sized_cluster(nodes: u64, regions: u64) -> Leader {
    let mut leader = Leader::bootstrap(0);
    for r in 0..regions {
        leader.locate(&format!("region-{r:03}"), 0.0, 0.0);
    }
    for n in 0..nodes {
        leader.register(
            n,
            &format!("region-{:03}", n % regions),
            skein_raft::Roles::default(),
        );
    }
    for n in (1..=nodes).step_by(ORIGIN_EVERY as usize) {
        leader.commit(Command::PromoteOrigin { node: n, now_ms: 0 });
    }
    leader.state.voters = (1..=5).collect();
    leader.state.learners = (6..=nodes).collect();
    leader
}
