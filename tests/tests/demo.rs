//! `skein demo`, the README's main command: it must bring up the whole local cluster (origins,
//! two regions of edges, skein-dns) and print commands that really work — ffmpeg publishes to
//! the printed edge in region a, ffprobe plays the printed region b URLs (RTMP and HTTP-FLV,
//! pulled once over the relay), the printed dig commands get each region's edges — and Ctrl-C
//! must stop every process it started.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use skein_tests::media::{publish, publish_to_end, streams};
use skein_tests::{Process, binary, free_port, http_request, require};

fn words_starting<'a>(lines: &'a [String], prefix: &str) -> Vec<&'a str> {
    lines
        .iter()
        .flat_map(|l| l.split_whitespace())
        // A URL with a query is printed in quotes, for the shell.
        .map(|w| w.trim_matches('\''))
        .filter(|w| w.starts_with(prefix))
        .collect()
}

fn find(lines: &[String], prefix: &str, suffix: &str) -> String {
    words_starting(lines, prefix)
        .into_iter()
        .find(|w| w.ends_with(suffix))
        .unwrap_or_else(|| panic!("demo printed no {prefix}…{suffix}:\n{}", lines.join("\n")))
        .to_owned()
}

/// The printed dig commands, without their comments.
fn dig_commands(lines: &[String]) -> Vec<Vec<String>> {
    lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("dig "))
        .map(|rest| {
            rest.split('#')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// Runs a dig command until every address it answers starts with `prefix` (edges are
/// "unknown" until skein-dns has probed them), bounded.
fn dig_until(args: &[String], prefix: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        let out = Command::new("dig")
            .args(["+time=2", "+tries=1"])
            .args(args)
            .output()
            .expect("run dig");
        last = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect();
        if !last.is_empty() && last.iter().all(|a| a.starts_with(prefix)) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "dig {} never answered only {prefix}*: last answer {last:?}",
        args.join(" ")
    );
}

#[test]
fn demo_brings_up_a_cluster_whose_printed_commands_work() {
    require("ffmpeg", "ffmpeg");
    require("ffprobe", "ffmpeg");
    require("dig", "bind9-dnsutils");
    let ports = [
        free_port("127.0.1.1"),
        free_port("127.0.1.1"),
        free_port("127.0.1.1"),
        free_port("127.0.0.1"),
        free_port("127.0.0.1"),
    ];
    let mut demo = Process::spawn(
        Command::new(binary("skein"))
            .arg("demo")
            .args(["--rtmp-port", &ports[0].to_string()])
            .args(["--http-port", &ports[1].to_string()])
            .args(["--internal-port", &ports[2].to_string()])
            .args(["--dns-port", &ports[3].to_string()])
            .args(["--dns-http-port", &ports[4].to_string()])
            .args(["--key", "e2e"])
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
    let mut lines: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !lines.iter().any(|l| l.contains("answer moves to region b")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("demo printed no complete banner:\n{}", lines.join("\n")),
        }
    }
    let text = lines.join("\n");
    // The dashboard's URL comes first, and the page answers there.
    let first = lines.iter().find(|l| !l.trim().is_empty()).unwrap();
    assert!(first.starts_with("Dashboard: http://"), "{text}");
    let dashboard = find(&lines, "http://", "/dashboard/");
    let dashboard_addr: SocketAddr = dashboard
        .trim_start_matches("http://")
        .trim_end_matches("/dashboard/")
        .parse()
        .unwrap();
    let (status, page) = http_request(dashboard_addr, "GET", "/dashboard/", "").unwrap();
    assert!(status == 200 && page.contains("app.js"), "{status} {page}");
    // The status table lists all seven nodes and the three live origins.
    for name in [
        "origin-1", "origin-2", "origin-3", "edge-a1", "edge-a2", "edge-b1", "edge-b2",
    ] {
        assert!(text.contains(name), "status lacks {name}:\n{text}");
    }
    assert!(text.contains("origins: 3 live of target 3"), "{text}");

    let publish_url = words_starting(&lines, "rtmp://127.0.1.")
        .into_iter()
        .find(|w| w.contains("/live/e2e?token="))
        .unwrap_or_else(|| panic!("demo printed no publish URL with a token:\n{text}"))
        .to_owned();
    let play_url = find(&lines, "rtmp://127.0.2.", "/live/e2e");
    let flv_url = find(&lines, "http://127.0.2.", "/live/e2e.flv");
    let relay_api = find(&lines, "http://127.0.2.", "/api/v1/relay");

    // Publishing needs the token the demo minted: without it the edge refuses.
    let (bare_url, _) = publish_url.split_once('?').unwrap();
    let refused = publish_to_end(bare_url, 2);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("a token is required"),
        "{said}"
    );
    let _publisher = publish(&publish_url, 60);
    let expected = vec![
        ("audio".to_owned(), "aac".to_owned()),
        ("video".to_owned(), "h264".to_owned()),
    ];
    assert_eq!(streams(&play_url), expected, "RTMP from region b");
    assert_eq!(streams(&flv_url), expected, "HTTP-FLV from region b");
    // The region b edge got the stream over the relay, not from the publisher's edge directly.
    let relay_addr: SocketAddr = relay_api
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1/relay")
        .parse()
        .unwrap();
    let (status, body) = http_request(relay_addr, "GET", "/api/v1/relay", "").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"pulls\":[\"live/e2e\"]"), "{body}");

    // GeoDNS: the printed queries get region a's, then region b's edges (ECS, then source).
    let digs = dig_commands(&lines);
    assert_eq!(digs.len(), 3, "{text}");
    dig_until(&digs[0], "127.0.1.");
    dig_until(&digs[1], "127.0.2.");
    dig_until(&digs[2], "127.0.2.");

    // Ctrl-C stops the demo and every process it printed.
    let pids: Vec<i32> = lines
        .iter()
        .find_map(|l| l.strip_prefix("processes (name pid): "))
        .expect("demo printed its processes")
        .split(", ")
        .filter_map(|entry| entry.split_whitespace().nth(1)?.parse().ok())
        .collect();
    assert_eq!(pids.len(), 8, "{text}");
    let interrupted = Command::new("kill")
        .args(["-INT", &demo.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(interrupted.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while demo.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "demo did not stop after Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} outlived the demo"
        );
    }
}
