//! Cluster state through Raft (filled by the cluster work).
