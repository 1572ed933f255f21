//! Real media peers: ffmpeg publishing a test pattern, ffmpeg recording what a viewer
//! receives, ffprobe reading streams and packets.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Process;
use crate::cluster::{run_bounded, wait_child};

/// ffmpeg publishing a lavfi test pattern (H.264, keyframe every second, + AAC) in real time to
/// `url` for `seconds`; killed on drop.
pub fn publish(url: &str, seconds: u32) -> Process {
    publish_from(Command::new("ffmpeg"), url, seconds)
}

/// [`publish`] with a given `ffmpeg` command (e.g. one that runs in a network namespace).
pub fn publish_from(mut ffmpeg: Command, url: &str, seconds: u32) -> Process {
    Process::spawn(
        ffmpeg
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-t", &seconds.to_string()])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args(["-g", "25", "-bf", "0", "-pix_fmt", "yuv420p"])
            .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// One packet as ffprobe reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// `video` or `audio`.
    pub kind: String,
    pub dts_ms: f64,
    /// ffprobe flags the packet a key frame.
    pub keyframe: bool,
}

/// The video and the audio packets of a recording, in order.
pub fn tracks(packets: &[Packet]) -> (Vec<&Packet>, Vec<&Packet>) {
    let of = |kind: &str| packets.iter().filter(|p| p.kind == kind).collect();
    (of("video"), of("audio"))
}

/// Checks what a player received: `video_frames` video and more than `min_audio` audio
/// packets, a keyframe first, timestamps that never go back nor leave a hole of 500 ms.
pub fn check_playback(
    packets: &[Packet],
    video_frames: std::ops::RangeInclusive<usize>,
    min_audio: usize,
    what: &str,
) {
    let (video, audio) = tracks(packets);
    assert!(
        video_frames.contains(&video.len()),
        "{what}: {} video frames",
        video.len()
    );
    assert!(
        audio.len() > min_audio,
        "{what}: {} audio frames",
        audio.len()
    );
    assert!(
        video[0].keyframe,
        "{what}: playback must start on a keyframe"
    );
    for track in [&video, &audio] {
        for pair in track.windows(2) {
            let (a, b) = (pair[0].dts_ms, pair[1].dts_ms);
            assert!(b >= a, "{what}: timestamp went back from {a} to {b} ms");
            assert!(
                b - a < 500.0,
                "{what}: hole of {} ms in the timestamps",
                b - a
            );
        }
    }
}

/// A viewer: ffmpeg playing `url` over one connection and copying `seconds` of media into an
/// FLV file. It gives up when the server sends nothing for 30 s.
pub struct Recording {
    process: Process,
    pub file: PathBuf,
    url: String,
}

impl Recording {
    pub fn start(url: &str, seconds: u32, file: &Path) -> Self {
        Self::start_from(Command::new("ffmpeg"), url, seconds, file)
    }

    /// [`Recording::start`] with a given `ffmpeg` command (e.g. one in a network namespace).
    pub fn start_from(mut ffmpeg: Command, url: &str, seconds: u32, file: &Path) -> Self {
        let _ = std::fs::remove_file(file);
        let process = Process::spawn(
            ffmpeg
                .args(["-hide_banner", "-loglevel", "error", "-y"])
                .args(["-rw_timeout", "30000000", "-i", url])
                .args(["-c", "copy", "-t", &seconds.to_string(), "-f", "flv"])
                // Every packet reaches the file at once: a killed viewer's file shows what it got.
                .args(["-flush_packets", "1"])
                .arg(file)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        Self {
            process,
            file: file.to_owned(),
            url: url.to_owned(),
        }
    }

    /// Waits (bounded) until media reached the file: the viewer is playing.
    pub fn wait_playing(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while std::fs::metadata(&self.file).map_or(0, |m| m.len()) < 4096 {
            assert!(
                Instant::now() < deadline,
                "viewer of {} received nothing within {timeout:?}",
                self.url
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (bounded) for the recording to end, checks that ffmpeg succeeded, and returns the
    /// packets it got.
    pub fn finish(mut self, timeout: Duration) -> Vec<Packet> {
        let status = wait_child(&mut self.process.0, timeout)
            .unwrap_or_else(|| panic!("viewer of {} still running after {timeout:?}", self.url));
        let mut stderr = String::new();
        if let Some(mut pipe) = self.process.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        assert!(
            status.success(),
            "viewer of {} failed ({status}): {stderr}",
            self.url
        );
        packets(&self.file)
    }
}

/// Packets of a media file, in file order.
pub fn packets(file: &Path) -> Vec<Packet> {
    let out = run_bounded(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "packet=codec_type,dts_time,flags",
            ])
            .args(["-of", "json"])
            .arg(file),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["packets"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            Some(Packet {
                kind: p["codec_type"].as_str()?.to_owned(),
                dts_ms: p["dts_time"].as_str()?.parse::<f64>().ok()? * 1000.0,
                keyframe: p["flags"].as_str().unwrap_or("").contains('K'),
            })
        })
        .collect()
}

/// What a recording shows about continuity.
#[derive(Debug)]
pub struct Continuity {
    /// Media time covered by video packets, ms.
    pub span_ms: f64,
    /// Largest step between consecutive video timestamps, ms.
    pub largest_step_ms: f64,
    pub video_packets: usize,
    pub audio_packets: usize,
    /// Audio or video packets with the same timestamp as the one before: a frame seen twice
    /// (the test pattern never has two frames of one kind at one time).
    pub repeated: usize,
}

/// Checks that audio and video timestamps never go back, and measures the coverage.
pub fn continuity(packets: &[Packet]) -> Continuity {
    let mut result = Continuity {
        span_ms: 0.0,
        largest_step_ms: 0.0,
        video_packets: 0,
        audio_packets: 0,
        repeated: 0,
    };
    for kind in ["video", "audio"] {
        let dts: Vec<f64> = packets
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.dts_ms)
            .collect();
        for (i, pair) in dts.windows(2).enumerate() {
            assert!(
                pair[1] >= pair[0],
                "{kind} timestamp went back at packet {}: {} ms after {} ms",
                i + 1,
                pair[1],
                pair[0]
            );
        }
        result.repeated += dts.windows(2).filter(|p| p[1] == p[0]).count();
        if kind == "video" {
            result.video_packets = dts.len();
            result.span_ms =
                dts.last().copied().unwrap_or(0.0) - dts.first().copied().unwrap_or(0.0);
            result.largest_step_ms = dts.windows(2).map(|p| p[1] - p[0]).fold(0.0, f64::max);
        } else {
            result.audio_packets = dts.len();
        }
    }
    result
}

/// Streams of a file or URL as ffprobe reports them: sorted (codec_type, codec_name).
pub fn streams(input: &str) -> Vec<(String, String)> {
    stream_sizes(input)
        .into_iter()
        .map(|(kind, codec, _, _)| (kind, codec))
        .collect()
}

/// Streams of a file or URL with their picture size: sorted (codec_type, codec_name, width,
/// height); audio streams have size 0 × 0.
pub fn stream_sizes(input: &str) -> Vec<(String, String, i64, i64)> {
    let out = run_bounded(
        Command::new("ffprobe")
            .args(["-v", "error", "-rw_timeout", "20000000"])
            .args([
                "-show_entries",
                "stream=codec_type,codec_name,width,height",
                "-of",
                "json",
            ])
            .arg(input),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "ffprobe {input}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut s: Vec<_> = v["streams"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap_or("").to_owned(),
                s["codec_name"].as_str().unwrap_or("").to_owned(),
                s["width"].as_i64().unwrap_or(0),
                s["height"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    s.sort();
    s
}

/// Records `seconds` of `url` into an FLV file with ffmpeg (stream copy), bounded in time.
pub fn record(url: &str, seconds: u32, out: &Path) -> std::process::Output {
    run_bounded(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(["-rw_timeout", "10000000", "-i", url])
            .args(["-c", "copy", "-t", &seconds.to_string(), "-f", "flv"])
            .arg(out)
            .stdin(Stdio::null()),
        Duration::from_secs(u64::from(seconds) + 60),
    )
}

/// ffmpeg publishing `seconds` of a test pattern to `url`, waited for (bounded): for publishes
/// that are expected to be refused, whose status and stderr (`Server error: ...`) tell why.
pub fn publish_to_end(url: &str, seconds: u32) -> std::process::Output {
    run_bounded(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
            .args(["-t", &seconds.to_string()])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-f", "flv", url])
            .stdin(Stdio::null()),
        Duration::from_secs(u64::from(seconds) + 30),
    )
}

/// ffprobe reading the streams of `input`, waited for (bounded), whatever the outcome.
pub fn probe(input: &str) -> std::process::Output {
    run_bounded(
        Command::new("ffprobe")
            .args(["-v", "error", "-rw_timeout", "10000000"])
            .args(["-show_entries", "stream=codec_type", "-of", "json"])
            .arg(input),
        Duration::from_secs(40),
    )
}
