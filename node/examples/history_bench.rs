//! Benchmark of the history store (docs/benchmarks.md, "History"): seven simulated days of
//! samples of every node metric and of the default 20 streams' series at the default 5 s
//! interval, written as the collector writes them (one transaction per sample, a durable prune
//! every minute), then the file's size, the CPU time per sample, and the time of a 7-day query
//! at 1 h steps (read and points), repeated.
//!
//! Run: `cargo run --release -p skein-node --example history_bench [DAYS] [STREAMS]`

use std::time::{Duration, Instant};

use skein_history::{HistoryStore, Params, RangeQuery, SeriesSample, Snapshot};
use skein_node::history::{FAMILIES, METRICS, NODE, STREAM};

const INTERVAL_MS: u64 = 5_000;

fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass; RUSAGE_SELF is always valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let arg = |n: usize, default: u64| {
        std::env::args()
            .nth(n)
            .map_or(Ok(default), |d| d.parse())
            .unwrap_or(default)
    };
    let (days, streams) = (arg(1, 7), arg(2, 20));
    let dir = std::env::temp_dir().join(format!("skein-history-bench-{}", std::process::id()));
    let path = dir.join("history.redb");
    let store = HistoryStore::open(&path, INTERVAL_MS, &FAMILIES)?;
    let start = 1_800_000_000_000u64;
    let samples = days * 86_400_000 / INTERVAL_MS;
    let (wall, cpu) = (Instant::now(), cpu_time());
    for i in 0..samples {
        let at = start + i * INTERVAL_MS;
        // Values that move, so min/max/sum do real work.
        let values: Vec<(&str, f64)> = METRICS
            .iter()
            .enumerate()
            .map(|(m, info)| (info.name, ((i + m as u64) % 97) as f64))
            .collect();
        let mut snapshot = Snapshot::of(at, &NODE, values);
        snapshot.series.extend((0..streams).map(|n| SeriesSample {
            family: &STREAM,
            label: format!("live/stream-{n}"),
            values: vec![
                ("viewers", ((i + n) % 500) as f64),
                ("bitrate_bps", 2_500_000.0 + (i % 7) as f64),
            ],
        }));
        store.record(&[snapshot])?;
        if i % 12 == 11 {
            store.prune(at)?;
        }
    }
    let (wall, cpu) = (wall.elapsed(), cpu_time() - cpu);
    let now = start + samples * INTERVAL_MS;
    println!(
        "{days} days at {} s, {} node metrics and {streams} streams: {samples} samples in {wall:.1?} ({:.1?} CPU): {:.1} µs CPU per sample = {:.4} % of one core at the interval",
        INTERVAL_MS / 1000,
        METRICS.len(),
        cpu,
        cpu.as_secs_f64() * 1e6 / samples as f64,
        cpu.as_secs_f64() / samples as f64 / (INTERVAL_MS as f64 / 1000.0) * 100.0
    );
    println!(
        "store: {} periods, file {:.2} MiB",
        store.periods()?,
        store.file_bytes() as f64 / 1048576.0
    );
    let to = (now / 1000).to_string();
    let from = (now / 1000 - 7 * 86_400).to_string();
    let mut timings = Vec::new();
    let mut points = 0;
    for _ in 0..101 {
        let t = Instant::now();
        let params = Params::from_query(&format!("metric=egress_bps&from={from}&to={to}&step=1h"))?;
        let query = RangeQuery::parse(&FAMILIES, &params, now, INTERVAL_MS)?;
        let resolution = query.resolution(now, INTERVAL_MS);
        let buckets = store.read(
            query.family,
            "",
            query.metric.name,
            &resolution,
            query.from_ms,
            query.to_ms,
        )?;
        let series = query.points(&buckets, INTERVAL_MS);
        let json = serde_json::to_vec(&series)?;
        points = series.iter().filter(|p| p.mean.is_some()).count();
        std::hint::black_box(json);
        timings.push(t.elapsed());
    }
    println!(
        "7-day query at 1 h steps on one node: {points} points with data, median {:.2?} (101 runs)",
        median(timings)
    );
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
