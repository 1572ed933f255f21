//! The resolutions samples are rolled up into — the samples themselves, then 1 min, 5 min,
//! 10 min, 1 h, 1 day and 7 days — and how long each is kept. Retention is what bounds the
//! store: a fixed set of metrics times a bounded number of buckets per resolution.

/// One resolution: its bucket length and how long its buckets are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    /// Its name in the API and the store (`raw`, `1m`, ... `7d`).
    pub name: &'static str,
    /// Its table in the store.
    pub table: &'static str,
    /// Bucket length in milliseconds; 0 for `raw`, whose buckets are one sample interval.
    step_ms: u64,
    /// Buckets older than this are deleted.
    pub retention_ms: u64,
}

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Every resolution, finest first.
pub const RESOLUTIONS: [Resolution; 7] = [
    Resolution {
        name: "raw",
        table: "series/raw",
        step_ms: 0,
        retention_ms: HOUR,
    },
    Resolution {
        name: "1m",
        table: "series/1m",
        step_ms: MINUTE,
        retention_ms: DAY,
    },
    Resolution {
        name: "5m",
        table: "series/5m",
        step_ms: 5 * MINUTE,
        retention_ms: 3 * DAY,
    },
    Resolution {
        name: "10m",
        table: "series/10m",
        step_ms: 10 * MINUTE,
        retention_ms: 7 * DAY,
    },
    Resolution {
        name: "1h",
        table: "series/1h",
        step_ms: HOUR,
        retention_ms: 90 * DAY,
    },
    Resolution {
        name: "1d",
        table: "series/1d",
        step_ms: DAY,
        retention_ms: 3 * 365 * DAY,
    },
    Resolution {
        name: "7d",
        table: "series/7d",
        step_ms: 7 * DAY,
        retention_ms: 10 * 365 * DAY,
    },
];

impl Resolution {
    /// Bucket length for samples taken every `interval_ms`.
    pub fn step_ms(&self, interval_ms: u64) -> u64 {
        if self.step_ms == 0 {
            interval_ms
        } else {
            self.step_ms.max(interval_ms)
        }
    }

    /// Start of the bucket holding a sample taken at `at_ms` (buckets are aligned to the unix
    /// epoch, so every node's buckets line up; 7-day buckets start on Thursdays).
    pub fn bucket_start(&self, at_ms: u64, interval_ms: u64) -> u64 {
        let step = self.step_ms(interval_ms);
        at_ms - at_ms % step
    }

    /// Samples a complete bucket holds.
    pub fn expected(&self, interval_ms: u64) -> u32 {
        (self.step_ms(interval_ms) / interval_ms.max(1)).max(1) as u32
    }

    /// Buckets starting before this are past their retention at `now_ms`.
    pub fn cutoff(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.retention_ms)
    }
}

/// The resolution a query of `step_ms` from `from_ms` reads: the coarsest whose buckets are no
/// longer than the step, among those still holding `from_ms`; if none holds it, the one of
/// those kept longest (older periods are then gaps).
pub fn for_query(step_ms: u64, from_ms: u64, now_ms: u64, interval_ms: u64) -> Resolution {
    let fine_enough = RESOLUTIONS
        .iter()
        .filter(|r| r.step_ms(interval_ms) <= step_ms);
    fine_enough
        .clone()
        .filter(|r| r.cutoff(now_ms) <= from_ms)
        .max_by_key(|r| r.step_ms(interval_ms))
        .or_else(|| fine_enough.max_by_key(|r| r.retention_ms))
        .copied()
        .unwrap_or(RESOLUTIONS[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_read_the_coarsest_resolution_that_still_holds_the_range() {
        let now = 100 * DAY;
        let five_s = 5_000;
        assert_eq!(for_query(5_000, now - MINUTE, now, five_s).name, "raw");
        assert_eq!(for_query(60_000, now - HOUR, now, five_s).name, "1m");
        assert_eq!(for_query(HOUR, now - 7 * DAY, now, five_s).name, "1h");
        assert_eq!(
            for_query(10 * MINUTE, now - 6 * DAY, now, five_s).name,
            "10m"
        );
        // Five-minute steps over a week: 5m buckets are gone after 3 days; 1m after one.
        assert_eq!(for_query(5 * MINUTE, now - 7 * DAY, now, five_s).name, "5m");
        assert_eq!(RESOLUTIONS[3].expected(five_s), 120);
        assert_eq!(RESOLUTIONS[0].expected(five_s), 1);
        assert_eq!(RESOLUTIONS[1].bucket_start(61_234, five_s), 60_000);
    }
}
