//! Per-socket rate limiting: a token bucket for message-like events, and a strike counter that
//! turns repeated rejections into a disconnect. Time is passed in (milliseconds); no clock here.

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: u32, now_ms: u64) -> Self {
        TokenBucket { tokens: f64::from(burst), last_ms: now_ms }
    }

    /// Takes one token if there is one. A clock that went backwards adds nothing.
    pub fn take(&mut self, rate: f64, burst: u32, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counts rejections in a fixed window; `strike` says when the count reaches the limit.
#[derive(Debug, Clone, Default)]
pub struct Strikes {
    window_start_ms: u64,
    count: u32,
}

impl Strikes {
    pub const WINDOW_MS: u64 = 10_000;

    /// Records one rejection; true when this socket should be disconnected (limit 0: never).
    pub fn strike(&mut self, limit: u32, now_ms: u64) -> bool {
        if now_ms.saturating_sub(self.window_start_ms) >= Self::WINDOW_MS {
            self.window_start_ms = now_ms;
            self.count = 0;
        }
        self.count += 1;
        limit > 0 && self.count >= limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let mut b = TokenBucket::new(3, 0);
        assert!(b.take(1.0, 3, 0));
        assert!(b.take(1.0, 3, 0));
        assert!(b.take(1.0, 3, 0));
        assert!(!b.take(1.0, 3, 0), "burst spent");
        assert!(!b.take(1.0, 3, 500), "half a token");
        assert!(b.take(1.0, 3, 1000), "one token after a second");
        assert!(!b.take(1.0, 3, 1000));
        // A long pause refills to the burst, not beyond.
        for _ in 0..3 {
            assert!(b.take(1.0, 3, 100_000));
        }
        assert!(!b.take(1.0, 3, 100_000));
    }

    #[test]
    fn bucket_ignores_clock_going_backwards() {
        let mut b = TokenBucket::new(1, 10_000);
        assert!(b.take(1.0, 1, 10_000));
        assert!(!b.take(1.0, 1, 5_000));
        assert!(!b.take(1.0, 1, 10_500));
        assert!(b.take(1.0, 1, 11_000));
    }

    #[test]
    fn strikes_reach_limit_within_window_only() {
        let mut s = Strikes::default();
        assert!(!s.strike(3, 0));
        assert!(!s.strike(3, 1));
        assert!(s.strike(3, 2));
        let mut s = Strikes::default();
        assert!(!s.strike(3, 0));
        assert!(!s.strike(3, 1));
        assert!(!s.strike(3, Strikes::WINDOW_MS + 5), "window restarted");
        assert!(!Strikes::default().strike(0, 0), "limit 0 never disconnects");
    }
}
