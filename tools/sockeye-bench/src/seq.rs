//! Per-receiver sequence tracking: loss, duplicates and reordering with bounded memory.
//! A ring bitmap remembers the last `WINDOW` sequence numbers below the highest one seen; an
//! arrival older than that is counted as delivered and reordered but cannot be checked for
//! duplication (it would have to be more than `WINDOW` messages late).

pub const WINDOW: u64 = 4096;
const WORDS: usize = (WINDOW / 64) as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First arrival of this sequence number.
    New {
        reordered: bool,
    },
    Duplicate,
    /// Older than the window: counted as a new, reordered arrival.
    TooOld,
}

#[derive(Default)]
pub struct SeqTracker {
    max: Option<u64>,
    bits: Option<Box<[u64; WORDS]>>,
}

impl SeqTracker {
    fn bit(seq: u64) -> (usize, u64) {
        let pos = seq % WINDOW;
        ((pos / 64) as usize, 1 << (pos % 64))
    }

    pub fn observe(&mut self, seq: u64) -> Seen {
        let bits = self.bits.get_or_insert_with(|| Box::new([0; WORDS]));
        let (w, m) = Self::bit(seq);
        match self.max {
            None => {
                self.max = Some(seq);
                bits[w] |= m;
                Seen::New { reordered: false }
            }
            Some(max) if seq > max => {
                if seq - max >= WINDOW {
                    bits.fill(0);
                } else {
                    for s in max + 1..seq {
                        let (cw, cm) = Self::bit(s);
                        bits[cw] &= !cm;
                    }
                }
                bits[w] |= m;
                self.max = Some(seq);
                Seen::New { reordered: false }
            }
            Some(max) if max - seq >= WINDOW => Seen::TooOld,
            Some(_) => {
                if bits[w] & m != 0 {
                    Seen::Duplicate
                } else {
                    bits[w] |= m;
                    Seen::New { reordered: true }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_dup_and_reorder() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(10), Seen::New { reordered: false });
        assert_eq!(t.observe(12), Seen::New { reordered: false });
        assert_eq!(t.observe(11), Seen::New { reordered: true });
        assert_eq!(t.observe(11), Seen::Duplicate);
        assert_eq!(t.observe(12), Seen::Duplicate);
        assert_eq!(t.observe(13), Seen::New { reordered: false });
    }

    #[test]
    fn ring_slots_are_cleared_when_reused() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(1), Seen::New { reordered: false });
        // Seq 1 + WINDOW uses the same slot as 1; 1 is now out of the window.
        assert_eq!(t.observe(1 + WINDOW), Seen::New { reordered: false });
        assert_eq!(t.observe(1), Seen::TooOld);
        assert_eq!(t.observe(2), Seen::New { reordered: true });
        assert_eq!(t.observe(WINDOW), Seen::New { reordered: true });
        assert_eq!(t.observe(1 + WINDOW), Seen::Duplicate);
        assert_eq!(t.observe(3 * WINDOW), Seen::New { reordered: false });
        assert_eq!(t.observe(3 * WINDOW - 5), Seen::New { reordered: true });
    }
}
