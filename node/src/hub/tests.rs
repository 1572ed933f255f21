//! Hub tests: GOP cache and headers for new players, publish conflicts and replacement,
//! waiting for a publisher, timestamp continuity across republish, the slow-player policy,
//! bounded memory and shared serialization.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::media::{FrameFlags, MediaKind};

fn hub(queue: usize, replace: bool) -> Arc<Hub> {
    Hub::new(HubConfig {
        gop_cache: true,
        max_gop_bytes: 1 << 20,
        player_queue: queue,
        max_stream_bytes: 64 << 20,
        publish_replace: replace,
        chunk_size: 4096,
    })
}

fn who(id: u64) -> PublisherInfo {
    PublisherInfo {
        client_id: id,
        peer: SocketAddr::from(([127, 0, 0, 1], 1000 + id as u16)),
        cancel: CancellationToken::new(),
    }
}

fn video(keyframe: bool) -> Bytes {
    Bytes::from(vec![
        if keyframe { 0x17 } else { 0x27 },
        0x01,
        0,
        0,
        0,
        0xaa,
    ])
}

const AVC_HEADER: &[u8] = &[0x17, 0x00, 0, 0, 0, 0x01, 0x64];
const AAC_HEADER: &[u8] = &[0xaf, 0x00, 0x12, 0x10];

fn policy(wait_ms: u64, max_skips: u32) -> FeedPolicy {
    FeedPolicy {
        max_skips_per_minute: max_skips,
        wait_for_publisher: Duration::from_millis(wait_ms),
    }
}

fn frame(item: Result<FeedItem, FeedEnd>) -> Arc<Frame> {
    match item {
        Ok(FeedItem::Frame(f)) => f,
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn publish_gop(p: &PublisherHandle, start_ts: u32, frames: u32) {
    p.push(MediaKind::Video, start_ts, video(true));
    for i in 1..frames {
        p.push(MediaKind::Video, start_ts + i * 33, video(false));
    }
}

#[tokio::test]
async fn new_player_starts_with_headers_then_the_last_gop() {
    let hub = hub(64, false);
    let p = hub.publish("live/a", who(1)).unwrap();
    p.push(MediaKind::Metadata, 0, Bytes::from_static(b"meta"));
    p.push(MediaKind::Video, 0, Bytes::from_static(AVC_HEADER));
    p.push(MediaKind::Audio, 0, Bytes::from_static(AAC_HEADER));
    publish_gop(&p, 0, 5);
    publish_gop(&p, 1000, 3); // the cache now holds only this GOP

    let sub = hub.subscribe("live/a", false).unwrap();
    let mut feed = PlayerFeed::new(sub, policy(0, 3));
    assert_eq!(frame(feed.next().await).kind, MediaKind::Metadata);
    assert!(frame(feed.next().await).flags.sequence_header);
    assert!(frame(feed.next().await).flags.sequence_header);
    let first = frame(feed.next().await);
    assert!(first.flags.keyframe);
    assert_eq!(first.timestamp, 1000);
    assert_eq!(frame(feed.next().await).timestamp, 1033);
    assert_eq!(frame(feed.next().await).timestamp, 1066);
    assert!(feed.try_next().is_none());

    // Live frames follow without a gap or a duplicate.
    p.push(MediaKind::Video, 1099, video(false));
    assert_eq!(frame(feed.next().await).timestamp, 1099);
}

#[test]
fn second_publisher_is_refused_unless_replacement_is_on() {
    let strict = hub(64, false);
    let _p = strict.publish("live/a", who(1)).unwrap();
    assert_eq!(
        strict.publish("live/a", who(2)).err(),
        Some(PublishError::Taken("live/a".into()))
    );

    let lenient = hub(64, true);
    let first = who(1);
    let cancel = first.cancel.clone();
    let old = lenient.publish("live/a", first).unwrap();
    let _new = lenient.publish("live/a", who(2)).unwrap();
    assert!(
        cancel.is_cancelled(),
        "the replaced publisher is told to go"
    );
    drop(old); // must not end the new publisher's stream
    assert!(lenient.get("live/a").unwrap().is_published());
}

#[tokio::test]
async fn play_without_publisher_is_refused_or_waits() {
    let hub = hub(64, false);
    assert!(hub.subscribe("live/none", false).is_none());

    let sub = hub.subscribe("live/later", true).unwrap();
    let mut feed = PlayerFeed::new(sub, policy(5_000, 3));
    let p = hub.publish("live/later", who(1)).unwrap();
    publish_gop(&p, 0, 1);
    assert!(matches!(feed.next().await, Ok(FeedItem::Published)));
    assert!(frame(feed.next().await).flags.keyframe);

    let sub = hub.subscribe("live/never", true).unwrap();
    let mut feed = PlayerFeed::new(sub, policy(20, 3));
    assert_eq!(feed.next().await.err(), Some(FeedEnd::PublisherGone));
}

#[tokio::test]
async fn republish_keeps_timestamps_monotonic_for_players() {
    let hub = hub(64, false);
    let p = hub.publish("live/a", who(1)).unwrap();
    publish_gop(&p, 50_000, 3); // 50000, 50033, 50066
    let sub = hub.subscribe("live/a", false).unwrap();
    let mut feed = PlayerFeed::new(sub, policy(5_000, 3));
    for _ in 0..3 {
        frame(feed.next().await);
    }
    drop(p);
    assert!(matches!(feed.next().await, Ok(FeedItem::Unpublished)));

    // The new publisher starts its clock at zero.
    let p2 = hub.publish("live/a", who(2)).unwrap();
    assert!(matches!(feed.next().await, Ok(FeedItem::Published)));
    publish_gop(&p2, 0, 2);
    let a = frame(feed.next().await).timestamp;
    let b = frame(feed.next().await).timestamp;
    assert_eq!(a, 50_067);
    assert_eq!(b, 50_100);
}

#[tokio::test]
async fn slow_player_skips_to_the_next_keyframe_then_is_dropped() {
    let hub = hub(16, false);
    let p = hub.publish("live/a", who(1)).unwrap();
    let sub = hub.subscribe("live/a", false).unwrap();
    let mut feed = PlayerFeed::new(sub, policy(0, 1));

    // Overrun the 16-slot ring, then a keyframe and one more frame.
    for i in 0..40 {
        p.push(MediaKind::Video, i * 33, video(false));
    }
    p.push(MediaKind::Video, 2000, video(true));
    p.push(MediaKind::Video, 2033, video(false));
    let resumed = frame(feed.next().await);
    assert!(resumed.flags.keyframe, "resumes on a keyframe");
    assert_eq!(resumed.timestamp, 2000);
    assert_eq!(frame(feed.next().await).timestamp, 2033);
    assert_eq!(feed.skips(), 1);

    // A second overrun within the minute exceeds max_skips_per_minute = 1.
    for i in 0..40 {
        p.push(MediaKind::Video, 3000 + i * 33, video(false));
    }
    assert_eq!(feed.next().await.err(), Some(FeedEnd::TooSlow));
}

#[test]
fn memory_is_bounded_whatever_players_do() {
    // A player that never reads holds a cursor, not frames: the ring keeps at most `queue`
    // frames alive, and the GOP cache at most max_gop_bytes.
    let hub = Hub::new(HubConfig {
        gop_cache: true,
        max_gop_bytes: 10_000,
        player_queue: 16,
        max_stream_bytes: 64 << 20,
        publish_replace: false,
        chunk_size: 4096,
    });
    let p = hub.publish("live/a", who(1)).unwrap();
    let _stuck = hub.subscribe("live/a", false).unwrap();
    let mut reader = PlayerFeed::new(hub.subscribe("live/a", false).unwrap(), policy(0, 3));
    p.push(MediaKind::Video, 0, video(true));
    let first = match reader.try_next() {
        Some(Ok(FeedItem::Frame(f))) => Arc::downgrade(&f),
        other => panic!("expected the keyframe, got {other:?}"),
    };
    drop(reader);
    assert_eq!(hub.get("live/a").unwrap().snapshot().gop_cached_frames, 1);
    let big = Bytes::from(vec![0x27; 4000]);
    for i in 1..1000 {
        p.push(MediaKind::Video, i * 33, big.clone());
    }
    let snap = hub.get("live/a").unwrap().snapshot();
    assert_eq!(snap.gop_cached_frames, 0, "an oversized GOP is dropped");
    assert!(
        first.upgrade().is_none(),
        "old frames are freed although a player never read them"
    );
}

#[tokio::test]
async fn the_ring_holds_at_most_its_byte_budget_and_a_stalled_player_skips() {
    // 1 MiB frames into a ring of 512 slots whose byte share is 4 MiB (8 MiB stream budget
    // minus 4 MiB of GOP cache): a player that never reads pins at most the budget.
    let hub = Hub::new(HubConfig {
        gop_cache: true,
        max_gop_bytes: 4 << 20,
        player_queue: 512,
        max_stream_bytes: 8 << 20,
        publish_replace: false,
        chunk_size: 4096,
    });
    let p = hub.publish("live/a", who(1)).unwrap();
    let mut stalled = PlayerFeed::new(hub.subscribe("live/a", false).unwrap(), policy(0, 3));
    let mut reader = PlayerFeed::new(hub.subscribe("live/a", false).unwrap(), policy(0, 3));
    let mut big = vec![0x27; 1 << 20];
    let mut oldest = None;
    for i in 0..40u32 {
        // A keyframe every third frame: a GOP of 3 MiB fits the cache.
        big[0] = if i % 3 == 0 { 0x17 } else { 0x27 };
        p.push(MediaKind::Video, i * 33, Bytes::from(big.clone()));
        let snap = hub.get("live/a").unwrap().snapshot();
        assert!(
            snap.ring_bytes <= 4 << 20,
            "ring holds {} bytes",
            snap.ring_bytes
        );
        assert!(snap.gop_cached_bytes <= 4 << 20);
        if i == 0 {
            oldest = Some(Arc::downgrade(&frame(reader.try_next().unwrap())));
            drop(reader.try_next());
        }
    }
    drop(reader);
    assert!(
        oldest.unwrap().upgrade().is_none(),
        "the first frame is freed although a player never read it"
    );
    // The stalled player resumes at the oldest keyframe still in the ring (frame 36 of the
    // four 1 MiB frames that fit), having skipped once.
    let resumed = frame(stalled.next().await);
    assert!(resumed.flags.keyframe);
    assert_eq!(resumed.timestamp, 36 * 33);
    assert_eq!(frame(stalled.next().await).timestamp, 37 * 33);
    assert_eq!(stalled.skips(), 1);
}

#[test]
fn frames_are_serialized_once_and_shared() {
    let f = Frame::new(
        MediaKind::Video,
        5,
        video(true),
        FrameFlags::classify(MediaKind::Video, &video(true)),
        4096,
    );
    let a = f.rtmp_chunks().clone();
    let b = f.rtmp_chunks().clone();
    assert_eq!(a.as_ptr(), b.as_ptr(), "same allocation for every player");
    let t1 = f.flv_tag().clone();
    let t2 = f.flv_tag().clone();
    assert_eq!(t1.as_ptr(), t2.as_ptr());
}

#[test]
fn streams_without_publisher_or_players_are_forgotten() {
    let hub = hub(16, false);
    let p = hub.publish("live/a", who(1)).unwrap();
    let sub = hub.subscribe("live/a", false).unwrap();
    drop(p);
    hub.tick(Duration::from_secs(1));
    assert!(hub.get("live/a").is_some(), "a waiting player keeps it");
    drop(sub);
    hub.tick(Duration::from_secs(1));
    assert!(hub.get("live/a").is_none());
}

#[test]
fn keys_are_checked() {
    assert!(validate_key("cam-1_a.b~c").is_ok());
    assert!(validate_key("key?token=abc").is_ok());
    assert!(validate_key("").is_err());
    assert!(validate_key("../etc").is_err());
    assert!(validate_key("..").is_err());
    assert!(validate_key(".").is_err());
    assert!(validate_key("..?token=x").is_err());
    assert!(validate_key("...").is_ok());
    assert!(validate_key("a b").is_err());
    assert!(validate_key(&"k".repeat(201)).is_err());
}
