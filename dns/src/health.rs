//! Edge health: the hysteresis state machine (pure) and the two probes every edge gets each
//! interval — an RTMP handshake on the public RTMP port and `GET /api/v1/health` on its HTTP
//! port, which also reports the load.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::automap::{EdgeState, Load};
use crate::http;

/// Consecutive-result counters of one edge.
#[derive(Debug, Clone)]
pub struct Tracker {
    /// The state the answers use.
    pub state: EdgeState,
    successes: u32,
    failures: u32,
    /// The load of the last successful probe.
    pub load: Option<Load>,
    /// Why the last probe failed, while it is failing.
    pub last_error: Option<String>,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            state: EdgeState::Unknown,
            successes: 0,
            failures: 0,
            load: None,
            last_error: None,
        }
    }
}

impl Tracker {
    /// Feeds one probe result; returns the new state if it changed. An unknown edge is up at its
    /// first successful probe; afterwards `fall` failures take it down and `rise` successes
    /// bring it back.
    pub fn observe(
        &mut self,
        result: Result<Load, String>,
        fall: u32,
        rise: u32,
    ) -> Option<EdgeState> {
        let before = self.state;
        match result {
            Ok(load) => {
                self.load = Some(load);
                self.last_error = None;
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                let up = match self.state {
                    EdgeState::Unknown => true,
                    EdgeState::Down => self.successes >= rise,
                    EdgeState::Up => true,
                };
                if up {
                    self.state = EdgeState::Up;
                }
            }
            Err(e) => {
                self.last_error = Some(e);
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                if self.failures >= fall {
                    self.state = EdgeState::Down;
                }
            }
        }
        (self.state != before).then_some(self.state)
    }
}

/// The JSON the media node serves on `GET /api/v1/health`.
#[derive(Debug, Deserialize)]
struct HealthReport {
    status: String,
    #[serde(default)]
    connections: u64,
    #[serde(default)]
    max_connections: u64,
    #[serde(default)]
    cpu: f64,
    #[serde(default)]
    egress_bps: u64,
    #[serde(default)]
    max_egress_bps: u64,
    #[serde(default)]
    draining: bool,
}

/// Parses a health body; anything but `"status":"ok"` is a failure.
pub fn parse_health(body: &[u8]) -> Result<Load, String> {
    let r: HealthReport = serde_json::from_slice(body).map_err(|e| format!("health JSON: {e}"))?;
    if r.status != "ok" {
        return Err(format!("health status {:?}", r.status));
    }
    if !r.cpu.is_finite() {
        return Err("health cpu is not a number".into());
    }
    Ok(Load {
        connections: r.connections,
        max_connections: r.max_connections,
        cpu: r.cpu.clamp(0.0, 1.0),
        egress_bps: r.egress_bps,
        max_egress_bps: r.max_egress_bps,
        draining: r.draining,
    })
}

/// RTMP handshake size of C1/S1/S2.
const RTMP_SIG: usize = 1536;

/// Connects, sends C0+C1, expects S0 (version 3) + S1 + S2, closes.
pub async fn rtmp_probe(addr: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("rtmp connect {addr}: {e}"))?;
    let mut c0c1 = vec![0u8; 1 + RTMP_SIG];
    c0c1[0] = 3;
    // C1: time (4 bytes, zero), zero (4 bytes), then arbitrary bytes.
    for (i, b) in c0c1[9..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    s.write_all(&c0c1)
        .await
        .map_err(|e| format!("rtmp write {addr}: {e}"))?;
    let mut reply = vec![0u8; 1 + 2 * RTMP_SIG];
    s.read_exact(&mut reply)
        .await
        .map_err(|e| format!("rtmp read {addr}: {e}"))?;
    if reply[0] != 3 {
        return Err(format!("rtmp {addr}: S0 version {}", reply[0]));
    }
    Ok(())
}

/// Both probes; success carries the reported load.
pub async fn probe(
    rtmp: SocketAddr,
    health: SocketAddr,
    timeout: Duration,
) -> Result<Load, String> {
    let rtmp_check = tokio::time::timeout(timeout, rtmp_probe(rtmp));
    let http_check = tokio::time::timeout(timeout, http::get(health, "/api/v1/health"));
    let (r, h) = tokio::join!(rtmp_check, http_check);
    let rtmp_result = r
        .map_err(|_| format!("rtmp {rtmp}: timeout"))
        .and_then(|checked| checked);
    let health_result = h
        .map_err(|_| format!("health {health}: timeout"))
        .and_then(|answered| answered)
        .and_then(|resp| match resp.status {
            200 => parse_health(&resp.body).map_err(|e| format!("health {health}: {e}")),
            status => Err(format!("health {health}: HTTP {status}")),
        });
    combine(rtmp_result, health_result)
}

/// One probe's verdict from its two checks. A node that says it is draining is taken at its
/// word even when its RTMP check failed: a stopping node closes its listeners right after
/// telling, and the answer must leave it out at once, not after `fall` failed probes.
fn combine(rtmp: Result<(), String>, health: Result<Load, String>) -> Result<Load, String> {
    match (rtmp, health) {
        (_, Ok(load)) if load.draining => Ok(load),
        (Err(e), _) => Err(e),
        (Ok(()), health) => health,
    }
}

/// A probe result with its duration.
#[derive(Debug)]
pub struct ProbeResult {
    pub result: Result<Load, String>,
    pub latency: Duration,
}

/// Runs one probe and times it.
pub async fn timed_probe(rtmp: SocketAddr, health: SocketAddr, timeout: Duration) -> ProbeResult {
    let start = Instant::now();
    let result = probe(rtmp, health, timeout).await;
    ProbeResult {
        result,
        latency: start.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draining_answer_counts_even_when_the_rtmp_check_failed() {
        let draining = Load {
            draining: true,
            ..Load::default()
        };
        let refused = || Err::<(), _>("rtmp: connection refused".to_owned());
        assert!(combine(refused(), Ok(draining)).unwrap().draining);
        assert!(combine(refused(), Ok(Load::default())).is_err());
        assert!(combine(Ok(()), Err("health: timeout".into())).is_err());
        assert!(!combine(Ok(()), Ok(Load::default())).unwrap().draining);
    }

    fn ok() -> Result<Load, String> {
        Ok(Load::default())
    }
    fn fail() -> Result<Load, String> {
        Err("x".into())
    }

    #[test]
    fn unknown_until_first_answer_then_hysteresis() {
        let mut t = Tracker::default();
        assert_eq!(t.state, EdgeState::Unknown);
        assert_eq!(t.observe(fail(), 3, 2), None);
        assert_eq!(t.state, EdgeState::Unknown);
        assert_eq!(t.observe(ok(), 3, 2), Some(EdgeState::Up));
        assert_eq!(t.observe(fail(), 3, 2), None);
        assert_eq!(t.observe(fail(), 3, 2), None);
        assert_eq!(
            t.observe(ok(), 3, 2),
            None,
            "success resets the failure count"
        );
        assert_eq!(t.observe(fail(), 3, 2), None);
        assert_eq!(t.observe(fail(), 3, 2), None);
        assert_eq!(t.observe(fail(), 3, 2), Some(EdgeState::Down));
        assert_eq!(t.observe(ok(), 3, 2), None);
        assert_eq!(t.observe(fail(), 3, 2), None);
        assert_eq!(t.observe(ok(), 3, 2), None);
        assert_eq!(t.observe(ok(), 3, 2), Some(EdgeState::Up));
    }

    #[test]
    fn unknown_goes_down_after_fall_failures() {
        let mut t = Tracker::default();
        t.observe(fail(), 2, 2);
        assert_eq!(t.observe(fail(), 2, 2), Some(EdgeState::Down));
        assert_eq!(t.last_error.as_deref(), Some("x"));
    }

    #[test]
    fn health_json() {
        let l = parse_health(
            br#"{"status":"ok","node":"e1","connections":5,"max_connections":10,"cpu":0.5,
                "egress_bps":1,"max_egress_bps":0,"draining":false,"extra":1}"#,
        )
        .unwrap();
        assert_eq!(l.connections, 5);
        assert_eq!(l.max_connections, 10);
        assert!(parse_health(br#"{"status":"degraded"}"#).is_err());
        assert!(parse_health(b"not json").is_err());
    }
}
