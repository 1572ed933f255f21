//! Unit tests of the relay's decisions, without a network: where a stream is routed and how it
//! is routed around a dead origin, what a pull forwards after switching origins, and how a feed
//! becomes a batch of relay messages.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use skein_raft::{ClusterState, NodeId};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::pull::Continuity;
use super::routing::Routing;
use super::wire::{Media, RelayMessage};
use super::{BATCH, drain_feed};
use crate::client::synthetic;
use crate::config::HubSection;
use crate::hub::{FeedPolicy, Hub, HubConfig, PlayerFeed, PublisherInfo};
use crate::media::{FrameFlags, MediaKind};

/// A committed state with `origins` (all up and active) and `edges` (up, not origins).
fn state(origins: &[NodeId], edges: &[NodeId]) -> ClusterState {
    let mut value = serde_json::to_value(ClusterState::default()).unwrap();
    let node = |id: NodeId| {
        json!({
            "id": id,
            "uuid": format!("00000000-0000-0000-0000-{id:012}"),
            "name": format!("n{id}"),
            "region": "a",
            "internal_addr": format!("127.0.1.{id}:7946"),
            "public": { "rtmp": format!("127.0.1.{id}:1935"), "http": format!("127.0.1.{id}:8080") },
            "roles": { "edge": true, "origin": true },
            "health": "up",
            "joined_index": id,
            "key_sha256": format!("key-{id}"),
        })
    };
    for &id in origins.iter().chain(edges) {
        value["nodes"][id.to_string()] = node(id);
    }
    for &id in origins {
        value["origins"][id.to_string()] =
            json!({ "state": "active", "since_index": id, "since_ms": 0 });
    }
    serde_json::from_value(value).unwrap()
}

fn routing(me: NodeId, state: ClusterState) -> (Routing, watch::Sender<Arc<ClusterState>>) {
    let (tx, rx) = watch::channel(Arc::new(state));
    (Routing::new(me, rx, 3), tx)
}

#[test]
fn owner_is_the_same_on_every_node_and_always_a_live_origin() {
    let (edge, _) = routing(10, state(&[1, 2, 3], &[10, 11]));
    let (other, _) = routing(11, state(&[1, 2, 3], &[10, 11]));
    for i in 0..200 {
        let stream = format!("live/{i}");
        let owner = edge.owner(&stream).unwrap();
        assert!([1, 2, 3].contains(&owner));
        assert_eq!(other.owner(&stream), Some(owner), "{stream}");
    }
    let (lonely, _) = routing(10, state(&[], &[10]));
    assert_eq!(lonely.owner("live/a"), None, "no origin, no owner");
}

#[test]
fn a_dead_origin_is_routed_around_at_once_and_back_when_cleared() {
    let (routing, _) = routing(10, state(&[1, 2, 3], &[10]));
    let streams: Vec<String> = (0..100).map(|i| format!("live/{i}")).collect();
    let before: Vec<NodeId> = streams.iter().map(|s| routing.owner(s).unwrap()).collect();
    let dead = before[0];
    assert!(routing.mark_dead(dead));
    assert!(!routing.mark_dead(dead), "a second mark is not news");
    for (stream, was) in streams.iter().zip(&before) {
        let now = routing.owner(stream).unwrap();
        assert_ne!(now, dead, "{stream} still routed to the dead origin");
        if *was != dead {
            assert_eq!(now, *was, "{stream} moved although its origin lives");
        }
    }
    routing.clear(dead);
    let after: Vec<NodeId> = streams.iter().map(|s| routing.owner(s).unwrap()).collect();
    assert_eq!(after, before);
}

#[test]
fn a_node_never_marks_itself_dead_and_forgets_marks_of_nodes_nothing_routes_to() {
    let (tx_state, rx) = {
        let (tx, rx) = watch::channel(Arc::new(state(&[1, 2], &[10, 11])));
        (tx, rx)
    };
    let routing = Routing::new(1, rx, 3);
    assert!(!routing.mark_dead(1));
    assert!(routing.mark_dead(2));
    assert!(routing.mark_dead(11));
    // 2 left the pool but is an edge of this region (a mesh peer): its mark stays. 11 moved
    // to another region: nothing here routes to it.
    let mut moved = state(&[1], &[2, 10, 11]);
    moved.nodes.get_mut(&11).unwrap().region = "b".into();
    tx_state.send_replace(Arc::new(moved));
    routing.forget_unrouted();
    assert_eq!(routing.dead(), [2]);
    tx_state.send_replace(Arc::new(state(&[1], &[10])));
    routing.forget_unrouted();
    assert!(routing.dead().is_empty());
}

#[test]
fn the_mesh_forms_with_enough_edges_and_every_node_agrees_on_the_relay_edge() {
    let edges = [10, 11, 12, 13];
    let views: Vec<Routing> = edges
        .iter()
        .map(|&me| routing(me, state(&[1, 2], &edges)).0)
        .collect();
    let (origin, _) = routing(1, state(&[1, 2], &edges));
    assert!(origin.is_origin() && !views[0].is_origin());
    let mut relays = std::collections::BTreeSet::new();
    for i in 0..200 {
        let stream = format!("live/{i}");
        let owner = views[0].owner(&stream).unwrap();
        let relay = views[0].relay_edge(&stream).unwrap();
        relays.insert(relay);
        assert_eq!(origin.relay_edge(&stream), Some(relay), "{stream}");
        // An origin that does not own the stream pulls it from the relay edge too.
        if origin.owner(&stream) != Some(1) {
            assert_eq!(origin.upstream(&stream), Some(relay), "{stream}");
        }
        for view in &views {
            assert_eq!(view.relay_edge(&stream), Some(relay), "{stream}");
            let expected = if view.me() == relay { owner } else { relay };
            assert_eq!(view.upstream(&stream), Some(expected), "{stream}");
        }
    }
    assert_eq!(relays.len(), edges.len(), "every edge relays some streams");
    assert_eq!(views[0].mesh_edges(), edges);

    // Two edges are below the threshold, and 0 turns the mesh off: pulls go to the owner.
    let (small, _) = routing(10, state(&[1, 2], &[10, 11]));
    let (_committed, rx) = watch::channel(Arc::new(state(&[1, 2], &edges)));
    let off = Routing::new(10, rx, 0);
    for i in 0..50 {
        let stream = format!("live/{i}");
        assert_eq!(small.relay_edge(&stream), None);
        assert_eq!(small.upstream(&stream), small.owner(&stream));
        assert_eq!(off.upstream(&stream), off.owner(&stream));
    }
    assert!(small.mesh_edges().is_empty() && off.mesh_edges().is_empty());
}

#[test]
fn a_dead_relay_edge_hands_its_streams_to_the_next_edge_and_edges_never_pull_in_a_circle() {
    let edges = [10, 11, 12, 13, 14];
    let (view, _) = routing(10, state(&[1], &edges));
    let streams: Vec<String> = (0..200).map(|i| format!("live/{i}")).collect();
    let before: Vec<NodeId> = streams
        .iter()
        .map(|s| view.relay_edge(s).unwrap())
        .collect();
    let dead = if before[0] == 10 {
        before[1]
    } else {
        before[0]
    };
    assert_ne!(dead, 10);
    view.mark_dead(dead);
    for (stream, was) in streams.iter().zip(&before) {
        let now = view.relay_edge(stream).unwrap();
        assert_ne!(now, dead, "{stream}");
        if *was != dead {
            assert_eq!(now, *was, "{stream} moved although its relay edge lives");
        }
    }
    // Different views (each has seen a different edge die) never make two edges each
    // other's upstream: the order of two edges for a key is the same on every ring.
    let views: Vec<Routing> = edges
        .iter()
        .map(|&me| {
            let (r, _) = routing(me, state(&[1], &edges));
            r.mark_dead(edges[(me as usize + 1) % edges.len()]);
            r
        })
        .collect();
    for stream in &streams {
        for a in &views {
            let Some(up) = a.upstream(stream).filter(|u| edges.contains(u)) else {
                continue;
            };
            let b = views.iter().find(|v| v.me() == up).unwrap();
            assert_ne!(
                b.upstream(stream),
                Some(a.me()),
                "{stream}: {} <-> {up}",
                a.me()
            );
        }
    }
    // The mesh falls below its threshold when edges die: pulls go to the owner again.
    let (small, _) = routing(10, state(&[1], &[10, 11, 12]));
    small.mark_dead(11);
    assert!(small.mesh_edges().is_empty());
    assert_eq!(small.upstream("live/x"), Some(1));
}

#[tokio::test]
async fn watchers_wake_on_a_dead_mark_and_on_a_committed_change() {
    let (routing, tx) = routing(10, state(&[1, 2], &[10]));
    let mut watcher = routing.watcher();
    routing.mark_dead(1);
    tokio::time::timeout(Duration::from_secs(1), watcher.changed())
        .await
        .expect("woken by the dead mark");
    tx.send_replace(Arc::new(state(&[1, 2, 3], &[10])));
    tokio::time::timeout(Duration::from_secs(1), watcher.changed())
        .await
        .expect("woken by the committed state");
}

fn media(kind: MediaKind, timestamp: u32, payload: Bytes) -> Media {
    Media {
        kind,
        flags: FrameFlags::classify(kind, &payload),
        timestamp,
        payload,
    }
}

#[test]
fn after_switching_origins_a_pull_forwards_only_what_viewers_have_not_seen() {
    let mut seen = Continuity::default();
    let header = media(MediaKind::Video, 0, synthetic::avc_sequence_header());
    let aac = media(MediaKind::Audio, 0, synthetic::aac_sequence_header());
    assert!(seen.is_new(&header));
    assert!(seen.is_new(&aac));
    assert!(seen.is_new(&media(
        MediaKind::Video,
        40,
        synthetic::video_frame(true, 64, 1)
    )));
    assert!(seen.is_new(&media(MediaKind::Audio, 23, synthetic::aac_frame())));

    // The new origin starts again from its cached GOP: headers and frames already delivered.
    assert!(!seen.is_new(&header), "the same sequence header again");
    assert!(!seen.is_new(&media(
        MediaKind::Video,
        40,
        synthetic::video_frame(true, 64, 1)
    )));
    assert!(!seen.is_new(&media(
        MediaKind::Video,
        10,
        synthetic::video_frame(false, 64, 0)
    )));
    assert!(!seen.is_new(&media(MediaKind::Audio, 23, synthetic::aac_frame())));
    // Each track continues on its own clock.
    assert!(seen.is_new(&media(MediaKind::Audio, 46, synthetic::aac_frame())));
    assert!(seen.is_new(&media(
        MediaKind::Video,
        80,
        synthetic::video_frame(false, 64, 2)
    )));
    // A changed decoder configuration is news, and so is metadata.
    let mut other = synthetic::avc_sequence_header().to_vec();
    *other.last_mut().unwrap() ^= 1;
    assert!(seen.is_new(&media(MediaKind::Video, 80, Bytes::from(other))));
    assert!(seen.is_new(&media(MediaKind::Metadata, 0, Bytes::from_static(b"meta"))));

    // A publisher that published again on an origin that never had the old timeline: its
    // frames are far behind; that starts over (with the headers), a cached GOP does not.
    assert!(!seen.starts_over(&media(
        MediaKind::Video,
        10,
        synthetic::video_frame(true, 64, 1)
    )));
    let late = media(
        MediaKind::Video,
        60_000,
        synthetic::video_frame(true, 64, 1),
    );
    assert!(seen.is_new(&late));
    let fresh = media(MediaKind::Video, 40, synthetic::video_frame(true, 64, 1));
    assert!(seen.starts_over(&fresh));
    assert!(!seen.starts_over(&header), "headers never start a timeline");
    let headers = seen.restart();
    assert!(
        headers.iter().any(|h| h.payload == header.payload),
        "{headers:?}"
    );
    assert!(seen.is_new(&fresh));

    // A publisher that really left: the next one starts from scratch.
    seen.forget();
    assert!(seen.is_new(&header));
    assert!(seen.is_new(&media(
        MediaKind::Video,
        5,
        synthetic::video_frame(true, 64, 0)
    )));
}

fn hub() -> Arc<Hub> {
    Hub::new(HubConfig::new(&HubSection::default(), 4096))
}

fn publisher() -> PublisherInfo {
    PublisherInfo {
        client_id: 1,
        peer: "127.0.0.1:1".parse().unwrap(),
        cancel: CancellationToken::new(),
    }
}

fn feed(hub: &Hub, stream: &str) -> PlayerFeed {
    let subscription = hub.subscribe(stream, false).expect("published");
    PlayerFeed::new(
        subscription,
        FeedPolicy {
            max_skips_per_minute: 10,
            wait_for_publisher: Duration::ZERO,
        },
    )
}

#[tokio::test]
async fn a_feed_drains_into_one_batch_with_the_flags_of_each_frame() {
    let hub = hub();
    let handle = hub.publish("live/a", publisher()).unwrap();
    handle.push(MediaKind::Video, 0, synthetic::avc_sequence_header());
    handle.push(MediaKind::Video, 0, synthetic::video_frame(true, 64, 0));
    for i in 1..10 {
        handle.push(
            MediaKind::Video,
            i * 40,
            synthetic::video_frame(false, 64, i),
        );
    }
    let mut feed = feed(&hub, "live/a");
    let mut batch = Vec::new();
    let first = feed.next().await;
    assert!(drain_feed(first, &mut feed, &mut batch).is_none());
    let flags: Vec<FrameFlags> = batch
        .iter()
        .map(|m| match m {
            RelayMessage::Media(media) => media.flags,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(flags.len(), 11, "everything ready goes in one batch");
    assert!(flags[0].sequence_header && flags[0].keyframe);
    assert!(flags[1].keyframe && !flags[1].sequence_header);
    assert!(flags[2..].iter().all(|f| *f == FrameFlags::default()));
}

#[tokio::test]
async fn a_batch_is_bounded_and_stops_after_an_unpublish() {
    let hub = hub();
    let handle = hub.publish("live/b", publisher()).unwrap();
    handle.push(MediaKind::Video, 0, synthetic::video_frame(true, 64, 0));
    let mut feed = feed(&hub, "live/b");
    for i in 1..(2 * BATCH as u32) {
        handle.push(
            MediaKind::Video,
            i * 40,
            synthetic::video_frame(false, 64, i),
        );
    }
    let mut batch = Vec::new();
    let first = feed.next().await;
    drain_feed(first, &mut feed, &mut batch);
    assert_eq!(batch.len(), BATCH);

    drop(handle);
    let mut batches = Vec::new();
    while batches
        .last()
        .is_none_or(|b: &Vec<RelayMessage>| b.last() != Some(&RelayMessage::Unpublished))
    {
        assert!(batches.len() < 4, "the unpublish never came");
        let mut batch = Vec::new();
        let first = feed.next().await;
        drain_feed(first, &mut feed, &mut batch);
        assert!(batch.len() <= BATCH);
        batches.push(batch);
    }
    let media: usize = batches.iter().map(Vec::len).sum::<usize>() - 1;
    assert_eq!(media, BATCH, "every frame before the unpublish, once");
}

#[test]
fn only_a_silent_or_unreachable_peer_counts_as_lost() {
    use super::RelayError;
    use crate::hub::FeedEnd;
    let lost = [
        RelayError::Connect {
            node: 2,
            why: "connection refused".into(),
        },
        RelayError::Timeout(Duration::from_millis(750)),
        RelayError::Closed,
        RelayError::Read("reset".into()),
        RelayError::Write("stopped".into()),
    ];
    assert!(lost.iter().all(RelayError::peer_lost));
    let not_lost = [
        RelayError::UnknownPeer(2),
        RelayError::NotAllowed {
            node: 2,
            why: "no cluster certificate".into(),
        },
        RelayError::Refused("no such stream".into()),
        RelayError::Wire(super::wire::WireError::UnknownKind(0x7f)),
        RelayError::Feed(FeedEnd::TooSlow),
    ];
    assert!(!not_lost.iter().any(RelayError::peer_lost));
}
