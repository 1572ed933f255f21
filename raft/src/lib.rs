//! Skein cluster control plane: membership, regions, origin pool and voters through Raft.
pub mod error;
pub mod pki;
pub mod policy;
pub mod ring;
pub mod state;
mod store;
pub mod transport;
mod typecfg;
pub mod types;

pub use error::ClusterError;
