//! Skein cluster control plane: membership, regions, origin pool and voters through Raft.
//!
//! The entry point is [`Cluster`], configured by [`ClusterConfig`]: [`Cluster::init`]
//! bootstraps (and hands back a [`JoinInfo`]), [`Cluster::join`] joins with a [`JoinToken`] and
//! a pinned CA hash, [`Cluster::open`] restarts from the data directory. Changes go through
//! [`Cluster::write`] as a [`Command`]. The committed [`ClusterState`] is watched with
//! [`Cluster::state`]; [`Cluster::status`] returns the JSON-serialisable [`ClusterStatus`].
//! Routing uses [`ring::Ring`] over [`ClusterState::live_origins`]. Media relay streams between
//! nodes: [`Cluster::relay_listener`] ([`RelayListener`]) and [`Cluster::open_relay`]
//! ([`RelayStream`]); a failure says what it means for the peer through
//! [`ClusterError::peer_failure`] ([`PeerFailure`]). See `docs/cluster.md` for the design.
//!
//! Module layout:
//! - public data: [`types`] (node, region, load and settings types), [`state`] (the replicated
//!   state and its commands), [`status`], [`ring`] (origin routing), [`token`] (join tokens),
//!   [`policy`] (the leader's pure decisions), [`pki`] (CA, node certificates, CA hashes),
//!   [`error`] (errors and peer failure classes), [`transport`] (the cluster transport: the
//!   QUIC endpoint shared by Raft, joins and relay, and its ALPNs), [`wire_size`] (bytes of the
//!   Raft traffic and snapshot, for capacity planning);
//! - the node: `cluster` (the [`Cluster`] handle), `config` ([`ClusterConfig`]), `inner` (the
//!   state the handle, server and loops share), `identity` (files in the data directory),
//!   `join` (both sides of a join), `join_guard` (bounds of the unauthenticated join endpoint),
//!   `server` (serving the cluster transport), `leader` (heartbeat and policy loops), `trust`
//!   (CA key handover, certificate renewal, revocation of removed nodes), `forward` (reaching
//!   the leader), `relay` (relay streams);
//! - Raft plumbing: `network` (openraft over the cluster transport), `rpc` (its messages),
//!   `store` (log and state machine on redb), `typecfg` (openraft types).

#![warn(missing_docs)]

mod cluster;
mod config;
pub mod error;
mod forward;
mod identity;
mod inner;
mod join;
mod join_guard;
mod leader;
mod network;
pub mod pki;
pub mod policy;
mod relay;
pub mod ring;
mod rpc;
mod server;
pub mod state;
pub mod status;
mod store;
pub mod token;
pub mod transport;
mod trust;
mod typecfg;
pub mod types;
pub mod wire_size;

pub use cluster::Cluster;
pub use config::ClusterConfig;
pub use error::{ClusterError, PeerFailure, TlsError, TransportError};
pub use join::JoinInfo;
pub use join_guard::JoinLimits;
pub use relay::{RelayListener, RelayStream};
pub use state::{ClusterState, Command, CommandResult};
pub use status::{ClusterStatus, NodeStatus, OriginPoolStatus, RaftRole};
pub use token::JoinToken;
pub use types::{
    LoadReport, NodeHealth, NodeId, NodeInfo, OriginState, PublicAddrs, Region, Roles, Settings,
    StreamKeyRecord, StreamLoad,
};
