//! A running `skein-dns` on loopback and `dig` as its client (the real DNS peer the tests ask),
//! a test edge that speaks the RTMP handshake and the health JSON, and config builders. Every
//! process and task is killed on drop.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Process, binary, free_port, http_request};

pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!("skein-dns-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A running skein-dns; killed on drop.
pub struct DnsServer {
    process: Process,
    pub port: u16,
    pub metrics_port: u16,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl DnsServer {
    /// Writes `config` (with `@PORT@`, `@METRICS@` and `@DIR@` substituted) and starts the
    /// binary; waits until it answers the SOA of example.com.
    pub fn start(tag: &str, config: &str, extra_args: &[&str]) -> DnsServer {
        let dir = temp_dir(tag);
        Self::start_in(dir, config, extra_args)
    }

    pub fn start_in(dir: PathBuf, config: &str, extra_args: &[&str]) -> DnsServer {
        let port = free_port("127.0.0.1");
        let metrics_port = free_port("127.0.0.1");
        let path = dir.join("skein-dns.toml");
        let text = config
            .replace("@PORT@", &port.to_string())
            .replace("@METRICS@", &metrics_port.to_string())
            .replace("@DIR@", &dir.display().to_string());
        std::fs::write(&path, text).expect("write config");
        let log = std::fs::File::create(dir.join("skein-dns.log")).expect("log file");
        let process = Process::spawn(
            Command::new(binary("skein-dns"))
                .arg("--config")
                .arg(&path)
                .args(extra_args)
                .arg("--log")
                .arg("skein_dns=debug")
                .stdout(Stdio::null())
                .stderr(log),
        );
        let s = DnsServer {
            process,
            port,
            metrics_port,
            dir,
            config: path,
        };
        s.wait_until("server answers", |s| {
            s.dig(&["example.com", "SOA"]).status == "NOERROR"
        });
        s
    }

    /// Rewrites the config file (same substitutions) for a live reload.
    pub fn rewrite_config(&self, config: &str) {
        let text = config
            .replace("@PORT@", &self.port.to_string())
            .replace("@METRICS@", &self.metrics_port.to_string())
            .replace("@DIR@", &self.dir.display().to_string());
        // Write via rename so the server never reads a half-written file.
        let tmp = self.dir.join("next.toml");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("replace config");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("skein-dns.log")).unwrap_or_default()
    }

    /// The server's resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.process.rss_kib()
    }

    pub fn dig(&self, args: &[&str]) -> Dig {
        dig(self.port, args)
    }

    /// Polls `cond` every 100 ms for up to 20 s; panics with the server log otherwise.
    pub fn wait_until(&self, what: &str, mut cond: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for _ in 0..400 {
            if cond(self) {
                return;
            }
            if Instant::now() > deadline {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for: {what}\n--- server log ---\n{}",
            self.log()
        );
    }

    /// The body of `GET /metrics` on the metrics port (empty when it does not answer).
    pub fn metrics(&self) -> String {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.metrics_port));
        http_request(addr, "GET", "/metrics", "")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Sends `signal` and waits up to `within` for the process to exit; `None` if it is still
    /// running then (it is killed on drop).
    pub fn signal_and_wait(&mut self, signal: i32, within: Duration) -> Option<ExitStatus> {
        self.process.signal(signal);
        self.process.wait_exit(within)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The parts of a dig answer the tests look at.
#[derive(Debug, Clone, Default)]
pub struct Dig {
    pub status: String,
    pub flags: Vec<String>,
    /// (name, ttl, type, data) of the answer section.
    pub answers: Vec<(String, u32, String, String)>,
    pub authority: Vec<(String, u32, String, String)>,
    pub additional: Vec<(String, u32, String, String)>,
    /// "addr/source/scope" from the OPT pseudosection.
    pub client_subnet: Option<String>,
    pub raw: String,
}

impl Dig {
    /// Addresses in the answer section.
    pub fn addrs(&self) -> Vec<IpAddr> {
        self.answers
            .iter()
            .filter(|a| a.2 == "A" || a.2 == "AAAA")
            .filter_map(|a| a.3.parse().ok())
            .collect()
    }
}

/// Runs dig against 127.0.0.1:port with short timeouts. Panics clearly when dig is missing.
pub fn dig(port: u16, args: &[&str]) -> Dig {
    let out = Command::new("dig")
        .arg("@127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .args(["+time=2", "+tries=1", "+norecurse"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run dig ({e}): install bind9-dnsutils (scripts/install-test-deps.sh)")
        });
    parse_dig(&String::from_utf8_lossy(&out.stdout))
}

fn parse_dig(text: &str) -> Dig {
    let mut d = Dig {
        raw: text.to_string(),
        ..Dig::default()
    };
    let mut section = "";
    for line in text.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            d.status = rest.split(',').next().unwrap_or_default().to_string();
        }
        if let Some(rest) = line.strip_prefix(";; flags: ") {
            let flags = rest.split(';').next().unwrap_or_default();
            d.flags = flags.split_whitespace().map(str::to_string).collect();
        }
        if let Some(rest) = line.strip_prefix("; CLIENT-SUBNET: ") {
            d.client_subnet = Some(rest.trim().to_string());
        }
        if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
            continue;
        }
        if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
            continue;
        }
        if line.starts_with(";; ADDITIONAL SECTION") {
            section = "additional";
            continue;
        }
        if line.trim().is_empty() || line.starts_with(';') {
            if line.trim().is_empty() {
                section = "";
            }
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        let rec = (
            f[0].to_string(),
            f[1].parse().unwrap_or(0),
            f[3].to_string(),
            f[4..].join(" "),
        );
        match section {
            "answer" => d.answers.push(rec),
            "authority" => d.authority.push(rec),
            "additional" => d.additional.push(rec),
            _ => {}
        }
    }
    d
}

/// A fake edge: RTMP handshake responder and `/api/v1/health` with a settable load. Runs on
/// its own threads; `kill()` (or drop) closes both listeners.
pub struct TestEdge {
    pub ip: String,
    pub rtmp_port: u16,
    pub http_port: u16,
    pub connections: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl TestEdge {
    /// Starts on ports the kernel picks, so parallel tests never race for a port.
    pub fn start(ip: &str) -> TestEdge {
        Self::start_on(ip, 0, 0)
    }

    pub fn start_on(ip: &str, rtmp_port: u16, http_port: u16) -> TestEdge {
        let connections = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let rtmp = TcpListener::bind((ip, rtmp_port)).expect("bind rtmp");
        let http = TcpListener::bind((ip, http_port)).expect("bind http");
        let rtmp_port = rtmp.local_addr().expect("rtmp addr").port();
        let http_port = http.local_addr().expect("http addr").port();
        rtmp.set_nonblocking(true).expect("nonblocking");
        http.set_nonblocking(true).expect("nonblocking");
        let t1 = {
            let stop = stop.clone();
            thread::spawn(move || {
                accept_loop(rtmp, stop, |mut s| {
                    let mut c0c1 = [0u8; 1537];
                    if s.read_exact(&mut c0c1).is_err() || c0c1[0] != 3 {
                        return;
                    }
                    let mut reply = vec![3u8];
                    reply.extend_from_slice(&[0u8; 1536]); // S1
                    reply.extend_from_slice(&c0c1[1..]); // S2 echoes C1
                    let _ = s.write_all(&reply);
                })
            })
        };
        let t2 = {
            let stop = stop.clone();
            let conns = connections.clone();
            let name = format!("{ip}:{rtmp_port}");
            thread::spawn(move || {
                accept_loop(http, stop, move |mut s| {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 512];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = format!(
                        r#"{{"status":"ok","node":"{name}","connections":{},"max_connections":100,"cpu":0.1,"egress_bps":0,"max_egress_bps":0,"draining":false}}"#,
                        conns.load(Ordering::Relaxed)
                    );
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                })
            })
        };
        TestEdge {
            ip: ip.to_string(),
            rtmp_port,
            http_port,
            connections,
            stop,
            threads: vec![t1, t2],
        }
    }

    /// TOML inline table for this edge.
    pub fn toml(&self, name: &str) -> String {
        format!(
            r#"{{ name = "{name}", addrs = ["{}"], rtmp_port = {}, http_port = {} }}"#,
            self.ip, self.rtmp_port, self.http_port
        )
    }

    pub fn set_connections(&self, n: u64) {
        self.connections.store(n, Ordering::Relaxed);
    }

    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Starts again on the same ports.
    pub fn restart(&mut self) {
        self.kill();
        let again = TestEdge::start_on(&self.ip, self.rtmp_port, self.http_port);
        again
            .connections
            .store(self.connections.load(Ordering::Relaxed), Ordering::Relaxed);
        *self = again;
    }
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        self.kill();
    }
}

fn accept_loop(l: TcpListener, stop: Arc<AtomicBool>, handle: impl Fn(TcpStream) + Send + 'static) {
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((s, _)) => {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                handle(s);
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Minimal config text shared by the tests: zone example.com, service "live", two regions.
pub fn config(regions: &str, extra: &str) -> String {
    format!(
        r#"
[listen]
udp = ["127.0.0.1:@PORT@"]
tcp = ["127.0.0.1:@PORT@"]
metrics = "127.0.0.1:@METRICS@"
udp_workers = 2

[[zones]]
origin = "example.com"
services = ["live"]
soa = {{ rname = "hostmaster.example.com", serial = 7, minimum = 30 }}
ns = [{{ name = "ns1.example.com", addrs = ["127.0.0.53", "::1"] }}, {{ name = "ns2.example.net" }}]

[health]
interval_ms = 200
fall = 2
rise = 2
timeout_ms = 300

{extra}

{regions}
"#
    )
}

/// The same config served by the given UDP engine ("hickory" or "batched").
pub fn with_engine(config: &str, engine: &str) -> String {
    config.replacen(
        "udp_workers = 2\n",
        &format!("udp_workers = 2\nudp_engine = \"{engine}\"\n"),
        1,
    )
}

/// Writes the demo MMDB into `dir` (with `skein-dns gen-demo-mmdb`) and returns its path.
pub fn demo_mmdb(dir: &Path) -> PathBuf {
    let p = dir.join("geo.mmdb");
    let out = Command::new(binary("skein-dns"))
        .args(["gen-demo-mmdb", "--out"])
        .arg(&p)
        .output()
        .expect("run skein-dns gen-demo-mmdb");
    assert!(
        out.status.success(),
        "gen-demo-mmdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    p
}
