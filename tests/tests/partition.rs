//! Network partitions, for real: every node in its own network namespace of a
//! [`skein_tests::netns::Network`] (a router per region, a backbone between them), links cut by
//! the routers dropping packets, as a real partition does. The tests assert what must hold
//! across a split and after it heals, and print the times they measure (the bounds they wait
//! within are generous; docs/benchmarks.md reports the measured times).
//!
//! Needs root and `ip netns`; without them each test says so and skips.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use skein_tests::cluster::{Cluster, Member, ids, wait_for};
use skein_tests::media::{self, Recording};
use skein_tests::netns::{self, Network, Place};

/// Whether namespaces can be made here; prints why not (the test then skips).
fn namespaces_available(test: &str) -> bool {
    match netns::available() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

/// The leader a node reports, if any.
fn leader_seen_by(node: &Member) -> Option<u64> {
    node.try_json("/api/v1/cluster")?["leader"].as_u64()
}

/// What must be the same on every node once the cluster has settled: the leader, the term, the
/// voters, the learners and every node with its health.
fn agreed_view(status: &Value) -> (Option<u64>, u64, BTreeSet<u64>, BTreeSet<u64>, Vec<String>) {
    let nodes = status["nodes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|n| format!("{}:{}", n["id"], n["health"]))
        .collect();
    (
        status["leader"].as_u64(),
        status["term"].as_u64().unwrap_or(0),
        ids(&status["voters"]),
        ids(&status["learners"]),
        nodes,
    )
}

/// Three voters, one per region. The leader is cut from the other two: the majority elects a
/// new leader, the old one stops claiming leadership and commits nothing more, and a node joins
/// on the majority side. After healing every node reports the same leader and the same
/// membership — the join included, every node up — and the old leader applied nothing during
/// the split.
#[test]
fn an_isolated_leader_steps_down_and_the_majority_goes_on() {
    if !namespaces_available("an_isolated_leader_steps_down_and_the_majority_goes_on") {
        return;
    }
    let mut net = Network::new("skp", &["a", "b", "c"]);
    let a1 = net.add_node("a1", "a");
    let b1 = net.add_node("b1", "b");
    let c1 = net.add_node("c1", "c");
    let b2 = net.add_node("b2", "b");
    let mut c = Cluster::init_at("partition-leader", &a1, None, &[]);
    c.join_at(&b1, None);
    c.join_at(&c1, None);
    c.wait_status("three voters, all up", Duration::from_secs(60), |s| {
        ids(&s["voters"]).len() == 3
            && s["nodes"]
                .as_array()
                .is_some_and(|n| n.len() == 3 && n.iter().all(|n| n["health"] == "up"))
    });
    let old_leader = wait_for("a leader all agree on", Duration::from_secs(30), || {
        let seen: BTreeSet<Option<u64>> = c.nodes.iter().map(leader_seen_by).collect();
        match seen.into_iter().collect::<Vec<_>>()[..] {
            [Some(leader)] => Some(leader),
            _ => None,
        }
    });
    let old_name = c.by_id(old_leader).name.clone();
    let majority: Vec<String> = c
        .nodes
        .iter()
        .filter(|n| n.id != old_leader)
        .map(|n| n.name.clone())
        .collect();

    net.isolate(&old_name);
    let split = Instant::now();
    // Both watched at once, so each time is when it was first seen.
    let (mut elected, mut stepped_down) = (None, None);
    let new_leader = wait_for(
        "a new leader on the majority side and the isolated one stepped down",
        Duration::from_secs(30),
        || {
            let seen: BTreeSet<Option<u64>> = majority
                .iter()
                .map(|name| leader_seen_by(c.node(name)))
                .collect();
            if let [Some(leader)] = seen.into_iter().collect::<Vec<_>>()[..]
                && leader != old_leader
            {
                elected.get_or_insert((leader, split.elapsed().as_millis()));
            }
            if leader_seen_by(c.node(&old_name)) != Some(old_leader) {
                stepped_down.get_or_insert(split.elapsed().as_millis());
            }
            elected.filter(|_| stepped_down.is_some())
        },
    );
    let (new_leader, elected_ms) = new_leader;
    let stepped_down_ms = stepped_down.unwrap();
    let applied_at_step_down = c.node(&old_name).status()["last_applied"].clone();

    // A membership change on the majority side: b2 joins through the new leader's side.
    c.join.seeds = c.by_id(new_leader).internal.to_string();
    let joined = c.join_at(&b2, None);
    let joined_id = c.nodes[joined].id;
    let committed_ms = split.elapsed().as_millis();
    for name in &majority {
        wait_for(
            &format!("{name} to have committed the join"),
            Duration::from_secs(30),
            || {
                let status = c.node(name).try_json("/api/v1/cluster")?;
                let nodes = status["nodes"].as_array()?;
                nodes.iter().any(|n| n["id"] == joined_id).then_some(())
            },
        );
    }
    let isolated = c.node(&old_name).status();
    assert_eq!(
        isolated["last_applied"], applied_at_step_down,
        "the isolated old leader applied entries during the split: {isolated:#}"
    );
    assert!(
        isolated["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["id"] != joined_id),
        "the isolated old leader learnt of a join it cannot have committed: {isolated:#}"
    );

    net.rejoin(&old_name);
    let healed = Instant::now();
    let settled = wait_for(
        "every node to agree on one leader and one membership",
        Duration::from_secs(60),
        || {
            let views: Vec<_> = c
                .nodes
                .iter()
                .map(|n| n.try_json("/api/v1/cluster").map(|s| agreed_view(&s)))
                .collect::<Option<Vec<_>>>()?;
            let first = views[0].clone();
            let (leader, _, _, _, nodes) = &first;
            let all_up = nodes.len() == 4 && nodes.iter().all(|n| n.ends_with(":\"up\""));
            (leader.is_some() && all_up && views.iter().all(|v| *v == first)).then_some(first)
        },
    );
    let agreed_ms = healed.elapsed().as_millis();
    let (leader, _, voters, learners, _) = &settled;
    assert!(
        voters.contains(&joined_id) || learners.contains(&joined_id),
        "the join made on the majority side is in the membership: {settled:?}"
    );
    assert!(
        voters.len() == 3 && voters.contains(&leader.unwrap()),
        "three voters, the leader among them: {settled:?}"
    );
    println!(
        "isolated leader {old_name}: majority elected {new_leader} after {elected_ms} ms; the \
         old leader stopped claiming leadership after {stepped_down_ms} ms; the join committed \
         on the majority side {committed_ms} ms after the split; after healing every node \
         agreed within {agreed_ms} ms (leader {leader:?})"
    );
}

/// The nodes whose relay has `stream` pushed in: its owners.
fn owners(c: &Cluster, stream: &str) -> BTreeSet<u64> {
    c.nodes
        .iter()
        .filter(|n| {
            n.try_json("/api/v1/relay")
                .is_some_and(|v| v["pushed_in"].get(stream).is_some())
        })
        .map(|n| n.id)
        .collect()
}

/// Two origins (regions a, b) and edges in b and c; a broadcaster on the b edge, RTMP and
/// HTTP-FLV viewers on the edges. The stream's origin is cut from every edge while it still
/// reaches the other origin (and the leader keeps it up in the committed state): the edges
/// move the push and the pulls to the other origin on their own, every viewer keeps its
/// connection with timestamps that never go back and no frame twice, and after healing exactly
/// one node owns the stream.
#[test]
fn an_origin_cut_from_the_edges_loses_no_viewer_and_heals_to_one_owner() {
    if !namespaces_available("an_origin_cut_from_the_edges_loses_no_viewer_and_heals_to_one_owner")
    {
        return;
    }
    skein_tests::require("ffmpeg", "ffmpeg");
    skein_tests::require("ffprobe", "ffmpeg");
    const STREAM: &str = "live/cut";
    let mut net = Network::new("sko", &["a", "b", "c"]);
    let o1 = net.add_node("o1", "a");
    let o2 = net.add_node("o2", "b");
    let eb = net.add_node("eb", "b");
    let ec = net.add_node("ec", "c");
    let mut c = Cluster::init_at(
        "partition-origin",
        &o1,
        Some("origin"),
        &["--origin-target", "2"],
    );
    c.join_at(&o2, Some("origin"));
    c.join_at(&eb, Some("edge"));
    c.join_at(&ec, Some("edge"));
    c.wait_status("four nodes up, two origins", Duration::from_secs(90), |s| {
        s["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 4 && n.iter().all(|n| n["health"] == "up"))
            && ids(&s["origin_pool"]["live"]).len() == 2
    });
    let dir = c.root().to_owned();
    let edge = |name: &str| c.node(name);
    let _publisher = media::publish_from(
        edge("eb").command("ffmpeg"),
        &edge("eb").rtmp_url(STREAM),
        900,
    );
    let viewers = [
        (
            "ec rtmp",
            edge("ec").command("ffmpeg"),
            edge("ec").rtmp_url(STREAM),
        ),
        (
            "ec flv",
            edge("ec").command("ffmpeg"),
            edge("ec").flv_url(STREAM),
        ),
        (
            "eb flv",
            edge("eb").command("ffmpeg"),
            edge("eb").flv_url(STREAM),
        ),
    ]
    .map(|(name, ffmpeg, url)| {
        let file = dir.join(format!("{}.flv", name.replace(' ', "-")));
        (name, Recording::start_from(ffmpeg, &url, 40, &file))
    });
    for (_, viewer) in &viewers {
        viewer.wait_playing(Duration::from_secs(30));
    }
    let owner = c.wait_stream_origin(STREAM, Duration::from_secs(10));
    let owner_name = c.by_id(owner).name.clone();
    std::thread::sleep(Duration::from_secs(3));

    for edge in ["eb", "ec"] {
        net.cut(Place::Node(owner_name.clone()), Place::Node(edge.into()));
    }
    let cut = Instant::now();
    let moved = wait_for(
        "the stream to move to the other origin",
        Duration::from_secs(30),
        || {
            let now = owners(&c, STREAM);
            (!now.is_empty() && !now.contains(&owner)).then_some(now)
        },
    );
    let moved_ms = cut.elapsed().as_millis();
    std::thread::sleep(Duration::from_secs(8));
    // The leader still sees the cut origin: it stays up in the committed state.
    let status = c.node(&owner_name).status();
    let cut_origin = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == owner)
        .unwrap();
    assert_eq!(
        cut_origin["health"], "up",
        "the leader must still see the cut origin: {status:#}"
    );

    for edge in ["eb", "ec"] {
        net.heal(Place::Node(owner_name.clone()), Place::Node(edge.into()));
    }
    let healed = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let settled = wait_for(
        "exactly one owner of the stream",
        Duration::from_secs(30),
        || {
            let now = owners(&c, STREAM);
            (now.len() == 1).then_some(now)
        },
    );
    let settled_ms = healed.elapsed().as_millis();
    let mut gaps = Vec::new();
    for (name, viewer) in viewers {
        let got = media::continuity(&viewer.finish(Duration::from_secs(90)));
        assert!(
            got.span_ms >= 35_000.0,
            "viewer {name} stopped early: {got:?}"
        );
        assert_eq!(got.repeated, 0, "viewer {name} got a frame twice: {got:?}");
        gaps.push(format!("{name} {:.0} ms", got.largest_step_ms));
    }
    println!(
        "origin {owner_name} cut from the edges: the stream left it after {moved_ms} ms (to \
         {moved:?}); after healing one owner {settled:?} within {settled_ms} ms; largest \
         timestamp step per viewer: {}",
        gaps.join(", ")
    );
}
