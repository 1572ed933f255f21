//! Skein cluster control plane: membership, regions, origin pool and voters through Raft.
pub mod ring;
pub mod state;
pub mod types;
