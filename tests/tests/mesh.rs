//! The edge mesh with real `skein` processes: in a region with enough edges, one edge per
//! stream relays it from the origin to the region's other edges, and its death (SIGKILL) hands
//! the stream to the next edge without losing a viewer on the others.
//!
//! Timing is never asserted: every wait is for an eventual condition with a generous bound.

use std::collections::BTreeSet;
use std::time::Duration;

use skein_tests::cluster::{Cluster, Member, ids, wait_for};
use skein_tests::media::{self, Recording, continuity};
use skein_tests::require;

const STREAM: &str = "live/mesh";

/// The stream's regional relay edge as `edges` see it, once they all agree and every one of
/// them has the region's `count` edges in its mesh.
fn agreed_relay_edge(edges: &[&Member], count: usize) -> Option<u64> {
    let mut relay = None;
    for edge in edges {
        let view = edge.try_json("/api/v1/relay")?;
        if ids(&view["mesh_edges"]).len() != count {
            return None;
        }
        let this = view["relay_edges"][STREAM].as_u64()?;
        if relay.is_some_and(|r| r != this) {
            return None;
        }
        relay = Some(this);
    }
    relay
}

/// Every edge of the region reads the stream from the relay edge, which reads it from the
/// origin and serves the others; the origin serves the region once, through its relay edge.
fn mesh_formed(origin: &Member, edges: &[&Member], relay: u64, origin_id: u64) -> bool {
    let Some(origin_view) = origin.try_json("/api/v1/relay") else {
        return false;
    };
    let region: BTreeSet<u64> = edges.iter().map(|e| e.id).collect();
    let from_region: BTreeSet<u64> = ids(&origin_view["served_pulls"][STREAM])
        .intersection(&region)
        .copied()
        .collect();
    if from_region != BTreeSet::from([relay]) {
        return false;
    }
    edges.iter().all(|edge| {
        let Some(view) = edge.try_json("/api/v1/relay") else {
            return false;
        };
        let from = view["pulls_from"][STREAM].as_u64();
        if edge.id == relay {
            let others: BTreeSet<u64> = region.iter().copied().filter(|e| *e != relay).collect();
            from == Some(origin_id) && ids(&view["served_pulls"][STREAM]) == others
        } else {
            from == Some(relay)
        }
    })
}

/// Waits for a viewer's recording to end and checks that it covers at least `span_ms` of
/// media, with timestamps that never went back (checked by `continuity`) and no frame twice.
fn kept_watching(name: &str, viewer: Recording, span_ms: f64) {
    let got = continuity(&viewer.finish(Duration::from_secs(90)));
    assert!(
        got.span_ms >= span_ms,
        "viewer on {name} stopped early: {got:?}"
    );
    assert_eq!(
        got.repeated, 0,
        "viewer on {name} got a frame twice: {got:?}"
    );
}

/// One origin `o1` (region c, `--roles origin`) and, per list, edges (`--roles edge`) in the
/// region their names start with; returns once every node is up and `o1` is the origin.
fn origin_and_edges(test: &str, regions: &[&Vec<String>]) -> Cluster {
    let mut c = Cluster::init(test, "o1", "c", Some("origin"), &["--origin-target", "1"]);
    for name in regions.iter().flat_map(|r| r.iter()) {
        c.join(name, &name[..1], Some("edge"));
    }
    let count = 1 + regions.iter().map(|r| r.len()).sum::<usize>();
    c.wait_status("every node up, one origin", Duration::from_secs(90), |s| {
        s["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == count && n.iter().all(|n| n["health"] == "up"))
            && ids(&s["origin_pool"]["live"]).len() == 1
    });
    c
}

/// One origin (region c), four edges in region a and three in region b, with a viewer on every
/// edge (RTMP and HTTP-FLV). The origin serves one pull per region, each region's relay edge
/// serves the others; SIGKILL of region a's relay edge: the next edge takes over, and every
/// viewer on the other edges keeps its connection with timestamps that never go back or
/// repeat.
#[test]
fn the_mesh_forms_per_region_and_survives_its_relay_edge_dying() {
    require("ffmpeg", "ffmpeg");
    require("ffprobe", "ffmpeg");
    let a: Vec<String> = (1..=4).map(|i| format!("a{i}")).collect();
    let b: Vec<String> = (1..=3).map(|i| format!("b{i}")).collect();
    let mut c = origin_and_edges("mesh", &[&a, &b]);
    let dir = c.root().to_owned();
    let origin_id = c.node("o1").id;

    let _publisher = media::publish(&c.node("o1").rtmp_url(STREAM), 900);
    let mut viewers = Vec::new();
    for (i, name) in a.iter().chain(&b).enumerate() {
        let node = c.node(name);
        let url = if i % 2 == 0 {
            node.rtmp_url(STREAM)
        } else {
            node.flv_url(STREAM)
        };
        let viewer = Recording::start(&url, 40, &dir.join(format!("{name}.flv")));
        viewers.push((name.clone(), viewer));
    }
    for (_, viewer) in &viewers {
        viewer.wait_playing(Duration::from_secs(30));
    }

    let mut relays = Vec::new();
    for names in [&a, &b] {
        let edges: Vec<&Member> = names.iter().map(|n| c.node(n)).collect();
        let relay = wait_for(
            "the region's edges agree on a relay edge",
            Duration::from_secs(20),
            || agreed_relay_edge(&edges, names.len()),
        );
        wait_for("the mesh forms", Duration::from_secs(20), || {
            mesh_formed(c.node("o1"), &edges, relay, origin_id).then_some(())
        });
        relays.push(relay);
    }
    // One pull per region at the origin, no more.
    let served = ids(&c.node("o1").relay()["served_pulls"][STREAM]);
    assert_eq!(
        served,
        relays.iter().copied().collect(),
        "origin serves {served:?}"
    );

    // `skein status` on region b's relay edge names its upstream and the edges it serves.
    let out = c.by_id(relays[1]).admin(&["status"]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout).unwrap();
    let line = table
        .lines()
        .find(|l| l.trim_start().starts_with(STREAM))
        .unwrap_or_else(|| panic!("no line for {STREAM}:\n{table}"));
    let expected = format!("pulls from {origin_id}  relay edge {}  serves ", relays[1]);
    assert!(line.contains(&expected), "{line}");
    let served: BTreeSet<u64> = line
        .rsplit("serves ")
        .next()
        .unwrap()
        .split(',')
        .map(|id| id.trim().parse().unwrap())
        .collect();
    let others: BTreeSet<u64> = b
        .iter()
        .map(|n| c.node(n).id)
        .filter(|id| *id != relays[1])
        .collect();
    assert_eq!(served, others, "{line}");

    // SIGKILL of region a's relay edge: the remaining three still form a mesh, with another
    // relay edge, and their viewers keep receiving.
    let dead = relays[0];
    let dead_name = c.by_id(dead).name.clone();
    c.by_id_mut(dead).kill();
    let survivors: Vec<String> = a.iter().filter(|n| **n != dead_name).cloned().collect();
    let edges: Vec<&Member> = survivors.iter().map(|n| c.node(n)).collect();
    let next = wait_for(
        "a new relay edge in region a",
        Duration::from_secs(30),
        || agreed_relay_edge(&edges, survivors.len()).filter(|r| *r != dead),
    );
    wait_for("the mesh forms again", Duration::from_secs(30), || {
        mesh_formed(c.node("o1"), &edges, next, origin_id).then_some(())
    });
    for (name, viewer) in viewers {
        if name == dead_name {
            continue;
        }
        kept_watching(&name, viewer, 38_000.0);
    }
    assert!(
        survivors
            .iter()
            .any(|n| c.node(n).log_contains("pull resumed from another origin")),
        "an edge of region a logs its resumed pull"
    );
}

/// The broadcaster's edge dies (SIGKILL): the broadcaster reconnects to another edge of the
/// region (as GeoDNS would send it), and the viewers on the other edges and on the origin keep
/// their connections, over RTMP and HTTP-FLV, with timestamps that never go back or repeat.
#[test]
fn viewers_stay_when_the_broadcaster_reconnects_to_another_edge() {
    require("ffmpeg", "ffmpeg");
    require("ffprobe", "ffmpeg");
    let a: Vec<String> = (1..=3).map(|i| format!("a{i}")).collect();
    let mut c = origin_and_edges("mesh-republish", &[&a]);
    let dir = c.root().to_owned();
    let publisher = media::publish(&c.node("a1").rtmp_url(STREAM), 900);
    let viewers = [
        Recording::start(&c.node("a2").rtmp_url(STREAM), 30, &dir.join("a2.flv")),
        Recording::start(&c.node("a3").flv_url(STREAM), 30, &dir.join("a3.flv")),
        Recording::start(&c.node("o1").rtmp_url(STREAM), 30, &dir.join("o1.flv")),
    ];
    for viewer in &viewers {
        viewer.wait_playing(Duration::from_secs(30));
    }
    std::thread::sleep(Duration::from_secs(3));
    c.node_mut("a1").kill();
    drop(publisher);
    // The broadcaster comes back on a2 after a moment; a publish the origin still refuses
    // (it has not yet seen a1's push die) ends ffmpeg, which is then started again.
    std::thread::sleep(Duration::from_secs(1));
    let mut republished = None;
    for _ in 0..10 {
        let mut attempt = media::publish(&c.node("a2").rtmp_url(STREAM), 900);
        std::thread::sleep(Duration::from_secs(2));
        if attempt.0.try_wait().unwrap().is_none() {
            republished = Some(attempt);
            break;
        }
    }
    let _republished = republished.expect("the broadcaster could publish on a2");
    for (viewer, name) in viewers.into_iter().zip(["a2", "a3", "o1"]) {
        kept_watching(name, viewer, 28_000.0);
    }
}
