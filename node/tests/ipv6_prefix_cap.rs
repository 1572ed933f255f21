//! 10 000 idle connections from one IPv6 /64 against a spawned `skein`: the per-client cap
//! (`limits.max_connections_per_ip`, which counts an IPv6 /64 as one client) holds for RTMP
//! and HTTP, and a client from another prefix still publishes and plays.
//!
//! The addresses come from a network namespace the test creates (and removes, even when it
//! fails): the /64 is routed locally on its loopback, so every connection can bind an address
//! of its own. Needs root (CI runs as root); without it the test fails and says so.

use std::fs::File;
use std::net::{Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use skein_node::client::{RtmpClient, RtmpUrl};
use skein_node::rtmp::client::ClientEvent;
use skein_tests::node::{OPEN_AUTH, temp_dir};
use skein_tests::{Process, binary, require};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};

/// The /64 every attacking connection comes from.
const FLOOD_PREFIX: u128 = 0xfd00_5e1f_0000_0000 << 64;
/// The node's address, in another /64.
const NODE_IP: &str = "fd00:5e1f:0:1::1";
const CAP: usize = 200;
const FLOOD: usize = 10_000;
const RTMP_PORT: u16 = 1935;
const HTTP_PORT: u16 = 8080;
const WAIT: Duration = Duration::from_secs(10);

/// A network namespace, deleted on drop.
struct NetNs(String);

impl NetNs {
    fn create() -> Self {
        let ns = NetNs(format!("skein-t{}", std::process::id()));
        let _ = Command::new("ip").args(["netns", "del", &ns.0]).status();
        run("ip", &["netns", "add", &ns.0]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.ip_nonlocal_bind=1"]);
        // The accept queue must hold a batch of the flood (see `flood`); a connection dropped
        // from a full queue looks open to its client but never reaches the node.
        ns.exec(&["sysctl", "-qw", "net.core.somaxconn=4096"]);
        let node_addr = format!("{NODE_IP}/128");
        ns.exec(&["ip", "-6", "addr", "add", &node_addr, "dev", "lo", "nodad"]);
        ns.exec(&[
            "ip",
            "-6",
            "route",
            "add",
            "local",
            "fd00:5e1f::/64",
            "dev",
            "lo",
        ]);
        ns
    }

    fn exec(&self, command: &[&str]) {
        let mut args = vec!["netns", "exec", &self.0];
        args.extend_from_slice(command);
        run("ip", &args);
    }

    /// Moves the calling thread into the namespace (sockets it opens then live there).
    fn enter(&self) {
        let handle = File::open(format!("/run/netns/{}", self.0)).expect("namespace handle");
        // SAFETY: setns on a valid namespace descriptor only changes this thread's namespace.
        let entered = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().expect(program);
    assert!(status.success(), "{program} {args:?} failed: {status}");
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test creates a network namespace and needs root (CI runs as root): run it with sudo"
    );
}

/// Room for the flood's sockets: the open-file limit raised to 65536 (root may raise the
/// hard limit), else to the hard limit; the node inherits it.
fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let wanted = libc::rlimit {
            rlim_cur: limit.rlim_max.max(65_536),
            rlim_max: limit.rlim_max.max(65_536),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
            limit = wanted;
        } else {
            limit.rlim_cur = limit.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur as usize > FLOOD + 2 * CAP + 1000,
        "RLIMIT_NOFILE hard limit {} is too low for {FLOOD} connections",
        limit.rlim_cur
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the node process is alive")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

async fn connect_from(source: Ipv6Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v6()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let node: SocketAddr = format!("[{NODE_IP}]:{port}").parse().unwrap();
    match timeout(Duration::from_secs(30), socket.connect(node)).await {
        Ok(connected) => connected,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Opens `count` connections to `port`, each from its own address of the flood /64
/// starting at host number `first`, in batches: before the next batch the node has taken
/// (admitted, or refused for `reason`) every connection so far, so its accept queue never
/// overflows.
async fn flood(first: u128, count: usize, port: u16, reason: &str) -> Vec<TcpStream> {
    const BATCH: usize = 500;
    let refused_before = refused(reason).await as usize;
    let mut sockets = Vec::with_capacity(count);
    while sockets.len() < count {
        let start = sockets.len();
        let batch: Vec<TcpStream> = futures_util::stream::iter(start..count.min(start + BATCH))
            .map(|i| connect_from(Ipv6Addr::from(FLOOD_PREFIX | (first + i as u128)), port))
            .buffer_unordered(128)
            .map(|c| c.expect("connect from the flood prefix"))
            .collect()
            .await;
        sockets.extend(batch);
        let deadline = Instant::now() + Duration::from_secs(30);
        let taken = |refused: usize| refused - refused_before + CAP.min(sockets.len());
        while taken(refused(reason).await as usize) < sockets.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    sockets
}

/// Connections still open: the node closes refused ones at once, and these send nothing.
fn still_open(sockets: &[TcpStream]) -> usize {
    let mut buf = [0u8; 1];
    sockets
        .iter()
        .filter(|s| {
            matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count()
}

/// `GET path` from the node's own prefix (HTTP/1.0: the node closes after the answer).
async fn get(path: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut socket = connect_from(NODE_IP.parse().unwrap(), HTTP_PORT)
        .await
        .expect("connect to the node's HTTP port");
    let request = format!("GET {path} HTTP/1.0\r\nHost: node\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    timeout(WAIT, socket.read_to_string(&mut answer))
        .await
        .expect("the node answers")
        .unwrap();
    answer
}

/// `skein_connections_refused_total{reason}` of the node.
async fn refused(reason: &str) -> u64 {
    let metrics = get("/metrics").await;
    let series = format!("skein_connections_refused_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Waits until the node has refused `expected` connections for `reason` (it has worked
/// through its accept backlog) and its refusals have reached the client sockets; then the
/// connections still open. Gives up after a minute and reports what it saw.
async fn settle(sockets: &[TcpStream], reason: &str, expected: u64) -> (u64, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = refused(reason).await;
        let open = still_open(sockets);
        if (count >= expected && open + count as usize <= sockets.len())
            || Instant::now() > deadline
        {
            return (count, open);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn publishes_and_plays_from_another_prefix() {
    let url = RtmpUrl::parse(&format!("rtmp://[{NODE_IP}]:{RTMP_PORT}/live/other")).unwrap();
    let mut publisher = RtmpClient::connect(&url).await.unwrap();
    publisher.publish("other", WAIT).await.unwrap();
    let mut player = RtmpClient::connect(&url).await.unwrap();
    player.play("other", WAIT).await.unwrap();
    publisher
        .session()
        .send_video(0, &[0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f]);
    publisher
        .session()
        .send_video(0, &[0x17, 0x01, 0, 0, 0, 1, 2, 3]);
    publisher.flush().await.unwrap();
    let got_video = timeout(WAIT, async {
        loop {
            if let ClientEvent::Video { .. } = player.next_event().await.unwrap() {
                return;
            }
        }
    })
    .await;
    assert!(
        got_video.is_ok(),
        "a client of another prefix is not served"
    );
}

#[test]
fn ten_thousand_connections_from_one_ipv6_prefix_get_its_share_only() {
    require_root();
    require("ip", "iproute2");
    raise_open_files();
    let ns = NetNs::create();
    let dir = temp_dir("ipv6-prefix-cap");
    let config = dir.join("skein.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"prefix-cap\"\n\
             [rtmp]\nlisten = \"[{NODE_IP}]:{RTMP_PORT}\"\nhandshake_timeout_secs = 300\nidle_timeout_secs = 300\n\
             [http]\nlisten = \"[{NODE_IP}]:{HTTP_PORT}\"\nheader_read_timeout_ms = 300000\nmax_connections = 20000\n\
             [limits]\nmax_connections = 20000\nmax_connections_per_ip = {CAP}\n{OPEN_AUTH}"
        ),
    )
    .unwrap();
    let mut skein = Command::new("ip");
    skein
        .args(["netns", "exec", &ns.0])
        .arg(binary("skein"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let node = Process::spawn(&mut skein);
    let pid = node.0.id();

    let outcome = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                ns.enter();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while connect_from(NODE_IP.parse().unwrap(), HTTP_PORT)
                        .await
                        .is_err()
                    {
                        assert!(Instant::now() < deadline, "node did not come up");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    let rtmp = flood(2, FLOOD, RTMP_PORT, "max_connections_per_ip").await;
                    let rtmp_refused = (FLOOD - CAP) as u64;
                    let rtmp = settle(&rtmp, "max_connections_per_ip", rtmp_refused).await;
                    let reason = "http_max_connections_per_ip";
                    let http = flood(2 + FLOOD as u128, 2 * CAP, HTTP_PORT, reason).await;
                    let http = settle(&http, reason, CAP as u64).await;
                    let summary = get("/api/v1/summary").await;
                    let admitted = summary.contains(&format!("\"connections\":{CAP},"));
                    publishes_and_plays_from_another_prefix().await;
                    let mut one_more =
                        connect_from(Ipv6Addr::from(FLOOD_PREFIX | 0xffff), RTMP_PORT)
                            .await
                            .unwrap();
                    let mut buf = [0u8; 16];
                    let one_more_refused = matches!(
                        timeout(WAIT, one_more.read(&mut buf)).await,
                        Ok(Ok(0) | Err(_))
                    );
                    (rtmp, http, admitted, one_more_refused, rss_kib(pid))
                })
            })
            .join()
    });
    drop(node);
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);
    let (rtmp, http, admitted, one_more_refused, rss) = match outcome {
        Ok(outcome) => outcome,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    assert_eq!(
        rtmp,
        ((FLOOD - CAP) as u64, CAP),
        "RTMP from one /64: (refused by the node, still open)"
    );
    assert_eq!(
        http,
        (CAP as u64, CAP),
        "HTTP from one /64: (refused by the node, still open)"
    );
    assert!(admitted, "the node counts {CAP} RTMP connections");
    assert!(
        one_more_refused,
        "one more connection from the /64 is refused"
    );
    assert!(
        rss < 512 * 1024,
        "node RSS {rss} KiB with {FLOOD} connections"
    );
}
