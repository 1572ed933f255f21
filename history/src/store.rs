//! The history store: every resolution's buckets in one embedded redb database (as the Raft log
//! is), one table per resolution keyed by (family, period start). A row holds, for one period,
//! every series of the family (one for a node's own figures, one per stream for the streams)
//! with the buckets of each of the family's metrics, so a sample is one write per resolution
//! and family however many series it has, and the store's size grows with periods, not keys.
//! A sample updates its period at every resolution in one transaction; retention deletes what
//! is past it (the resolution's, capped by the family's), so the file stays bounded; a table
//! of the series seen, with when, answers which labels exist. Samples commit without fsync;
//! the periodic prune commits durably, so a crash loses at most the samples since the last
//! prune.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableHandle,
};

use crate::bucket::{Bucket, ENCODED_LEN};
use crate::metric::Family;
use crate::resolution::{RESOLUTIONS, Resolution};

/// One series' buckets for one period, in its family's metric order, `None` for a metric
/// without samples.
type Row = Vec<Option<Bucket>>;

/// Tables of the store's first format (keyed by period only, one series): dropped on open.
const FORMER_TABLES: [&str; 7] = ["raw", "1m", "5m", "10m", "1h", "1d", "7d"];

fn table(resolution: &Resolution) -> TableDefinition<'static, (&'static str, u64), &'static [u8]> {
    TableDefinition::new(resolution.table)
}

/// How often samples written by [`HistoryStore::write_off_thread`] prune past-retention
/// periods (and commit durably).
const PRUNE_EVERY_MS: u64 = 60_000;

/// Every series the store holds (by [`series_key`]), with the last time it had a sample.
const SERIES: TableDefinition<'static, &'static str, u64> = TableDefinition::new("series");

/// A family's row: each series' label and buckets. Stored as, per series, the label's length
/// (u16 LE) and bytes, the number of buckets (u16 LE), then the buckets; a family that gains
/// metrics reads its older rows with the new ones empty.
fn decode_row(mut bytes: &[u8], metrics: usize) -> Vec<(String, Row)> {
    let mut out = Vec::new();
    let mut take = |n: usize| {
        let (head, rest) = bytes.split_at_checked(n)?;
        bytes = rest;
        Some(head)
    };
    let u16_of = |b: &[u8]| usize::from(u16::from_le_bytes([b[0], b[1]]));
    while let Some(len) = take(2).map(u16_of) {
        let Some(label) = take(len).map(|l| String::from_utf8_lossy(l).into_owned()) else {
            break;
        };
        let Some(buckets) = take(2).map(u16_of) else {
            break;
        };
        let Some(encoded) = take(buckets * ENCODED_LEN) else {
            break;
        };
        let mut row: Row = encoded
            .chunks_exact(ENCODED_LEN)
            .map(|b| Bucket::decode(b).filter(|b| b.count > 0))
            .collect();
        row.resize(metrics, None);
        out.push((label, row));
    }
    out
}

fn encode_row(series: &BTreeMap<String, Row>) -> Vec<u8> {
    let empty = Bucket {
        count: 0,
        expected: 0,
        sum: 0.0,
        min: 0.0,
        max: 0.0,
    };
    let mut out = Vec::new();
    for (label, row) in series {
        out.extend_from_slice(&(label.len() as u16).to_le_bytes());
        out.extend_from_slice(label.as_bytes());
        out.extend_from_slice(&(row.len() as u16).to_le_bytes());
        for bucket in row {
            out.extend_from_slice(&bucket.unwrap_or(empty).encode());
        }
    }
    out
}

fn io(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("history store: {e}")
}

/// The longest label kept; a longer one is cut (on a character boundary).
pub const MAX_LABEL: usize = 256;

fn label_of(series: &SeriesSample) -> &str {
    let label = series.label.as_str();
    let mut end = label.len().min(MAX_LABEL);
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    &label[..end]
}

/// The key of `family`'s series for `label` (empty for a family of one series).
pub fn series_key(family: &Family, label: &str) -> String {
    if label.is_empty() {
        family.name.to_owned()
    } else {
        format!("{}/{label}", family.name)
    }
}

/// One series' values at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSample {
    /// Its family.
    pub family: &'static Family,
    /// Which subject of the family (empty for a family of one series).
    pub label: String,
    /// Values by metric name; names outside the family are ignored.
    pub values: Vec<(&'static str, f64)>,
}

/// Every series sampled at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// When (unix ms).
    pub at_ms: u64,
    /// The series.
    pub series: Vec<SeriesSample>,
}

impl Snapshot {
    /// A snapshot of one series without a label.
    pub fn of(at_ms: u64, family: &'static Family, values: Vec<(&'static str, f64)>) -> Self {
        Self {
            at_ms,
            series: vec![SeriesSample {
                family,
                label: String::new(),
                values,
            }],
        }
    }
}

/// A program's history database.
pub struct HistoryStore {
    /// Transactions begin under the read side; compaction needs the database to itself.
    db: RwLock<Database>,
    path: Option<PathBuf>,
    /// The file's size after the last compaction (or at open).
    compacted_bytes: AtomicU64,
    /// When [`write_off_thread`](Self::write_off_thread) last pruned (sample time, unix ms).
    last_prune_ms: AtomicU64,
    interval_ms: u64,
    families: &'static [&'static Family],
}

impl HistoryStore {
    /// Opens (or creates) the database at `path` (mode 0600), for samples every `interval_ms`
    /// of the series of `families`.
    pub fn open(
        path: &Path,
        interval_ms: u64,
        families: &'static [&'static Family],
    ) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let db = Database::create(path).map_err(|e| {
            anyhow::anyhow!("cannot open the history store {}: {e}", path.display())
        })?;
        // Like every file in a data directory: readable by the program's user only.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(io)?;
        Self::with_tables(db, Some(path.to_owned()), interval_ms, families)
    }

    /// A store in memory: for a program without a data directory, and for tests.
    pub fn in_memory(
        interval_ms: u64,
        families: &'static [&'static Family],
    ) -> anyhow::Result<Self> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(io)?;
        Self::with_tables(db, None, interval_ms, families)
    }

    fn with_tables(
        db: Database,
        path: Option<PathBuf>,
        interval_ms: u64,
        families: &'static [&'static Family],
    ) -> anyhow::Result<Self> {
        let tx = db.begin_write().map_err(io)?;
        let former: Vec<_> = tx
            .list_tables()
            .map_err(io)?
            .filter(|t| FORMER_TABLES.contains(&t.name()))
            .collect();
        for old in former {
            tracing::info!(
                table = old.name(),
                "history store: dropping a table of the former format"
            );
            tx.delete_table(old).map_err(io)?;
        }
        for resolution in &RESOLUTIONS {
            tx.open_table(table(resolution)).map_err(io)?;
        }
        tx.open_table(SERIES).map_err(io)?;
        tx.commit().map_err(io)?;
        let compacted_bytes = AtomicU64::new(
            path.as_ref()
                .and_then(|p| std::fs::metadata(p).ok())
                .map_or(0, |m| m.len()),
        );
        Ok(Self {
            db: RwLock::new(db),
            path,
            compacted_bytes,
            last_prune_ms: AtomicU64::new(0),
            interval_ms,
            families,
        })
    }

    /// The sample interval the buckets are counted in.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    /// The families this store keeps.
    pub fn families(&self) -> &'static [&'static Family] {
        self.families
    }

    /// The family named `name`.
    pub fn family(&self, name: &str) -> Option<&'static Family> {
        self.families.iter().copied().find(|f| f.name == name)
    }

    /// Adds snapshots to their buckets at every resolution, in one transaction: the batch is
    /// rolled up in memory first, then merged with the stored row of the same family and
    /// period. A label longer than [`MAX_LABEL`] bytes is cut.
    pub fn record(&self, snapshots: &[Snapshot]) -> anyhow::Result<()> {
        let mut tx = self.db.read().begin_write().map_err(io)?;
        tx.set_durability(Durability::None).map_err(io)?;
        {
            let mut seen = tx.open_table(SERIES).map_err(io)?;
            let mut last: BTreeMap<String, u64> = BTreeMap::new();
            for snapshot in snapshots {
                for series in &snapshot.series {
                    let at = last
                        .entry(series_key(series.family, label_of(series)))
                        .or_default();
                    *at = (*at).max(snapshot.at_ms);
                }
            }
            for (key, at) in &last {
                seen.insert(key.as_str(), at).map_err(io)?;
            }
        }
        for resolution in &RESOLUTIONS {
            let expected = resolution.expected(self.interval_ms);
            type Rolled<'a> = BTreeMap<(&'static str, u64), (&'a Family, BTreeMap<String, Row>)>;
            let mut rolled: Rolled = BTreeMap::new();
            for snapshot in snapshots {
                let start = resolution.bucket_start(snapshot.at_ms, self.interval_ms);
                for series in &snapshot.series {
                    let family = series.family;
                    let (_, rows) = rolled
                        .entry((family.name, start))
                        .or_insert_with(|| (family, BTreeMap::new()));
                    let row = rows
                        .entry(label_of(series).to_owned())
                        .or_insert_with(|| vec![None; family.metrics.len()]);
                    for (name, value) in &series.values {
                        let Some(i) = family.index(name) else {
                            continue;
                        };
                        match &mut row[i] {
                            Some(bucket) => bucket.add(*value),
                            slot => *slot = Some(Bucket::of(*value, expected)),
                        }
                    }
                }
            }
            let mut table = tx.open_table(table(resolution)).map_err(io)?;
            for (key, (family, mut rows)) in rolled {
                let stored = table
                    .get(key)
                    .map_err(io)?
                    .map(|v| decode_row(v.value(), family.metrics.len()))
                    .unwrap_or_default();
                for (label, old) in stored {
                    let new = rows.entry(label).or_insert_with(|| vec![None; old.len()]);
                    for (new, old) in new.iter_mut().zip(old) {
                        match (new.as_mut(), old) {
                            (Some(new), Some(old)) => new.add_samples_of(&old),
                            (None, old) => *new = old,
                            (Some(_), None) => {}
                        }
                    }
                }
                table
                    .insert(key, encode_row(&rows).as_slice())
                    .map_err(io)?;
            }
        }
        tx.commit().map_err(io)
    }

    /// Records `snapshot` and, when a minute of samples has passed since the last, prunes (a
    /// durable commit): on tokio's blocking pool, since redb may wait on the disk. A failure is
    /// logged, and the next sample tries again.
    pub async fn write_off_thread(self: &Arc<Self>, snapshot: Snapshot) {
        let store = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let at_ms = snapshot.at_ms;
            store.record(&[snapshot])?;
            let last = store.last_prune_ms.load(Ordering::Relaxed);
            if at_ms.saturating_sub(last) >= PRUNE_EVERY_MS {
                store.last_prune_ms.store(at_ms, Ordering::Relaxed);
                store.prune(at_ms)?;
            }
            anyhow::Ok(())
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "history sample not stored"),
            Err(e) => tracing::warn!(error = %e, "history writer failed"),
        }
    }

    /// The family of a stored series key; `None` for a family this store no longer keeps.
    fn family_of(&self, key: &str) -> Option<&'static Family> {
        self.family(key.split_once('/').map_or(key, |(name, _)| name))
    }

    /// Deletes every period past its retention at `now_ms` (the resolution's, capped by the
    /// family's), forgets series without samples for as long as anything of them is kept, and
    /// commits durably (with the samples recorded since the last prune). Returns how many rows
    /// were deleted.
    pub fn prune(&self, now_ms: u64) -> anyhow::Result<u64> {
        let mut tx = self.db.read().begin_write().map_err(io)?;
        tx.set_durability(Durability::Immediate).map_err(io)?;
        let mut deleted = 0;
        for resolution in &RESOLUTIONS {
            let mut table = tx.open_table(table(resolution)).map_err(io)?;
            for family in self.families {
                let retention = resolution.retention_ms.min(family.max_retention_ms);
                let cutoff = now_ms.saturating_sub(retention);
                table
                    .retain_in((family.name, 0)..(family.name, cutoff), |_, _| {
                        deleted += 1;
                        false
                    })
                    .map_err(io)?;
            }
        }
        {
            let longest = RESOLUTIONS
                .iter()
                .map(|r| r.retention_ms)
                .max()
                .unwrap_or(0);
            let mut seen = tx.open_table(SERIES).map_err(io)?;
            seen.retain(|key, last_ms| {
                let kept = self
                    .family_of(key)
                    .map_or(0, |family| longest.min(family.max_retention_ms));
                last_ms >= now_ms.saturating_sub(kept)
            })
            .map_err(io)?;
        }
        tx.commit().map_err(io)?;
        self.compact_if_grown();
        Ok(deleted)
    }

    /// The buckets of `metric` of `family`'s series for `label` at `resolution`, starting in
    /// `[from_ms, to_ms)`, in order.
    pub fn read(
        &self,
        family: &Family,
        label: &str,
        metric: &str,
        resolution: &Resolution,
        from_ms: u64,
        to_ms: u64,
    ) -> anyhow::Result<Vec<(u64, Bucket)>> {
        let Some(i) = family.index(metric) else {
            return Ok(Vec::new());
        };
        let tx = self.db.read().begin_read().map_err(io)?;
        let table = tx.open_table(table(resolution)).map_err(io)?;
        let mut out = Vec::new();
        for entry in table
            .range((family.name, from_ms)..(family.name, to_ms))
            .map_err(io)?
        {
            let (start, row) = entry.map_err(io)?;
            let bucket = decode_row(row.value(), family.metrics.len())
                .into_iter()
                .find(|(l, _)| l == label)
                .and_then(|(_, row)| row[i]);
            if let Some(bucket) = bucket {
                out.push((start.value().1, bucket));
            }
        }
        Ok(out)
    }

    /// The labels of `family`'s series the store holds, with the last time each had a sample.
    pub fn labels(&self, family: &Family) -> anyhow::Result<Vec<(String, u64)>> {
        let prefix = format!("{}/", family.name);
        let tx = self.db.read().begin_read().map_err(io)?;
        let seen = tx.open_table(SERIES).map_err(io)?;
        let mut out = Vec::new();
        for entry in seen.range(prefix.as_str()..).map_err(io)? {
            let (key, last) = entry.map_err(io)?;
            let Some(label) = key.value().strip_prefix(&prefix) else {
                break;
            };
            out.push((label.to_owned(), last.value()));
        }
        Ok(out)
    }

    /// Rows held, over every resolution and series.
    pub fn periods(&self) -> anyhow::Result<u64> {
        let tx = self.db.read().begin_read().map_err(io)?;
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

    /// Gives the file's free pages back when it has grown by a quarter (and 1 MiB) since it
    /// was last compacted: redb reuses free pages but never shrinks the file, and rows
    /// rewritten by every sample leave many behind (a week of the node's series and 20
    /// streams' is 32 MiB uncompacted, 13 MiB compacted). Skipped while a read is open; the
    /// next prune tries again.
    fn compact_if_grown(&self) {
        let bytes = self.file_bytes();
        let compacted = self.compacted_bytes.load(Ordering::Relaxed);
        if self.path.is_none() || bytes <= compacted + compacted / 4 + (1 << 20) {
            return;
        }
        match self.db.write().compact() {
            Ok(_) => {
                let after = self.file_bytes();
                tracing::info!(before = bytes, after, "history store compacted");
                self.compacted_bytes.store(after, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(error = %e, "history store not compacted this time"),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::test_family::{NODE, STREAM};
    use crate::query::{Params, RangeQuery};

    const FIVE_S: u64 = 5_000;
    const DAY: u64 = 86_400_000;
    static FAMILIES: [&Family; 2] = [&NODE, &STREAM];

    fn stream(label: &str, viewers: f64) -> SeriesSample {
        SeriesSample {
            family: &STREAM,
            label: label.into(),
            values: vec![("viewers", viewers)],
        }
    }

    #[test]
    fn rollups_weigh_means_by_samples_and_mark_partial_periods() {
        let store = HistoryStore::in_memory(FIVE_S, &FAMILIES).unwrap();
        let minute = 1_800_000_000_000; // a whole minute (and two)
        // A full minute of 1.0, then half a minute of 3.0 (the node was down after).
        let samples: Vec<_> = (0..12)
            .map(|i| Snapshot::of(minute + i * FIVE_S, &NODE, vec![("cpu", 1.0)]))
            .chain(
                (0..6)
                    .map(|i| Snapshot::of(minute + 60_000 + i * FIVE_S, &NODE, vec![("cpu", 3.0)])),
            )
            .collect();
        store.record(&samples).unwrap();
        let m1 = &RESOLUTIONS[1];
        let buckets = store
            .read(&NODE, "", "cpu", m1, minute, minute + 120_000)
            .unwrap();
        assert_eq!(buckets.len(), 2);
        assert!(!buckets[0].1.partial());
        assert!(buckets[1].1.partial());
        assert_eq!(buckets[1].1.mean(), 3.0, "missing samples are not zeros");
        let five = &RESOLUTIONS[2];
        let merged = store.read(&NODE, "", "cpu", five, 0, u64::MAX).unwrap();
        assert_eq!(merged[0].1.count, 18);
        assert!((merged[0].1.mean() - (12.0 + 18.0) / 18.0).abs() < 1e-12);
        // Read through a query with 2-minute steps: one point of 18 samples, partial.
        let now = minute + 180_000;
        let params = Params::from_query(&format!(
            "metric=cpu&from={}&to={}&step=2m",
            minute / 1000,
            now / 1000
        ))
        .unwrap();
        let q = RangeQuery::parse(&FAMILIES, &params, now, FIVE_S).unwrap();
        let resolution = q.resolution(now, FIVE_S);
        let points = q.points(
            &store
                .read(&NODE, "", "cpu", &resolution, q.from_ms, q.to_ms)
                .unwrap(),
            FIVE_S,
        );
        let first = points.iter().find(|p| p.mean.is_some()).unwrap();
        assert_eq!(first.count, 18);
        assert!(first.partial);
    }

    #[test]
    fn series_of_a_family_stay_apart_and_are_forgotten_after_their_retention() {
        let store = HistoryStore::in_memory(FIVE_S, &FAMILIES).unwrap();
        let start = 1_800_000_000_000 - 1_800_000_000_000 % DAY;
        let snapshot = |at_ms, streams: &[(&str, f64)]| Snapshot {
            at_ms,
            series: std::iter::once(SeriesSample {
                family: &NODE,
                label: String::new(),
                values: vec![("viewers", streams.iter().map(|(_, v)| v).sum())],
            })
            .chain(streams.iter().map(|(label, v)| stream(label, *v)))
            .collect(),
        };
        store
            .record(&[
                snapshot(start, &[("live/a", 3.0), ("live/b", 40.0)]),
                snapshot(start + FIVE_S, &[("live/a", 5.0)]),
            ])
            .unwrap();
        let raw = &RESOLUTIONS[0];
        let read = |label: &str, metric: &str| {
            store
                .read(
                    if label.is_empty() { &NODE } else { &STREAM },
                    label,
                    metric,
                    raw,
                    0,
                    u64::MAX,
                )
                .unwrap()
                .iter()
                .map(|(_, b)| b.mean())
                .collect::<Vec<_>>()
        };
        assert_eq!(read("live/a", "viewers"), [3.0, 5.0]);
        assert_eq!(read("live/b", "viewers"), [40.0]);
        assert_eq!(read("", "viewers"), [43.0, 5.0]);
        assert!(read("live/c", "viewers").is_empty());
        // `live/a` is not `live/ab`, nor a prefix scan of it.
        assert!(read("live/", "viewers").is_empty());
        let labels = || -> Vec<String> {
            let labels = store.labels(&STREAM).unwrap();
            labels.into_iter().map(|(l, _)| l).collect()
        };
        assert_eq!(labels(), ["live/a", "live/b"]);

        // `live/a` goes on; `live/b` stops. Past the stream family's 7 days, `live/b` is gone
        // whole, `live/a` keeps its recent periods, and the node's series keeps its 1 h rows.
        let later = start + 8 * DAY;
        store
            .record(&[snapshot(later, &[("live/a", 1.0)])])
            .unwrap();
        store.prune(later + FIVE_S).unwrap();
        assert_eq!(labels(), ["live/a"]);
        assert!(read("live/b", "viewers").is_empty());
        let hours = |family: &Family, label: &str| {
            store
                .read(family, label, "viewers", &RESOLUTIONS[4], 0, u64::MAX)
                .unwrap()
                .len()
        };
        assert_eq!(hours(&STREAM, "live/b"), 0);
        assert_eq!(hours(&STREAM, "live/a"), 1, "only the period within 7 days");
        // A row that was cut short (a torn write, or a future format) reads as what it holds.
        let rows: BTreeMap<String, Row> =
            [("x".to_string(), vec![Some(Bucket::of(1.0, 1))])].into();
        let encoded = encode_row(&rows);
        assert_eq!(
            decode_row(&encoded, 2)[0].1,
            [Some(Bucket::of(1.0, 1)), None]
        );
        assert!(decode_row(&encoded[..encoded.len() - 1], 2).is_empty());
        assert_eq!(hours(&NODE, ""), 2, "the node's hours are kept 90 days");
    }

    #[test]
    fn retention_deletes_what_is_past_it_and_a_store_of_the_former_format_is_replaced() {
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
        std::fs::create_dir_all(&dir.0).unwrap();
        {
            // The first format: one table per resolution keyed by period start.
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            let former: TableDefinition<u64, &[u8]> = TableDefinition::new("1m");
            tx.open_table(former)
                .unwrap()
                .insert(1, [0u8; 32].as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        let store =
            HistoryStore::open(&path, FIVE_S, &FAMILIES).expect("open over the former format");
        let start = 1_800_000_000_000 - 1_800_000_000_000 % DAY;
        let per_hour = 3_600_000 / FIVE_S;
        let mut now = start;
        for hour in 0..3 * 24 {
            let batch: Vec<_> = (0..per_hour)
                .map(|i| Snapshot::of(now + i * FIVE_S, &NODE, vec![("cpu", (hour % 24) as f64)]))
                .collect();
            store.record(&batch).unwrap();
            now += per_hour * FIVE_S;
            store.prune(now).unwrap();
        }
        for resolution in &RESOLUTIONS {
            let oldest = store
                .read(&NODE, "", "cpu", resolution, 0, u64::MAX)
                .unwrap()
                .first()
                .map(|(t, _)| *t)
                .unwrap();
            assert!(
                oldest + resolution.step_ms(FIVE_S) > resolution.cutoff(now),
                "{}",
                resolution.name
            );
        }
        let held = store.periods().unwrap();
        drop(store);
        // It survives a restart, with the mode of a data directory's files.
        let reopened = HistoryStore::open(&path, FIVE_S, &FAMILIES).expect("reopen");
        assert_eq!(reopened.periods().unwrap(), held);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
