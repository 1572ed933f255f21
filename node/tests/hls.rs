//! HLS and LL-HLS from a running `skein`: ffmpeg publishes a generated H.264 + AAC stream;
//! ffmpeg reads the HLS output back (codecs, frame count, monotonic timestamps), every
//! segment starts on a keyframe, every playlist passes the RFC 8216bis validator, blocking
//! reloads answer once the asked-for part exists, and the token policy covers every URI.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use skein_tests::hls::{self, MediaPlaylist};
use skein_tests::media::{check_playback, packets, publish, tracks};
use skein_tests::node::{NodeProcess, temp_dir};
use skein_tests::require;

/// GETs and validates the playlist at `path`.
fn playlist(addr: SocketAddr, path: &str) -> MediaPlaylist {
    let answer = hls::get(addr, path).expect("node answers");
    assert_eq!(answer.status, 200, "{path}: {}", answer.text());
    assert_eq!(
        answer.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
    assert_eq!(answer.header("cache-control"), Some("public, max-age=1"));
    hls::validate(&answer.text()).unwrap_or_else(|e| panic!("{path}: {e}\n{}", answer.text()))
}

/// GETs a media resource, checking it is immutable for caches.
fn media(addr: SocketAddr, uri: &str) -> Vec<u8> {
    let answer = hls::get(addr, &format!("/live/{uri}")).expect("node answers");
    assert_eq!(answer.status, 200, "{uri}: {}", answer.text());
    assert_eq!(
        answer.header("cache-control"),
        Some("public, max-age=3600, immutable")
    );
    assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
    answer.body
}

#[test]
fn ffmpeg_reads_ll_hls_and_playlists_follow_the_spec() {
    require("ffmpeg", "ffmpeg");
    require("ffprobe", "ffmpeg");
    let node = NodeProcess::start("127.0.0.1", "hls", "[hls]\nidle_secs = 2\n");
    let _publisher = publish(&node.rtmp_url("cam"), 40);
    let addr = node.http;

    // The first request starts the segmenter; it answers once a whole segment exists.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let answer = hls::get(addr, "/live/cam.m3u8").expect("node answers");
        if answer.status == 200 {
            break hls::validate(&answer.text()).unwrap();
        }
        assert!(Instant::now() < deadline, "no playlist: {}", answer.text());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!first.segments.is_empty());

    // Blocking reloads: ask for the next part, then for a whole segment ahead.
    let mut seen = first.clone();
    for _ in 0..8 {
        let (msn, part) = seen.next_part();
        let next = playlist(
            addr,
            &format!("/live/cam.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
        );
        let has_it = next
            .segments
            .iter()
            .any(|s| s.msn == msn && s.parts.len() > part)
            || next.segments.iter().any(|s| s.msn > msn)
            || (next.next_part().0 == msn && next.open_parts.len() > part);
        assert!(has_it, "asked for {msn}.{part}, got {next:?}");
        assert!(next.media_sequence >= seen.media_sequence, "went back");
        seen = next;
    }
    let (msn, _) = seen.next_part();
    let whole = playlist(addr, &format!("/live/cam.m3u8?_HLS_msn={msn}"));
    assert!(whole.segments.iter().any(|s| s.msn == msn));
    let too_far = hls::get(addr, &format!("/live/cam.m3u8?_HLS_msn={}", msn + 10)).unwrap();
    assert_eq!(too_far.status, 400);
    let bad = hls::get(addr, "/live/cam.m3u8?_HLS_part=1").unwrap();
    assert_eq!(bad.status, 400);

    // Segments and parts: the init segment joined with any segment is a playable file that
    // starts on a keyframe; parts joined are the segment.
    let dir = temp_dir("hls-out");
    let init = media(addr, &whole.map_uri);
    for segment in &whole.segments {
        let bytes = media(addr, &segment.uri);
        let file = dir.join(format!("{}.mp4", segment.msn));
        std::fs::write(&file, [init.as_slice(), &bytes].concat()).unwrap();
        let packets = packets(&file);
        let (video, _) = tracks(&packets);
        assert!(
            video[0].keyframe,
            "segment {} starts on a non-keyframe",
            segment.msn
        );
        if !segment.parts.is_empty() {
            let joined: Vec<u8> = segment
                .parts
                .iter()
                .flat_map(|p| media(addr, &p.uri))
                .collect();
            assert_eq!(joined, bytes, "segment {} is not its parts", segment.msn);
        }
    }
    let first_msn = whole.media_sequence;
    for missing in [format!("cam-s{first_msn}p99.m4s"), "cam-init999.mp4".into()] {
        let answer = hls::get(addr, &format!("/live/{missing}")).unwrap();
        assert_eq!(answer.status, 404, "{missing}");
    }

    // ffmpeg plays the playlist: H.264 + AAC, 4 s worth of frames, timestamps monotonic.
    let out = dir.join("played.mp4");
    let url = format!("http://{addr}/live/cam.m3u8");
    let played = skein_tests::cluster::run_bounded(
        std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i", &url])
            .args(["-t", "4", "-c", "copy"])
            .arg(&out),
        Duration::from_secs(60),
    );
    assert!(
        played.status.success(),
        "{}",
        String::from_utf8_lossy(&played.stderr)
    );
    assert_eq!(
        skein_tests::media::streams(&out.display().to_string()),
        vec![
            ("audio".into(), "aac".into()),
            ("video".into(), "h264".into())
        ]
    );
    // 4 s at 25 fps from a keyframe.
    check_playback(&packets(&out), 90..=110, 150, "ffmpeg over HLS");

    // The segmenter is the stream's one viewer while requests come, and goes when they stop.
    let streams = node.json("/api/v1/streams");
    assert_eq!(streams["streams"][0]["viewers"], 1, "{streams}");
    node.wait_json("/api/v1/streams", Duration::from_secs(20), |v| {
        v["streams"][0]["viewers"] == 0
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mints a token with the node's key file: `skein token ACTION live/cam --keys-file ...`.
fn mint(node: &NodeProcess, action: &str) -> String {
    let keys = node.dir.join("data").join("stream-keys.json");
    let out = skein_tests::cluster::run_bounded(
        std::process::Command::new(skein_tests::binary("skein"))
            .args(["token", action, "live/cam", "--keys-file"])
            .arg(keys),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn play_tokens_cover_the_playlist_and_every_uri_in_it() {
    require("ffmpeg", "ffmpeg");
    let node = NodeProcess::start_with_auth(
        "127.0.0.1",
        "hls-auth",
        "[auth]\npublish = \"open\"\n[auth.apps.live]\nplay = \"token\"\n",
        "",
    );
    let _publisher = publish(&node.rtmp_url("cam"), 30);
    let addr = node.http;
    let status = |path: &str| hls::get(addr, path).expect("node answers").status;
    assert_eq!(status("/live/cam.m3u8"), 401);
    let publish_token = mint(&node, "publish");
    assert_eq!(
        status(&format!("/live/cam.m3u8?token={publish_token}")),
        403
    );

    let token = mint(&node, "play");
    let query = format!("token={token}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let answer = hls::get(addr, &format!("/live/cam.m3u8?{query}")).unwrap();
        if answer.status == 200 {
            break hls::validate(&answer.text()).unwrap();
        }
        assert!(Instant::now() < deadline, "no playlist: {}", answer.text());
        std::thread::sleep(Duration::from_millis(200));
    };
    let segment = &listed.segments[0];
    let uris = [&listed.map_uri, &segment.uri]
        .into_iter()
        .chain(segment.parts.iter().map(|p| &p.uri));
    for uri in uris {
        let bare = uri.strip_suffix(&format!("?{query}"));
        let bare = bare.unwrap_or_else(|| panic!("{uri} does not carry the token"));
        assert_eq!(
            status(&format!("/live/{bare}")),
            401,
            "{bare} without the token"
        );
        media(addr, uri);
    }
}
