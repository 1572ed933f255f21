//! The history store: every resolution's buckets in one embedded redb database (as the Raft log
//! is), one table per resolution keyed by (metric, bucket start). A sample updates the bucket
//! of its period at every resolution in one transaction; retention deletes what is past it, so
//! the file stays bounded. Samples commit without fsync; the periodic prune commits durably, so
//! a crash loses at most the samples since the last prune. [`History`] is what the node shares:
//! the store and the machine inventory of the latest sample.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::Serialize;

use crate::history::bucket::{Bucket, ENCODED_LEN};
use crate::history::{METRICS, RESOLUTIONS, Resolution};

/// A row: the buckets of every metric for one period, in [`METRICS`] order, an empty bucket
/// (count 0) for a metric without samples. One row per period keeps a sample to one write per
/// resolution.
type Row = Vec<Option<Bucket>>;

fn table(resolution: &Resolution) -> TableDefinition<'static, u64, &'static [u8]> {
    TableDefinition::new(resolution.name)
}

fn decode_row(bytes: &[u8]) -> Row {
    let mut row: Row = bytes
        .chunks_exact(ENCODED_LEN)
        .map(|b| Bucket::decode(b).filter(|b| b.count > 0))
        .collect();
    row.resize(METRICS.len(), None);
    row
}

fn encode_row(row: &Row) -> Vec<u8> {
    let empty = Bucket {
        count: 0,
        expected: 0,
        sum: 0.0,
        min: 0.0,
        max: 0.0,
    };
    row.iter()
        .flat_map(|b| b.unwrap_or(empty).encode())
        .collect()
}

fn metric_index(name: &str) -> Option<usize> {
    METRICS.iter().position(|m| m.name == name)
}

fn io(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("history store: {e}")
}

/// The node's history database.
pub struct HistoryStore {
    db: Database,
    path: Option<PathBuf>,
    interval_ms: u64,
}

impl HistoryStore {
    /// Opens (or creates) the database at `path`, for samples every `interval_ms`.
    pub fn open(path: &Path, interval_ms: u64) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let db = Database::create(path).map_err(|e| {
            anyhow::anyhow!("cannot open the history store {}: {e}", path.display())
        })?;
        // Like every file in the data directory: readable by the node's user only.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(io)?;
        Self::with_tables(db, Some(path.to_owned()), interval_ms)
    }

    /// A store in memory: for a node without a data directory, and for tests.
    pub fn in_memory(interval_ms: u64) -> anyhow::Result<Self> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(io)?;
        Self::with_tables(db, None, interval_ms)
    }

    fn with_tables(db: Database, path: Option<PathBuf>, interval_ms: u64) -> anyhow::Result<Self> {
        let tx = db.begin_write().map_err(io)?;
        for resolution in &RESOLUTIONS {
            tx.open_table(table(resolution)).map_err(io)?;
        }
        tx.commit().map_err(io)?;
        Ok(Self {
            db,
            path,
            interval_ms,
        })
    }

    /// The sample interval the buckets are counted in.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    /// Adds samples (`at_ms`, values by metric name; unknown names are ignored) to their
    /// buckets at every resolution, in one transaction: the batch is rolled up in memory
    /// first, then merged with the stored row of the same period.
    pub fn record(&self, samples: &[(u64, Vec<(&str, f64)>)]) -> anyhow::Result<()> {
        let mut tx = self.db.begin_write().map_err(io)?;
        tx.set_durability(Durability::None).map_err(io)?;
        for resolution in &RESOLUTIONS {
            let expected = resolution.expected(self.interval_ms);
            let mut rolled: BTreeMap<u64, Row> = BTreeMap::new();
            for (at_ms, values) in samples {
                let start = resolution.bucket_start(*at_ms, self.interval_ms);
                let row = rolled
                    .entry(start)
                    .or_insert_with(|| vec![None; METRICS.len()]);
                for (name, value) in values {
                    let Some(i) = metric_index(name) else {
                        continue;
                    };
                    match &mut row[i] {
                        Some(bucket) => bucket.add(*value),
                        slot => *slot = Some(Bucket::of(*value, expected)),
                    }
                }
            }
            let mut table = tx.open_table(table(resolution)).map_err(io)?;
            for (start, mut row) in rolled {
                let stored = table.get(start).map_err(io)?.map(|v| decode_row(v.value()));
                for (new, old) in row.iter_mut().zip(stored.into_iter().flatten()) {
                    match (new.as_mut(), old) {
                        (Some(new), Some(old)) => new.add_samples_of(&old),
                        (None, old) => *new = old,
                        (Some(_), None) => {}
                    }
                }
                table
                    .insert(start, encode_row(&row).as_slice())
                    .map_err(io)?;
            }
        }
        tx.commit().map_err(io)
    }

    /// Deletes every period past its resolution's retention at `now_ms`, and commits durably
    /// (with the samples recorded since the last prune). Returns how many rows were deleted.
    pub fn prune(&self, now_ms: u64) -> anyhow::Result<u64> {
        let mut tx = self.db.begin_write().map_err(io)?;
        tx.set_durability(Durability::Immediate).map_err(io)?;
        let mut deleted = 0;
        for resolution in &RESOLUTIONS {
            let cutoff = resolution.cutoff(now_ms);
            let mut table = tx.open_table(table(resolution)).map_err(io)?;
            table
                .retain_in(0..cutoff, |_, _| {
                    deleted += 1;
                    false
                })
                .map_err(io)?;
        }
        tx.commit().map_err(io)?;
        Ok(deleted)
    }

    /// The buckets of `metric` at `resolution` starting in `[from_ms, to_ms)`, in order.
    pub fn read(
        &self,
        metric: &str,
        resolution: &Resolution,
        from_ms: u64,
        to_ms: u64,
    ) -> anyhow::Result<Vec<(u64, Bucket)>> {
        let Some(i) = metric_index(metric) else {
            return Ok(Vec::new());
        };
        let tx = self.db.begin_read().map_err(io)?;
        let table = tx.open_table(table(resolution)).map_err(io)?;
        let mut out = Vec::new();
        for entry in table.range(from_ms..to_ms).map_err(io)? {
            let (start, row) = entry.map_err(io)?;
            let bytes = row.value();
            if let Some(bucket) = bytes
                .get(i * ENCODED_LEN..(i + 1) * ENCODED_LEN)
                .and_then(Bucket::decode)
                .filter(|b| b.count > 0)
            {
                out.push((start.value(), bucket));
            }
        }
        Ok(out)
    }

    /// Periods held, over every resolution.
    pub fn periods(&self) -> anyhow::Result<u64> {
        let tx = self.db.begin_read().map_err(io)?;
        let mut n = 0;
        for resolution in &RESOLUTIONS {
            n += tx
                .open_table(table(resolution))
                .map_err(io)?
                .len()
                .map_err(io)?;
        }
        Ok(n)
    }

    /// Size of the database file (0 in memory).
    pub fn file_bytes(&self) -> u64 {
        self.path
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    }
}

/// Unix time in ms.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The machine, as the dashboard's node view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// Host name.
    pub host: String,
    /// Operating system and kernel.
    pub os: String,
    /// CPU model.
    pub cpu_model: String,
    /// Logical cores.
    pub cores: usize,
    /// Physical cores, when known.
    pub physical_cores: Option<usize>,
    /// Machine memory in bytes.
    pub memory_bytes: u64,
    /// Network interfaces with their addresses.
    pub interfaces: Vec<Interface>,
}

/// One network interface.
#[derive(Debug, Clone, Serialize)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MAC address.
    pub mac: String,
    /// Its addresses with prefix lengths.
    pub addresses: Vec<String>,
    /// Bytes received since boot.
    pub received_bytes: u64,
    /// Bytes sent since boot.
    pub sent_bytes: u64,
}

/// The node's history: the store, the sample interval and the inventory.
pub struct History {
    /// The rollups.
    pub store: HistoryStore,
    inventory: Mutex<Option<Inventory>>,
}

impl History {
    /// History kept in `store`.
    pub fn new(store: HistoryStore) -> Arc<Self> {
        Arc::new(Self {
            store,
            inventory: Mutex::new(None),
        })
    }

    /// Sample interval in ms.
    pub fn interval_ms(&self) -> u64 {
        self.store.interval_ms()
    }

    /// The machine inventory from the latest sample.
    pub fn inventory(&self) -> Option<Inventory> {
        self.inventory.lock().clone()
    }

    /// Keeps the inventory of the latest sample.
    pub(super) fn set_inventory(&self, inventory: Inventory) {
        *self.inventory.lock() = Some(inventory);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::query::RangeQuery;

    const FIVE_S: u64 = 5_000;
    const DAY: u64 = 86_400_000;

    fn all_metrics(value: f64) -> Vec<(&'static str, f64)> {
        METRICS.iter().map(|m| (m.name, value)).collect()
    }

    #[test]
    fn retention_deletes_what_is_past_it_and_the_store_stays_bounded_over_eight_days() {
        /// Removes the test's directory even when an assertion fails.
        struct TempDir(PathBuf);
        impl Drop for TempDir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir =
            TempDir(std::env::temp_dir().join(format!("skein-history-{}", std::process::id())));
        let path = dir.0.join("history.redb");
        let store = HistoryStore::open(&path, FIVE_S).expect("open");
        let start = 1_800_000_000_000 - 1_800_000_000_000 % DAY;
        // Eight simulated days at the default interval, an hour per transaction, pruned hourly
        // as the collector does (every minute).
        let per_hour = 3_600_000 / FIVE_S;
        let mut now = start;
        let mut sizes = Vec::new();
        for hour in 0..8 * 24 {
            let batch: Vec<_> = (0..per_hour)
                .map(|i| (now + i * FIVE_S, all_metrics((hour % 24) as f64)))
                .collect();
            store.record(&batch).expect("record");
            now += per_hour * FIVE_S;
            store.prune(now).expect("prune");
            if hour % 24 == 23 {
                sizes.push(store.periods().unwrap());
            }
        }
        let bound: u64 = RESOLUTIONS
            .iter()
            .map(|r| r.retention_ms.min(8 * DAY).div_ceil(r.step_ms(FIVE_S)) + 1)
            .sum();
        let held = store.periods().unwrap();
        assert!(held <= bound, "{held} periods held, bound {bound}");
        // Past the longest retention that applies (7 days for 10 min), growth is only the
        // hourly and daily buckets.
        assert!(sizes[7] - sizes[6] <= 26, "{sizes:?}");
        for resolution in &RESOLUTIONS {
            let oldest = store
                .read("cpu", resolution, 0, u64::MAX)
                .unwrap()
                .first()
                .map(|(t, _)| *t)
                .unwrap();
            assert!(oldest + resolution.step_ms(FIVE_S) > resolution.cutoff(now));
        }
        assert!(
            store.file_bytes() < 20 * 1024 * 1024,
            "{} bytes",
            store.file_bytes()
        );
        drop(store);
        // It survives a restart.
        let reopened = HistoryStore::open(&path, FIVE_S).expect("reopen");
        assert_eq!(reopened.periods().unwrap(), held);
        drop(reopened);
        drop(dir);
    }

    #[test]
    fn rollups_weigh_means_by_samples_and_mark_partial_periods() {
        let store = HistoryStore::in_memory(FIVE_S).unwrap();
        let minute = 1_800_000_000_000; // a whole minute (and two)
        // A full minute of 1.0, then half a minute of 3.0 (the node was down after).
        let samples: Vec<_> = (0..12)
            .map(|i| (minute + i * FIVE_S, vec![("cpu", 1.0)]))
            .chain((0..6).map(|i| (minute + 60_000 + i * FIVE_S, vec![("cpu", 3.0)])))
            .collect();
        store.record(&samples).unwrap();
        let m1 = &RESOLUTIONS[1];
        let buckets = store.read("cpu", m1, minute, minute + 120_000).unwrap();
        assert_eq!(buckets.len(), 2);
        assert!(!buckets[0].1.partial());
        assert!(buckets[1].1.partial());
        assert_eq!(buckets[1].1.mean(), 3.0, "missing samples are not zeros");
        let five = &RESOLUTIONS[2];
        let merged = store.read("cpu", five, 0, u64::MAX).unwrap();
        assert_eq!(merged[0].1.count, 18);
        assert!((merged[0].1.mean() - (12.0 + 18.0) / 18.0).abs() < 1e-12);
        // Read through a query with 2-minute steps: one point of 18 samples, partial.
        let now_s = ((minute + 180_000) / 1000).to_string();
        let from_s = (minute / 1000).to_string();
        let q = RangeQuery::parse(
            Some("cpu"),
            None,
            Some(&from_s),
            Some(&now_s),
            Some("2m"),
            minute + 180_000,
            FIVE_S,
        )
        .unwrap();
        let resolution = q.resolution(minute + 180_000, FIVE_S);
        let points = q.points(
            &store.read("cpu", &resolution, q.from_ms, q.to_ms).unwrap(),
            FIVE_S,
        );
        let first = points.iter().find(|p| p.mean.is_some()).unwrap();
        assert_eq!(first.count, 18);
        assert!(first.partial);
    }
}
