//! Cluster benchmark on loopback with real `skein` processes (run it through
//! `scripts/bench-cluster.sh`, which builds the release binaries first):
//!
//! - origin failover: the gap a viewer on another edge sees when the stream's origin is killed
//!   with SIGKILL (largest time between two video frames around the kill), and the gaps the
//!   edge itself logs and counts in `skein_relay_gap_seconds`;
//! - leader failover: from SIGKILL of the Raft leader until a cluster write (a join token)
//!   succeeds again through another node;
//! - join to serving: from starting `skein join` until the new node delivers the first video
//!   frame of a live stream to a player;
//! - added latency per relay hop: per video frame, arrival time at a player on the publishing
//!   edge, on the origin (one hop) and on another edge (two hops);
//! - ring balance and moved fraction of `skein_raft::ring` over 10 000 streams;
//! - with `mesh` as the first argument, only the edge mesh: origin egress copies for one stream
//!   with viewers on 2 regions × 4 edges, with and without the mesh (from the nodes' own
//!   `skein_relay_served_bytes_total` and `skein_received_bytes_total`), and the gap viewers on
//!   the other edges see when the regional relay edge is killed with SIGKILL.
//!
//! Usage: `cluster_bench [KILLS] [LEADER_KILLS] [JOINS]` (defaults 20, 10, 5), or
//! `cluster_bench mesh [KILLS]` (default 20). Prints Markdown.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use skein_node::client::{Percentiles, RtmpClient, RtmpUrl, synthetic};
use skein_node::rtmp::client::ClientEvent;
use skein_raft::ring::Ring;
use skein_tests::cluster::{Cluster, Member, wait_for};

const STREAM: &str = "live/bench";
const LATENCY_STREAM: &str = "live/latency";
const FPS: u32 = 30;

/// Video frame arrivals of one player: (arrival, RTMP timestamp).
type Arrivals = Arc<Mutex<Vec<(Instant, u32)>>>;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mesh = args.first().is_some_and(|a| a == "mesh");
    if mesh {
        args.remove(0);
    }
    let args: Vec<usize> = args
        .iter()
        .map(|a| a.parse().expect("counts are numbers"))
        .collect();
    let kills = args.first().copied().unwrap_or(20);
    let leader_kills = args.get(1).copied().unwrap_or(10);
    let joins = args.get(2).copied().unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if mesh {
        mesh_numbers(&runtime, args.first().copied().unwrap_or(20));
        return;
    }

    ring_numbers();

    // Three origins in region c that may only be origins (target 3: the pool never changes),
    // and two edges that may only be edges.
    let mut c = Cluster::init(
        "bench",
        "o1",
        "c",
        Some("origin"),
        &["--origin-target", "3"],
    );
    c.join("o2", "c", Some("origin"));
    c.join("o3", "c", Some("origin"));
    c.join("ea", "a", Some("edge"));
    c.join("eb", "b", Some("edge"));
    settle(&c);

    let stop = Arc::new(AtomicBool::new(false));
    runtime.spawn(publish(c.node("ea").rtmp, STREAM, stop.clone()));
    runtime.spawn(publish(c.node("ea").rtmp, LATENCY_STREAM, stop.clone()));
    c.wait_stream_origin(STREAM, Duration::from_secs(30));

    hop_latency(&runtime, &c);
    origin_failover(&runtime, &mut c, kills);
    join_to_serving(&runtime, &mut c, joins);
    // Last: the leader may be the publishing edge.
    leader_failover(&mut c, leader_kills);
    stop.store(true, Ordering::Relaxed);
}

/// Waits until every node is up, the pool has its three origins and both edges route to all
/// of them.
fn settle(c: &Cluster) {
    c.wait_status("cluster settled", Duration::from_secs(90), |s| {
        s["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().all(|n| n["health"] == "up"))
            && s["origin_pool"]["live"].as_array().map_or(0, Vec::len) == 3
            && s["leader"].is_u64()
    });
    for edge in ["ea", "eb"] {
        wait_for(
            &format!("{edge} routes to every origin"),
            Duration::from_secs(30),
            || {
                let v = c.node(edge).try_json("/api/v1/relay")?;
                (v["origins"].as_array()?.len() == 3 && v["routed_around"].as_array()?.is_empty())
                    .then_some(())
            },
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A Markdown row: count, p50, p99 and max with `decimals` digits.
fn row(name: &str, values: Vec<f64>, decimals: usize) -> String {
    let n = values.len();
    match Percentiles::of(values) {
        Some(p) => format!(
            "| {name} | {n} | {:.decimals$} | {:.decimals$} | {:.decimals$} |",
            p.p50, p.p99, p.max
        ),
        None => format!("| {name} | 0 | | | |"),
    }
}

/// Synthetic H.264/AAC-shaped stream at FPS with a keyframe every second, ~1 Mbit/s.
async fn publish(rtmp: SocketAddr, stream: &str, stop: Arc<AtomicBool>) {
    let url = RtmpUrl::parse(&format!("rtmp://{rtmp}/{stream}")).unwrap();
    let mut client = RtmpClient::connect(&url).await.expect("connect publisher");
    client
        .publish(&url.key, Duration::from_secs(10))
        .await
        .expect("publish");
    client
        .session()
        .send_video(0, &synthetic::avc_sequence_header());
    client
        .session()
        .send_audio(0, &synthetic::aac_sequence_header());
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / FPS);
    let mut frame = 0u32;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let ts = start.elapsed().as_millis() as u32;
        client.session().send_video(
            ts,
            &synthetic::video_frame(frame.is_multiple_of(FPS), 4_000, frame),
        );
        if client.flush().await.is_err() {
            return;
        }
        frame += 1;
    }
}

/// A player recording video arrivals until `stop`; reconnects never (one connection).
async fn play(rtmp: SocketAddr, stream: &str, arrivals: Arrivals, stop: Arc<AtomicBool>) {
    let url = RtmpUrl::parse(&format!("rtmp://{rtmp}/{stream}")).unwrap();
    let mut client = RtmpClient::connect(&url).await.expect("connect player");
    client
        .play(&url.key, Duration::from_secs(10))
        .await
        .expect("play");
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(200), client.next_event()).await {
            Ok(Ok(ClientEvent::Video { timestamp, .. })) => {
                arrivals.lock().push((Instant::now(), timestamp));
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => {
                eprintln!("player on {rtmp} ended: {e:#}");
                return;
            }
        }
    }
}

/// Per frame: player on the publishing edge, on the origin (one hop), on the other edge (two).
fn hop_latency(runtime: &tokio::runtime::Runtime, c: &Cluster) {
    let origin = c.wait_stream_origin(LATENCY_STREAM, Duration::from_secs(30));
    let stop = Arc::new(AtomicBool::new(false));
    let nodes = [c.node("ea"), c.by_id(origin), c.node("eb")];
    let arrivals: Vec<Arrivals> = nodes.iter().map(|_| Arrivals::default()).collect();
    for (node, a) in nodes.iter().zip(&arrivals) {
        runtime.spawn(play(node.rtmp, LATENCY_STREAM, a.clone(), stop.clone()));
    }
    std::thread::sleep(Duration::from_secs(25));
    stop.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    // Arrival per timestamp; the GOP cache replays frames at connect, so only frames that
    // every player received live (after all three started) count.
    let by_ts: Vec<HashMap<u32, Instant>> = arrivals
        .iter()
        .map(|a| a.lock().iter().map(|(t, ts)| (*ts, *t)).collect())
        .collect();
    let live_from = by_ts
        .iter()
        .map(|m| m.values().min().copied().unwrap())
        .max()
        .unwrap()
        + Duration::from_secs(1);
    let (mut hop1, mut hop2) = (Vec::new(), Vec::new());
    for (ts, local) in &by_ts[0] {
        if *local < live_from {
            continue;
        }
        if let (Some(one), Some(two)) = (by_ts[1].get(ts), by_ts[2].get(ts)) {
            hop1.push(ms(one.saturating_duration_since(*local)));
            hop2.push(ms(two.saturating_duration_since(*one)));
        }
    }
    println!("\n### Added latency per relay hop (ms, per video frame)\n");
    println!("| hop | frames | p50 | p99 | max |\n|---|---|---|---|---|");
    println!("{}", row("publishing edge → origin", hop1, 3));
    println!("{}", row("origin → viewer edge", hop2, 3));
}

/// SIGKILL of the stream's origin, `kills` times; the viewer on eb keeps its one connection.
fn origin_failover(runtime: &tokio::runtime::Runtime, c: &mut Cluster, kills: usize) {
    let arrivals = Arrivals::default();
    let stop = Arc::new(AtomicBool::new(false));
    runtime.spawn(play(
        c.node("eb").rtmp,
        STREAM,
        arrivals.clone(),
        stop.clone(),
    ));
    std::thread::sleep(Duration::from_secs(3));
    let mut viewer_gaps = Vec::new();
    let mut stalls = 0;
    for i in 0..kills {
        let owner = c.wait_stream_origin(STREAM, Duration::from_secs(30));
        std::thread::sleep(Duration::from_secs(2));
        let killed_at = Instant::now();
        c.by_id_mut(owner).kill();
        std::thread::sleep(Duration::from_secs(5));
        let (gap, stalled) = gap_around(&arrivals, killed_at);
        stalls += usize::from(stalled);
        eprintln!("kill {i}: origin {owner}, viewer gap {:.0} ms", ms(gap));
        viewer_gaps.push(ms(gap));
        c.by_id_mut(owner).restart();
        settle(c);
    }
    stop.store(true, Ordering::Relaxed);
    let eb = c.node("eb");
    let logged: Vec<f64> = eb
        .log()
        .lines()
        .filter(|l| l.contains("pull resumed from another origin"))
        .filter_map(|l| {
            l.split("gap_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    let sample = |name: &str| -> f64 { metric(eb, name) };
    println!("\n### Origin failover ({kills} × SIGKILL of the stream's origin)\n");
    println!("| measure | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|");
    println!(
        "{}",
        row(
            "viewer: largest gap between video frames around the kill",
            viewer_gaps,
            0
        )
    );
    println!(
        "{}",
        row(
            "edge log: `pull resumed from another origin gap_ms`",
            logged,
            0
        )
    );
    println!(
        "\nViewers that stalled for good: {stalls}. `skein_relay_gap_seconds` on the viewer's edge: \
         count {}, sum {:.2} s; `skein_relay_failovers_total` {}.",
        sample("skein_relay_gap_seconds_count"),
        sample("skein_relay_gap_seconds_sum"),
        sample("skein_relay_failovers_total"),
    );
}

/// The largest time between two video frames a player received from 0.5 s before `killed_at`
/// on, and whether it received nothing after `killed_at` + 3 s (a stall).
fn gap_around(arrivals: &Arrivals, killed_at: Instant) -> (Duration, bool) {
    let window: Vec<Instant> = arrivals
        .lock()
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t + Duration::from_millis(500) >= killed_at)
        .collect();
    let gap = window
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(Duration::from_secs(5));
    let stalled = window
        .last()
        .is_none_or(|t| *t < killed_at + Duration::from_secs(3));
    (gap, stalled)
}

/// One sample of a node's `/metrics` (NaN when absent).
fn metric(node: &Member, name: &str) -> f64 {
    http_get(node.http, "/metrics")
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The edge mesh: one origin (region c), 4 edges in each of regions a and b, a player on every
/// edge. Origin egress copies with the mesh off (`mesh_min_edges = 0`) and on; with it on,
/// `kills` × SIGKILL of region a's relay edge, gaps of the players on the other a edges.
fn mesh_numbers(runtime: &tokio::runtime::Runtime, kills: usize) {
    println!(
        "\n### Edge mesh: origin egress for one stream, 2 regions × 4 edges, a viewer on each\n"
    );
    println!(
        "| mesh | origin relay egress / stream ingress (copies) | each relay edge's egress (copies) \
         | relay edges' CPU s per relayed GB | relay edge CPU (cores) | other edges' CPU (cores) |"
    );
    println!("|---|---|---|---|---|---|");
    for mesh in [false, true] {
        let mut c = Cluster::init(
            if mesh {
                "mesh-bench-on"
            } else {
                "mesh-bench-off"
            },
            "o1",
            "c",
            Some("origin"),
            &["--origin-target", "1"],
        );
        if !mesh {
            c.member_config = "\n[cluster]\nmesh_min_edges = 0\n".into();
        }
        let edges: Vec<String> = ["a", "b"]
            .iter()
            .flat_map(|r| (1..=4).map(move |i| format!("{r}{i}")))
            .collect();
        for name in &edges {
            c.join(name, &name[..1], Some("edge"));
        }
        c.wait_status("nine nodes up", Duration::from_secs(90), |s| {
            s["nodes"]
                .as_array()
                .is_some_and(|n| n.len() == 9 && n.iter().all(|n| n["health"] == "up"))
                && s["origin_pool"]["live"].as_array().map_or(0, Vec::len) == 1
        });
        let stop = Arc::new(AtomicBool::new(false));
        runtime.spawn(publish(c.node("o1").rtmp, STREAM, stop.clone()));
        let arrivals: BTreeMap<String, Arrivals> = edges
            .iter()
            .map(|e| (e.clone(), Arrivals::default()))
            .collect();
        for (edge, a) in &arrivals {
            runtime.spawn(play(c.node(edge).rtmp, STREAM, a.clone(), stop.clone()));
        }
        std::thread::sleep(Duration::from_secs(5));
        let relays: Vec<u64> = ["a1", "b1"]
            .iter()
            .filter_map(|e| c.node(e).relay()["relay_edges"][STREAM].as_u64())
            .collect();
        // (origin's relay egress, its ingress from the publisher, each relay edge's egress)
        let served = |c: &Cluster| -> (f64, f64, Vec<f64>) {
            let origin = c.node("o1");
            (
                metric(origin, "skein_relay_served_bytes_total"),
                metric(origin, "skein_received_bytes_total"),
                relays
                    .iter()
                    .map(|r| metric(c.by_id(*r), "skein_relay_served_bytes_total"))
                    .collect(),
            )
        };
        let before = served(&c);
        // CPU of the relay edges and of the other edges, sampled once a second.
        let (mut relay_cpu, mut other_cpu) = (0.0, 0.0);
        for _ in 0..20 {
            std::thread::sleep(Duration::from_secs(1));
            for edge in &edges {
                let node = c.node(edge);
                let cores = metric(node, "skein_process_cpu_cores");
                if relays.contains(&node.id) {
                    relay_cpu += cores;
                } else {
                    other_cpu += cores;
                }
            }
        }
        let after = served(&c);
        let ingress = after.1 - before.1;
        let copies = (after.0 - before.0) / ingress;
        let relay_copies: Vec<String> = after
            .2
            .iter()
            .zip(&before.2)
            .map(|(a, b)| format!("{:.2}", (a - b) / ingress))
            .collect();
        let relay_copies = if relay_copies.is_empty() {
            "-".to_owned()
        } else {
            relay_copies.join(", ")
        };
        let relayed_gb: f64 = after
            .2
            .iter()
            .zip(&before.2)
            .map(|(a, b)| a - b)
            .sum::<f64>()
            / 1e9;
        let others = (edges.len() - relays.len()) as f64;
        let cpu = if relays.is_empty() {
            format!("- | - | {:.3}", other_cpu / 20.0 / others)
        } else {
            format!(
                "{:.1} | {:.3} | {:.3}",
                relay_cpu / relayed_gb,
                relay_cpu / 20.0 / relays.len() as f64,
                other_cpu / 20.0 / others
            )
        };
        println!(
            "| {} | {copies:.2} | {relay_copies} | {cpu} |",
            if mesh {
                "on"
            } else {
                "off (`mesh_min_edges = 0`)"
            }
        );
        if mesh {
            mesh_hop_latency(&c, &arrivals, relays[0]);
            relay_edge_kills(&mut c, &arrivals, kills);
        }
        stop.store(true, Ordering::Relaxed);
    }
}

/// Per video frame of the last 15 s: arrival at each other region-a edge's player minus
/// arrival at the relay edge's player (the hop relay edge → edge).
fn mesh_hop_latency(c: &Cluster, arrivals: &BTreeMap<String, Arrivals>, relay: u64) {
    let relay_name = &c.by_id(relay).name;
    let since = Instant::now() - Duration::from_secs(15);
    let by_ts = |name: &str| -> HashMap<u32, Instant> {
        arrivals[name]
            .lock()
            .iter()
            .filter(|(t, _)| *t >= since)
            .map(|(t, ts)| (*ts, *t))
            .collect()
    };
    let at_relay = by_ts(relay_name);
    let mut hops = Vec::new();
    for name in arrivals
        .keys()
        .filter(|n| n.starts_with('a') && *n != relay_name)
    {
        for (ts, at) in by_ts(name) {
            if let Some(first) = at_relay.get(&ts) {
                hops.push(ms(at.saturating_duration_since(*first)));
            }
        }
    }
    println!("\n### Edge mesh: added latency of the hop relay edge → edge (ms, per video frame)\n");
    println!("| hop | frames | p50 | p99 | max |\n|---|---|---|---|---|");
    println!("{}", row("relay edge → other edge of the region", hops, 3));
}

/// `kills` × SIGKILL of region a's relay edge (restarted and settled between kills): the
/// largest gap of each player on the other a edges around the kill.
fn relay_edge_kills(c: &mut Cluster, arrivals: &BTreeMap<String, Arrivals>, kills: usize) {
    let mut gaps = Vec::new();
    let mut stalls = 0;
    for i in 0..kills {
        let relay = wait_for(
            "region a agrees on a relay edge",
            Duration::from_secs(30),
            || {
                let views: Option<Vec<u64>> = (1..=4)
                    .map(|n| {
                        c.node(&format!("a{n}")).try_json("/api/v1/relay")?["relay_edges"][STREAM]
                            .as_u64()
                    })
                    .collect();
                let views = views?;
                views.iter().all(|v| *v == views[0]).then(|| views[0])
            },
        );
        let name = c.by_id(relay).name.clone();
        std::thread::sleep(Duration::from_secs(2));
        let killed_at = Instant::now();
        c.by_id_mut(relay).kill();
        std::thread::sleep(Duration::from_secs(5));
        for (edge, a) in arrivals
            .iter()
            .filter(|(e, _)| e.starts_with('a') && **e != name)
        {
            let (gap, stalled) = gap_around(a, killed_at);
            stalls += usize::from(stalled);
            eprintln!(
                "relay kill {i}: relay edge {name}, viewer on {edge} gap {:.0} ms",
                ms(gap)
            );
            gaps.push(ms(gap));
        }
        c.by_id_mut(relay).restart();
        c.wait_status("the relay edge back up", Duration::from_secs(60), |s| {
            s["nodes"]
                .as_array()
                .is_some_and(|n| n.iter().all(|n| n["health"] == "up"))
        });
        // Its player reconnects: the killed edge's viewers are gone with it.
        std::thread::sleep(Duration::from_secs(3));
    }
    println!("\n### Edge mesh: SIGKILL of region a's relay edge ({kills} kills)\n");
    println!("| measure | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|");
    println!(
        "{}",
        row(
            "viewers on the other a edges: largest gap around the kill",
            gaps,
            0
        )
    );
    println!("\nViewers that stalled for good: {stalls}.");
}

/// SIGKILL of the leader; time until a token can be created through another node.
fn leader_failover(c: &mut Cluster, kills: usize) {
    let mut times = Vec::new();
    for i in 0..kills {
        let status = c.any_running().status();
        let leader = status["leader"].as_u64().expect("a leader");
        let survivor = c
            .nodes
            .iter()
            .find(|n| n.is_running() && n.id != leader)
            .expect("a survivor");
        let (http, token) = (survivor.http, admin_token(survivor));
        let killed_at = Instant::now();
        c.by_id_mut(leader).kill();
        let done: Arc<Mutex<Option<Duration>>> = Arc::default();
        let deadline = killed_at + Duration::from_secs(30);
        let mut attempts = Vec::new();
        while done.lock().is_none() && Instant::now() < deadline {
            let (done, token) = (done.clone(), token.clone());
            attempts.push(std::thread::spawn(move || {
                if create_token(http, &token) {
                    let mut d = done.lock();
                    if d.is_none() {
                        *d = Some(killed_at.elapsed());
                    }
                }
            }));
            std::thread::sleep(Duration::from_millis(25));
        }
        let took = done.lock().expect("a write succeeded within 30 s");
        eprintln!(
            "leader kill {i}: node {leader}, write again after {:.0} ms",
            ms(took)
        );
        times.push(ms(took));
        for a in attempts {
            let _ = a.join();
        }
        c.by_id_mut(leader).restart();
        settle(c);
    }
    println!("\n### Leader failover ({kills} × SIGKILL of the Raft leader)\n");
    println!("| measure | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|");
    println!(
        "{}",
        row(
            "kill → `POST /api/v1/cluster/tokens` succeeds on a survivor",
            times,
            0
        )
    );
}

/// From starting `skein join` until the new node's first video frame to a player.
fn join_to_serving(runtime: &tokio::runtime::Runtime, c: &mut Cluster, joins: usize) {
    let mut times = Vec::new();
    for i in 0..joins {
        let name = format!("j{i}");
        let started = Instant::now();
        let index = c.start_join(&name, "a", Some("edge"));
        let rtmp = c.nodes[index].rtmp;
        let first = runtime.block_on(async {
            loop {
                if let Ok(Ok(())) =
                    tokio::time::timeout(Duration::from_secs(15), first_video(rtmp)).await
                {
                    return started.elapsed();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{name} never served"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        eprintln!("join {i}: first frame after {:.0} ms", ms(first));
        times.push(ms(first));
        c.nodes[index].wait_ready();
        c.nodes[index].kill();
        let removed = c.node("eb").admin(&["remove", &name]);
        assert!(removed.status.success(), "{removed:?}");
    }
    println!("\n### Join to serving ({joins} joins)\n");
    println!("| measure | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|");
    println!(
        "{}",
        row(
            "`skein join` started → first video frame played from the new node",
            times,
            0
        )
    );
}

async fn first_video(rtmp: SocketAddr) -> anyhow::Result<()> {
    let url = RtmpUrl::parse(&format!("rtmp://{rtmp}/{STREAM}"))?;
    let mut client = RtmpClient::connect(&url).await?;
    client.play(&url.key, Duration::from_secs(15)).await?;
    loop {
        if let ClientEvent::Video { .. } = client.next_event().await? {
            return Ok(());
        }
    }
}

fn admin_token(node: &Member) -> String {
    std::fs::read_to_string(node.data_dir.join("admin.token"))
        .expect("admin token in the data directory")
        .trim()
        .to_owned()
}

fn create_token(http: SocketAddr, token: &str) -> bool {
    let headers = format!("Authorization: Bearer {token}\r\nContent-Type: application/json\r\n");
    let answer = skein_tests::http_exchange(
        http,
        "POST",
        "/api/v1/cluster/tokens",
        &headers,
        r#"{"ttl_secs":60}"#,
    );
    answer.is_some_and(|(status, _)| status == 200)
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    skein_tests::http_request(addr, "GET", path, "")
        .map(|(_, body)| body)
        .unwrap_or_default()
}

/// Ring balance (max/mean) and the fraction of streams that move when one origin goes.
fn ring_numbers() {
    let streams: Vec<(String, u64)> = (0..10_000u64)
        .map(|i| {
            let h = skein_raft::ring::key_hash(&i.to_string());
            let rate = if i % 250 == 0 {
                20_000_000
            } else if i % 10 == 0 {
                6_000_000 + h % 2_000_000
            } else {
                500_000 + h % 2_500_000
            };
            (format!("live/stream-{i}"), rate)
        })
        .collect();
    println!("### Ring (10 000 streams, skewed bit rates 0.5–20 Mbit/s, ε = 0.25)\n");
    println!(
        "| origins | plain: max/mean streams | plain: max/mean bit rate | bounded: max/mean bit rate | moved when one goes: plain | bounded | 1/N |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in [3u64, 5, 10] {
        let full = Ring::new(1..=n);
        let less = Ring::new(1..n);
        let plain: BTreeMap<String, u64> = streams
            .iter()
            .map(|(k, _)| (k.clone(), full.owner(k).unwrap()))
            .collect();
        let bounded = full.assign(&streams, 0.25);
        let ratio = |placement: &BTreeMap<String, u64>, weight: &dyn Fn(u64) -> u64| {
            let mut load: BTreeMap<u64, u64> = BTreeMap::new();
            for (k, r) in &streams {
                *load.entry(placement[k]).or_default() += weight(*r);
            }
            let total: u64 = load.values().sum();
            *load.values().max().unwrap() as f64 / (total as f64 / n as f64)
        };
        let moved_plain = streams
            .iter()
            .filter(|(k, _)| full.owner(k) != less.owner(k))
            .count();
        let bounded_less = less.assign(&streams, 0.25);
        let moved_bounded = streams
            .iter()
            .filter(|(k, _)| bounded[k] != bounded_less[k])
            .count();
        println!(
            "| {n} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            ratio(&plain, &|_| 1),
            ratio(&plain, &|r| r),
            ratio(&bounded, &|r| r),
            moved_plain as f64 / 1e4,
            moved_bounded as f64 / 1e4,
            1.0 / n as f64
        );
    }
}
