//! Cached IMF-fixdate for the `Date` header.
//!
//! RFC 9110 §5.6.7 IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT` (always
//! 29 bytes). Formatting is done by hand (Howard Hinnant's civil-from-days)
//! rather than through a date crate: it runs at most once per second per
//! worker and needs nothing but integer arithmetic. Workers call `refresh`
//! with the current second on each loop turn; the bytes are only rebuilt when
//! the second changes.

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate.
pub const DATE_LEN: usize = 29;

/// Last second representable with a 4-digit year (9999-12-31T23:59:59Z).
const MAX_SECS: u64 = 253_402_300_799;

/// Holds the formatted date; `refresh` re-formats at most once per second.
#[derive(Debug)]
pub struct DateCache {
    secs: u64,
    buf: [u8; 29],
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

impl DateCache {
    pub fn new() -> DateCache {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        DateCache {
            secs: now,
            buf: format_imf_fixdate(now),
        }
    }
    /// Update for `now` (unix seconds).
    pub fn refresh(&mut self, now: u64) {
        if now != self.secs {
            self.secs = now;
            self.buf = format_imf_fixdate(now);
        }
    }
    pub fn get(&self) -> &[u8] {
        &self.buf
    }
}

/// Proleptic Gregorian (year, month 1-12, day 1-31) from days since 1970-01-01.
/// Howard Hinnant, "chrono-Compatible Low-Level Date Algorithms", civil_from_days.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Format unix seconds as IMF-fixdate (clamped to year 9999).
pub fn format_imf_fixdate(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let secs = secs.min(MAX_SECS);
    let days = secs / 86_400;
    let sod = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    // 1970-01-01 was a Thursday.
    let wday = ((days + 4) % 7) as usize;
    let (h, m, s) = (sod / 3600, (sod / 60) % 60, sod % 60);
    let year = year as u64;

    let mut b = *b"Sun, 00 Jan 0000 00:00:00 GMT";
    b[0..3].copy_from_slice(DAYS[wday]);
    let two = |b: &mut [u8; 29], at: usize, v: u64| {
        b[at] = b'0' + (v / 10) as u8;
        b[at + 1] = b'0' + (v % 10) as u8;
    };
    two(&mut b, 5, u64::from(day));
    b[8..11].copy_from_slice(MONTHS[month as usize - 1]);
    two(&mut b, 12, year / 100);
    two(&mut b, 14, year % 100);
    two(&mut b, 17, h);
    two(&mut b, 20, m);
    two(&mut b, 23, s);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(secs: u64) -> String {
        String::from_utf8(format_imf_fixdate(secs).to_vec()).unwrap()
    }

    #[test]
    fn known_dates() {
        assert_eq!(fmt(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(fmt(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(fmt(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(fmt(946_684_799), "Fri, 31 Dec 1999 23:59:59 GMT");
        assert_eq!(fmt(1_234_567_890), "Fri, 13 Feb 2009 23:31:30 GMT");
        assert_eq!(fmt(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(fmt(1_709_164_800), "Thu, 29 Feb 2024 00:00:00 GMT");
        assert_eq!(fmt(2_147_483_647), "Tue, 19 Jan 2038 03:14:07 GMT");
        assert_eq!(fmt(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
        assert_eq!(fmt(253_402_300_799), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(fmt(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn every_day_for_years_is_consistent() {
        // Walk days from 1970 to 2101 checking the calendar rolls over correctly.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for day in 0..(131 * 366) {
            assert_eq!(civil_from_days(day), (y, m, d), "day {day}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn cache_refresh() {
        let mut c = DateCache::new();
        assert_eq!(c.get().len(), DATE_LEN);
        assert!(c.get().ends_with(b" GMT"));
        c.refresh(784_111_777);
        assert_eq!(c.get(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        c.refresh(784_111_778);
        assert_eq!(c.get(), b"Sun, 06 Nov 1994 08:49:38 GMT");
        c.refresh(784_111_778);
        assert_eq!(c.get(), b"Sun, 06 Nov 1994 08:49:38 GMT");
    }
}
