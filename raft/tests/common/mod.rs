//! Helpers for in-process multi-node tests on loopback (127.0.3.x): node configurations with
//! fast timings, starting and stopping clusters, waiting for the committed state.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use skein_raft::{Cluster, ClusterConfig, ClusterState, JoinInfo, PublicAddrs, Settings};
use tokio::sync::watch;

/// Lifetime of the join tokens the tests create.
pub const TTL: Duration = Duration::from_secs(600);

/// A free UDP port on `127.0.3.<host>`.
fn free_addr(host: u8) -> SocketAddr {
    let sock = UdpSocket::bind(SocketAddr::from(([127, 0, 3, host], 0))).expect("bind loopback");
    sock.local_addr().expect("local addr")
}

/// Fast timings so that failures are detected within seconds.
pub fn config(dir: &Path, host: u8, region: &str) -> ClusterConfig {
    let internal = free_addr(host);
    let public = PublicAddrs {
        rtmp: SocketAddr::from(([127, 0, 3, host], 1935)),
        http: SocketAddr::from(([127, 0, 3, host], 8080)),
    };
    let mut c = ClusterConfig::new(
        dir.join(format!("n{host}")),
        format!("n{host}"),
        region,
        internal,
        public,
    );
    c.heartbeat_interval = Duration::from_millis(200);
    c.policy_interval = Duration::from_millis(200);
    c.raft_heartbeat = Duration::from_millis(100);
    c.election_timeout = Duration::from_millis(700);
    c.settings = Settings {
        origin_target: 1,
        down_after_ms: 1_500,
        voter_replace_after_ms: 3_000,
        origin_grace_ms: 1_500,
        drain_timeout_ms: 5_000,
        ..Settings::default()
    };
    c
}

/// Waits (bounded) until `pred` holds for the committed state seen through `rx`.
pub async fn wait_state(
    rx: &mut watch::Receiver<Arc<ClusterState>>,
    what: &str,
    pred: impl Fn(&ClusterState) -> bool,
) -> Arc<ClusterState> {
    let r = tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|s| pred(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match r {
        Ok(Ok(s)) => s,
        _ => panic!("timed out waiting for: {what}; state: {:?}", rx.borrow()),
    }
}

/// Joins with `cfg` through the seeds, token and CA hash `init` handed out.
pub async fn join(cfg: ClusterConfig, info: &JoinInfo) -> Cluster {
    Cluster::join(cfg, &info.seeds, &info.token.to_string(), &info.ca_hash)
        .await
        .expect("join")
}

/// Starts a cluster in `dir`: node 1 initialises in `regions[0]`, node `i + 1` joins in
/// `regions[i]`.
pub async fn start(dir: &Path, regions: &[&str]) -> (Vec<Cluster>, JoinInfo) {
    let (first, info) = Cluster::init(config(dir, 1, regions[0]), TTL)
        .await
        .expect("init");
    let mut nodes = vec![first];
    for (host, region) in (2..).zip(&regions[1..]) {
        nodes.push(join(config(dir, host, region), &info).await);
    }
    (nodes, info)
}

/// Sets up test logging once (filtered by `RUST_LOG`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
