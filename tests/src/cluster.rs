//! A cluster of real `skein` processes on loopback: `skein init` on the first node, the printed
//! `skein join` on the others, `skein run` to restart one, SIGKILL to kill one. Regions map to
//! loopback networks (`a` → 127.0.1.x, `b` → 127.0.2.x, `c` → 127.0.3.x); every node gets its
//! own address, free ports and data directory. Everything is killed and removed on drop. A
//! member can instead live in a network namespace of a [`crate::netns::Network`]
//! ([`Cluster::init_at`], [`Cluster::join_at`]): it runs there under `ip netns exec`, and the
//! test reaches it from inside that namespace.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::{self, NetNode};
use crate::{Process, binary, free_port, http_request};

/// Ports of a member in its own namespace: the defaults, nothing else listens there.
const NETNS_PORTS: (u16, u16, u16) = (1935, 8080, 7000);

/// How long a starting node may take to answer on its HTTP port.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Loopback network of a region.
fn region_net(region: &str) -> u8 {
    match region {
        "a" => 1,
        "b" => 2,
        "c" => 3,
        other => panic!("test regions are a, b and c, not {other:?}"),
    }
}

/// A distinct host octet per node started by this test process.
fn next_host() -> u8 {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let host = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(host < 250, "too many test nodes in one process");
    host
}

/// One `skein` node: where it listens, where it keeps its data, and its process (if running).
pub struct Member {
    pub name: String,
    pub region: String,
    /// `--roles`, when not the default (`edge,origin`).
    pub roles: Option<String>,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    pub internal: SocketAddr,
    pub data_dir: PathBuf,
    /// The node's config file: open publishing (authorisation has tests of its own).
    pub config: PathBuf,
    /// Node id, known once the node answered.
    pub id: u64,
    /// The network namespace the node runs in; `None` on the host's loopback.
    pub netns: Option<String>,
    log: PathBuf,
    process: Option<Process>,
}

impl Member {
    fn new(root: &Path, name: &str, region: &str, roles: Option<&str>) -> Self {
        let ip = format!("127.0.{}.{}", region_net(region), next_host());
        let ports = (free_port(&ip), free_port(&ip), free_port(&ip));
        Self::at(root, name, region, roles, &ip, ports, None)
    }

    /// A member in its own namespace of a test network.
    fn in_netns(root: &Path, node: &NetNode, roles: Option<&str>) -> Self {
        let ip = node.ip.to_string();
        let netns = Some(node.netns.clone());
        Self::at(
            root,
            &node.name,
            &node.region,
            roles,
            &ip,
            NETNS_PORTS,
            netns,
        )
    }

    fn at(
        root: &Path,
        name: &str,
        region: &str,
        roles: Option<&str>,
        ip: &str,
        (rtmp, http, internal): (u16, u16, u16),
        netns: Option<String>,
    ) -> Self {
        let addr = |port: u16| -> SocketAddr { format!("{ip}:{port}").parse().unwrap() };
        let data_dir = root.join(name);
        std::fs::create_dir_all(&data_dir).unwrap();
        let config = root.join(format!("{name}.toml"));
        std::fs::write(&config, crate::node::OPEN_AUTH).unwrap();
        Self {
            name: name.to_owned(),
            region: region.to_owned(),
            roles: roles.map(str::to_owned),
            rtmp: addr(rtmp),
            http: addr(http),
            internal: addr(internal),
            log: root.join(format!("{name}.log")),
            data_dir,
            config,
            id: 0,
            netns,
            process: None,
        }
    }

    /// A command that runs `program` where the node runs: inside its namespace, if it has one.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.netns {
            Some(ns) => netns::command(ns, program),
            None => Command::new(program),
        }
    }

    /// [`http_request`] to the node's HTTP port, from where the node can be reached.
    pub fn request(&self, method: &str, path: &str, headers: &str) -> Option<(u16, String)> {
        match &self.netns {
            Some(ns) => netns::in_netns(ns, || http_request(self.http, method, path, headers)),
            None => http_request(self.http, method, path, headers),
        }
    }

    /// The flags every command that runs this node takes.
    pub fn run_args(&self) -> Vec<String> {
        let mut args = vec![
            "--config".into(),
            self.config.display().to_string(),
            "--name".into(),
            self.name.clone(),
            "--region".into(),
            self.region.clone(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--internal".into(),
            self.internal.to_string(),
            "--rtmp-listen".into(),
            self.rtmp.to_string(),
            "--http-listen".into(),
            self.http.to_string(),
        ];
        if let Some(roles) = &self.roles {
            args.extend(["--roles".into(), roles.clone()]);
        }
        args
    }

    fn spawn(&mut self, command: &mut Command) -> &mut Process {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        command
            .env("RUST_LOG", "info,openraft=error")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stderr(log);
        self.process.insert(Process::spawn(command))
    }

    /// Waits until the node serves HTTP (it does once it is a member), and learns its id. The
    /// node's admin token is sent, for a node that keeps its views for it.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let auth = std::fs::read_to_string(self.data_dir.join("admin.token"))
                .map(|t| format!("Authorization: Bearer {}\r\n", t.trim()))
                .unwrap_or_default();
            if let Some((200, body)) = self.request("GET", "/api/v1/relay", &auth) {
                let view: Value = serde_json::from_str(&body).unwrap();
                self.id = view["node"].as_u64().expect("relay view names the node");
                return;
            }
            if let Some(process) = &mut self.process
                && let Ok(Some(status)) = process.0.try_wait()
            {
                panic!(
                    "{} exited ({status}) while starting:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not come up within {START_TIMEOUT:?}:\n{}",
                self.name,
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        drop(self.process.take().expect("node is running"));
    }

    /// Waits (bounded) for a node that stops by itself, e.g. after `skein leave`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let process = self.process.as_mut().expect("node is running");
        let status = wait_child(&mut process.0, timeout)
            .unwrap_or_else(|| panic!("{} did not stop within {timeout:?}", self.name));
        self.process = None;
        status
    }

    /// Restarts a stopped node with `skein run` and the same flags and data directory.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "{} is still running", self.name);
        let before = self.id;
        let args = self.run_args();
        let mut command = self.command(binary("skein"));
        self.spawn(command.arg("run").args(args).stdout(Stdio::null()));
        self.wait_ready();
        assert_eq!(self.id, before, "{} came back with another id", self.name);
    }

    pub fn rtmp_url(&self, stream: &str) -> String {
        format!("rtmp://{}/{stream}", self.rtmp)
    }

    pub fn flv_url(&self, stream: &str) -> String {
        format!("http://{}/{stream}.flv", self.http)
    }

    /// GET `path` on the node's HTTP port as JSON; `None` while it does not answer 200.
    pub fn try_json(&self, path: &str) -> Option<Value> {
        match self.request("GET", path, "")? {
            (200, body) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    pub fn json(&self, path: &str) -> Value {
        self.try_json(path)
            .unwrap_or_else(|| panic!("{} does not answer {path}", self.name))
    }

    /// `GET /api/v1/relay`.
    pub fn relay(&self) -> Value {
        self.json("/api/v1/relay")
    }

    /// `GET /api/v1/cluster`.
    pub fn status(&self) -> Value {
        self.json("/api/v1/cluster")
    }

    /// Runs a `skein` operator command against this node: `--api` added, and `--data-dir` (for
    /// the admin token) to every command but `status`.
    pub fn admin(&self, args: &[&str]) -> Output {
        let mut command = self.command(binary("skein"));
        command.args(args).arg("--api").arg(self.http.to_string());
        if args.first() != Some(&"status") {
            command.arg("--data-dir").arg(&self.data_dir);
        }
        run_bounded(&mut command, Duration::from_secs(60))
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The node's whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the node's log contains `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        self.log().contains(needle)
    }
}

/// What `skein init` printed for the other nodes.
#[derive(Debug, Clone)]
pub struct JoinCommand {
    pub seeds: String,
    pub token: String,
    pub ca_hash: String,
}

/// Nodes of one test cluster, all stopped and their directories removed on drop.
pub struct Cluster {
    root: PathBuf,
    pub nodes: Vec<Member>,
    pub join: JoinCommand,
    /// TOML appended to the config file of every node that joins from now on.
    pub member_config: String,
}

impl Cluster {
    /// `skein init` of the first node; `extra` are more `init` flags (e.g. `--origin-target`).
    pub fn init(test: &str, name: &str, region: &str, roles: Option<&str>, extra: &[&str]) -> Self {
        Self::init_member(test, extra, |root| Member::new(root, name, region, roles))
    }

    /// [`Cluster::init`] of a first node in its namespace of a test network.
    pub fn init_at(test: &str, node: &NetNode, roles: Option<&str>, extra: &[&str]) -> Self {
        Self::init_member(test, extra, |root| Member::in_netns(root, node, roles))
    }

    fn init_member(test: &str, extra: &[&str], member: impl FnOnce(&Path) -> Member) -> Self {
        let root = std::env::temp_dir().join(format!("skein-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let mut first = member(&root);
        let args = first.run_args();
        let mut command = first.command(binary("skein"));
        let process = first.spawn(
            command
                .arg("init")
                .args(args)
                .args(extra)
                .stdout(Stdio::piped()),
        );
        let stdout = process.0.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let join = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "skein init printed no join command:\n{}",
                    first.log_tail(40)
                )
            });
            if let Some(join) = parse_join(&line) {
                break join;
            }
        };
        first.wait_ready();
        Self {
            root,
            nodes: vec![first],
            join,
            member_config: String::new(),
        }
    }

    /// `skein join` of a new node with the join command `init` printed. Returns its index.
    pub fn join(&mut self, name: &str, region: &str, roles: Option<&str>) -> usize {
        let index = self.start_join(name, region, roles);
        self.nodes[index].wait_ready();
        index
    }

    /// [`Cluster::join`] of a node in its namespace of a test network.
    pub fn join_at(&mut self, node: &NetNode, roles: Option<&str>) -> usize {
        let member = Member::in_netns(&self.root, node, roles);
        let index = self.start_join_member(member);
        self.nodes[index].wait_ready();
        index
    }

    /// Starts `skein join` of a new node without waiting for it. Returns its index.
    pub fn start_join(&mut self, name: &str, region: &str, roles: Option<&str>) -> usize {
        let member = Member::new(&self.root, name, region, roles);
        self.start_join_member(member)
    }

    fn start_join_member(&mut self, node: Member) -> usize {
        let join = self.join.clone();
        let seeds = self.live_seeds(&join.seeds);
        let name = node.name.clone();
        if !self.member_config.is_empty() {
            let mut config = std::fs::read_to_string(&node.config).unwrap();
            config.push_str(&self.member_config);
            std::fs::write(&node.config, config).unwrap();
        }
        let mut node = node;
        let args = node.run_args();
        // The token from a file, as operators should pass it (not visible in the process list).
        let token_file = self.root.join(format!("{name}.join-token"));
        std::fs::write(&token_file, format!("{}\n", join.token)).unwrap();
        let mut command = node.command(binary("skein"));
        node.spawn(
            command
                .args(["join", &seeds, "--token-file"])
                .arg(&token_file)
                .args(["--ca-hash", &join.ca_hash])
                .args(args)
                .stdout(Stdio::null()),
        );
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The printed seeds when their node still runs, else the running members.
    fn live_seeds(&self, printed: &str) -> String {
        let running: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.internal.to_string())
            .collect();
        if printed.split(',').all(|s| running.iter().any(|r| r == s)) {
            printed.to_owned()
        } else {
            running.join(",")
        }
    }

    /// A `skein join` that is expected to fail: runs it to the end (bounded) in a fresh data
    /// directory and returns its output.
    pub fn failed_join(&self, name: &str, region: &str, token: &str, ca_hash: &str) -> Output {
        let node = Member::new(&self.root, name, region, None);
        run_bounded(
            Command::new(binary("skein"))
                .args(["join", &self.join.seeds, "--token", token])
                .args(["--ca-hash", ca_hash])
                .args(node.run_args())
                .env("RUST_LOG", "error"),
            Duration::from_secs(60),
        )
    }

    /// The directory holding the nodes' data and logs (removed on drop).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn node(&self, name: &str) -> &Member {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn node_mut(&mut self, name: &str) -> &mut Member {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn by_id(&self, id: u64) -> &Member {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node with id {id}"))
    }

    pub fn by_id_mut(&mut self, id: u64) -> &mut Member {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node with id {id}"))
    }

    /// Some running node.
    pub fn any_running(&self) -> &Member {
        self.nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a running node")
    }

    /// Polls the cluster status (through any running node) until `check` accepts it; panics
    /// with the last status after `timeout`.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            for node in self.nodes.iter().filter(|n| n.is_running()) {
                if let Some(status) = node.try_json("/api/v1/cluster") {
                    if check(&status) {
                        return status;
                    }
                    last = status;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; last status: {last:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The node the stream is pushed to (its origin), as the origins' relay views say.
    pub fn stream_origin(&self, stream: &str) -> Option<u64> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .find(|n| {
                n.try_json("/api/v1/relay")
                    .is_some_and(|v| v["pushed_in"].get(stream).is_some())
            })
            .map(|n| n.id)
    }

    /// Waits until some node has the stream pushed in, and returns it.
    pub fn wait_stream_origin(&self, stream: &str, timeout: Duration) -> u64 {
        wait_for(&format!("an origin holding {stream}"), timeout, || {
            self.stream_origin(stream)
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!(
                    "---- {} (id {}) log tail ----\n{}",
                    node.name,
                    node.id,
                    node.log_tail(60)
                );
            }
        }
        for node in &mut self.nodes {
            node.process = None;
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The node ids in a JSON array (empty for anything else).
pub fn ids(value: &Value) -> std::collections::BTreeSet<u64> {
    value
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_u64)
        .collect()
}

/// Parses `skein join SEEDS --token T --ca-hash H --region R`.
pub fn parse_join(line: &str) -> Option<JoinCommand> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.windows(2).position(|w| w == ["skein", "join"])?;
    let value = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1))
            .map(|s| s.to_string())
    };
    Some(JoinCommand {
        seeds: words.get(at + 2)?.to_string(),
        token: value("--token")?,
        ca_hash: value("--ca-hash")?,
    })
}

/// Waits for a child to exit, at most `timeout`.
pub fn wait_child(child: &mut std::process::Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command to the end with its output captured; killed (and the test failed) after
/// `timeout`.
pub fn run_bounded(command: &mut Command, timeout: Duration) -> Output {
    let mut process = Process::spawn(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut stdout = process.0.stdout.take().unwrap();
    let mut stderr = process.0.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
        buf
    });
    let status = wait_child(&mut process.0, timeout)
        .unwrap_or_else(|| panic!("{command:?} did not finish within {timeout:?}"));
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Polls `probe` every 100 ms until it gives a value; panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
