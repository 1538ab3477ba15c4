//! The two clocks, and which one each question asks.
//!
//! Every duration and deadline (heartbeats, busy stamps, keep-alive and
//! header timeouts, graceful deadlines, back-off) uses [`monotonic_ms`]:
//! `CLOCK_MONOTONIC` never steps when the wall clock does (an NTP
//! correction at boot, a resumed VM, `date -s`), so a step can neither kill
//! a busy worker nor suspend a timeout. Its raw value counts from boot and
//! is the same in every process on the machine, which the scoreboard needs:
//! the master compares the stamps its workers write (a per-process
//! `Instant` anchor would not be comparable across `fork`).
//!
//! The wall clock ([`unix_secs`]) answers only "what time is it", for the
//! `Date` header and log timestamps.

use std::time::{SystemTime, UNIX_EPOCH};

use nix::time::{ClockId, clock_gettime};

/// Milliseconds of `CLOCK_MONOTONIC`: for every duration and deadline.
/// Never 0 (callers use 0 for "no stamp"), and never goes back.
pub fn monotonic_ms() -> u64 {
    // 1 keeps the "never 0" promise if the clock could not be read (it
    // cannot fail on Linux).
    (monotonic_usec() / 1000).max(1)
}

/// Microseconds of `CLOCK_MONOTONIC` (also sd_notify's `MONOTONIC_USEC=`).
pub fn monotonic_usec() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch by the wall clock: for the `Date` header
/// and log lines only, never for a deadline.
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_is_nonzero_and_never_goes_back() {
        let mut last = monotonic_ms();
        assert!(last > 0);
        for _ in 0..1000 {
            let now = monotonic_ms();
            assert!(now >= last, "{now} < {last}");
            last = now;
        }
    }
}
