//! ffmpeg publishes a real H.264 + AAC stream to a running `skein`; ffmpeg and ffprobe play it
//! back over RTMP and HTTP-FLV. Codecs, picture size, frame counts, the keyframe start (GOP
//! cache) and timestamp continuity are checked on what the players received.

use std::time::Duration;

use skein_tests::media::{check_playback, packets, publish, record, stream_sizes};
use skein_tests::node::{NodeProcess, temp_dir};
use skein_tests::require;

fn check_recording(file: &std::path::Path, what: &str) {
    // 4 s at 25 fps, plus up to one cached GOP (25 frames) delivered at once.
    check_playback(&packets(file), 75..=140, 100, what);
}

#[test]
fn ffmpeg_publishes_and_plays_back_over_rtmp_and_http_flv() {
    require("ffmpeg", "ffmpeg");
    require("ffprobe", "ffmpeg");
    // public_details: the publisher's address is in the stream list without the token.
    let node = NodeProcess::start("127.0.0.1", "ffmpeg-interop", "public_details = true\n");
    let _publisher = publish(&node.rtmp_url("cam"), 30);

    let listed = node.wait_json("/api/v1/streams", Duration::from_secs(20), |v| {
        v["streams"][0]["media"]["video_codec"] == "H.264"
            && v["streams"][0]["media"]["audio_codec"] == "AAC"
    });
    let stream = &listed["streams"][0];
    assert_eq!(stream["key"], "live/cam");
    assert_eq!(stream["media"]["width"], 320);
    assert_eq!(stream["media"]["height"], 240);
    assert!(
        stream["publisher"]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    let probed = stream_sizes(&node.rtmp_url("cam"));
    assert_eq!(
        probed,
        vec![
            ("audio".into(), "aac".into(), 0, 0),
            ("video".into(), "h264".into(), 320, 240)
        ]
    );

    let dir = temp_dir("ffmpeg-interop-out");
    let (rtmp_out, flv_out) = (dir.join("rtmp.flv"), dir.join("http.flv"));
    let rtmp_url = node.rtmp_url("cam");
    let flv_url = node.flv_url("cam");
    let rtmp_player = {
        let out = rtmp_out.clone();
        std::thread::spawn(move || record(&rtmp_url, 4, &out))
    };
    let flv_player = {
        let out = flv_out.clone();
        std::thread::spawn(move || record(&flv_url, 4, &out))
    };
    // Both players are counted while they play.
    node.wait_json("/api/v1/streams", Duration::from_secs(10), |v| {
        v["streams"][0]["viewers"].as_u64() == Some(2)
    });
    for (player, what) in [(rtmp_player, "rtmp"), (flv_player, "http-flv")] {
        let out = player.join().unwrap();
        assert!(
            out.status.success(),
            "{what} player failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    check_recording(&rtmp_out, "rtmp");
    check_recording(&flv_out, "http-flv");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn second_ffmpeg_publish_on_a_taken_key_is_refused_and_the_first_goes_on() {
    require("ffmpeg", "ffmpeg");
    let node = NodeProcess::start("127.0.0.1", "ffmpeg-taken", "");
    let _first = publish(&node.rtmp_url("taken"), 30);
    node.wait_json("/api/v1/streams", Duration::from_secs(20), |v| {
        v["streams"][0]["bitrate_bps"].as_u64().unwrap_or(0) > 0
    });
    let mut second = publish(&node.rtmp_url("taken"), 5);
    let status = second.0.wait().unwrap();
    assert!(!status.success(), "the second publisher must be refused");
    let v = node.json("/api/v1/streams");
    assert_eq!(v["streams"].as_array().unwrap().len(), 1);
    assert!(
        v["streams"][0]["publisher"].is_object(),
        "the first publisher is still on"
    );
}
