//! Plain data kept in the cluster state: nodes, regions, origin slots, settings, tokens, loads.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Cluster-wide node id, allocated by the replicated log and never reused.
pub type NodeId = u64;

/// What a node is allowed to do. Being *allowed* to be an origin does not make a node one:
/// the leader's origin policy picks the pool among the nodes with `origin` set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    /// Serves viewers and broadcasters on the public ports.
    pub edge: bool,
    /// May be promoted into the origin pool.
    pub origin: bool,
}

impl Default for Roles {
    fn default() -> Self {
        Roles {
            edge: true,
            origin: true,
        }
    }
}

impl Roles {
    /// Parses a comma separated list such as `edge,origin`.
    pub fn parse(list: &str) -> Result<Roles, String> {
        let mut roles = Roles {
            edge: false,
            origin: false,
        };
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "edge" => roles.edge = true,
                "origin" => roles.origin = true,
                other => return Err(format!("unknown role {other:?} (expected edge or origin)")),
            }
        }
        if !roles.edge && !roles.origin {
            return Err("at least one role (edge, origin) is required".into());
        }
        Ok(roles)
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.edge, self.origin) {
            (true, true) => f.write_str("edge,origin"),
            (true, false) => f.write_str("edge"),
            (false, true) => f.write_str("origin"),
            (false, false) => f.write_str("-"),
        }
    }
}

/// Public (viewer facing) addresses of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicAddrs {
    /// RTMP listener (normally port 1935).
    pub rtmp: SocketAddr,
    /// HTTP listener (API, HTTP-FLV, dashboard, metrics).
    pub http: SocketAddr,
}

/// Health as committed by the leader from heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeHealth {
    /// Heartbeats arrive.
    Up,
    /// No heartbeat for longer than `Settings::down_after_ms`.
    Down,
}

/// One registered node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Id allocated from the log.
    pub id: NodeId,
    /// Identity the node keeps on disk; a repeated join with it gets the same id.
    pub uuid: Uuid,
    /// Human readable name (host name by default).
    pub name: String,
    /// Region the node serves.
    pub region: String,
    /// QUIC address for Raft, join and relay traffic (mutual TLS).
    pub internal_addr: SocketAddr,
    /// Viewer-facing addresses.
    pub public: PublicAddrs,
    /// What the node may do.
    pub roles: Roles,
    /// Committed health.
    pub health: NodeHealth,
    /// Log index of the entry that registered the node (orders nodes by age).
    pub joined_index: u64,
    /// Hex SHA-256 of the node's public key: a join with this uuid must present the same key.
    pub key_sha256: String,
}

/// A region: where its edges are and which VIPs front them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// Region name, as given with `--region`.
    pub name: String,
    /// Latitude in degrees, when known.
    pub lat: Option<f64>,
    /// Longitude in degrees, when known.
    pub lon: Option<f64>,
    /// Regional virtual IPs (load balancer addresses) in front of the edges.
    pub vips: Vec<IpAddr>,
}

/// State of a member of the origin pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginState {
    /// Owns streams: part of the ring.
    Active,
    /// Leaving the pool: out of the ring, still serving the streams that have not moved yet.
    Draining,
}

/// A node's place in the origin pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginSlot {
    /// Active or draining.
    pub state: OriginState,
    /// Log index of the promotion (or of the start of draining); newer = larger.
    pub since_index: u64,
    /// Leader clock (unix ms) at the same moment.
    pub since_ms: u64,
}

/// Cluster-wide settings, changed through the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Wanted number of active origins.
    pub origin_target: usize,
    /// Bounded-load slack: no origin above (1 + ε) × mean load.
    pub balance_epsilon: f64,
    /// A node without heartbeat for this long is committed as down.
    pub down_after_ms: u64,
    /// A voter unreachable this long is replaced by a caught-up learner.
    pub voter_replace_after_ms: u64,
    /// An origin down this long no longer counts towards the pool target.
    pub origin_grace_ms: u64,
    /// A draining origin is demoted after this long even if streams remain.
    pub drain_timeout_ms: u64,
    /// Lifetime of the node certificates the CA signs; nodes renew theirs after two thirds.
    pub cert_lifetime_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            origin_target: 2,
            balance_epsilon: 0.25,
            down_after_ms: 3_000,
            voter_replace_after_ms: 30_000,
            origin_grace_ms: 5_000,
            drain_timeout_ms: 60_000,
            cert_lifetime_ms: 24 * 3_600_000,
        }
    }
}

/// A join token as stored: only the SHA-256 of the secret is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public part of the token (`ID` in `ID.SECRET`).
    pub id: String,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    /// Unix ms after which the token is refused.
    pub expires_at_ms: u64,
    /// Node that created it (`None` for the bootstrap token).
    pub created_by: Option<NodeId>,
    /// Consumed by the first successful join.
    pub single_use: bool,
}

/// A stream signing key: the HMAC secret edges verify publish and play tokens with. The newest
/// key (highest `created_ms`) signs; every stored key verifies until it is retired.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamKeyRecord {
    /// Key id, carried in every token it signed.
    pub id: String,
    /// The secret, base64url without padding.
    pub secret: String,
    /// Unix ms when the key was added.
    pub created_ms: u64,
}

impl std::fmt::Debug for StreamKeyRecord {
    // Written out to keep the secret out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamKeyRecord")
            .field("id", &self.id)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

/// Load a node reports with every heartbeat. Heartbeats go to the leader and are never logged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Open client connections (RTMP + HTTP-FLV).
    pub connections: u64,
    /// CPU use, 0.0 ..= 1.0 over all cores.
    pub cpu: f64,
    /// Current egress in bits per second.
    pub egress_bps: u64,
    /// Egress capacity in bits per second (0 = unknown).
    pub capacity_bps: u64,
    /// Streams this node owns as an origin, with their bitrate in bits per second.
    pub origin_streams: Vec<StreamLoad>,
    /// Streams this node serves as an edge.
    pub edge_streams: u64,
}

impl LoadReport {
    /// Free share of capacity, 0.0 ..= 1.0 (CPU when the egress capacity is unknown).
    pub fn spare(&self) -> f64 {
        let by_cpu = 1.0 - self.cpu.clamp(0.0, 1.0);
        if self.capacity_bps == 0 {
            return by_cpu;
        }
        let by_net = 1.0 - (self.egress_bps as f64 / self.capacity_bps as f64).clamp(0.0, 1.0);
        by_cpu.min(by_net)
    }

    /// Sum of the bitrates of the streams owned as an origin (the ring's load unit).
    pub fn origin_bitrate(&self) -> u64 {
        self.origin_streams.iter().map(|s| s.bitrate_bps).sum()
    }
}

/// One stream and its bitrate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamLoad {
    /// `app/key`.
    pub key: String,
    /// Bits per second.
    pub bitrate_bps: u64,
}
