//! openraft type configuration for Skein.

use crate::state::{Command, CommandResult};

openraft::declare_raft_types!(
    /// Raft types: the log carries [`Command`]s, nodes are addressed by their internal address.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
);

/// Log id of this configuration.
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// Vote of this configuration.
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// Log entry of this configuration.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// Stored membership of this configuration.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot meta of this configuration.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
