//! Helpers for the node's end-to-end tests: start `skein` as a real process on loopback, talk
//! HTTP to it, and require the real peers (ffmpeg, ffprobe) to be present.

#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use skein_tests::media::publish;
pub use skein_tests::{free_port, http_request};

/// Fails the test with a clear message when a real peer is missing (never skips silently).
pub fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "{tool} is required by this test; run scripts/install-test-deps.sh (Debian package ffmpeg)"
    );
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skein-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `skein run` process, killed when dropped.
pub struct NodeProcess {
    child: Child,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
}

impl NodeProcess {
    /// Starts a node on `ip` with free ports and `extra` TOML appended to the config.
    pub fn start(ip: &str, name: &str, extra: &str) -> Self {
        let rtmp: SocketAddr = format!("{ip}:{}", free_port(ip)).parse().unwrap();
        let http: SocketAddr = format!("{ip}:{}", free_port(ip)).parse().unwrap();
        let dir = temp_dir(name);
        let config = dir.join("skein.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\nname = \"{name}\"\n[rtmp]\nlisten = \"{rtmp}\"\n[http]\nlisten = \"{http}\"\nadmin_token = \"secret\"\n{extra}"
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_skein"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start skein");
        let node = Self { child, rtmp, http };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(node.http, "/api/v1/health").is_none() {
            assert!(Instant::now() < deadline, "node did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://{}/live/{key}", self.rtmp)
    }

    pub fn flv_url(&self, key: &str) -> String {
        format!("http://{}/live/{key}.flv", self.http)
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = http_get(self.http, path).expect("node answers");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("JSON body")
    }

    /// Polls `path` until `check` accepts its JSON, or fails after `timeout`.
    pub fn wait_json(
        &self,
        path: &str,
        timeout: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.json(path);
            if check(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{path} never matched: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_request(addr, "GET", path, "")
}

/// Records `seconds` of `url` into an FLV file with ffmpeg (stream copy).
pub fn record(url: &str, seconds: u32, out: &std::path::Path) -> std::process::Output {
    Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-rw_timeout",
            "10000000",
        ])
        .args([
            "-i",
            url,
            "-c",
            "copy",
            "-t",
            &seconds.to_string(),
            "-f",
            "flv",
        ])
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .expect("run ffmpeg")
}

/// Packets of a media file as ffprobe reports them: (codec_type, dts in ms, is_keyframe).
pub fn packets(file: &std::path::Path) -> Vec<(String, f64, bool)> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,dts_time,flags",
            "-of",
            "json",
        ])
        .arg(file)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["codec_type"].as_str().unwrap_or("").to_owned(),
                p["dts_time"]
                    .as_str()
                    .and_then(|t| t.parse::<f64>().ok())
                    .unwrap_or(f64::NAN)
                    * 1000.0,
                p["flags"].as_str().unwrap_or("").contains('K'),
            )
        })
        .collect()
}

/// Streams of a media file or URL: (codec_type, codec_name, width, height).
pub fn streams(input: &str) -> Vec<(String, String, i64, i64)> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "10000000",
            "-show_entries",
            "stream=codec_type,codec_name,width,height",
            "-of",
            "json",
        ])
        .arg(input)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {input} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut s: Vec<_> = v["streams"]
        .as_array()
        .unwrap()
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
