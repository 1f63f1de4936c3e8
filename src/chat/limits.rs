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

/// The rejection codes counted by [`ChatStats`], as `docs/PROTOCOL.md` names them; any other
/// code is counted as `other`.
pub const REJECTION_CODES: [&str; 15] = [
    "invalid_payload",
    "empty_text",
    "text_too_long",
    "invalid_room_name",
    "room_name_taken",
    "unknown_room",
    "unknown_user",
    "unknown_message",
    "not_member",
    "too_many_rooms",
    "rate_limited",
    "overloaded",
    "storage_error",
    "token_expired",
    "other",
];

/// The handshake refusal codes counted by [`ChatStats`] (section 1 of `docs/PROTOCOL.md`).
pub const CONNECT_REFUSAL_CODES: [&str; 9] = [
    "missing_token",
    "malformed_token",
    "invalid_signature",
    "algorithm_not_allowed",
    "token_expired",
    "token_not_yet_valid",
    "no_identity",
    "invalid_username",
    "other",
];

/// The chat's limit and rejection counters for `GET /metrics`, shared by every core. Only
/// rejections touch them (no atomic on the accepted path), so sharing one cache line across
/// cores costs nothing that matters.
#[derive(Debug, Default)]
pub struct ChatStats {
    rejections: [std::sync::atomic::AtomicU64; REJECTION_CODES.len()],
    connects_refused: [std::sync::atomic::AtomicU64; CONNECT_REFUSAL_CODES.len()],
    /// Sockets disconnected for `abuse_disconnect` rejections in 10 s.
    pub abuse_disconnects: std::sync::atomic::AtomicU64,
    /// HTTP API requests answered 429.
    pub api_rate_limited: std::sync::atomic::AtomicU64,
}

impl ChatStats {
    /// Counts one event or request answered with error `code`.
    pub fn rejected(&self, code: &str) {
        let last = REJECTION_CODES.len() - 1;
        let i = REJECTION_CODES[..last].iter().position(|c| *c == code).unwrap_or(last);
        self.rejections[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts one handshake refused with `code` (a token or user name problem).
    pub fn connect_refused(&self, code: &str) {
        let last = CONNECT_REFUSAL_CODES.len() - 1;
        let i = CONNECT_REFUSAL_CODES[..last].iter().position(|c| *c == code).unwrap_or(last);
        self.connects_refused[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many were answered with `code` (`other` for the codes not listed).
    pub fn rejections(&self, code: &str) -> u64 {
        REJECTION_CODES
            .iter()
            .position(|c| *c == code)
            .map_or(0, |i| self.rejections[i].load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Appends the chat's families.
    pub fn render(&self, e: &mut crate::metrics::Exposition) {
        use std::sync::atomic::Ordering::Relaxed;
        let name = "sockeye_chat_rejections_total";
        e.family(name, "counter", "Chat events refused, by error code (docs/PROTOCOL.md).");
        for (code, n) in REJECTION_CODES.iter().zip(&self.rejections) {
            e.sample(name, &[("code", code)], n.load(Relaxed) as f64);
        }
        let name = "sockeye_chat_connects_refused_total";
        e.family(
            name,
            "counter",
            "Chat handshakes refused (CONNECT_ERROR), by error code (docs/PROTOCOL.md section 1).",
        );
        for (code, n) in CONNECT_REFUSAL_CODES.iter().zip(&self.connects_refused) {
            e.sample(name, &[("code", code)], n.load(Relaxed) as f64);
        }
        e.single(
            "sockeye_chat_abuse_disconnects_total",
            "counter",
            "Chat sockets disconnected for too many rejections in 10 s (abuse_disconnect).",
            self.abuse_disconnects.load(Relaxed) as f64,
        );
        e.single(
            "sockeye_chat_api_rate_limited_total",
            "counter",
            "Chat HTTP API requests answered 429 (api_rate_limit).",
            self.api_rate_limited.load(Relaxed) as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_stats_count_by_code() {
        let st = ChatStats::default();
        st.rejected("rate_limited");
        st.rejected("rate_limited");
        st.rejected("no_such_code");
        assert_eq!(st.rejections("rate_limited"), 2);
        assert_eq!(st.rejections("other"), 1);
        assert_eq!(st.rejections("text_too_long"), 0);
        let mut e = crate::metrics::Exposition::default();
        st.render(&mut e);
        let text = e.finish();
        assert!(text.contains("sockeye_chat_rejections_total{code=\"rate_limited\"} 2\n"), "{text}");
        assert!(text.contains("sockeye_chat_rejections_total{code=\"other\"} 1\n"), "{text}");
    }

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
