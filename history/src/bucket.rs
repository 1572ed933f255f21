//! A bucket: what describes one period of one metric honestly — the mean (as a sum and the
//! count of samples behind it), the minimum and the maximum — and how many samples the period
//! should have had, so a period with missing samples is known to be partial instead of being
//! averaged with zeros.

use serde::{Deserialize, Serialize};

/// One period of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Samples behind this bucket.
    pub count: u32,
    /// Samples the period holds when none is missing.
    pub expected: u32,
    /// Sum of the samples (the mean is `sum / count`).
    pub sum: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

/// Bytes of a bucket in the store.
pub const ENCODED_LEN: usize = 32;

impl Bucket {
    /// A bucket of one sample in a period that holds `expected` of them.
    pub fn of(value: f64, expected: u32) -> Self {
        Self {
            count: 1,
            expected: expected.max(1),
            sum: value,
            min: value,
            max: value,
        }
    }

    /// The mean of the samples behind it.
    pub fn mean(&self) -> f64 {
        self.sum / f64::from(self.count.max(1))
    }

    /// Whether samples of the period are missing.
    pub fn partial(&self) -> bool {
        self.count < self.expected
    }

    /// Adds `other`'s samples: the mean stays weighted by sample counts, and the expected
    /// counts add up (two periods merged into one longer period).
    pub fn merge(&mut self, other: &Bucket) {
        self.add_samples_of(other);
        self.expected += other.expected;
    }

    /// Adds the samples of `other`, a bucket of the same period.
    pub fn add_samples_of(&mut self, other: &Bucket) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Adds one more sample of the same period.
    pub fn add(&mut self, value: f64) {
        self.add_samples_of(&Bucket::of(value, 1));
    }

    /// The store's fixed-size little-endian form.
    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        out[0..4].copy_from_slice(&self.count.to_le_bytes());
        out[4..8].copy_from_slice(&self.expected.to_le_bytes());
        out[8..16].copy_from_slice(&self.sum.to_le_bytes());
        out[16..24].copy_from_slice(&self.min.to_le_bytes());
        out[24..32].copy_from_slice(&self.max.to_le_bytes());
        out
    }

    /// Reads [`encode`](Self::encode)'s form; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; ENCODED_LEN] = bytes.try_into().ok()?;
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let f64_at = |i: usize| f64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        Some(Self {
            count: u32_at(0),
            expected: u32_at(4),
            sum: f64_at(8),
            min: f64_at(16),
            max: f64_at(24),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn merged_means_are_weighted_by_sample_counts(
            a in proptest::collection::vec(0.0f64..1e9, 1..50),
            b in proptest::collection::vec(0.0f64..1e9, 1..50),
        ) {
            let bucket = |values: &[f64]| {
                let mut bucket = Bucket::of(values[0], 60);
                values[1..].iter().for_each(|v| bucket.add(*v));
                bucket
            };
            let mut merged = bucket(&a);
            merged.merge(&bucket(&b));
            let all: Vec<f64> = a.iter().chain(&b).copied().collect();
            let mean = all.iter().sum::<f64>() / all.len() as f64;
            prop_assert!((merged.mean() - mean).abs() <= mean.abs() * 1e-9 + 1e-9);
            prop_assert_eq!(merged.count as usize, all.len());
            prop_assert_eq!(merged.min, all.iter().copied().fold(f64::INFINITY, f64::min));
            prop_assert_eq!(merged.max, all.iter().copied().fold(f64::NEG_INFINITY, f64::max));
            prop_assert_eq!(merged.partial(), all.len() < 120);
        }

        #[test]
        fn the_stored_form_reads_back(count in 1u32.., expected in 1u32.., sum: f64, min: f64, max: f64) {
            let bucket = Bucket { count, expected, sum, min, max };
            let back = Bucket::decode(&bucket.encode()).expect("decodes");
            prop_assert_eq!(back.encode(), bucket.encode());
        }
    }

    #[test]
    fn a_period_with_missing_samples_is_partial_and_not_averaged_with_zeros() {
        let mut bucket = Bucket::of(10.0, 12);
        bucket.add(20.0);
        assert!(bucket.partial());
        assert_eq!(
            bucket.mean(),
            15.0,
            "two samples of twelve: their mean, not 30/12"
        );
        assert!(Bucket::decode(&[0u8; 31]).is_none());
    }
}
