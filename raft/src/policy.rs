//! Leader policies as pure functions: cluster state + the leader's health view → the next
//! action. The leader applies at most one membership change at a time (openraft serialises
//! them; we also wait for each to commit before deciding again).
//!
//! Order of concerns: committed health → learners for new nodes → removed nodes out of the
//! membership → voter count and spread → origin pool.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::state::{ClusterState, Command};
use crate::types::{LoadReport, NodeHealth, NodeId, OriginState};

/// What the leader knows that is not in the log.
#[derive(Clone, Debug, Default)]
pub struct HealthView {
    /// The leader itself (always healthy, never demoted by the voter policy).
    pub leader: NodeId,
    /// Leader clock, unix ms (goes into commands that record time).
    pub now_ms: u64,
    /// Milliseconds since the last heartbeat of each node (counted from the start of this
    /// leadership for nodes not heard from yet).
    pub silent_ms: BTreeMap<NodeId, u64>,
    /// Last load reported by each node.
    pub loads: BTreeMap<NodeId, LoadReport>,
    /// Learners whose replicated log is close to the leader's.
    pub caught_up: BTreeSet<NodeId>,
    /// Voters of the effective Raft membership.
    pub voters: BTreeSet<NodeId>,
    /// Learners of the effective Raft membership.
    pub learners: BTreeSet<NodeId>,
}

impl HealthView {
    fn silent(&self, n: NodeId) -> u64 {
        if n == self.leader {
            return 0;
        }
        self.silent_ms.get(&n).copied().unwrap_or(u64::MAX)
    }
}

/// The next step a leader takes.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Commit a state-machine command.
    Commit(Command),
    /// Add a registered node to the Raft membership as a learner.
    AddLearner(NodeId, SocketAddr),
    /// Replace the voter set (a single joint-consensus change; removed voters stay learners).
    SetVoters(BTreeSet<NodeId>, String),
    /// Drop a node that is no longer registered from the Raft membership.
    RemoveFromMembership(NodeId),
}

/// Most policy steps the leader takes per policy tick; each waits for its commit, and a
/// membership change ends the tick early (the next decision sees the settled configuration).
pub const STEPS_PER_TICK: usize = 8;

/// Voters wanted for `members` registered nodes: 1, 3, or 5 from five nodes on.
pub fn voter_target(members: usize) -> usize {
    match members {
        0..=2 => 1,
        3..=4 => 3,
        _ => 5,
    }
}

/// Decides the next action, or `None` when everything is at strength.
pub fn decide(state: &ClusterState, view: &HealthView) -> Option<Action> {
    health(state, view)
        .or_else(|| learners(state, view))
        .or_else(|| removed(state, view))
        .or_else(|| voters(state, view))
        .or_else(|| origins(state, view))
}

fn health(state: &ClusterState, view: &HealthView) -> Option<Action> {
    let down_after = state.settings.down_after_ms;
    state.nodes.values().find_map(|n| {
        let observed = if view.silent(n.id) >= down_after {
            NodeHealth::Down
        } else {
            NodeHealth::Up
        };
        (observed != n.health).then_some(Action::Commit(Command::SetNodeHealth {
            node: n.id,
            health: observed,
        }))
    })
}

fn learners(state: &ClusterState, view: &HealthView) -> Option<Action> {
    state
        .nodes
        .values()
        .find(|n| !view.voters.contains(&n.id) && !view.learners.contains(&n.id))
        .map(|n| Action::AddLearner(n.id, n.internal_addr))
}

fn removed(state: &ClusterState, view: &HealthView) -> Option<Action> {
    if let Some(&gone) = view.voters.iter().find(|v| !state.nodes.contains_key(v)) {
        let mut next: BTreeSet<NodeId> =
            view.voters.iter().copied().filter(|v| *v != gone).collect();
        if let Some(c) = candidate(state, view, &next) {
            next.insert(c);
        }
        if next.is_empty() {
            return None;
        }
        return Some(Action::SetVoters(next, format!("node {gone} was removed")));
    }
    view.learners
        .iter()
        .find(|l| !state.nodes.contains_key(l))
        .map(|&l| Action::RemoveFromMembership(l))
}

/// Whether `n` is in the origin pool now (active or draining).
fn is_origin(state: &ClusterState, n: NodeId) -> bool {
    state.origins.contains_key(&n)
}

/// Origins in the voter set must stay a minority, so that losing every origin at once still
/// leaves a quorum (the cluster must be able to promote new origins then).
fn origins_are_minority(state: &ClusterState, voters: &BTreeSet<NodeId>) -> bool {
    let origins = voters.iter().filter(|v| is_origin(state, **v)).count();
    origins * 2 < voters.len()
}

/// Best learner to make a voter: healthy, caught up, preferably not an origin, then in a
/// region without a voter; then the oldest (lowest id) for stability.
fn candidate(state: &ClusterState, view: &HealthView, keep: &BTreeSet<NodeId>) -> Option<NodeId> {
    let regions: BTreeSet<&str> = keep
        .iter()
        .filter_map(|v| state.nodes.get(v))
        .map(|n| n.region.as_str())
        .collect();
    view.learners
        .iter()
        .filter_map(|l| state.nodes.get(l))
        .filter(|n| {
            view.caught_up.contains(&n.id) && view.silent(n.id) < state.settings.down_after_ms
        })
        .min_by_key(|n| {
            (
                is_origin(state, n.id),
                regions.contains(n.region.as_str()),
                n.id,
            )
        })
        .map(|n| n.id)
}

fn voters(state: &ClusterState, view: &HealthView) -> Option<Action> {
    let members = state.nodes.len();
    let target = voter_target(members);
    let current = &view.voters;
    // 1. Replace a voter unreachable for too long.
    let replace_after = state.settings.voter_replace_after_ms;
    if let Some(&dead) = current.iter().find(|&&v| view.silent(v) >= replace_after) {
        let keep: BTreeSet<NodeId> = current.iter().copied().filter(|v| *v != dead).collect();
        if let Some(c) = candidate(state, view, &keep) {
            let mut next = keep;
            next.insert(c);
            return Some(Action::SetVoters(
                next,
                format!(
                    "voter {dead} unreachable for {} ms, replaced by {c}",
                    view.silent(dead)
                ),
            ));
        }
    }
    // 2. Grow to the target.
    if current.len() < target
        && let Some(c) = candidate(state, view, current)
    {
        let mut next = current.clone();
        next.insert(c);
        return Some(Action::SetVoters(
            next,
            format!("voters below {target}, adding {c}"),
        ));
    }
    // 3. Shrink to the target: drop the least useful voter, never the leader.
    if current.len() > target {
        let drop = current
            .iter()
            .copied()
            .filter(|v| *v != view.leader)
            .max_by_key(|v| (view.silent(*v) >= state.settings.down_after_ms, *v));
        if let Some(d) = drop {
            let next = current.iter().copied().filter(|v| *v != d).collect();
            return Some(Action::SetVoters(
                next,
                format!("voters above {target}, removing {d}"),
            ));
        }
    }
    // 4. Keep origins a minority of the voters: swap an origin voter (never the leader) for a
    //    non-origin learner.
    if !origins_are_minority(state, current) {
        let out = current
            .iter()
            .copied()
            .filter(|v| *v != view.leader && is_origin(state, *v))
            .max();
        if let Some(out) = out {
            let keep: BTreeSet<NodeId> = current.iter().copied().filter(|v| *v != out).collect();
            if let Some(c) = candidate(state, view, &keep).filter(|c| !is_origin(state, *c)) {
                let mut next = keep;
                next.insert(c);
                return Some(Action::SetVoters(
                    next,
                    format!(
                        "origins must stay a minority of the voters: {c} replaces origin {out}"
                    ),
                ));
            }
        }
    }
    // 5. Spread: swap a voter sharing its region for a learner from an unrepresented region,
    //    unless that would make the origins a majority.
    let mut by_region: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
    for v in current {
        if let Some(n) = state.nodes.get(v) {
            by_region.entry(n.region.as_str()).or_default().push(*v);
        }
    }
    let crowded = by_region
        .values()
        .filter(|vs| vs.len() > 1)
        .flat_map(|vs| vs.iter().copied().filter(|v| *v != view.leader))
        .max();
    if let Some(out) = crowded {
        let keep: BTreeSet<NodeId> = current.iter().copied().filter(|v| *v != out).collect();
        if let Some(c) = candidate(state, view, &keep) {
            let region = state.nodes.get(&c).map(|n| n.region.as_str());
            let mut next = keep;
            next.insert(c);
            if region.is_some_and(|r| !by_region.contains_key(r))
                && (origins_are_minority(state, &next) || !origins_are_minority(state, current))
            {
                return Some(Action::SetVoters(
                    next,
                    format!("spreading voters over regions: {c} replaces {out}"),
                ));
            }
        }
    }
    None
}

fn origins(state: &ClusterState, view: &HealthView) -> Option<Action> {
    let s = &state.settings;
    let alive = |n: NodeId| view.silent(n) < s.down_after_ms;
    let counted = state
        .origins
        .iter()
        .filter(|(n, slot)| {
            slot.state == OriginState::Active && view.silent(**n) < s.origin_grace_ms
        })
        .count();
    if counted < s.origin_target {
        // A draining origin that is alive comes back first: its streams have not all moved.
        if let Some((&n, _)) = state
            .origins
            .iter()
            .find(|(n, slot)| slot.state == OriginState::Draining && alive(**n))
        {
            return Some(Action::Commit(Command::PromoteOrigin {
                node: n,
                now_ms: view.now_ms,
            }));
        }
        return best_edge(state, view).map(|node| {
            Action::Commit(Command::PromoteOrigin {
                node,
                now_ms: view.now_ms,
            })
        });
    }
    let alive_active: Vec<(NodeId, u64)> = state
        .origins
        .iter()
        .filter(|(n, slot)| slot.state == OriginState::Active && alive(**n))
        .map(|(n, slot)| (*n, slot.since_index))
        .collect();
    if alive_active.len() > s.origin_target
        && let Some(&(newest, _)) = alive_active.iter().max_by_key(|(n, since)| (*since, *n))
    {
        return Some(Action::Commit(Command::DrainOrigin {
            node: newest,
            now_ms: view.now_ms,
        }));
    }
    // Demote drained origins once their streams moved (or after the drain timeout).
    state.origins.iter().find_map(|(&n, slot)| {
        let drained = view
            .loads
            .get(&n)
            .is_some_and(|l| l.origin_streams.is_empty());
        let timed_out = view.now_ms.saturating_sub(slot.since_ms) >= s.drain_timeout_ms;
        (slot.state == OriginState::Draining && (drained || timed_out))
            .then_some(Action::Commit(Command::DemoteOrigin { node: n }))
    })
}

/// Edge to promote: alive, allowed to be an origin, in the region with the fewest live origins,
/// then with the most spare capacity, then the lowest id.
fn best_edge(state: &ClusterState, view: &HealthView) -> Option<NodeId> {
    let s = &state.settings;
    let mut per_region: BTreeMap<&str, usize> = BTreeMap::new();
    for (n, slot) in &state.origins {
        if slot.state == OriginState::Active
            && view.silent(*n) < s.down_after_ms
            && let Some(info) = state.nodes.get(n)
        {
            *per_region.entry(info.region.as_str()).or_default() += 1;
        }
    }
    state
        .nodes
        .values()
        .filter(|n| {
            n.roles.origin
                && !state.origins.contains_key(&n.id)
                && view.silent(n.id) < s.down_after_ms
        })
        .min_by(|a, b| {
            let ra = per_region.get(a.region.as_str()).copied().unwrap_or(0);
            let rb = per_region.get(b.region.as_str()).copied().unwrap_or(0);
            let sa = view.loads.get(&a.id).map_or(0.0, LoadReport::spare);
            let sb = view.loads.get(&b.id).map_or(0.0, LoadReport::spare);
            ra.cmp(&rb).then(sb.total_cmp(&sa)).then(a.id.cmp(&b.id))
        })
        .map(|n| n.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{PublicAddrs, Roles};
    use uuid::Uuid;

    fn cluster(regions: &[&str]) -> ClusterState {
        let mut s = ClusterState::default();
        for (i, r) in regions.iter().enumerate() {
            let a = SocketAddr::from(([127, 0, 3, 1], 7000 + i as u16));
            s.apply(
                i as u64 + 1,
                &Command::RegisterNode {
                    uuid: Uuid::from_u128(i as u128 + 1),
                    key_sha256: format!("key-{i}"),
                    consume_token: None,
                    name: format!("n{}", i + 1),
                    region: (*r).into(),
                    internal_addr: a,
                    public: PublicAddrs { rtmp: a, http: a },
                    roles: Roles::default(),
                },
            );
        }
        s
    }

    fn view(s: &ClusterState, voters: &[NodeId]) -> HealthView {
        let ids: Vec<NodeId> = s.nodes.keys().copied().collect();
        HealthView {
            leader: voters[0],
            now_ms: 1_000_000,
            silent_ms: ids.iter().map(|&n| (n, 100)).collect(),
            loads: BTreeMap::new(),
            caught_up: ids.iter().copied().collect(),
            voters: voters.iter().copied().collect(),
            learners: ids
                .iter()
                .copied()
                .filter(|n| !voters.contains(n))
                .collect(),
        }
    }

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn voter_targets() {
        assert_eq!([1, 2, 3, 4, 5, 9].map(voter_target), [1, 1, 3, 3, 5, 5]);
    }

    #[test]
    fn grows_voters_preferring_new_regions() {
        let s = cluster(&["eu", "eu", "us", "ap"]);
        let v = view(&s, &[1]);
        match voters(&s, &v) {
            Some(Action::SetVoters(next, _)) => assert_eq!(next, set(&[1, 3])),
            other => panic!("{other:?}"),
        }
        let v = view(&s, &[1, 3]);
        match voters(&s, &v) {
            Some(Action::SetVoters(next, _)) => assert_eq!(next, set(&[1, 3, 4])),
            other => panic!("{other:?}"),
        }
        assert_eq!(voters(&s, &view(&s, &[1, 3, 4])), None);
    }

    #[test]
    fn learners_not_caught_up_are_not_promoted() {
        let s = cluster(&["eu", "us", "ap"]);
        let mut v = view(&s, &[1]);
        v.caught_up.clear();
        assert_eq!(voters(&s, &v), None);
    }

    #[test]
    fn spreads_voters_over_regions() {
        let s = cluster(&["eu", "eu", "us", "ap"]);
        match voters(&s, &view(&s, &[1, 2, 3])) {
            Some(Action::SetVoters(next, _)) => assert_eq!(next, set(&[1, 3, 4])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replaces_an_unreachable_voter_with_a_learner_from_another_region() {
        let s = cluster(&["eu", "us", "ap", "us", "sa"]);
        let mut v = view(&s, &[1, 2, 3, 4, 5]);
        assert_eq!(voters(&s, &v), None);
        let s = cluster(&["eu", "us", "ap", "oc", "sa", "af", "us"]);
        v = view(&s, &[1, 2, 3, 4, 5]);
        v.silent_ms.insert(2, s.settings.voter_replace_after_ms);
        match voters(&s, &v) {
            Some(Action::SetVoters(next, why)) => {
                assert_eq!(next, set(&[1, 3, 4, 5, 6]), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // Not yet past the replace time: nothing.
        v.silent_ms.insert(2, s.settings.voter_replace_after_ms - 1);
        assert_eq!(voters(&s, &v), None);
    }

    #[test]
    fn never_shrinks_by_dropping_the_leader() {
        let mut s = cluster(&["eu", "us", "ap"]);
        s.apply(10, &Command::RemoveNode { node: 3 });
        // Two nodes left: target 1; voter 3 is gone, so first it leaves the voter set.
        let mut v = view(&cluster(&["eu", "us", "ap"]), &[2, 1, 3]);
        v.leader = 2;
        match decide(&s, &v) {
            Some(Action::SetVoters(next, _)) => assert!(!next.contains(&3) && next.contains(&2)),
            other => panic!("{other:?}"),
        }
        v.voters = set(&[1, 2]);
        v.learners = set(&[3]);
        assert_eq!(decide(&s, &v), Some(Action::RemoveFromMembership(3)));
        v.learners.clear();
        match decide(&s, &v) {
            Some(Action::SetVoters(next, _)) => assert_eq!(next, set(&[2])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn health_changes_are_committed_once() {
        let s = cluster(&["eu", "us"]);
        let mut v = view(&s, &[1]);
        v.silent_ms.insert(2, s.settings.down_after_ms);
        assert_eq!(
            decide(&s, &v),
            Some(Action::Commit(Command::SetNodeHealth {
                node: 2,
                health: NodeHealth::Down
            }))
        );
    }

    #[test]
    fn origin_pool_promotes_spare_capacity_and_spreads_regions() {
        let mut s = cluster(&["eu", "eu", "us"]);
        s.settings.origin_target = 2;
        let mut v = view(&s, &[1, 2, 3]);
        v.loads.insert(
            1,
            LoadReport {
                cpu: 0.9,
                ..Default::default()
            },
        );
        v.loads.insert(
            2,
            LoadReport {
                cpu: 0.1,
                ..Default::default()
            },
        );
        v.loads.insert(
            3,
            LoadReport {
                cpu: 0.5,
                ..Default::default()
            },
        );
        let promote = |n| {
            Some(Action::Commit(Command::PromoteOrigin {
                node: n,
                now_ms: 1_000_000,
            }))
        };
        assert_eq!(origins(&s, &v), promote(2));
        s.apply(20, &Command::PromoteOrigin { node: 2, now_ms: 0 });
        // eu has an origin now: us goes next although node 1 is in eu... and busier anyway.
        assert_eq!(origins(&s, &v), promote(3));
        s.apply(21, &Command::PromoteOrigin { node: 3, now_ms: 0 });
        assert_eq!(origins(&s, &v), None);

        // Origin 3 stops heartbeating: within the grace nothing, past it node 1 is promoted.
        v.silent_ms.insert(3, s.settings.origin_grace_ms - 1);
        assert_eq!(origins(&s, &v), None);
        v.silent_ms.insert(3, s.settings.origin_grace_ms);
        assert_eq!(origins(&s, &v), promote(1));
        s.apply(22, &Command::PromoteOrigin { node: 1, now_ms: 0 });

        // 3 comes back: over target, the newest (1) drains, then is demoted once empty.
        v.silent_ms.insert(3, 100);
        assert_eq!(
            origins(&s, &v),
            Some(Action::Commit(Command::DrainOrigin {
                node: 1,
                now_ms: 1_000_000
            }))
        );
        s.apply(
            23,
            &Command::DrainOrigin {
                node: 1,
                now_ms: 1_000_000,
            },
        );
        let busy = LoadReport {
            origin_streams: vec![crate::types::StreamLoad {
                key: "a/b".into(),
                bitrate_bps: 1,
            }],
            ..Default::default()
        };
        v.loads.insert(1, busy);
        assert_eq!(origins(&s, &v), None);
        v.loads.insert(1, LoadReport::default());
        assert_eq!(
            origins(&s, &v),
            Some(Action::Commit(Command::DemoteOrigin { node: 1 }))
        );
    }

    #[test]
    fn losing_every_origin_does_not_touch_voters() {
        let mut s = cluster(&["eu", "us", "ap", "sa"]);
        s.settings.origin_target = 1;
        s.apply(30, &Command::PromoteOrigin { node: 4, now_ms: 0 });
        let mut v = view(&s, &[1, 2, 3]);
        v.silent_ms.insert(4, s.settings.origin_grace_ms);
        // 4 is only an origin (a learner): its death is not a voter matter.
        assert_eq!(voters(&s, &v), None);
        assert!(matches!(
            origins(&s, &v),
            Some(Action::Commit(Command::PromoteOrigin { .. }))
        ));
    }

    #[test]
    fn origins_are_swapped_out_of_a_voter_majority() {
        // Three origins joined first and became voters; then two edges from other regions.
        let mut s = cluster(&["c", "c", "c", "a", "b", "a", "b"]);
        s.settings.origin_target = 3;
        for n in 1..=3 {
            s.apply(40 + n, &Command::PromoteOrigin { node: n, now_ms: 0 });
        }
        let mut v = view(&s, &[1, 2, 3, 4, 5]);
        let Some(Action::SetVoters(next, why)) = voters(&s, &v) else {
            panic!("expected a voter swap");
        };
        assert_eq!(next, set(&[1, 2, 4, 5, 6]), "{why}");
        assert!(origins_are_minority(&s, &next));
        // Once swapped, the set is stable: no spread move brings an origin back in.
        v.voters = next;
        v.learners = set(&[3, 7]);
        assert_eq!(voters(&s, &v), None);
        // Growing picks non-origins first.
        let v = view(&s, &[1]);
        let Some(Action::SetVoters(next, _)) = voters(&s, &v) else {
            panic!("expected growth");
        };
        assert!(next.contains(&4), "{next:?}");
    }
}
