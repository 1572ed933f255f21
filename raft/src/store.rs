//! Durable Raft log and state machine in one redb database.
//!
//! Every write transaction commits with `Durability::Immediate` (fsync) before openraft is told
//! that the IO completed, and before any client is answered.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, IOFlushed, LogState, RaftLogStorage, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftLogReader, RaftSnapshotBuilder};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::state::{ClusterState, CommandResult};
use crate::typecfg::{Entry, LogId, SnapshotMeta, StoredMembership, TypeConfig, Vote};

type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>;

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const K_VOTE: &str = "vote";
const K_COMMITTED: &str = "committed";
const K_PURGED: &str = "purged";
const K_SM: &str = "state_machine";
const K_SNAPSHOT: &str = "snapshot";

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Opens (or creates) the database and its tables.
pub(crate) fn open_db(path: &Path) -> io::Result<Arc<Database>> {
    let db = Database::create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            io::Error::new(io::ErrorKind::WouldBlock, e.to_string())
        }
        e => io_err(e),
    })?;
    let mut tx = db.begin_write().map_err(io_err)?;
    tx.set_durability(Durability::Immediate).map_err(io_err)?;
    tx.open_table(LOGS).map_err(io_err)?;
    tx.open_table(META).map_err(io_err)?;
    tx.commit().map_err(io_err)?;
    // The state machine holds the hashes of join tokens: owner only.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(Arc::new(db))
}

fn get_meta<T: for<'a> Deserialize<'a>>(db: &Database, key: &str) -> io::Result<Option<T>> {
    let tx = db.begin_read().map_err(io_err)?;
    let table = tx.open_table(META).map_err(io_err)?;
    match table.get(key).map_err(io_err)? {
        Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(io_err),
        None => Ok(None),
    }
}

/// Writes meta entries in one durable transaction.
fn put_meta(db: &Database, items: &[(&str, Vec<u8>)]) -> io::Result<()> {
    let mut tx = db.begin_write().map_err(io_err)?;
    tx.set_durability(Durability::Immediate).map_err(io_err)?;
    {
        let mut table = tx.open_table(META).map_err(io_err)?;
        for (k, v) in items {
            table.insert(*k, v.as_slice()).map_err(io_err)?;
        }
    }
    tx.commit().map_err(io_err)
}

/// Writes meta entries durably on the blocking pool: an fsync must not stall the async
/// workers that also serve media.
async fn put_meta_off_worker(
    db: &Arc<Database>,
    items: Vec<(&'static str, Vec<u8>)>,
) -> io::Result<()> {
    let db = db.clone();
    off_worker(move || put_meta(&db, &items)).await
}

/// Runs a blocking storage job on tokio's blocking pool.
async fn off_worker<T: Send + 'static>(
    job: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(job).await.map_err(io_err)?
}

fn to_json<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(io_err)
}

/// The Raft log (and vote) in redb.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<Database>) -> Self {
        LogStore { db }
    }

    /// Removes the log entries in `range` and optionally writes meta, in one durable commit
    /// (on the blocking pool).
    async fn remove_where(
        &self,
        range: (Bound<u64>, Bound<u64>),
        meta: Option<(&'static str, Vec<u8>)>,
    ) -> io::Result<()> {
        let db = self.db.clone();
        off_worker(move || remove_range(&db, range, meta)).await
    }
}

/// Removes the log entries in `range` and optionally writes meta, in one durable commit.
fn remove_range(
    db: &Database,
    range: (Bound<u64>, Bound<u64>),
    meta: Option<(&str, Vec<u8>)>,
) -> io::Result<()> {
    let mut tx = db.begin_write().map_err(io_err)?;
    tx.set_durability(Durability::Immediate).map_err(io_err)?;
    {
        let mut logs = tx.open_table(LOGS).map_err(io_err)?;
        let keys: Vec<u64> = logs
            .range(range)
            .map_err(io_err)?
            .map(|r| r.map(|(k, _)| k.value()).map_err(io_err))
            .collect::<io::Result<_>>()?;
        for k in keys {
            logs.remove(k).map_err(io_err)?;
        }
        if let Some((k, v)) = meta {
            let mut m = tx.open_table(META).map_err(io_err)?;
            m.insert(k, v.as_slice()).map_err(io_err)?;
        }
    }
    tx.commit().map_err(io_err)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let tx = self.db.begin_read().map_err(io_err)?;
        let logs = tx.open_table(LOGS).map_err(io_err)?;
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        let mut out = Vec::new();
        for item in logs.range(bounds).map_err(io_err)? {
            let (_, v) = item.map_err(io_err)?;
            out.push(serde_json::from_slice(v.value()).map_err(io_err)?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        get_meta(&self.db, K_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let purged: Option<LogId> = get_meta(&self.db, K_PURGED)?;
        let tx = self.db.begin_read().map_err(io_err)?;
        let logs = tx.open_table(LOGS).map_err(io_err)?;
        let last = match logs.last().map_err(io_err)? {
            Some((_, v)) => Some(
                serde_json::from_slice::<Entry>(v.value())
                    .map_err(io_err)?
                    .log_id(),
            ),
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        put_meta_off_worker(&self.db, vec![(K_VOTE, to_json(vote)?)]).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        put_meta_off_worker(&self.db, vec![(K_COMMITTED, to_json(&committed)?)]).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(get_meta::<Option<LogId>>(&self.db, K_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let rows = entries
            .into_iter()
            .map(|entry| Ok((entry.log_id().index, to_json(&entry)?)))
            .collect::<io::Result<Vec<_>>>();
        let db = self.db.clone();
        let result = match rows {
            Ok(rows) => off_worker(move || append_rows(&db, &rows)).await,
            Err(e) => Err(e),
        };
        // Acknowledged only after the durable commit above.
        let ack = result
            .as_ref()
            .map(|_| ())
            .map_err(|e| io::Error::other(e.to_string()));
        callback.io_completed(ack);
        result
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = match &last_log_id {
            Some(l) => Bound::Excluded(l.index),
            None => Bound::Unbounded,
        };
        self.remove_where((from, Bound::Unbounded), None).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let upto = log_id.index;
        self.remove_where(
            (Bound::Unbounded, Bound::Included(upto)),
            Some((K_PURGED, to_json(&log_id)?)),
        )
        .await
    }
}

/// Appends serialised log entries in one durable commit.
fn append_rows(db: &Database, rows: &[(u64, Vec<u8>)]) -> io::Result<()> {
    let mut tx = db.begin_write().map_err(io_err)?;
    tx.set_durability(Durability::Immediate).map_err(io_err)?;
    {
        let mut logs = tx.open_table(LOGS).map_err(io_err)?;
        for (index, bytes) in rows {
            logs.insert(*index, bytes.as_slice()).map_err(io_err)?;
        }
    }
    tx.commit().map_err(io_err)
}

/// What the state machine persists: the state and how far it got.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct SmData {
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
    pub(crate) state: ClusterState,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The state machine: [`ClusterState`] in memory, persisted after every applied batch.
pub(crate) struct StateMachine {
    db: Arc<Database>,
    data: SmData,
    publish: watch::Sender<Arc<ClusterState>>,
}

impl StateMachine {
    /// Loads the persisted state and publishes it.
    pub(crate) fn open(
        db: Arc<Database>,
        publish: watch::Sender<Arc<ClusterState>>,
    ) -> io::Result<Self> {
        let data: SmData = get_meta(&db, K_SM)?.unwrap_or_default();
        publish.send_replace(Arc::new(data.state.clone()));
        Ok(StateMachine { db, data, publish })
    }

    async fn persist(&self) -> io::Result<()> {
        put_meta_off_worker(&self.db, vec![(K_SM, to_json(&self.data)?)]).await
    }
}

/// Mirrors a membership into the state's voter/learner sets.
pub(crate) fn mirror_membership(state: &mut ClusterState, m: &StoredMembership) {
    let voters: BTreeSet<u64> = m.voter_ids().collect();
    let learners: BTreeSet<u64> = m.membership().learner_ids().collect();
    state.set_membership(voters, learners, m.get_joint_config().len() > 1);
}

/// Builds snapshots from a copy of the state taken when the build was requested.
pub(crate) struct SnapshotBuilder {
    db: Arc<Database>,
    data: SmData,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let bytes = to_json(&self.data)?;
        let meta = SnapshotMeta {
            last_log_id: self.data.last_applied,
            last_membership: self.data.membership.clone(),
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: bytes.clone(),
        };
        put_meta_off_worker(&self.db, vec![(K_SNAPSHOT, to_json(&stored)?)]).await?;
        Ok(Snapshot {
            meta,
            snapshot: bytes,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.data.last_applied, self.data.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut replies = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id();
            let result = match &entry.payload {
                EntryPayload::Blank => CommandResult::Ok,
                EntryPayload::Normal(cmd) => {
                    let r = self.data.state.apply(log_id.index, cmd);
                    if let CommandResult::Rejected(why) = &r {
                        tracing::info!(index = log_id.index, %cmd, %why, "command rejected");
                    } else {
                        tracing::info!(index = log_id.index, %cmd, "applied");
                    }
                    r
                }
                EntryPayload::Membership(m) => {
                    self.data.membership = StoredMembership::new(Some(log_id), m.clone());
                    mirror_membership(&mut self.data.state, &self.data.membership);
                    tracing::info!(index = log_id.index, membership = %m, "membership applied");
                    CommandResult::Ok
                }
            };
            self.data.last_applied = Some(log_id);
            if let Some(r) = responder {
                replies.push((r, result));
            }
        }
        // Durable before anyone is answered.
        self.persist().await?;
        self.publish.send_replace(Arc::new(self.data.state.clone()));
        for (r, result) in replies {
            r.send(result);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            data: self.data.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let mut data: SmData = serde_json::from_slice(&snapshot).map_err(io_err)?;
        data.last_applied = meta.last_log_id;
        data.membership = meta.last_membership.clone();
        mirror_membership(&mut data.state, &data.membership);
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot,
        };
        put_meta_off_worker(
            &self.db,
            vec![(K_SM, to_json(&data)?), (K_SNAPSHOT, to_json(&stored)?)],
        )
        .await?;
        self.data = data;
        self.publish.send_replace(Arc::new(self.data.state.clone()));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let stored: Option<StoredSnapshot> = get_meta(&self.db, K_SNAPSHOT)?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: s.data,
        }))
    }
}

/// Offline rewrite for `recover --force-new-cluster`: the applied state becomes a snapshot whose
/// membership is `node` alone, and the log is emptied up to it. Returns the state.
pub(crate) fn force_single_voter(
    db: &Database,
    node: u64,
    addr: String,
) -> io::Result<ClusterState> {
    let mut data: SmData = get_meta(db, K_SM)?.unwrap_or_default();
    let Some(last) = data.last_applied else {
        return Err(io::Error::other(
            "nothing applied yet: there is no cluster to recover",
        ));
    };
    let membership = openraft::Membership::new(
        vec![BTreeSet::from([node])],
        std::collections::BTreeMap::from([(node, openraft::BasicNode::new(addr))]),
    )
    .map_err(io_err)?;
    data.membership = StoredMembership::new(Some(last), membership);
    mirror_membership(&mut data.state, &data.membership);
    let bytes = to_json(&data)?;
    let stored = StoredSnapshot {
        meta: SnapshotMeta {
            last_log_id: Some(last),
            last_membership: data.membership.clone(),
        },
        data: bytes,
    };
    let mut tx = db.begin_write().map_err(io_err)?;
    tx.set_durability(Durability::Immediate).map_err(io_err)?;
    {
        let mut logs = tx.open_table(LOGS).map_err(io_err)?;
        let keys: Vec<u64> = logs
            .iter()
            .map_err(io_err)?
            .map(|r| r.map(|(k, _)| k.value()).map_err(io_err))
            .collect::<io::Result<_>>()?;
        for k in keys {
            logs.remove(k).map_err(io_err)?;
        }
        let mut m = tx.open_table(META).map_err(io_err)?;
        m.insert(K_SM, to_json(&data)?.as_slice()).map_err(io_err)?;
        m.insert(K_SNAPSHOT, to_json(&stored)?.as_slice())
            .map_err(io_err)?;
        m.insert(K_PURGED, to_json(&last)?.as_slice())
            .map_err(io_err)?;
        m.insert(K_COMMITTED, to_json(&Some(last))?.as_slice())
            .map_err(io_err)?;
    }
    tx.commit().map_err(io_err)?;
    Ok(data.state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Command;
    use openraft::testing::log_id;

    fn entry(index: u64, cmd: Command) -> Entry {
        Entry {
            log_id: log_id::<TypeConfig>(1, 1, index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    #[tokio::test]
    async fn log_and_state_survive_reopen_and_purge() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("raft.redb");
        {
            let db = open_db(&path)?;
            let mut log = LogStore::new(db.clone());
            let entries =
                (1..=5).map(|i| entry(i, Command::SetOriginTarget { target: i as usize }));
            log.append(entries, IOFlushed::noop()).await?;
            log.save_vote(&Vote::new_committed(1, 1)).await?;
            log.purge(log_id::<TypeConfig>(1, 1, 2)).await?;
            log.truncate_after(Some(log_id::<TypeConfig>(1, 1, 4)))
                .await?;

            let (tx, _rx) = watch::channel(Arc::new(ClusterState::default()));
            let mut sm = StateMachine::open(db.clone(), tx)?;
            let items: Vec<Result<EntryResponder<TypeConfig>, io::Error>> =
                vec![Ok((entry(3, Command::SetOriginTarget { target: 7 }), None))];
            sm.apply(futures_util::stream::iter(items)).await?;
            let mut b = sm.get_snapshot_builder().await;
            b.build_snapshot().await?;
        }
        let db = open_db(&path)?;
        let mut log = LogStore::new(db.clone());
        let st = log.get_log_state().await?;
        assert_eq!(st.last_purged_log_id.map(|l| l.index), Some(2));
        assert_eq!(st.last_log_id.map(|l| l.index), Some(4));
        let got = log.try_get_log_entries(0..10).await?;
        assert_eq!(
            got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(log.read_vote().await?, Some(Vote::new_committed(1, 1)));

        let (tx, rx) = watch::channel(Arc::new(ClusterState::default()));
        let mut sm = StateMachine::open(db, tx)?;
        assert_eq!(rx.borrow().settings.origin_target, 7);
        let (applied, _) = sm.applied_state().await?;
        assert_eq!(applied.map(|l| l.index), Some(3));
        let snap = sm.get_current_snapshot().await?;
        assert_eq!(
            snap.and_then(|s| s.meta.last_log_id).map(|l| l.index),
            Some(3)
        );
        Ok(())
    }
}
