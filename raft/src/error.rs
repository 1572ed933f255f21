//! Errors of the public API.

use crate::types::NodeId;

/// Everything that can go wrong in the cluster API; messages are meant for operators.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The leader refused a join (bad, unknown or expired token, ...).
    #[error("join refused: {0}")]
    JoinRefused(String),
    /// The seed presented a CA whose hash is not the pinned one.
    #[error("seed's CA hash {presented} does not match the pinned {pinned}")]
    CaMismatch {
        /// Hash of the CA the seed presented.
        presented: String,
        /// Hash given with `--ca-hash`.
        pinned: String,
    },
    /// No seed could be reached.
    #[error("no seed reachable: {0}")]
    SeedsUnreachable(String),
    /// The data directory holds no cluster identity.
    #[error("no cluster identity in {0}: run init or join first")]
    NotInitialized(String),
    /// The data directory already belongs to a cluster.
    #[error("{0} already belongs to a cluster: open it instead")]
    AlreadyInitialized(String),
    /// No leader is known right now.
    #[error("no Raft leader reachable")]
    NoLeader,
    /// A node id that is not registered.
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    /// The state machine rejected a command.
    #[error("rejected: {0}")]
    Rejected(String),
    /// Invalid argument.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Certificate or TLS setup problem.
    #[error("tls: {0}")]
    Tls(String),
    /// QUIC problem.
    #[error("transport: {0}")]
    Transport(String),
    /// Raft problem.
    #[error("raft: {0}")]
    Raft(String),
    /// Disk problem.
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
}
