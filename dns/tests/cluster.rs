//! Membership from a (fake) cluster API, the on-disk cache, and `check-config`.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use skein_tests::dns::{DnsServer, TestEdge, config, demo_mmdb, temp_dir};

/// Serves `GET /api/v1/cluster` with whatever JSON is in `body`; stops on drop.
struct FakeCluster {
    port: u16,
    body: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FakeCluster {
    fn start(body: String) -> FakeCluster {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().expect("addr").port();
        let body = Arc::new(Mutex::new(body));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, st) = (body.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = l.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 2048];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let (status, text) = if req.starts_with("GET /api/v1/cluster ") {
                    ("200 OK", b.lock().map(|x| x.clone()).unwrap_or_default())
                } else {
                    ("404 Not Found", String::new())
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        FakeCluster {
            port,
            body,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, body: String) {
        if let Ok(mut b) = self.body.lock() {
            *b = body;
        }
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A node as skein-raft's `ClusterStatus` lists it; `edge` says whether it serves viewers.
fn node(id: u32, region: &str, edge: bool, e: &TestEdge) -> String {
    format!(
        r#"{{"id":{id},"name":"n{id}","region":"{region}","roles":{{"edge":{edge},"origin":{origin}}},"raft":"voter",
            "public_addr":{{"rtmp":"{ip}:{r}","http":"{ip}:{h}"}},"health":"up","extra":{{"x":1}}}}"#,
        ip = e.ip,
        r = e.rtmp_port,
        h = e.http_port,
        origin = !edge,
    )
}

fn doc(nodes: &[String]) -> String {
    format!(
        r#"{{"regions":[{{"name":"a","lat":50.11,"lon":8.68,"vips":[]}},
                        {{"name":"b","lat":38.95,"lon":-77.45}}],
            "nodes":[{}], "origins":[1], "term":3}}"#,
        nodes.join(",")
    )
}

#[test]
fn membership_comes_from_the_cluster_and_survives_a_restart_via_the_cache() {
    let a1 = TestEdge::start("127.0.1.1");
    let a9 = TestEdge::start("127.0.1.9"); // an origin: never handed out
    let b1 = TestEdge::start("127.0.2.1");
    let cluster = FakeCluster::start(doc(&[node(1, "a", true, &a1), node(2, "a", false, &a9)]));
    let seed = format!("127.0.0.1:{}", cluster.port);
    let extra =
        "[geo]\ncity = \"geo.mmdb\"\n[cluster]\npoll_interval_ms = 200\ncache = \"members.json\"\n";
    let dir = temp_dir("cluster");
    demo_mmdb(&dir);
    let cfg = config("", extra);
    let s = DnsServer::start_in(dir.clone(), &cfg, &["--cluster", &seed]);
    let a1_ip: IpAddr = "127.0.1.1".parse().unwrap();
    s.wait_until("cluster edge answered", |s| {
        s.dig(&["live.example.com", "A", "+subnet=127.0.1.0/24"])
            .addrs()
            == vec![a1_ip]
    });

    // a new edge appears in region b; it becomes answerable without a restart
    cluster.set(doc(&[
        node(1, "a", true, &a1),
        node(2, "a", false, &a9),
        node(3, "b", true, &b1),
    ]));
    let b1_ip: IpAddr = "127.0.2.1".parse().unwrap();
    s.wait_until("new edge in b (a dead → spill)", |s| {
        s.metrics()
            .contains("skein_dns_edge_health{region=\"b\",edge=\"n3\",state=\"up\"} 1")
    });
    assert!(dir.join("members.json").exists(), "cache written");
    // Confirmed by the cluster at every poll: the membership is fresh, not from the disk copy.
    let age =
        |s: &DnsServer| metric_value(&s.metrics(), "skein_dns_cluster_membership_age_seconds");
    assert!(age(&s).is_some_and(|a| a < 2.0), "{}", s.metrics());
    assert_eq!(
        metric_value(&s.metrics(), "skein_dns_cluster_membership_from_cache"),
        Some(0.0)
    );

    // restart with the cluster gone: the cache still gives the edges
    let mut s = s;
    let cache = std::fs::read(dir.join("members.json")).expect("cache");
    s.kill();
    drop(cluster);
    let dir2 = temp_dir("cluster2");
    std::fs::write(dir2.join("members.json"), cache).expect("copy cache");
    demo_mmdb(&dir2);
    let s2 = DnsServer::start_in(dir2, &cfg, &["--cluster", &seed]);
    s2.wait_until("answers from the cache", |s| {
        s.dig(&["live.example.com", "A", "+subnet=127.0.2.0/24"])
            .addrs()
            == vec![b1_ip]
    });
    assert!(
        s2.log().contains("cached cluster membership"),
        "{}",
        s2.log()
    );
    s2.wait_until("unreachable cluster logged", |s| {
        s.log().contains("cluster unreachable")
    });
    // It says how old its copy is, and the age grows while the cluster stays away.
    assert_eq!(
        metric_value(&s2.metrics(), "skein_dns_cluster_membership_from_cache"),
        Some(1.0)
    );
    let first = age(&s2).expect("age of the disk copy");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let later = age(&s2).expect("age of the disk copy");
    assert!(later >= first + 1.0, "age {first} then {later}");
}

/// The value of an unlabelled metric in a Prometheus text page.
fn metric_value(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A seed that accepts connections and never answers (and holds every connection it gets).
struct StalledSeed {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<usize>>,
}

impl StalledSeed {
    fn start() -> StalledSeed {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = thread::spawn(move || {
            let mut held = Vec::new();
            while !st.load(Ordering::Relaxed) && held.len() < 1_000 {
                match l.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
            held.len()
        });
        StalledSeed {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops holding connections; returns how many were opened to it.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

/// A seed that accepts and never answers is given up after the seed timeout and the next seed
/// is asked; meanwhile every query is answered, and memory stays bounded.
#[test]
fn a_stalled_seed_neither_blocks_answers_nor_membership_nor_grows_memory() {
    let a1 = TestEdge::start("127.0.1.1");
    let stalled = StalledSeed::start();
    let cluster = FakeCluster::start(doc(&[node(1, "a", true, &a1)]));
    let seeds = format!("127.0.0.1:{},127.0.0.1:{}", stalled.port, cluster.port);
    let extra =
        "[geo]\ncity = \"geo.mmdb\"\n[cluster]\npoll_interval_ms = 200\ncache = \"members.json\"\n";
    let dir = temp_dir("stalled-seed");
    demo_mmdb(&dir);
    let s = DnsServer::start_in(dir, &config("", extra), &["--cluster", &seeds]);
    let rss_at_start = s.rss_kib();
    let a1_ip: IpAddr = "127.0.1.1".parse().unwrap();
    s.wait_until("membership from the second seed", |s| {
        s.dig(&["live.example.com", "A", "+subnet=127.0.1.0/24"])
            .addrs()
            == vec![a1_ip]
    });
    // Another poll, waiting out the stalled seed; queries are answered throughout.
    for _ in 0..6 {
        assert_eq!(s.dig(&["example.com", "SOA"]).status, "NOERROR");
        thread::sleep(Duration::from_secs(1));
    }
    let rss_after = s.rss_kib();
    let held = stalled.stop();
    assert!(
        held >= 2,
        "the stalled seed was asked on every poll ({held} connections)"
    );
    assert!(
        rss_after < rss_at_start + 32 * 1024,
        "memory stays bounded: {rss_at_start} KiB at start, {rss_after} KiB later"
    );
}

#[test]
fn check_config_accepts_the_example_and_names_bad_fields() {
    let exe = skein_tests::binary("skein-dns");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/skein-dns.toml");
    let ok = Command::new(&exe)
        .args(["check-config", example])
        .output()
        .expect("run");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ok"));

    let dir = temp_dir("check");
    let bad = dir.join("bad.toml");
    let text = std::fs::read_to_string(example)
        .expect("example")
        .replace("high_water = 0.85", "high_water = 1.5");
    std::fs::write(&bad, text).expect("write");
    let out = Command::new(&exe)
        .args(["check-config", bad.to_str().expect("utf8")])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("answer.high_water"), "{err}");

    // the demo database generator
    let mmdb = dir.join("demo.mmdb");
    let out = Command::new(&exe)
        .args(["gen-demo-mmdb", "--out", mmdb.to_str().expect("utf8")])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(
        std::fs::metadata(&mmdb)
            .map(|m| m.len() > 100)
            .unwrap_or(false)
    );
    let _ = std::fs::remove_dir_all(dir);
}
