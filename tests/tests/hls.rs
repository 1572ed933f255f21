//! HLS from every edge of a real cluster: two edges pull the same stream from its origin, one
//! of them late, and name every segment and part the same way, byte for byte; a player that
//! alternates between the edges on every blocking reload keeps getting the next part, and
//! never a part it had already; hls.js in headless Chromium plays LL-HLS from an edge.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use skein_tests::cluster::{Cluster, wait_for};
use skein_tests::hls::{self, MediaPlaylist};
use skein_tests::{media, require};

const STREAM: &str = "live/cam";

fn playlist(addr: SocketAddr, query: &str) -> Option<MediaPlaylist> {
    let answer = hls::get(addr, &format!("/{STREAM}.m3u8{query}"))?;
    if answer.status != 200 {
        return None;
    }
    Some(hls::validate(&answer.text()).unwrap_or_else(|e| panic!("{e}\n{}", answer.text())))
}

fn body(addr: SocketAddr, uri: &str) -> Vec<u8> {
    let answer = hls::get(addr, &format!("/live/{uri}")).expect("edge answers");
    assert_eq!(answer.status, 200, "{uri} from {addr}: {}", answer.text());
    answer.body
}

/// The complete segments of a playlist by media sequence number, with their parts' names.
fn named(playlist: &MediaPlaylist) -> BTreeMap<u64, (String, Vec<String>)> {
    playlist
        .segments
        .iter()
        .map(|s| {
            let parts = s.parts.iter().map(|p| p.uri.clone()).collect();
            (s.msn, (s.uri.clone(), parts))
        })
        .collect()
}

#[test]
fn two_edges_name_the_same_media_the_same_way_and_a_player_may_alternate() {
    require("ffmpeg", "ffmpeg");
    let mut c = Cluster::init("hls-edges", "o1", "c", Some("origin"), &[]);
    c.join("ea", "a", Some("edge"));
    c.join("eb", "b", Some("edge"));
    let publish_start = unix_ms();
    let _publisher = media::publish(&c.node("o1").rtmp_url(STREAM), 120);
    let (ea, eb) = (c.node("ea").http, c.node("eb").http);

    // eb starts its pull and segmenter first; ea a few segments later.
    let early = wait_for("a playlist on eb", Duration::from_secs(30), || {
        playlist(eb, "")
    });
    wait_for("three more segments on eb", Duration::from_secs(30), || {
        let now = playlist(eb, "")?;
        (now.media_sequence + now.segments.len() as u64
            >= early.media_sequence + early.segments.len() as u64 + 3)
            .then_some(())
    });
    wait_for("a playlist on ea", Duration::from_secs(30), || {
        playlist(ea, "")
    });

    // Once ea has a few segments, every segment both list has the same name, parts and bytes.
    let (on_a, on_b) = wait_for("segments on both edges", Duration::from_secs(30), || {
        let (a, b) = (named(&playlist(ea, "")?), named(&playlist(eb, "")?));
        let common = a.keys().filter(|msn| b.contains_key(msn)).count();
        (common >= 3).then_some((a, b))
    });
    for (msn, (uri, parts)) in on_a.iter().filter(|(msn, _)| on_b.contains_key(msn)) {
        assert_eq!(on_b[msn], (uri.clone(), parts.clone()), "segment {msn}");
        assert_eq!(body(ea, uri), body(eb, uri), "bytes of segment {msn}");
    }
    let a_init = playlist(ea, "").unwrap().map_uri;
    assert_eq!(a_init, playlist(eb, "").unwrap().map_uri);
    assert_eq!(body(ea, &a_init), body(eb, &a_init), "init segments");

    // A player sent to the other edge on every request: each blocking reload has the part it
    // asked for, and each part loads from the edge that answered.
    let mut seen = playlist(ea, "").unwrap();
    for round in 0..12 {
        let edge = if round % 2 == 0 { eb } else { ea };
        let (msn, part) = seen.next_part();
        let next = playlist(edge, &format!("?_HLS_msn={msn}&_HLS_part={part}"))
            .unwrap_or_else(|| panic!("no playlist for {msn}.{part} from {edge}"));
        // The edges' windows may start at different segments (one started later); the
        // player's position only moves forward.
        assert!(
            next.next_part() > (msn, part),
            "went back to {:?}",
            next.next_part()
        );
        let uri = next
            .segments
            .iter()
            .find(|s| s.msn == msn)
            .map(|s| s.parts.get(part).map(|p| p.uri.clone()))
            .unwrap_or_else(|| next.open_parts.get(part).map(|p| p.uri.clone()))
            .unwrap_or_else(|| panic!("{msn}.{part} not in {next:?}"));
        assert_eq!(uri, format!("cam-s{msn}p{part}.m4s"));
        assert!(!body(edge, &uri).is_empty());
        seen = next;
    }

    // hls.js in low-latency mode, in headless Chromium on another origin, plays from eb.
    let url = format!("http://{eb}/{STREAM}.m3u8");
    let played = hls::play_in_browser(&url, 8, publish_start, 1000, false);
    assert_eq!(played["ok"], true, "hls.js did not play: {played}");
    let latency = played["latency_ms"].as_array().map_or(0, Vec::len);
    assert!(latency > 0, "no latency samples: {played}");
    eprintln!("hls.js on an edge: {played}");
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[test]
fn an_origin_failover_moves_an_edge_playlist_forward_never_back() {
    require("ffmpeg", "ffmpeg");
    // Two origins: the stream's moves to the other when it dies.
    let two = ["--origin-target", "2"];
    let mut c = Cluster::init("hls-failover", "o1", "c", Some("origin"), &two);
    c.join("o2", "c", Some("origin"));
    c.join("ea", "a", Some("edge"));
    c.join("eb", "b", Some("edge"));
    let _publisher = media::publish(&c.node("ea").rtmp_url(STREAM), 180);
    let owner = c.wait_stream_origin(STREAM, Duration::from_secs(30));
    let eb = c.node("eb").http;
    let mut seen = wait_for("a playlist on eb", Duration::from_secs(30), || {
        playlist(eb, "")
    });

    // Every playlist eb gives, across the kill -9 of the stream's origin: the media sequence
    // and the part a player waits for never go back (the media missing while the pull moves
    // makes the numbers jump forward), and a segment name keeps its bytes.
    let mut bytes_of: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut newest_before_kill = None;
    for round in 0..40 {
        if round == 10 {
            newest_before_kill = Some(seen.next_part().0);
            c.by_id_mut(owner).kill();
        }
        let (msn, part) = seen.next_part();
        let Some(next) =
            playlist(eb, &format!("?_HLS_msn={msn}&_HLS_part={part}")).or_else(|| playlist(eb, ""))
        else {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        assert!(
            next.media_sequence >= seen.media_sequence,
            "media sequence went back"
        );
        assert!(next.next_part() >= seen.next_part(), "went back: {next:?}");
        for segment in &next.segments {
            let fetched = body(eb, &segment.uri);
            let kept = bytes_of
                .entry(segment.uri.clone())
                .or_insert_with(|| fetched.clone());
            assert!(*kept == fetched, "{} changed its bytes", segment.uri);
        }
        seen = next;
    }
    let before = newest_before_kill.expect("the origin was killed");
    let after = seen.next_part().0;
    assert!(
        after >= before + 5,
        "eb's playlist stalled after the failover: {before} -> {after}"
    );
}
