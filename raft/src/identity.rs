//! The on-disk identity of a node: its uuid, node id and cluster id (`identity.json`), its key
//! and certificates, the cluster CA key on the nodes that hold it, and the names of the files
//! in the data directory.

use std::path::Path;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ClusterError;
use crate::transport::NodeTls;
use crate::types::NodeId;

/// Identity kept on disk so that a repeated join or a restart keeps the same node.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) uuid: Uuid,
    pub(crate) node_id: Option<NodeId>,
    pub(crate) cluster_id: Option<Uuid>,
}

const IDENTITY: &str = "identity.json";
pub(crate) const NODE_KEY: &str = "node.key";
pub(crate) const NODE_CERT: &str = "node.crt";
pub(crate) const CA_CERT: &str = "ca.crt";
/// The cluster CA's private key: only on the nodes that sign (the voters).
pub(crate) const CA_KEY: &str = "ca.key";
/// The Raft database.
pub(crate) const DB: &str = "raft.redb";

/// The identity in `dir`, `None` if there is none yet.
pub(crate) fn read_identity(dir: &Path) -> Result<Option<Identity>, ClusterError> {
    match std::fs::read(dir.join(IDENTITY)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(ClusterError::Identity),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn write_identity(dir: &Path, id: &Identity) -> Result<(), ClusterError> {
    let bytes = serde_json::to_vec_pretty(id).map_err(ClusterError::Identity)?;
    write_file(dir, IDENTITY, &bytes)
}

/// The node id of the node in `dir`, if it has joined or initialised a cluster.
pub(crate) fn node_id(dir: &Path) -> Result<NodeId, ClusterError> {
    read_identity(dir)?
        .and_then(|i| i.node_id)
        .ok_or_else(|| ClusterError::NotInitialized(dir.display().to_string()))
}

/// Whether `dir` holds a node id and the certificate that goes with it.
pub(crate) fn is_member(dir: &Path) -> Result<bool, ClusterError> {
    Ok(read_identity(dir)?.is_some_and(|i| i.node_id.is_some()) && dir.join(NODE_CERT).exists())
}

/// Creates the data directory if needed, readable by the owner only (it holds the node's key).
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), ClusterError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Writes a file atomically (temp + fsync + rename), readable by the owner only.
pub(crate) fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ClusterError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

/// The node's key and certificates, as written by `init` or `join`.
pub(crate) fn read_tls(dir: &Path) -> Result<NodeTls, ClusterError> {
    Ok(NodeTls {
        ca_cert_pem: read_text(dir, CA_CERT)?,
        cert_pem: read_text(dir, NODE_CERT)?,
        key_pem: read_text(dir, NODE_KEY)?,
    })
}

/// The CA private key kept in `dir`, if this node holds it.
pub(crate) fn read_ca_key(dir: &Path) -> Result<Option<String>, ClusterError> {
    match std::fs::read_to_string(dir.join(CA_KEY)) {
        Ok(k) => Ok(Some(k)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the CA private key from `dir` (a node that no longer signs).
pub(crate) fn remove_ca_key(dir: &Path) -> Result<(), ClusterError> {
    match std::fs::remove_file(dir.join(CA_KEY)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

fn read_text(dir: &Path, name: &str) -> Result<String, ClusterError> {
    std::fs::read_to_string(dir.join(name))
        .map_err(|e| ClusterError::NotInitialized(format!("{} ({name}: {e})", dir.display())))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn secrets_at_rest_are_the_owner_s_only() {
        let root = std::env::temp_dir().join(format!("skein-identity-{}", std::process::id()));
        let dir = root.join("data");
        create_private_dir(&dir).unwrap();
        write_file(&dir, NODE_KEY, b"key").unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(NODE_KEY)), 0o600);
        let _ = std::fs::remove_dir_all(&root);
    }
}
