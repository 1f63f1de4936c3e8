//! Message ids and timestamps for stored records, with no date or id crate.
//!
//! - [`ObjectIdGen`] makes MongoDB-ObjectId-shaped ids (24 hex chars). The chat clients already
//!   know that shape, and its time prefix makes ids roughly sortable by creation time. The store
//!   orders history by its own `seq`, never by id, so ids only need to be unique.
//! - [`iso8601_utc`] formats a unix time in milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
//! - [`is_object_id`] checks the shape of an id received from a client before it reaches a query.

/// Counter values occupy 3 bytes of the id, so the counter wraps at 2^24.
const COUNTER_MASK: u32 = 0x00ff_ffff;

/// Generates ObjectId-shaped ids: 4-byte big-endian unix seconds, 5 bytes fixed for this
/// generator, 3-byte big-endian counter.
///
/// Deterministic given its inputs: the caller supplies the clock and, through [`ObjectIdGen::new`],
/// the fixed bytes and the counter start. Uniqueness across processes rests on the 5 random bytes,
/// within a process on the counter (2^24 ids per second per generator before a repeat is possible).
#[derive(Debug, Clone)]
pub struct ObjectIdGen {
    random5: [u8; 5],
    counter: u32,
}

impl ObjectIdGen {
    /// A generator with fixed middle bytes `random5` whose first id uses counter value
    /// `counter_start` (only its low 24 bits count).
    pub fn new(random5: [u8; 5], counter_start: u32) -> Self {
        ObjectIdGen { random5, counter: counter_start & COUNTER_MASK }
    }

    /// A generator with random middle bytes and a random counter start, as MongoDB drivers do, so
    /// two processes started in the same second do not collide.
    pub fn from_entropy() -> Self {
        ObjectIdGen::new(rand::random::<[u8; 5]>(), rand::random::<u32>())
    }

    /// The next id, stamped with `unix_ms` truncated to whole seconds. The seconds field is 32
    /// bits, so it wraps in 2106, as ObjectIds do everywhere.
    pub fn next(&mut self, unix_ms: u64) -> String {
        let secs = (unix_ms / 1000) as u32;
        let counter = self.counter;
        self.counter = (self.counter + 1) & COUNTER_MASK;

        let mut bytes = [0u8; 12];
        bytes[0..4].copy_from_slice(&secs.to_be_bytes());
        bytes[4..9].copy_from_slice(&self.random5);
        bytes[9..12].copy_from_slice(&counter.to_be_bytes()[1..4]);

        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(24);
        for b in bytes {
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0x0f)] as char);
        }
        out
    }
}

/// Whether `s` has the shape of an ObjectId: exactly 24 ASCII hex digits, either case.
pub fn is_object_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Formats `unix_ms` (milliseconds since 1970-01-01T00:00:00Z) as ISO-8601 UTC with millisecond
/// precision, e.g. `2025-01-02T11:05:00.000Z`.
///
/// Years past 9999 print with more than four digits rather than in the signed extended form;
/// no caller produces them, and the output stays sortable as text up to then.
pub fn iso8601_utc(unix_ms: u64) -> String {
    let ms = unix_ms % 1000;
    let secs = unix_ms / 1000;
    let days = secs / 86_400;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z", sod / 3600, (sod / 60) % 60, sod % 60)
}

/// Proleptic Gregorian (year, month, day) for a count of days since 1970-01-01.
///
/// Works in 400-year eras starting on March 1st, so that the leap day falls at the end of each
/// shifted year and month lengths follow the fixed 153-days-per-5-months pattern. The input is
/// unsigned (no dates before 1970 reach here), which keeps all arithmetic in `u64`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 1970-01-01 is day 719_468 counted from 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097; // days per 400 years
    let doe = z % 146_097; // day of era, 0..=146_096
    // Year of era, 0..=399: remove the leap days accumulated so far before dividing by 365.
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year, 0..=365
    let mp = (5 * doy + 2) / 153; // month index with March = 0, 0..=11
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    // January and February belong to the next calendar year in the March-based count.
    let y = era * 400 + yoe + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_id_layout() {
        let mut g = ObjectIdGen::new([0x01, 0x02, 0x03, 0x04, 0x05], 0x0a0b0c);
        // 1_700_000_000 s = 0x6553f100.
        assert_eq!(g.next(1_700_000_000_999), "6553f1000102030405 0a0b0c".replace(' ', ""));
        assert_eq!(g.next(1_700_000_001_000), "6553f1010102030405 0a0b0d".replace(' ', ""));
    }

    #[test]
    fn object_id_counter_wraps_at_24_bits() {
        let mut g = ObjectIdGen::new([0xff; 5], 0xffff_fffe);
        assert_eq!(g.next(0), "00000000ffffffffff fffffe".replace(' ', ""));
        assert_eq!(g.next(0), "00000000ffffffffff ffffff".replace(' ', ""));
        assert_eq!(g.next(0), "00000000ffffffffff 000000".replace(' ', ""));
    }

    #[test]
    fn object_id_is_deterministic_and_well_formed() {
        let mut a = ObjectIdGen::new([9, 8, 7, 6, 5], 42);
        let mut b = ObjectIdGen::new([9, 8, 7, 6, 5], 42);
        for i in 0..1000u64 {
            let (x, y) = (a.next(i * 997), b.next(i * 997));
            assert_eq!(x, y);
            assert!(is_object_id(&x), "{x}");
            assert!(x.bytes().all(|c| !c.is_ascii_uppercase()));
        }
        let mut e = ObjectIdGen::from_entropy();
        let (x, y) = (e.next(5_000), e.next(5_000));
        assert!(is_object_id(&x) && is_object_id(&y));
        assert_ne!(x, y);
    }

    #[test]
    fn object_id_shape_check() {
        assert!(is_object_id("507f1f77bcf86cd799439011"));
        assert!(is_object_id("507F1F77BCF86CD799439011"));
        assert!(!is_object_id("507f1f77bcf86cd79943901"));
        assert!(!is_object_id("507f1f77bcf86cd7994390111"));
        assert!(!is_object_id("507f1f77bcf86cd79943901g"));
        assert!(!is_object_id(""));
        // 24 bytes but not 24 ASCII characters.
        assert_eq!("é7f1f77bcf86cd799439011".len(), 24);
        assert!(!is_object_id("é7f1f77bcf86cd799439011"));
    }

    #[test]
    fn iso8601_known_dates() {
        let cases: &[(u64, &str)] = &[
            (0, "1970-01-01T00:00:00.000Z"),
            (999, "1970-01-01T00:00:00.999Z"),
            (86_399_999, "1970-01-01T23:59:59.999Z"),
            (86_400_000, "1970-01-02T00:00:00.000Z"),
            // 1972 is the first leap year after the epoch.
            (68_169_600_000, "1972-02-29T00:00:00.000Z"),
            (68_256_000_000, "1972-03-01T00:00:00.000Z"),
            (946_684_799_000, "1999-12-31T23:59:59.000Z"),
            (946_684_800_000, "2000-01-01T00:00:00.000Z"),
            // 2000 is a leap year (divisible by 400).
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (951_868_800_000, "2000-03-01T00:00:00.000Z"),
            (978_307_199_000, "2000-12-31T23:59:59.000Z"),
            (1_700_000_000_000, "2023-11-14T22:13:20.000Z"),
            (1_709_164_800_000, "2024-02-29T00:00:00.000Z"),
            (1_735_815_900_000, "2025-01-02T11:05:00.000Z"),
            // The 32-bit time_t limit and just after it.
            (2_147_483_647_000, "2038-01-19T03:14:07.000Z"),
            (2_147_483_648_123, "2038-01-19T03:14:08.123Z"),
            // 2100 is not a leap year (divisible by 100, not by 400).
            (4_107_456_000_000, "2100-02-28T00:00:00.000Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        ];
        for &(ms, want) in cases {
            assert_eq!(iso8601_utc(ms), want, "{ms}");
        }
    }

    #[test]
    fn iso8601_extremes_do_not_panic() {
        let s = iso8601_utc(u64::MAX);
        assert!(s.ends_with('Z'));
        assert_eq!(iso8601_utc(253_402_300_800_000), "10000-01-01T00:00:00.000Z");
    }

    /// Walks day by day from 1970 through 2400 and checks each date follows the previous one, so
    /// every month length and leap rule is exercised, not just the sampled vectors above.
    #[test]
    fn civil_from_days_is_a_calendar() {
        fn leap(y: u64) -> bool {
            (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
        }
        fn month_len(y: u64, m: u64) -> u64 {
            match m {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                _ if leap(y) => 29,
                _ => 28,
            }
        }
        let mut prev = civil_from_days(0);
        assert_eq!(prev, (1970, 1, 1));
        for day in 1..(431 * 366) {
            let cur = civil_from_days(day);
            let (y, m, d) = prev;
            let want = if d < month_len(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            assert_eq!(cur, want, "day {day}");
            prev = cur;
        }
    }
}
