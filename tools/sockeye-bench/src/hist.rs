//! A log-linear histogram in the style of HdrHistogram: exact below 256, then 128 linear
//! sub-buckets per power of two (relative error under 0.8%). Fixed memory (about 60 KiB)
//! whatever the number of samples.

const SUB_BITS: u32 = 8;
const LINEAR: u64 = 1 << SUB_BITS;
const HALF: u64 = LINEAR / 2;
const BUCKETS: usize = LINEAR as usize + (64 - SUB_BITS as usize) * HALF as usize;

pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Histogram { counts: vec![0; BUCKETS], count: 0, max: 0, sum: 0 }
    }

    fn index(v: u64) -> usize {
        if v < LINEAR {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        let shift = msb - (SUB_BITS - 1);
        let sub = (v >> shift) - HALF;
        LINEAR as usize + (shift as usize - 1) * HALF as usize + sub as usize
    }

    /// The largest value that lands in bucket `i`.
    fn upper(i: usize) -> u64 {
        if i < LINEAR as usize {
            return i as u64;
        }
        let j = i - LINEAR as usize;
        let shift = (j / HALF as usize) as u32 + 1;
        let sub = (j % HALF as usize) as u64 + HALF;
        // u128: the top bucket's bound is 2^64 - 1.
        (((u128::from(sub) + 1) << shift) - 1).min(u128::from(u64::MAX)) as u64
    }

    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.count += 1;
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.sum as f64 / self.count as f64 }
    }

    /// The value at quantile `q` (0..=1): the upper bound of the bucket holding that rank,
    /// never above the recorded maximum.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_upper_agree() {
        for v in (0..5000u64).chain([1 << 20, 123_456_789, u64::MAX / 3, u64::MAX]) {
            let i = Histogram::index(v);
            assert!(i < BUCKETS);
            assert!(Histogram::upper(i) >= v, "v {v}");
            if i > 0 {
                assert!(Histogram::upper(i - 1) < v, "v {v}");
            }
        }
    }

    #[test]
    fn quantiles_within_precision() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (q, want) in [(0.5, 50_000f64), (0.9, 90_000.0), (0.99, 99_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.01, "q {q} got {got}");
        }
        assert_eq!(h.quantile(1.0), 100_000);
        assert_eq!(h.max(), 100_000);
    }
}
