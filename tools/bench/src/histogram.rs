//! A log-linear latency histogram (the HdrHistogram layout, reduced to what a benchmark needs).
//!
//! Values are nanoseconds (`u64`). Values below 2^[`SUB_BITS`] get one bucket each (exact);
//! above that every power-of-two range `[2^e, 2^(e+1))` is split into 2^([`SUB_BITS`]-1)
//! equal buckets, so a bucket is never wider than 1/128 of its lower bound: quantiles are
//! within 0.8% of the exact answer over the whole `u64` range, in 7,424 counters (58 KiB).
//! `min`, `max`, `count` and `sum` are kept exactly. Quantiles report the highest value that
//! falls into the chosen bucket (as HdrHistogram does), clamped to the recorded `[min, max]`.
//!
//! [`AtomicHistogram`] has the same layout with atomic counters: every client task records into
//! one shared instance (a relaxed `fetch_add` per sample, no locks), the progress bar reads its
//! count while the run goes on, and [`AtomicHistogram::snapshot`] turns it into a [`Histogram`]
//! for reporting.

use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets below 2^SUB_BITS are exact; each octave above has 2^(SUB_BITS-1) buckets.
const SUB_BITS: u32 = 8;
const HALF: u64 = 1 << (SUB_BITS - 1);
/// Exact buckets plus one group of `HALF` buckets for each exponent from SUB_BITS to 63.
const BUCKETS: usize = (1 << SUB_BITS) + (64 - SUB_BITS as usize) * HALF as usize;

/// Bucket index of `v`.
fn index_of(v: u64) -> usize {
    if v < (1 << SUB_BITS) {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = exp - (SUB_BITS - 1);
    let top = v >> shift; // in [HALF, 2*HALF)
    (shift as u64 * HALF + top) as usize
}

/// Largest value that maps to bucket `i`.
fn highest_in(i: usize) -> u64 {
    let i = i as u64;
    if i < (1 << SUB_BITS) {
        return i;
    }
    let shift = i / HALF - 1;
    let top = i - shift * HALF;
    ((((top + 1) as u128) << shift) - 1) as u64
}

/// A latency histogram; see the module docs for its precision.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self { counts: vec![0; BUCKETS], count: 0, sum: 0, min: u64::MAX, max: 0 }
    }

    pub fn record(&mut self, v: u64) {
        self.counts[index_of(v)] += 1;
        self.count += 1;
        self.sum += v as u128;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn min(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min
        }
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// How many samples were above `v` (exact up to the width of `v`'s bucket: samples that share
    /// it are not counted).
    pub fn count_above(&self, v: u64) -> u64 {
        self.counts[(index_of(v) + 1).min(BUCKETS)..].iter().sum()
    }

    /// The value at quantile `q` in `[0, 1]`: the smallest recorded bucket whose cumulative
    /// count reaches `ceil(q * count)` (at least 1), reported as that bucket's highest value.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return highest_in(i).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

/// The same histogram with atomic counters, shared by all client tasks of a run.
pub struct AtomicHistogram {
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl AtomicHistogram {
    pub fn new() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }

    pub fn record(&self, v: u64) {
        self.counts[index_of(v)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
        self.min.fetch_min(v, Ordering::Relaxed);
        self.max.fetch_max(v, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// A plain copy (exact once recording has stopped).
    pub fn snapshot(&self) -> Histogram {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        Histogram {
            count: counts.iter().sum(),
            counts,
            sum: self.sum.load(Ordering::Relaxed) as u128,
            min: self.min.load(Ordering::Relaxed),
            max: self.max.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    #[test]
    fn count_above_skips_the_threshold_bucket() {
        let mut h = Histogram::new();
        for ms in [1u64, 5, 50, 150, 1_500, 4_000] {
            h.record(ms * 1_000_000);
        }
        assert_eq!(h.count_above(100_000_000), 3);
        assert_eq!(h.count_above(1_000_000_000), 2);
        assert_eq!(h.count_above(u64::MAX), 0);
        assert_eq!(h.count_above(0), 6);
    }

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        for i in 1..BUCKETS {
            assert_eq!(highest_in(i - 1) + 1, lowest_in(i), "gap before bucket {i}");
        }
        assert_eq!(index_of(u64::MAX), BUCKETS - 1);
        assert_eq!(highest_in(BUCKETS - 1), u64::MAX);
        for v in [0, 1, 255, 256, 257, 511, 512, 1_000_000, u64::MAX / 3] {
            let i = index_of(v);
            assert!(lowest_in(i) <= v && v <= highest_in(i), "{v} not in bucket {i}");
        }
    }

    fn lowest_in(i: usize) -> u64 {
        if i == 0 {
            0
        } else {
            highest_in(i - 1) + 1
        }
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 0..256 {
            h.record(v);
        }
        assert_eq!(h.count(), 256);
        assert_eq!(h.min(), 0);
        assert_eq!(h.max(), 255);
        assert_eq!(h.quantile(0.5), 127);
        assert_eq!(h.quantile(1.0), 255);
        assert_eq!(h.quantile(0.0), 0);
        assert!((h.mean() - 127.5).abs() < 1e-9);
    }

    #[test]
    fn quantiles_within_relative_error() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut h = Histogram::new();
        let mut values = Vec::new();
        for _ in 0..100_000 {
            // Log-uniform from 1 µs to 10 s, in ns.
            let v = 10f64.powf(rng.gen_range(3.0..10.0)) as u64;
            h.record(v);
            values.push(v);
        }
        values.sort_unstable();
        for q in [0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let exact = exact_quantile(&values, q);
            let got = h.quantile(q);
            let err = (got as f64 - exact as f64).abs() / exact as f64;
            assert!(got >= exact, "q{q}: {got} below exact {exact}");
            assert!(err <= 1.0 / 128.0, "q{q}: {got} vs {exact} (err {err})");
        }
        assert_eq!(h.max(), *values.last().unwrap());
        assert_eq!(h.min(), values[0]);
    }

    #[test]
    fn quantile_is_clamped_to_max() {
        let mut h = Histogram::new();
        h.record(1_000_001);
        assert_eq!(h.quantile(0.5), 1_000_001);
        assert_eq!(h.quantile(0.999), 1_000_001);
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let h = Histogram::new();
        assert_eq!(h.count(), 0);
        assert_eq!(h.min(), 0);
        assert_eq!(h.max(), 0);
        assert_eq!(h.quantile(0.99), 0);
        assert_eq!(h.mean(), 0.0);
    }

    #[test]
    fn atomic_snapshot_matches_plain() {
        let (atomic, mut plain) = (AtomicHistogram::new(), Histogram::new());
        for v in [5u64, 300, 70_000, 9_000_000_000] {
            atomic.record(v);
            plain.record(v);
        }
        let snap = atomic.snapshot();
        assert_eq!(atomic.count(), 4);
        assert_eq!(snap.count(), plain.count());
        assert_eq!(snap.min(), plain.min());
        assert_eq!(snap.max(), plain.max());
        assert_eq!(snap.quantile(0.5), plain.quantile(0.5));
        assert!((snap.mean() - plain.mean()).abs() < 1e-6);
    }
}
