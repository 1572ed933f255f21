//! Helpers shared by the cross-process end-to-end tests: locate the workspace's binaries and
//! run them as child processes that are killed when the test ends; a cluster of `skein`
//! processes (`cluster`); a standalone node (`node`); `skein-dns` and dig (`dns`); ffmpeg
//! publishers and recorders (`media`); fetching HLS and checking playlists against RFC 8216bis
//! (`hls`); the scale model of a whole cluster, computed with the cluster's own algorithms
//! (`scale`); network namespaces joined by routers, for cutting links between nodes and
//! regions (`netns`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub mod cluster;
pub mod dns;
pub mod hls;
pub mod media;
pub mod netns;
pub mod node;
pub mod scale;

/// Path of a binary of this workspace, built next to the test executable
/// (`scripts/test.sh` builds all binaries before running the tests).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
pub struct Process(pub Child);

impl Process {
    /// Starts `command`; panics if it cannot be started.
    pub fn spawn(command: &mut Command) -> Self {
        Self(command.spawn().expect("start child process"))
    }

    /// Sends `signal` (`libc::SIGTERM`, ...) to the process.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.0.id()).expect("pid fits in pid_t");
        // SAFETY: kill(2) has no memory effects; the pid is our child, not yet reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits up to `within` for the process to exit; `None` if it is still running then.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        cluster::wait_child(&mut self.0, within)
    }

    /// The process's resident set size in KiB (`VmRSS` in `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .expect("the process is running");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Fails the test with a clear message when a real peer is missing (never skips silently).
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is required by this test; run scripts/install-test-deps.sh (Debian package {package})"
    );
}

/// A TCP and UDP port free on `ip`, for a server process the test starts.
pub fn free_port(ip: &str) -> u16 {
    // Ports below the kernel's ephemeral range (32768 and up), handed out by a per-process
    // counter: no bind(0) or outgoing connection elsewhere can take the port between this
    // check and the server's own bind, and tests running in parallel never get the same one.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..22_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 10_000 + (start.wrapping_add(n) % 22_000) as u16;
        if TcpListener::bind((ip, port)).is_ok() && UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip}");
}

/// Minimal HTTP/1.0 request over a fresh connection: (status, body); `None` when the server
/// does not answer within a few seconds.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> Option<(u16, String)> {
    http_exchange(addr, method, path, headers, "")
}

/// [`http_request`] with a request body (its `Content-Length` is added).
pub fn http_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Option<(u16, String)> {
    let mut socket = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let length = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    write!(
        socket,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}{length}\r\n{body}"
    )
    .ok()?;
    let mut raw = Vec::new();
    socket.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}
