//! Stream signing keys: the HMAC secrets tokens are signed with. A [`KeyRing`] holds every key
//! that verifies; the newest signs, so a rotation adds a key and older tokens keep working
//! until their key is retired. A cluster keeps its keys in the replicated state; a standalone
//! node in a JSON file (0600) in its data directory, read here.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use skein_raft::StreamKeyRecord;

/// Bytes of a generated secret.
const SECRET_LEN: usize = 32;

/// One signing key.
#[derive(Clone)]
pub struct StreamKey {
    /// Key id, carried in every token the key signed.
    pub id: String,
    secret: Vec<u8>,
    /// Unix ms when the key was added; the newest signs.
    pub created_ms: u64,
}

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamKey")
            .field("id", &self.id)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

impl StreamKey {
    /// A new random key, added at `created_ms`.
    pub fn generate(created_ms: u64) -> Self {
        let secret: [u8; SECRET_LEN] = rand::random();
        let id_bytes: [u8; 4] = rand::random();
        let id: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self::from_secret(format!("k{id}"), secret.to_vec(), created_ms)
    }

    /// A key with a known secret.
    pub fn from_secret(id: String, secret: Vec<u8>, created_ms: u64) -> Self {
        Self {
            id,
            secret,
            created_ms,
        }
    }

    /// The key as stored in the cluster state or the key file.
    pub fn to_record(&self) -> StreamKeyRecord {
        StreamKeyRecord {
            id: self.id.clone(),
            secret: URL_SAFE_NO_PAD.encode(&self.secret),
            created_ms: self.created_ms,
        }
    }

    /// A stored key; `None` when its secret is not base64url or empty.
    pub fn from_record(record: &StreamKeyRecord) -> Option<Self> {
        let secret = URL_SAFE_NO_PAD.decode(&record.secret).ok()?;
        (!secret.is_empty())
            .then(|| Self::from_secret(record.id.clone(), secret, record.created_ms))
    }

    pub(super) fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts keys of any length")
    }
}

/// The keys that verify, newest first.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: Vec<StreamKey>,
}

impl KeyRing {
    /// A ring of `keys`.
    pub fn new(mut keys: Vec<StreamKey>) -> Self {
        keys.sort_by(|a, b| (b.created_ms, &b.id).cmp(&(a.created_ms, &a.id)));
        Self { keys }
    }

    /// The ring of stored keys; a record that does not decode is left out.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a StreamKeyRecord>) -> Self {
        Self::new(
            records
                .into_iter()
                .filter_map(StreamKey::from_record)
                .collect(),
        )
    }

    /// The key that signs new tokens: the newest.
    pub fn signer(&self) -> Option<&StreamKey> {
        self.keys.first()
    }

    /// The key with id `id`.
    pub fn get(&self, id: &str) -> Option<&StreamKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Whether there is no key at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key, newest first.
    pub fn keys(&self) -> &[StreamKey] {
        &self.keys
    }
}

/// The key file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFileContent {
    keys: Vec<StreamKeyRecord>,
}

/// Reads the key file; a missing file is no keys.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<StreamKeyRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let content: KeyFileContent = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a stream key file", path.display()))?;
    Ok(content.keys)
}

/// Writes the key file atomically (temp file, fsync, rename), readable by the owner only.
pub fn write_file(path: &Path, keys: &[StreamKeyRecord]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        // A directory made for the keys is the owner's only, like the cluster data directory.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(&KeyFileContent {
        keys: keys.to_vec(),
    })?;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// Adds a new key to the key file (creating it); returns the new key's id.
pub fn rotate_file(path: &Path, now_ms: u64) -> anyhow::Result<String> {
    let mut keys = read_file(path)?;
    let key = StreamKey::generate(now_ms);
    keys.push(key.to_record());
    write_file(path, &keys)?;
    Ok(key.id)
}

/// Removes key `id` from the key file; the last key stays (rotate first).
pub fn retire_file(path: &Path, id: &str) -> anyhow::Result<()> {
    let mut keys = read_file(path)?;
    if !keys.iter().any(|k| k.id == id) {
        bail!("no stream key {id} in {}", path.display());
    }
    if keys.len() == 1 {
        bail!("{id} is the last stream key: rotate (add a new one) before retiring it");
    }
    keys.retain(|k| k.id != id);
    write_file(path, &keys)
}

/// A key file a running node verifies against, read again when it changes (`skein stream-key`
/// edits it while the node runs).
pub struct WatchedKeyFile {
    path: PathBuf,
    /// The file's version (mtime and inode: every write renames a new file in) and its keys.
    loaded: Mutex<(Option<(SystemTime, u64)>, KeyRing)>,
}

impl WatchedKeyFile {
    /// Watches `path` (which need not exist yet).
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            loaded: Mutex::new((None, KeyRing::default())),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keys as the file holds them now (a missing file: none). A file that cannot be read
    /// keeps the last keys read, and says so once per change of the file.
    pub fn keys(&self) -> KeyRing {
        use std::os::unix::fs::MetadataExt;
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| Ok((m.modified()?, m.ino())))
            .ok();
        let mut loaded = self.loaded.lock();
        if loaded.0 != modified {
            loaded.0 = modified;
            warn_if_readable_by_others(&self.path);
            match read_file(&self.path) {
                Ok(records) => loaded.1 = KeyRing::from_records(&records),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "stream key file unreadable; keeping the keys read before")
                }
            }
        }
        loaded.1.clone()
    }
}

/// Anyone who can read the key file can mint tokens: say so when group or others may.
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the stream key file is readable by others: anyone who can read it can mint tokens (chmod 600 it)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_key_signs_and_the_file_rotates_and_retires() {
        let dir = std::env::temp_dir().join(format!("skein-keys-{}", rand::random::<u64>()));
        let path = dir.join("stream-keys.json");
        let watched = WatchedKeyFile::new(path.clone());
        assert!(watched.keys().is_empty());
        let first = rotate_file(&path, 1).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(watched.keys().signer().unwrap().id, first);
        let second = rotate_file(&path, 2).unwrap();
        assert_eq!(
            watched.keys().signer().unwrap().id,
            second,
            "the change is seen"
        );
        let keys = KeyRing::from_records(&read_file(&path).unwrap());
        assert_eq!(keys.signer().unwrap().id, second);
        assert!(keys.get(&first).is_some());
        retire_file(&path, &first).unwrap();
        assert!(retire_file(&path, &first).is_err());
        assert!(
            retire_file(&path, &second)
                .unwrap_err()
                .to_string()
                .contains("last")
        );
        assert_eq!(read_file(&path).unwrap().len(), 1);
        assert!(
            watched.keys().get(&first).is_none(),
            "the retired key is gone"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
