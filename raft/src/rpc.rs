//! Messages on the internal endpoint: Raft RPC and control traffic on `skein-raft/1`, the join
//! handshake on `skein-join/1`.

use std::net::SocketAddr;

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::state::{Command, CommandResult};
use crate::status::ClusterStatus;
use crate::typecfg::{SnapshotMeta, TypeConfig, Vote};
use crate::types::{LoadReport, NodeId, PublicAddrs, Roles};

/// A request on a `skein-raft/1` stream (or the join request on `skein-join/1`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    Snapshot {
        vote: Vote,
        meta: SnapshotMeta,
        data: Vec<u8>,
    },
    /// Load report; only the leader keeps it.
    Heartbeat {
        node: NodeId,
        load: LoadReport,
    },
    /// A write forwarded to the leader.
    Write(Command),
    /// The leader's full status.
    Status,
    /// A join forwarded by a follower seed to the leader.
    Join(JoinRequest),
    /// Asks a node holding the CA key to sign a CSR for `node`: the node itself (renewal) or
    /// the leader (join) may ask.
    Sign {
        node: NodeId,
        csr_pem: String,
    },
    /// Asks a node holding the CA key for it; only a voter gets it.
    FetchCaKey,
}

/// The answer to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    Append(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    Snapshot(SnapshotResponse<TypeConfig>),
    Ack,
    Written(CommandResult),
    Status(Box<ClusterStatus>),
    Joined(JoinAccepted),
    /// A signed certificate (PEM).
    Signed(String),
    /// The CA private key.
    CaKey(SecretPem),
    /// The join was refused; the text is shown to the operator.
    Refused(String),
    Failed(String),
}

/// A private key in PEM; `Debug` does not show it.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct SecretPem(pub(crate) String);

impl std::fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretPem(..)")
    }
}

/// What a joining node sends (after verifying the seed against the pinned CA hash).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct JoinRequest {
    pub(crate) token: String,
    pub(crate) csr_pem: String,
    pub(crate) uuid: Uuid,
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) internal_addr: SocketAddr,
    pub(crate) public: PublicAddrs,
    pub(crate) roles: Roles,
}

/// The leader's answer to an accepted join.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct JoinAccepted {
    pub(crate) node_id: NodeId,
    pub(crate) cert_pem: String,
    pub(crate) ca_cert_pem: String,
    pub(crate) cluster_id: Option<Uuid>,
    pub(crate) members: Vec<(NodeId, SocketAddr)>,
}
