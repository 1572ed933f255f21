//! Skein cluster control plane: membership, regions, origin pool and voters through Raft.
//!
//! The entry point is [`Cluster`]: [`Cluster::init`] bootstraps, [`Cluster::join`] joins with
//! a token and a pinned CA hash, [`Cluster::open`] restarts from the data directory. The
//! committed [`ClusterState`] is watched with [`Cluster::state`]; [`Cluster::status`] returns
//! the JSON-serialisable [`ClusterStatus`]. Routing uses [`ring::Ring`] over
//! [`ClusterState::live_origins`]. Relay streams between nodes: [`Cluster::relay_listener`] and
//! [`Cluster::open_relay`]. See `docs/cluster.md` for the design.

mod cluster;
pub mod error;
mod network;
pub mod pki;
pub mod policy;
pub mod ring;
mod rpc;
pub mod state;
pub mod status;
mod store;
pub mod token;
pub mod transport;
mod typecfg;
pub mod types;

pub use cluster::{Cluster, ClusterConfig, JoinInfo, RelayListener, RelayStream};
pub use error::ClusterError;
pub use state::{ClusterState, Command, CommandResult};
pub use status::{ClusterStatus, NodeStatus, OriginPoolStatus, RaftRole};
pub use token::JoinToken;
pub use types::{
    LoadReport, NodeHealth, NodeId, NodeInfo, OriginState, PublicAddrs, Region, Roles, Settings,
    StreamLoad,
};
