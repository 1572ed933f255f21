//! `skein demo`, the README's main command: it must come up on loopback and print URLs that
//! really work — ffmpeg publishes to the printed RTMP URL, ffprobe plays the printed HTTP-FLV
//! URL, and the printed API URL lists the stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use skein_tests::{Process, binary, require};

fn find_url(lines: &[String], scheme: &str, suffix: &str) -> String {
    lines
        .iter()
        .flat_map(|l| l.split_whitespace())
        .find(|w| w.starts_with(scheme) && w.ends_with(suffix))
        .unwrap_or_else(|| {
            panic!(
                "demo printed no {scheme}...{suffix} URL:\n{}",
                lines.join("\n")
            )
        })
        .to_owned()
}

#[test]
fn demo_prints_urls_that_work() {
    require("ffmpeg", "ffmpeg");
    require("ffprobe", "ffmpeg");
    let mut demo = Process::spawn(
        Command::new(binary("skein"))
            .args([
                "demo",
                "--rtmp-port",
                "0",
                "--http-port",
                "0",
                "--key",
                "e2e",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let stdout = demo.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("metrics:")) {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("demo printed no banner:\n{}", lines.join("\n")));
        lines.push(line);
    }
    let publish = find_url(&lines, "rtmp://", "/live/e2e");
    let flv = find_url(&lines, "http://", "/live/e2e.flv");
    let streams_api = find_url(&lines, "http://", "/api/v1/streams");

    let _publisher = Process::spawn(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=25",
                "-t",
                "30",
            ])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "25",
                "-f",
                "flv",
                &publish,
            ])
            .stdin(Stdio::null()),
    );
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "15000000",
            "-show_entries",
            "stream=codec_name,width",
        ])
        .args(["-of", "csv=p=0", &flv])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success(),
        "ffprobe {flv}: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert_eq!(text.trim(), "h264,320");

    let body = http_get(&streams_api);
    assert!(body.contains("\"key\":\"live/e2e\""), "{body}");
}

/// GET over plain HTTP/1.0: the body as text.
fn http_get(url: &str) -> String {
    let rest = url.trim_start_matches("http://");
    let (authority, path) = rest.split_once('/').unwrap();
    let mut socket = TcpStream::connect(authority).unwrap();
    write!(socket, "GET /{path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    response
}
