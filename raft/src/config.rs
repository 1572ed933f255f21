//! [`ClusterConfig`]: where a node keeps its data, how it is addressed and its timings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ClusterError;
use crate::join_guard::JoinLimits;
use crate::types::{PublicAddrs, Roles, Settings};

/// Configuration of one node. Paths and addresses are the caller's; nothing is global.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Directory for the identity, keys, certificates and the Raft database.
    pub data_dir: PathBuf,
    /// Node name shown in status.
    pub name: String,
    /// Region this node serves.
    pub region: String,
    /// Internal QUIC address: bound and advertised (never the public one).
    pub internal_addr: SocketAddr,
    /// Public addresses (RTMP, HTTP), for status and DNS.
    pub public: PublicAddrs,
    /// Allowed roles.
    pub roles: Roles,
    /// Settings of a new cluster (used by `init` only).
    pub settings: Settings,
    /// How often load reports go to the leader.
    pub heartbeat_interval: Duration,
    /// How often the leader runs its policies.
    pub policy_interval: Duration,
    /// Raft heartbeat interval.
    pub raft_heartbeat: Duration,
    /// Raft election timeout; the upper bound is twice this.
    pub election_timeout: Duration,
    /// Bounds of the join endpoint (before authentication).
    pub join_limits: JoinLimits,
}

impl ClusterConfig {
    /// Configuration with default timings.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        name: impl Into<String>,
        region: impl Into<String>,
        internal_addr: SocketAddr,
        public: PublicAddrs,
    ) -> ClusterConfig {
        ClusterConfig {
            data_dir: data_dir.into(),
            name: name.into(),
            region: region.into(),
            internal_addr,
            public,
            roles: Roles::default(),
            settings: Settings::default(),
            heartbeat_interval: Duration::from_millis(500),
            policy_interval: Duration::from_millis(500),
            raft_heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(500),
            join_limits: JoinLimits::default(),
        }
    }

    pub(crate) fn raft_config(&self) -> Result<Arc<openraft::Config>, ClusterError> {
        let min = self.election_timeout.as_millis() as u64;
        let cfg = openraft::Config {
            cluster_name: "skein".into(),
            heartbeat_interval: self.raft_heartbeat.as_millis() as u64,
            election_timeout_min: min,
            election_timeout_max: min * 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(500),
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        };
        Ok(Arc::new(cfg.validate().map_err(ClusterError::raft)?))
    }
}
