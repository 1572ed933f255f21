//! A standalone `skein run` process on loopback with free ports, and plain HTTP to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Process, binary, free_port, http_request};

/// A fresh directory for one test's files, removed first if an earlier run left it.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skein-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `skein run` process, killed (and its directory removed) when dropped.
pub struct NodeProcess {
    pub process: Process,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    /// The node's directory: its config, and its data directory `data`.
    pub dir: PathBuf,
}

/// The `[auth]` of test nodes that are not about authorisation: anyone may publish.
pub const OPEN_AUTH: &str = "[auth]\npublish = \"open\"\n";

impl Drop for NodeProcess {
    /// Kills the node, then removes its directory (config, data, logs).
    fn drop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl NodeProcess {
    /// Starts a node on `ip` with free ports, open publishing and `extra` TOML after the
    /// `[http]` keys (so bare keys are `[http]` ones; later sections may follow); waits until
    /// its HTTP port answers.
    pub fn start(ip: &str, name: &str, extra: &str) -> Self {
        Self::start_with_auth(ip, name, OPEN_AUTH, extra)
    }

    /// Like [`NodeProcess::start`], with `auth` as the `[auth]` part of the config (the
    /// defaults when empty). The node's data directory is `dir/data`.
    pub fn start_with_auth(ip: &str, name: &str, auth: &str, extra: &str) -> Self {
        let rtmp: SocketAddr = format!("{ip}:{}", free_port(ip)).parse().unwrap();
        let http: SocketAddr = format!("{ip}:{}", free_port(ip)).parse().unwrap();
        let dir = temp_dir(name);
        let config = dir.join("skein.toml");
        let data_dir = dir.join("data");
        std::fs::write(
            &config,
            format!(
                "[node]\nname = \"{name}\"\n[rtmp]\nlisten = \"{rtmp}\"\n[http]\nlisten = \"{http}\"\nadmin_token = \"secret\"\n{extra}\n[cluster]\ndata_dir = \"{}\"\n{auth}",
                data_dir.display()
            ),
        )
        .unwrap();
        let process = Process::spawn(
            Command::new(binary("skein"))
                .args(["run", "--config"])
                .arg(&config)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
        );
        let node = Self {
            process,
            rtmp,
            http,
            dir,
        };
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

    /// GET `path` as JSON; panics unless the node answers 200.
    pub fn json(&self, path: &str) -> serde_json::Value {
        self.json_with(path, "")
    }

    /// GET `path` with extra request `headers` (each ending in `\r\n`) as JSON; panics
    /// unless the node answers 200.
    pub fn json_with(&self, path: &str, headers: &str) -> serde_json::Value {
        let (status, body) = http_request(self.http, "GET", path, headers).expect("node answers");
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
        self.wait_json_with(path, "", timeout, check)
    }

    /// [`wait_json`](Self::wait_json) with extra request headers.
    pub fn wait_json_with(
        &self,
        path: &str,
        headers: &str,
        timeout: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.json_with(path, headers);
            if check(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{path} never matched: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `GET path`: (status, body), `None` when the server does not answer.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_request(addr, "GET", path, "")
}

/// Runs `skein check-config FILE`, asserts it accepts the file, and gives its output (the
/// effective configuration).
pub fn check_config(file: &Path) -> String {
    let out = Command::new(binary("skein"))
        .arg("check-config")
        .arg(file)
        .output()
        .expect("run skein check-config");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
