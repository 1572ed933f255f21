//! The media relay in one process, in seconds and without ffmpeg: four cluster members on
//! loopback (two origins, two edges) run as `RunningNode`s, a synthetic publisher on one edge,
//! a player on the other. The stream's owner is stopped; the push and the pull follow the new
//! owner, and the player — one connection throughout — keeps receiving video whose timestamps
//! never go back.
//!
//! Tokio's paused clock cannot drive this: the relay runs over real QUIC sockets, whose
//! timers must see real time. What the relay decides without sockets (routing, continuity,
//! batching) is unit-tested in `relay::tests`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use skein_node::auth::Policy;
use skein_node::client::{RtmpClient, RtmpUrl, synthetic};
use skein_node::config::Config;
use skein_node::rtmp::ClientEvent;
use skein_node::server::membership::Membership;
use skein_node::{Node, RunningNode};
use skein_raft::{JoinInfo, NodeId, Roles};
use tokio::time::{Instant, sleep, timeout};

const STREAM: &str = "live/relayed";

fn config(ip: &str, name: &str, roles: Roles, dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.node.name = name.into();
    config.node.region = "a".into();
    config.rtmp.listen = format!("{ip}:0").parse().unwrap();
    config.http.listen = format!("{ip}:0").parse().unwrap();
    config.cluster.data_dir = dir.join(name);
    config.cluster.internal = format!("{ip}:{}", skein_tests::free_port(ip))
        .parse()
        .unwrap();
    config.cluster.roles = roles;
    config.cluster.origin_target = 2;
    // The relay is under test, not authorisation: anyone may publish.
    config.auth.publish = Policy::Open;
    config
}

const ORIGIN: Roles = Roles {
    edge: false,
    origin: true,
};
const EDGE: Roles = Roles {
    edge: true,
    origin: false,
};

async fn member(config: Config, join: &JoinInfo) -> RunningNode {
    let membership = Membership::Join {
        seeds: join.seeds.clone(),
        token: join.token.to_string(),
        ca_hash: join.ca_hash.clone(),
    };
    RunningNode::start_member(config, membership)
        .await
        .unwrap()
        .0
}

fn id(node: &Node) -> NodeId {
    node.cluster().unwrap().cluster.node_id()
}

/// Polls `check` every 50 ms for up to `within`.
async fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes synthetic 30 fps video (a keyframe every second) until `stop`.
async fn publish(url: RtmpUrl, stop: Arc<AtomicBool>) {
    let client = start_publish(&url).await.unwrap();
    feed(client, stop, 2_000).await;
}

/// Connects and publishes `url`, as far as the server's answer.
async fn start_publish(url: &RtmpUrl) -> anyhow::Result<RtmpClient> {
    let mut client = RtmpClient::connect(url).await?;
    client.publish(&url.key, Duration::from_secs(10)).await?;
    Ok(client)
}

/// Sends synthetic 30 fps video frames of `frame_size` bytes (a keyframe every second) until
/// `stop` or a disconnect.
async fn feed(mut client: RtmpClient, stop: Arc<AtomicBool>, frame_size: usize) {
    client
        .session()
        .send_video(0, &synthetic::avc_sequence_header());
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(33));
    let mut frame = 0u32;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let ts = start.elapsed().as_millis() as u32;
        let video = synthetic::video_frame(frame.is_multiple_of(30), frame_size, frame);
        client.session().send_video(ts, &video);
        if client.flush().await.is_err() {
            return;
        }
        frame += 1;
    }
}

/// What the player saw: (arrival, timestamp) and the size of each video frame, and the status
/// codes.
#[derive(Default)]
struct Seen {
    video: Vec<(Instant, u32)>,
    sizes: Vec<usize>,
    codes: Vec<String>,
    disconnected: bool,
}

async fn play(url: RtmpUrl, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    let mut client = RtmpClient::connect(&url).await.unwrap();
    client
        .play(&url.key, Duration::from_secs(10))
        .await
        .unwrap();
    while !stop.load(Ordering::Relaxed) {
        match timeout(Duration::from_millis(200), client.next_event()).await {
            Err(_) => continue,
            Ok(Err(_)) | Ok(Ok(ClientEvent::Disconnected)) => {
                seen.lock().disconnected = true;
                return;
            }
            Ok(Ok(ClientEvent::Video { timestamp, payload })) => {
                let mut seen = seen.lock();
                seen.video.push((Instant::now(), timestamp));
                seen.sizes.push(payload.len());
            }
            Ok(Ok(ClientEvent::Status { code, .. })) => seen.lock().codes.push(code),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_follows_its_new_owner_and_the_player_never_sees_time_go_back() {
    let dir = skein_tests::node::temp_dir("relay-in-process");
    let (first, join) = RunningNode::start_member(
        config("127.0.1.71", "origin-1", ORIGIN, &dir),
        Membership::Init {
            token_ttl: Duration::from_secs(600),
        },
    )
    .await
    .unwrap();
    let join = join.expect("init returns the join info");
    let second = member(config("127.0.1.72", "origin-2", ORIGIN, &dir), &join).await;
    let publish_edge = member(config("127.0.1.73", "edge-pub", EDGE, &dir), &join).await;
    let play_edge = member(config("127.0.1.74", "edge-play", EDGE, &dir), &join).await;
    let routes = |node: &RunningNode| node.node.cluster().unwrap().relay.routing().origins();
    wait_until(
        "both origins in every edge's ring",
        Duration::from_secs(30),
        || routes(&publish_edge).len() == 2 && routes(&play_edge).len() == 2,
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let url = |node: &RunningNode| {
        RtmpUrl::parse(&format!("rtmp://{}/{STREAM}", node.rtmp_addr)).unwrap()
    };
    let publisher = tokio::spawn(publish(url(&publish_edge), stop.clone()));
    let owner_of = |node: &RunningNode| {
        node.node
            .cluster()
            .unwrap()
            .relay
            .routing()
            .owner(STREAM)
            .unwrap()
    };
    let owner = owner_of(&publish_edge);
    let (owner_node, other) = if owner == id(&first.node) {
        (first, second)
    } else {
        (second, first)
    };
    wait_until("the owner has the stream", Duration::from_secs(10), || {
        owner_node
            .node
            .hub
            .get(STREAM)
            .is_some_and(|s| s.is_published())
    })
    .await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let player = tokio::spawn(play(url(&play_edge), seen.clone(), stop.clone()));
    wait_until("the player receives video", Duration::from_secs(10), || {
        seen.lock().video.len() > 30
    })
    .await;

    owner_node.stop().await;
    let stopped = Instant::now();
    wait_until(
        "the edges route to the other origin",
        Duration::from_secs(10),
        || owner_of(&publish_edge) == id(&other.node) && owner_of(&play_edge) == id(&other.node),
    )
    .await;
    wait_until(
        "video again, from the new owner, for a second",
        Duration::from_secs(15),
        || {
            let seen = seen.lock();
            let after: Vec<_> = seen.video.iter().filter(|(at, _)| *at > stopped).collect();
            after.len() > 30 && after.last().unwrap().0 - after[0].0 > Duration::from_secs(1)
        },
    )
    .await;
    let relay = other.node.cluster().unwrap().relay.view();
    assert_eq!(
        relay.pushed_in.get(STREAM),
        Some(&id(&publish_edge.node)),
        "the new owner takes the push: {relay:?}"
    );
    assert_eq!(
        relay.served_pulls.get(STREAM),
        Some(&vec![id(&play_edge.node)]),
        "and serves the one pull of the player's edge: {relay:?}"
    );
    stop.store(true, Ordering::Relaxed);
    let _ = publisher.await;
    let _ = player.await;

    let seen = std::mem::take(&mut *seen.lock());
    assert!(!seen.disconnected, "the player kept its connection");
    for pair in seen.video.windows(2) {
        assert!(
            pair[1].1 >= pair[0].1,
            "video timestamp went back from {} to {} ms",
            pair[0].1,
            pair[1].1
        );
    }
    assert!(
        !seen.codes.iter().any(|c| c == "NetStream.Play.Stop"),
        "the player was never told the stream stopped: {:?}",
        seen.codes
    );
    for node in [other, publish_edge, play_edge] {
        node.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Frame sizes of the first and the second publisher of a key.
const FIRST: usize = 2_000;
const SECOND: usize = 3_000;

/// Waits until the viewer has had a second of the second publisher's frames, stops the tasks,
/// and checks it never saw the first publisher's frames after the switch.
async fn switched_to_second(
    seen: &Mutex<Seen>,
    stop: Arc<AtomicBool>,
    tasks: [tokio::task::JoinHandle<()>; 2],
) {
    wait_until(
        "the viewer receives the second publisher's video",
        Duration::from_secs(15),
        || seen.lock().sizes.iter().filter(|s| **s == SECOND).count() > 30,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let sizes = std::mem::take(&mut seen.lock().sizes);
    let switch = sizes.iter().position(|s| *s == SECOND).unwrap();
    assert!(
        !sizes[switch..].contains(&FIRST),
        "after the switch only the second publisher's frames"
    );
}

/// One origin (with `hub.publish_replace` as given) and three edges, on 127.0.1.75-78, with the
/// origin in every edge's ring.
async fn one_origin_three_edges(dir: &std::path::Path, replace: bool) -> [RunningNode; 4] {
    let mut origin_config = config("127.0.1.75", "origin", ORIGIN, dir);
    origin_config.hub.publish_replace = replace;
    let (origin, join) = RunningNode::start_member(
        origin_config,
        Membership::Init {
            token_ttl: Duration::from_secs(600),
        },
    )
    .await
    .unwrap();
    let join = join.expect("init returns the join info");
    let edge_1 = member(config("127.0.1.76", "edge-1", EDGE, dir), &join).await;
    let edge_2 = member(config("127.0.1.77", "edge-2", EDGE, dir), &join).await;
    let edge_3 = member(config("127.0.1.78", "edge-3", EDGE, dir), &join).await;
    let routes = |node: &RunningNode| node.node.cluster().unwrap().relay.routing().origins();
    wait_until(
        "the origin in every edge's ring",
        Duration::from_secs(30),
        || {
            [&edge_1, &edge_2, &edge_3]
                .iter()
                .all(|edge| routes(edge).len() == 1)
        },
    )
    .await;
    [origin, edge_1, edge_2, edge_3]
}

fn stream_url(node: &RunningNode) -> RtmpUrl {
    RtmpUrl::parse(&format!("rtmp://{}/{STREAM}", node.rtmp_addr)).unwrap()
}

/// One publisher per stream cluster-wide: the owner decides. A refused play on the
/// publisher's edge leaves its origin alive in its routing. A second publish of the key on
/// another edge is refused while the first lives (a viewer on a third edge sees only the first
/// publisher's frames, told apart by their size; sequence headers are neither size), and is
/// taken once the first has gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_published_on_two_edges_has_one_publisher() {
    let dir = skein_tests::node::temp_dir("relay-one-publisher");
    let [origin, edge_1, edge_2, edge_3] = one_origin_three_edges(&dir, false).await;
    let url = stream_url;
    let stop_first = Arc::new(AtomicBool::new(false));
    let first = start_publish(&url(&edge_1)).await.unwrap();
    let first = tokio::spawn(feed(first, stop_first.clone(), FIRST));
    wait_until("the origin has the stream", Duration::from_secs(10), || {
        origin
            .node
            .hub
            .get(STREAM)
            .is_some_and(|s| s.is_published())
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let player = tokio::spawn(play(url(&edge_3), seen.clone(), stop.clone()));
    wait_until("the viewer receives video", Duration::from_secs(10), || {
        seen.lock().video.len() > 10
    })
    .await;

    // A refused name is the asking connection's problem only: the publisher's edge keeps
    // every origin and its stream keeps flowing.
    let mut bad = RtmpClient::connect(&url(&edge_1)).await.unwrap();
    let bad_play = bad.play("..", Duration::from_secs(5)).await;
    assert!(bad_play.is_err(), "a play of .. is refused");
    drop(bad);
    let relay = edge_1.node.cluster().unwrap().relay.view();
    assert!(
        relay.routed_around.is_empty() && relay.origins.len() == 1,
        "a refused play marks no origin dead: {relay:?}"
    );

    let refused = start_publish(&url(&edge_2)).await;
    let error = format!(
        "{:#}",
        refused.err().expect("the second publish is refused")
    );
    assert!(
        error.contains("already being published"),
        "the refusal says why: {error}"
    );
    // (The edge may hold a relayed copy: with three edges it can be the stream's regional
    // relay edge. Relayed publishers have client id 0.)
    assert!(
        edge_2
            .node
            .hub
            .get(STREAM)
            .is_none_or(|s| s.snapshot().publisher.is_none_or(|p| p.client_id == 0)),
        "the refused publisher left nothing published on its edge"
    );
    let frames_before = seen.lock().video.len();
    wait_until("a second more of video", Duration::from_secs(10), || {
        seen.lock().video.len() > frames_before + 30
    })
    .await;
    assert!(
        !seen.lock().sizes.contains(&SECOND),
        "the viewer saw only the first publisher's frames"
    );

    stop_first.store(true, Ordering::Relaxed);
    let _ = first.await;
    let second = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match start_publish(&url(&edge_2)).await {
                Ok(client) => return client,
                Err(_) => sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await
    .expect("the key is free once its publisher has gone");
    let second = tokio::spawn(feed(second, stop.clone(), SECOND));
    switched_to_second(&seen, stop, [second, player]).await;
    for node in [origin, edge_1, edge_2, edge_3] {
        node.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `hub.publish_replace` on the owner, a newer publisher on another edge takes the stream
/// over cluster-wide: the older one is disconnected, and a viewer on a third edge moves to the
/// newer one's frames and never sees the older one's again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replacement_a_newer_publisher_on_another_edge_takes_over() {
    let dir = skein_tests::node::temp_dir("relay-replace");
    let [origin, edge_1, edge_2, edge_3] = one_origin_three_edges(&dir, true).await;
    let stop = Arc::new(AtomicBool::new(false));
    let first = start_publish(&stream_url(&edge_1)).await.unwrap();
    let first = tokio::spawn(feed(first, stop.clone(), FIRST));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let player = tokio::spawn(play(stream_url(&edge_3), seen.clone(), stop.clone()));
    wait_until("the viewer receives video", Duration::from_secs(10), || {
        seen.lock().video.len() > 10
    })
    .await;

    let second = start_publish(&stream_url(&edge_2))
        .await
        .expect("a newer publisher replaces the older one");
    let second = tokio::spawn(feed(second, stop.clone(), SECOND));
    timeout(Duration::from_secs(10), first)
        .await
        .expect("the older publisher is disconnected")
        .unwrap();
    switched_to_second(&seen, stop, [second, player]).await;
    for node in [origin, edge_1, edge_2, edge_3] {
        node.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
