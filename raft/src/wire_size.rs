//! Bytes of what the cluster replicates and sends, measured on the real types and encodings:
//! Raft RPCs as they go over `skein-raft/1` (the JSON of the request; QUIC and TLS framing
//! come on top), and the snapshot as the store writes it. Capacity planning reads these (the
//! scale model in `skein-tests`); nothing here is on a hot path.

use std::collections::BTreeMap;

use openraft::type_config::alias::{EntryPayloadOf, LeaderIdOf};
use openraft::vote::RaftLeaderIdExt;
use openraft::{BasicNode, EntryPayload, Membership};

use crate::rpc::Request;
use crate::state::{ClusterState, Command};
use crate::store::SmData;
use crate::typecfg::{Entry, LogId, SnapshotMeta, StoredMembership, TypeConfig, Vote};
use crate::types::{LoadReport, NodeId};

/// Where the log is assumed to be when sizes are taken: term and index are numbers in the
/// JSON, so their magnitude counts (a long-lived cluster, a million entries in).
const TERM: u64 = 1_000;
const INDEX: u64 = 1_000_000;

/// Sizes of the two forms of the state machine's snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotSize {
    /// The snapshot as the store writes it (JSON of the state, membership and last log id);
    /// rewritten every 500 entries.
    pub stored: usize,
    /// The `InstallSnapshot` request that carries it to a follower that is too far behind.
    pub sent: usize,
}

/// The Raft membership `state` mirrors: its voters, and every voter and learner with the
/// internal address the network dials.
fn membership(state: &ClusterState) -> Membership<NodeId, BasicNode> {
    let nodes: BTreeMap<NodeId, BasicNode> = state
        .voters
        .iter()
        .chain(&state.learners)
        .filter_map(|id| {
            let info = state.nodes.get(id)?;
            Some((*id, BasicNode::new(info.internal_addr.to_string())))
        })
        .collect();
    let voters = state
        .voters
        .iter()
        .copied()
        .filter(|v| nodes.contains_key(v))
        .collect();
    Membership::new(vec![voters], nodes).expect("every voter is one of the nodes")
}

fn leader(state: &ClusterState) -> NodeId {
    state.voters.first().copied().unwrap_or(1)
}

fn log_id(state: &ClusterState, index: u64) -> LogId {
    LogId::new(
        LeaderIdOf::<TypeConfig>::new_committed(TERM, leader(state)),
        index,
    )
}

fn wire_len(request: &Request) -> usize {
    serde_json::to_vec(request).map_or(0, |bytes| bytes.len())
}

fn append(state: &ClusterState, payloads: Vec<EntryPayloadOf<TypeConfig>>) -> usize {
    let entries = payloads
        .into_iter()
        .zip(INDEX + 1..)
        .map(|(payload, index)| Entry {
            log_id: log_id(state, index),
            payload,
        })
        .collect();
    wire_len(&Request::Append(openraft::raft::AppendEntriesRequest {
        vote: Vote::new_committed(TERM, leader(state)),
        prev_log_id: Some(log_id(state, INDEX)),
        entries,
        leader_commit: Some(log_id(state, INDEX)),
    }))
}

/// One Raft heartbeat (an `AppendEntries` without entries) from the leader to one follower.
pub fn heartbeat(state: &ClusterState) -> usize {
    append(state, Vec::new())
}

/// An `AppendEntries` to one follower carrying `commands` as log entries.
pub fn append_commands(state: &ClusterState, commands: &[Command]) -> usize {
    append(
        state,
        commands.iter().cloned().map(EntryPayload::Normal).collect(),
    )
}

/// An `AppendEntries` to one follower carrying one membership entry: the voter set and every
/// member's address, which is what each learner added and each voter change writes.
pub fn append_membership(state: &ClusterState) -> usize {
    append(state, vec![EntryPayload::Membership(membership(state))])
}

/// One load report a node sends the leader with every application heartbeat.
pub fn load_report(node: NodeId, load: &LoadReport) -> usize {
    wire_len(&Request::Heartbeat {
        node,
        load: load.clone(),
    })
}

/// The snapshot of `state` (with the membership it mirrors), stored and sent.
pub fn snapshot(state: &ClusterState) -> SnapshotSize {
    let last = log_id(state, INDEX);
    let data = SmData {
        last_applied: Some(last),
        membership: StoredMembership::new(Some(last), membership(state)),
        state: state.clone(),
    };
    let stored = serde_json::to_vec(&data).unwrap_or_default();
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: data.membership.clone(),
    };
    SnapshotSize {
        stored: stored.len(),
        sent: wire_len(&Request::Snapshot {
            vote: Vote::new_committed(TERM, leader(state)),
            meta,
            data: stored,
        }),
    }
}
