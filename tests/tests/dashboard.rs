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
    // The stream's own series: its viewer on n2 (the page's player), and its bit rate on n1
    // where it is published; the page charts them for the chosen stream.
    let stream_range = || format!("stream={STREAM}&node=cluster&range=2m&step=5s");
    let seen = |metric: &str, node: &str, ok: fn(f64) -> bool| {
        let (status, answer) = history(
            cluster.node("n1"),
            &format!("metric={metric}&{}", stream_range()),
        );
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["stream"], STREAM, "{answer}");
        answer["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == node)?["points"]
            .as_array()?
            .iter()
            .any(|p| p["mean"].as_f64().is_some_and(ok))
            .then_some(())
    };
    wait_for(
        "the stream's viewer on n2 in its history",
        Duration::from_secs(30),
        || seen("viewers", "n2", |v| v >= 1.0),
    );
    wait_for(
        "the stream's bit rate on n1 in its history",
        Duration::from_secs(30),
        || seen("bitrate_bps", "n1", |v| v > 10_000.0),
    );
    let (status, refused) = history(
        cluster.node("n1"),
        &format!("metric=cpu&stream={STREAM}&range=1m"),
    );
    assert_eq!(status, 400, "a node metric is not a stream's: {refused}");
    browser.run("points #streams 60000");
    browser.run(&format!("shot #streams {}", shot("streams")));
    browser.run("points #node/n2 60000");
    browser.run(&format!("shot #node/n2 {}", shot("node")));
    browser.run(&format!("shot #cluster {}", shot("cluster")));
    browser.run("dns n1 up 60000");
    // skein-dns keeps its own history: answers per second for region a, after real queries.
    for _ in 0..20 {
        dns.dig(&["live.example.com", "A"]);
    }
    let dns_history = |query: &str| {
        let (status, body) = http_request(
            format!("127.0.0.1:{}", dns.metrics_port).parse().unwrap(),
            "GET",
            &format!("/api/v1/history?{query}"),
            "",
        )
        .expect("skein-dns answers its history");
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
        )
    };
    wait_for(
        "GeoDNS queries in its history",
        Duration::from_secs(30),
        || {
            let (_, answer) = dns_history("metric=queries&range=2m&step=5s");
            answer["points"]
                .as_array()?
                .iter()
                .any(|p| p["mean"].as_f64() > Some(0.0))
                .then_some(())
        },
    );
    let (status, catalogue) = dns_history("");
    assert_eq!(status, 200);
    let regions: Vec<&str> = catalogue["families"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "region")
        .and_then(|f| f["series"].as_array())
        .expect("region series")
        .iter()
        .filter_map(|s| s["label"].as_str())
        .collect();
    assert!(regions.contains(&"a"), "{catalogue}");
    let (status, body) = dns_history("metric=answers&region=a&range=1h&step=3s");
    assert_eq!(status, 400, "{body}");
    // The same through n1, as the page reads it.
    let (status, body) = http_request(
        cluster.node("n1").http,
        "GET",
        "/api/v1/dns/history?server=0&metric=answers&region=a&range=5m&step=5s",
        "",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    browser.run("points #dns 60000");
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

    // With dashboard.public = false, n2's views need its admin token; health, the cluster
    // document and the page's files do not. The page asks for the token and sends it.
    let n2 = cluster.node_mut("n2");
    let mut config = std::fs::read_to_string(&n2.config).unwrap();
    config.push_str("[dashboard]\npublic = false\n");
    std::fs::write(&n2.config, config).unwrap();
    n2.kill();
    n2.restart();
    let n2 = cluster.node("n2");
    let token = std::fs::read_to_string(n2.data_dir.join("admin.token")).unwrap();
    let token = token.trim();
    for (path, open) in [
        ("/api/v1/health", true),
        ("/api/v1/cluster", true),
        ("/dashboard/", true),
        ("/dashboard/app.js", true),
        ("/api/v1/summary", false),
        ("/api/v1/streams", false),
        ("/api/v1/history?metric=cpu&range=5m", false),
        ("/api/v1/events", false),
        ("/api/v1/members/n1/summary", false),
    ] {
        let (status, body) = http_request(n2.http, "GET", path, "").unwrap();
        assert_eq!(
            status == 200,
            open,
            "{path} without a token: {status} {body}"
        );
        if !open {
            assert_eq!(status, 401, "{path}: {body}");
            let (status, body) = http_request(
                n2.http,
                "GET",
                path,
                &format!("Authorization: Bearer {token}\r\n"),
            )
            .unwrap();
            assert_eq!(status, 200, "{path} with the token: {body}");
        }
    }
    let mut gated = Browser::open(&format!("http://{}/dashboard/", n2.http));
    gated.run("login not-the-token refused 30000");
    gated.run(&format!("login {token} ok 30000"));
    gated.run("node n1 up 30000");
    gated.run(&format!("shot #cluster {}", shot("cluster-with-token")));
    let last = gated.quit();
    drop(gated);
    assert_eq!(last["ok"], true, "{last}");
    for name in [
        "streams",
        "node",
        "cluster",
        "dns",
        "cluster-n3-down",
        "events",
        "cluster-with-token",
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
