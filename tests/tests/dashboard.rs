//! The dashboard and the history API against a real cluster: `skein` processes on loopback,
//! ffmpeg publishing, headless Chromium (tests/browser/dashboard.mjs) keeping one page open
//! while nodes join and die. Screenshots of every view are saved in the test's directory and,
//! when `SKEIN_SCREENSHOTS` names a folder, copied there for a person to look at.
//!
//! Timing is never asserted: every wait is for an eventual condition with a generous bound.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use skein_tests::cluster::{Cluster, Member, wait_for};
use skein_tests::dns::{self, DnsServer};
use skein_tests::{Process, http_request, media, require};

const STREAM: &str = "live/dash";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The browser driver: one command per line in, one JSON line per command out.
struct Browser {
    process: Process,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Browser {
    fn open(url: &str) -> Self {
        let mut process = Process::spawn(
            Command::new("node")
                .arg(browser_dir().join("dashboard.mjs"))
                .arg(url)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        );
        let stdin = process.0.stdin.take().unwrap();
        let stdout = process.0.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            process,
            stdin,
            lines,
        }
    }

    /// Sends `command` and returns its answer; panics unless it says `ok`.
    fn run(&mut self, command: &str) -> Value {
        writeln!(self.stdin, "{command}").unwrap();
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("the browser did not answer {command:?}"));
        let answer: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(answer["ok"], true, "{command}: {answer}");
        answer
    }

    /// Closes the browser; returns its last line.
    fn quit(&mut self) -> Value {
        writeln!(self.stdin, "quit").unwrap();
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the browser's last line");
        serde_json::from_str(&line).unwrap()
    }
}

impl Drop for Browser {
    /// Lets the driver close Chromium (a SIGKILLed driver would leave it running), then the
    /// process is killed if it is still there.
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = skein_tests::cluster::wait_child(&mut self.process.0, Duration::from_secs(10));
    }
}

fn history(node: &Member, query: &str) -> (u16, Value) {
    let (status, body) = http_request(node.http, "GET", &format!("/api/v1/history?{query}"), "")
        .expect("history answers");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The vendored player is the pinned npm package's build.
#[test]
fn the_vendored_player_is_the_pinned_package() {
    let vendored = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/dashboard/vendor/mpegts.js");
    let built = browser_dir().join("node_modules/mpegts.js/dist/mpegts.js");
    let built = std::fs::read(&built).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run npm ci in tests/browser (scripts/install-test-deps.sh)",
            built.display()
        )
    });
    assert!(
        std::fs::read(vendored).unwrap() == built,
        "node/dashboard/vendor/mpegts.js differs from the mpegts.js pinned in tests/browser/package.json: copy its dist/mpegts.js"
    );
}

#[test]
fn the_dashboard_follows_a_real_cluster_and_plays_its_stream() {
    require("ffmpeg", "ffmpeg");
    require("node", "nodejs");
    require("chromium", "chromium");
    require("dig", "bind9-dnsutils");
    let mut cluster = Cluster::init("dashboard", "n1", "a", None, &[]);
    cluster.join("n2", "b", None);
    // GeoDNS reads the cluster through n1, and n1's dashboard reads GeoDNS: n1 restarts with
    // the server's address and its region's coordinates (which GeoDNS needs).
    let dns = DnsServer::start(
        "dashboard-dns",
        &dns::config(
            "",
            &format!(
                "[cluster]\nseeds = [\"{}\"]\npoll_interval_ms = 500\ncache = \"@DIR@/cluster.json\"",
                cluster.node("n1").http
            ),
        ),
        &[],
    );
    let n1 = cluster.node_mut("n1");
    let mut config = std::fs::read_to_string(&n1.config).unwrap();
    config.push_str(&format!(
        "[cluster]\nregion_coordinates = [50.1, 8.7]\n[dashboard]\ndns = [\"127.0.0.1:{}\"]\n",
        dns.metrics_port
    ));
    std::fs::write(&n1.config, config).unwrap();
    n1.kill();
    n1.restart();
    let shots = cluster.root().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = |name: &str| shots.join(format!("{name}.png")).display().to_string();

    let n1 = cluster.node("n1");
    let mut browser = Browser::open(&format!("http://{}/dashboard/", n1.http));
    browser.run("node n1 up 30000");
    browser.run("node n2 up 30000");

    // A node that joins appears on the open page.
    cluster.join("n3", "c", None);
    browser.run("node n3 up 30000");

    let _publisher = media::publish(&cluster.node("n1").rtmp_url(STREAM), 120);
    let charts = browser.run("points #cluster 60000");
    assert!(charts["points"]["c-cpu"].as_u64().unwrap() > 0, "{charts}");
    let played = browser.run(&format!("play {STREAM} n2 60000"));
    assert!(played["video"]["frames"].as_u64().unwrap() > 0, "{played}");
    assert!(
        played["video"]["url"]
            .as_str()
            .unwrap()
            .contains(&cluster.node("n2").http.to_string())
    );
    browser.run(&format!("shot #streams {}", shot("streams")));
    browser.run("points #node/n2 60000");
    browser.run(&format!("shot #node/n2 {}", shot("node")));
    browser.run(&format!("shot #cluster {}", shot("cluster")));
    browser.run("dns n1 up 60000");
    browser.run(&format!("shot #dns {}", shot("dns")));

    // Bad ranges and steps are refused, with the reason.
    let n1 = cluster.node("n1");
    for (query, reason) in [
        (
            "metric=cpu&range=1h&step=3s",
            "multiple of the sample interval",
        ),
        ("metric=cpu&range=7d&step=5s", "points asked"),
        ("metric=cpu&from=2000&to=1000", "empty"),
        ("metric=nope", "unknown metric"),
        ("metric=cpu&range=soon", "not a duration"),
    ] {
        let (status, body) = history(n1, query);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(reason),
            "{query}: {body}"
        );
    }

    // Two nodes with different loads: n1 has the publisher, n2 the player. The cluster series
    // carries each node's own points, point by point, under its own name.
    let range = format!("from={}&to={}&step=5s", now_s() - 120, now_s());
    let whole = wait_for("both loads in the history", Duration::from_secs(30), || {
        let (_, whole) = history(n1, &format!("metric=publishers&node=cluster&{range}"));
        let has = |name: &str, value: f64| {
            whole["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["name"] == name)?["points"]
                .as_array()?
                .iter()
                .any(|p| p["mean"].as_f64() == Some(value))
                .then_some(())
        };
        has("n1", 1.0)?;
        has("n2", 0.0)?;
        Some(whole)
    });
    for node in ["n1", "n2", "n3"] {
        let own = &history(cluster.node(node), &format!("metric=publishers&{range}")).1;
        assert_eq!(own["node"], node);
        let from_cluster = whole["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == node)
            .unwrap();
        let pairs: Vec<(&Value, &Value)> = own["points"]
            .as_array()
            .unwrap()
            .iter()
            .zip(from_cluster["points"].as_array().unwrap())
            .collect();
        assert!(!pairs.is_empty());
        for (mine, theirs) in pairs {
            assert_eq!(mine["t"], theirs["t"]);
            // The last step may have gained a sample between the two queries.
            if mine["t"].as_u64().unwrap() / 1000 + 10 < now_s() {
                assert_eq!(mine["mean"], theirs["mean"], "{node} at {}", mine["t"]);
            }
        }
    }
    let points = whole["points"].as_array().unwrap();
    assert!(
        points
            .iter()
            .any(|p| p["nodes"] == 3 && p["value"].as_f64() == Some(1.0)),
        "the cluster sum counts three nodes and one publisher: {points:?}"
    );

    // A SIGKILLed node turns down on the open page, and its series becomes a gap.
    cluster.node_mut("n3").kill();
    browser.run("node n3 down 30000");
    browser.run(&format!("shot #cluster {}", shot("cluster-n3-down")));
    browser.run(&format!("shot #events {}", shot("events")));
    browser.run("viewport 390 844");
    browser.run(&format!("shot #cluster {}", shot("phone-cluster")));
    let phone_width: Value = browser.run("points #cluster 30000");
    assert!(phone_width["points"]["c-cpu"].as_u64() > Some(0));
    let (_, after) = history(
        cluster.node("n1"),
        "metric=cpu&node=cluster&range=1m&step=5s",
    );
    let n3 = after["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "n3")
        .unwrap();
    assert_eq!(n3["answered"], false, "{n3}");
    assert!(
        after["points"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["nodes"].as_u64() < Some(3))
    );

    let events = cluster.node("n1").json("/api/v1/events");
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"joined") && kinds.contains(&"down"),
        "{events}"
    );

    let last = browser.quit();
    drop(browser);
    assert_eq!(last["ok"], true, "{last}");
    for name in [
        "streams",
        "node",
        "cluster",
        "dns",
        "cluster-n3-down",
        "events",
    ] {
        let file = shots.join(format!("{name}.png"));
        assert!(
            std::fs::metadata(&file).is_ok_and(|m| m.len() > 10_000),
            "{}",
            file.display()
        );
    }
    if let Some(folder) = std::env::var_os("SKEIN_SCREENSHOTS") {
        std::fs::create_dir_all(&folder).unwrap();
        for entry in std::fs::read_dir(&shots).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), Path::new(&folder).join(entry.file_name())).unwrap();
        }
    }
}
