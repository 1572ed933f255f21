//! `ClusterStatus`: the JSON of `GET /api/v1/cluster` and `skein status --json`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::state::ClusterState;
use crate::types::{
    LoadReport, NodeHealth, NodeId, OriginState, PublicAddrs, Region, Roles, Settings,
};

/// A node's place in Raft.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaftRole {
    /// Votes and holds the log.
    Voter,
    /// Receives the log, does not vote.
    Learner,
    /// Registered but not (yet) in the Raft membership.
    None,
}

fn unspecified_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// One node in the status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node id.
    pub id: NodeId,
    /// Disk identity.
    pub uuid: Uuid,
    /// Name.
    pub name: String,
    /// Region name.
    pub region: String,
    /// Viewer-facing addresses (`rtmp`, `http`).
    pub public_addr: PublicAddrs,
    /// Internal QUIC address. Left out of the API's view for callers without the admin
    /// token; read back as the unspecified address then.
    #[serde(default = "unspecified_addr")]
    pub internal_addr: SocketAddr,
    /// Allowed roles.
    pub roles: Roles,
    /// Voter, learner or none.
    pub raft: RaftRole,
    /// Whether this node is the Raft leader.
    pub leader: bool,
    /// Committed health.
    pub health: NodeHealth,
    /// Place in the origin pool, if any.
    pub origin: Option<OriginState>,
    /// Milliseconds since the leader last heard a heartbeat (leader's view only).
    pub last_heartbeat_ms: Option<u64>,
    /// Last reported load (leader's view only).
    pub load: Option<LoadReport>,
}

/// The origin pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OriginPoolStatus {
    /// Wanted number of active origins.
    pub target: usize,
    /// Active origins.
    pub active: Vec<NodeId>,
    /// Draining origins.
    pub draining: Vec<NodeId>,
    /// Active and up: the ring edges start from.
    pub live: Vec<NodeId>,
}

/// Cluster status as served by any node (loads and heartbeats come from the leader).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Cluster id.
    pub cluster_id: Option<Uuid>,
    /// Node that produced this status.
    pub reported_by: NodeId,
    /// Current Raft leader, if known.
    pub leader: Option<NodeId>,
    /// Current Raft term.
    pub term: u64,
    /// Index of the last applied log entry.
    pub last_applied: Option<u64>,
    /// All registered nodes, by id.
    pub nodes: Vec<NodeStatus>,
    /// All regions (`name`, `lat`, `lon`, `vips`).
    pub regions: Vec<Region>,
    /// Origin pool.
    pub origin_pool: OriginPoolStatus,
    /// Voter ids.
    pub voters: Vec<NodeId>,
    /// Learner ids.
    pub learners: Vec<NodeId>,
    /// A voter change is in its joint phase.
    pub voters_changing: bool,
    /// Settings.
    pub settings: Settings,
    /// Nodes holding the CA private key (they sign joins and renewals).
    pub ca_key_holders: Vec<NodeId>,
    /// Removed node ids: refused by every member, never reused.
    pub removed: Vec<NodeId>,
}

/// What a leader adds to the committed state.
pub(crate) struct LiveInfo {
    pub(crate) reported_by: NodeId,
    pub(crate) leader: Option<NodeId>,
    pub(crate) term: u64,
    pub(crate) last_applied: Option<u64>,
    pub(crate) heard: BTreeMap<NodeId, (u64, LoadReport)>,
}

pub(crate) fn build(state: &ClusterState, live: LiveInfo) -> ClusterStatus {
    let nodes = state
        .nodes
        .values()
        .map(|n| {
            let heard = live.heard.get(&n.id);
            NodeStatus {
                id: n.id,
                uuid: n.uuid,
                name: n.name.clone(),
                region: n.region.clone(),
                public_addr: n.public,
                internal_addr: n.internal_addr,
                roles: n.roles,
                raft: if state.voters.contains(&n.id) {
                    RaftRole::Voter
                } else if state.learners.contains(&n.id) {
                    RaftRole::Learner
                } else {
                    RaftRole::None
                },
                leader: live.leader == Some(n.id),
                health: n.health,
                origin: state.origins.get(&n.id).map(|s| s.state),
                last_heartbeat_ms: heard.map(|h| h.0),
                load: heard.map(|h| h.1.clone()),
            }
        })
        .collect();
    let pool = |st: OriginState| {
        state
            .origins
            .iter()
            .filter(|(_, s)| s.state == st)
            .map(|(n, _)| *n)
            .collect()
    };
    ClusterStatus {
        cluster_id: state.cluster_id,
        reported_by: live.reported_by,
        leader: live.leader,
        term: live.term,
        last_applied: live.last_applied,
        nodes,
        regions: state.regions.values().cloned().collect(),
        origin_pool: OriginPoolStatus {
            target: state.settings.origin_target,
            active: pool(OriginState::Active),
            draining: pool(OriginState::Draining),
            live: state.live_origins(),
        },
        voters: state.voters.iter().copied().collect(),
        learners: state.learners.iter().copied().collect(),
        voters_changing: state.voters_changing,
        settings: state.settings.clone(),
        ca_key_holders: state.ca_key_holders.iter().copied().collect(),
        removed: state.removed.keys().copied().collect(),
    }
}
