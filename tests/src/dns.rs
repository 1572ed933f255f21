//! A running `skein-dns` on loopback, and `dig` as its client: the real DNS peer the tests
//! ask.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{binary, free_port, http_request};

/// A fresh directory for one server's config, cache and log.
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
    child: Child,
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
        let child = Command::new(binary("skein-dns"))
            .arg("--config")
            .arg(&path)
            .args(extra_args)
            .arg("--log")
            .arg("skein_dns=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skein-dns");
        let s = DnsServer {
            child,
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

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
