//! The scale model (`skein_tests::scale`) at a small size: 50 origins, 10 regions × 5 edges,
//! 5,000 streams. What the design promises must hold in it: one origin leaving moves its own
//! streams only (about 1/N), a lost region moves only its share, the mesh sends one copy per
//! region where the direct path sends one per edge, and the numbers add up.

use std::collections::BTreeSet;

use skein_raft::policy::STEPS_PER_TICK;
use skein_tests::scale::{Model, Size, streams};

#[test]
fn a_size_the_model_cannot_run_is_refused_with_the_reason() {
    let one_region = Size {
        regions: 1,
        ..Size::small()
    };
    let err = Model::build(&one_region).err().expect("refused");
    assert!(err.contains("at least 2"), "{err}");
    let few_origins = Size {
        origins: 3,
        ..Size::small()
    };
    let err = Model::build(&few_origins).err().expect("refused");
    assert!(err.contains("one origin per region"), "{err}");
}

#[test]
fn the_small_cluster_keeps_the_design_s_bounds() {
    let size = Size::small();
    assert_eq!(
        streams(&size, 1),
        streams(&size, 1),
        "the model is deterministic"
    );
    let model = Model::build(&size).expect("the small size is valid");

    // The leader's policies formed it: every origin promoted, five voters, origins a minority
    // of them (the bootstrap node, the leader, is an origin).
    let state = &model.leader.state;
    assert_eq!(model.origins.len() as u64, size.origins);
    assert_eq!(state.voters.len(), 5);
    let origin_voters = state
        .voters
        .iter()
        .filter(|v| state.origins.contains_key(v))
        .count();
    assert!(
        origin_voters * 2 < state.voters.len(),
        "{origin_voters} origins vote"
    );
    let edges_with_viewers: usize = {
        let mut pairs: Vec<(u32, u32)> = model.viewers.iter().map(|v| (v.stream, v.edge)).collect();
        pairs.dedup();
        pairs.len()
    };
    let edges_in_region_0: BTreeSet<u32> = (0..model.geo.edges.len() as u32)
        .filter(|&e| model.geo.edges[e as usize].region == 0)
        .collect();
    let viewers_in_region_0 = model
        .viewers
        .iter()
        .filter(|v| edges_in_region_0.contains(&v.edge))
        .count();

    let r = model.report();
    let n = size.origins as f64;
    assert_eq!(
        r.viewers_total as u64,
        r.streams.iter().map(|s| u64::from(s.viewers)).sum::<u64>()
    );
    assert!((r.viewers_total as f64 - size.viewers as f64).abs() < 0.01 * size.viewers as f64);

    // Placement: the plain ring's balance as it is; the bounded assignment within 1 + ε.
    assert!(
        r.plain.streams > 1.0 && r.plain.streams < 2.0,
        "{:?}",
        r.plain
    );
    assert!(r.bounded.bitrate <= 1.25 + 1e-9, "{:?}", r.bounded);

    // One origin leaves: exactly its streams move, about 1/N of them.
    assert_eq!(r.one_leaves.moved, r.one_leaves.owned_by_leavers);
    assert!(
        r.one_leaves.fraction > 0.5 / n && r.one_leaves.fraction < 2.0 / n,
        "{:?}",
        r.one_leaves
    );
    assert!(
        r.one_leaves_bounded.fraction < 4.0 / n,
        "{:?}",
        r.one_leaves_bounded
    );

    // Region 0 is lost: only its origins' streams move, and only its viewers.
    assert_eq!(r.lost_origins as u64, size.origins / size.regions);
    assert_eq!(r.region_origins.moved, r.region_origins.owned_by_leavers);
    assert!(r.region_origins.fraction < 2.0 * r.lost_origins as f64 / n);
    assert_eq!(r.region_loss.viewers_moved, viewers_in_region_0);
    assert!(!r.region_loss.spilled_to.contains_key(&0));
    let spill = skein_dns::AnswerConfig::default().spill_regions;
    assert!(!r.region_loss.spilled_to.is_empty() && r.region_loss.spilled_to.len() <= spill);
    assert_eq!(
        r.region_loss.spilled_to.values().sum::<usize>(),
        viewers_in_region_0
    );
    let health = skein_dns::HealthConfig::default();
    assert_eq!(
        r.region_loss.detection_ms,
        u64::from(health.fall) * health.interval_ms
    );

    // Egress: with the mesh one copy per region with viewers, without it one per edge.
    for i in 0..r.streams.len() {
        assert_eq!(r.copies.mesh[i], r.copies.regions[i], "stream {i}");
        assert!(r.copies.direct[i] >= r.copies.mesh[i], "stream {i}");
        assert!(r.after.regions[i] < size.regions as u32 || r.after.regions[i] == 0);
        assert_eq!(
            r.after.mesh[i], r.after.regions[i],
            "stream {i} after the loss"
        );
    }
    assert_eq!(
        r.copies.direct.iter().map(|&c| c as usize).sum::<usize>(),
        edges_with_viewers
    );
    // The top stream is watched on every edge of every region.
    assert_eq!(r.copies.direct[0] as usize, r.edges);
    assert_eq!(r.copies.mesh[0] as usize, r.regions);
    let egress: u64 = r
        .copies
        .direct
        .iter()
        .zip(&r.streams)
        .map(|(c, s)| u64::from(*c) * s.bitrate_bps)
        .sum();
    assert_eq!(r.direct_egress.total, egress);
    assert!(r.mesh_egress.total < r.direct_egress.total);
    assert!(r.copies.max_relay_fanout < size.edges_per_region as u32);

    // Churn: health changes for the failures, at most the leader's steps per tick.
    let health_entries = r
        .churn
        .log
        .commands
        .get("SetNodeHealth")
        .copied()
        .unwrap_or(0);
    assert!(health_entries > 0 && health_entries <= 2 * r.churn.failures as u64);
    let ticks_per_second = 1000 / r.timings.policy_tick_ms;
    assert!(r.churn.busiest_second <= STEPS_PER_TICK as u64 * ticks_per_second);
    assert!(r.storm.1 >= size.edges_per_region);

    // Sizes: a heartbeat does not grow with the cluster; membership and snapshot do.
    let [a, b] = [&r.raft_sizes[0], &r.raft_sizes[1]];
    assert_eq!(a.heartbeat, b.heartbeat);
    assert!(b.membership_entry > 3 * a.membership_entry);
    assert!(b.snapshot.stored > 3 * a.snapshot.stored);
    assert!(b.snapshot.sent > b.snapshot.stored);

    // And the report prints.
    assert!(r.markdown().contains("| one origin leaves, plain ring"));
}
