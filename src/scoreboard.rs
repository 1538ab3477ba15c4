//! What the workers publish for the status listener and `/metrics`: one row
//! of counters per scoreboard slot, in shared memory, plus a row of retired
//! totals.
//!
//! A worker writes only its own row, from its event-loop thread: one
//! writer per row, so an increment is a relaxed load and store (`bump`),
//! not a locked read-modify-write (five per request; see benches/observe.rs).
//! Were requests ever counted from several threads of one worker, `bump`
//! would have to become `fetch_add`. The master reads every
//! row when asked and, when it reaps a worker, folds that worker's counters
//! into the retired row and zeroes its row ([`Table::fold`]), so a counter
//! summed over the table never goes backwards when a worker is replaced.
//!
//! The heartbeat part of a worker's row (pid, ready, busy, open connections)
//! stays in [`crate::sys::Slot`]; [`WorkerStatus::read`] reads both into one
//! plain value.
//!
//! Labels are kept small on purpose: methods are folded into [`METHODS`]
//! (anything else is `other`), statuses into classes `1xx`..`5xx`, durations
//! into the fixed [`BUCKETS_US`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::sys::Slot;

mod shm;

/// Request methods with a label of their own; the last one is `other`.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];
/// Status classes: index `status / 100 - 1` (anything outside 1xx..5xx is 5xx).
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Histogram upper bounds in microseconds (Prometheus' `le`, inclusive);
/// one more bucket, `+Inf`, follows. From 1 ms to 60 s: a web request's range.
pub const BUCKETS_US: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 60_000_000,
];
const NB: usize = BUCKETS_US.len() + 1;

/// Add `n` to a counter that only the calling thread writes (a worker's own
/// row): readers may see the old or the new value, never a torn one.
#[inline]
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Index into [`METHODS`].
pub fn method_index(method: &str) -> usize {
    METHODS[..7].iter().position(|m| *m == method).unwrap_or(7)
}

/// Index into [`CLASSES`].
pub fn class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// Index of the bucket holding `us` (the last one is `+Inf`).
pub fn bucket_index(us: u64) -> usize {
    BUCKETS_US.partition_point(|&b| b < us)
}

/// A histogram of durations: per-bucket counts (not cumulative) and the sum.
#[repr(C)]
pub struct Histogram {
    buckets: [AtomicU64; NB],
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, us: u64) {
        bump(&self.buckets[bucket_index(us)], 1);
        bump(&self.sum_us, us);
    }

    fn read(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }

    fn add(&self, h: &HistogramSnapshot) {
        for (a, b) in self.buckets.iter().zip(h.buckets) {
            a.fetch_add(b, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(h.sum_us, Ordering::Relaxed);
    }

    fn clear(&self) {
        for a in &self.buckets {
            a.store(0, Ordering::Relaxed);
        }
        self.sum_us.store(0, Ordering::Relaxed);
    }
}

/// One worker's counters (every field an atomic: all-zero bytes are valid).
#[repr(C, align(128))]
pub struct Counters {
    /// Responses by method and status class, refusals (400/408/413/431) included.
    requests: [[AtomicU64; 5]; 8],
    /// Time inside the app.
    app: Histogram,
    /// From a complete request head to the response queued.
    total: Histogram,
    /// `X-Request-Start` queue time (proxy to worker).
    queue: Histogram,
    /// Response bytes queued (heads and bodies).
    bytes_sent: AtomicU64,
    /// The id of the request in the app (for the master's timeout line).
    rid_len: AtomicU64,
    rid: [AtomicU64; 16],
}

impl Counters {
    pub fn read(&self) -> CountersSnapshot {
        CountersSnapshot {
            requests: std::array::from_fn(|m| {
                std::array::from_fn(|c| self.requests[m][c].load(Ordering::Relaxed))
            }),
            app: self.app.read(),
            total: self.total.read(),
            queue: self.queue.read(),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            in_flight: 0,
        }
    }

    fn add(&self, s: &CountersSnapshot) {
        for (row, srow) in self.requests.iter().zip(&s.requests) {
            for (a, b) in row.iter().zip(srow) {
                a.fetch_add(*b, Ordering::Relaxed);
            }
        }
        self.app.add(&s.app);
        self.total.add(&s.total);
        self.queue.add(&s.queue);
        self.bytes_sent.fetch_add(s.bytes_sent, Ordering::Relaxed);
    }

    fn clear(&self) {
        for row in &self.requests {
            for a in row {
                a.store(0, Ordering::Relaxed);
            }
        }
        self.app.clear();
        self.total.clear();
        self.queue.clear();
        self.bytes_sent.store(0, Ordering::Relaxed);
        self.rid_len.store(0, Ordering::Relaxed);
    }
}

/// A plain copy of a [`Histogram`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Per-bucket counts (not cumulative); the last is `+Inf`.
    pub buckets: [u64; NB],
    pub sum_us: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Cumulative counts, as Prometheus' `_bucket{le=..}` wants them.
    pub fn cumulative(&self) -> [u64; NB] {
        let mut acc = 0;
        std::array::from_fn(|i| {
            acc += self.buckets[i];
            acc
        })
    }

    fn merge(&mut self, o: &HistogramSnapshot) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self.sum_us += o.sum_us;
    }
}

/// A plain copy of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub requests: [[u64; 5]; 8],
    pub app: HistogramSnapshot,
    pub total: HistogramSnapshot,
    pub queue: HistogramSnapshot,
    pub bytes_sent: u64,
    /// Requests inside the app now: not a counter of the row, filled in by
    /// the master from the workers' busy stamps ([`crate::sys::Slot`]).
    pub in_flight: u64,
}

impl CountersSnapshot {
    pub fn merge(&mut self, o: &CountersSnapshot) {
        for (row, orow) in self.requests.iter_mut().zip(&o.requests) {
            for (a, b) in row.iter_mut().zip(orow) {
                *a += b;
            }
        }
        self.app.merge(&o.app);
        self.total.merge(&o.total);
        self.queue.merge(&o.queue);
        self.bytes_sent += o.bytes_sent;
        self.in_flight += o.in_flight;
    }

    pub fn requests_total(&self) -> u64 {
        self.requests.iter().flatten().sum()
    }
}

/// The shared table: one row per scoreboard slot, then the retired row.
pub struct Table {
    rows: &'static [Counters],
}

impl Table {
    /// Rows for `slots` workers plus the retired totals.
    pub fn new(slots: usize) -> std::io::Result<Table> {
        Ok(Table {
            rows: shm::map_counters(slots + 1)?,
        })
    }

    pub fn row(&self, slot: usize) -> &'static Counters {
        &self.rows[slot]
    }

    /// Counters of workers that are gone.
    pub fn retired(&self) -> &'static Counters {
        &self.rows[self.rows.len() - 1]
    }

    /// The worker in `slot` was reaped: move its counters into the retired
    /// row (the master is the only writer of that row, and the dead worker
    /// no longer writes its own), and zero its row for the next worker.
    pub fn fold(&self, slot: usize) {
        let row = self.row(slot);
        self.retired().add(&row.read());
        row.clear();
    }

    /// Retired totals plus every live row.
    pub fn totals(&self, live_slots: impl Iterator<Item = usize>) -> CountersSnapshot {
        let mut t = self.retired().read();
        for s in live_slots {
            t.merge(&self.row(s).read());
        }
        t
    }
}

/// The process-wide table (made by the master, inherited by its workers).
static TABLE: OnceLock<Table> = OnceLock::new();
/// This worker's row (`usize::MAX` in the master or outside a server).
static MINE: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The table, mapped on first use (the master calls this before forking).
pub fn table(slots: usize) -> Option<&'static Table> {
    if TABLE.get().is_none() {
        match Table::new(slots) {
            Ok(t) => {
                let _ = TABLE.set(t);
            }
            Err(e) => log::warn!("mmap() of the metrics table failed, no metrics: {e}"),
        }
    }
    TABLE.get()
}

/// In a freshly forked worker: its counters go to row `slot`.
pub fn enter_worker(slot: usize) {
    MINE.store(slot, Ordering::Relaxed);
}

fn mine() -> Option<&'static Counters> {
    let slot = MINE.load(Ordering::Relaxed);
    if slot == usize::MAX {
        return None;
    }
    TABLE.get().map(|t| t.row(slot))
}

/// One answered (or refused) request, counted where the access log is
/// written: its method, status, time in the app, total time and the bytes
/// queued for it. A no-op outside a worker.
pub fn count_request(method: &str, status: u16, app_us: u64, total_us: u64, bytes: u64) {
    if let Some(c) = mine() {
        bump(&c.requests[method_index(method)][class_index(status)], 1);
        c.app.observe(app_us);
        c.total.observe(total_us);
        bump(&c.bytes_sent, bytes);
    }
}

/// A request refused by ferricorn itself (400, 408, 413, 431...): no app
/// time, counted under method `other` (its method may be unknown).
pub fn count_refused(status: u16, bytes: u64) {
    count_request("other", status, 0, 0, bytes);
}

/// Streamed response body bytes, as they are pulled from the app.
pub fn count_bytes(n: u64) {
    if let Some(c) = mine() {
        bump(&c.bytes_sent, n);
    }
}

/// Publish the id of the request entering the app (truncated to 128 bytes).
pub fn set_request_id(id: &str) {
    if let Some(c) = mine() {
        let b = id.as_bytes();
        let n = b.len().min(128);
        for (i, word) in c.rid.iter().enumerate().take(n.div_ceil(8)) {
            let mut w = [0u8; 8];
            let start = i * 8;
            let end = (start + 8).min(n);
            w[..end - start].copy_from_slice(&b[start..end]);
            word.store(u64::from_le_bytes(w), Ordering::Relaxed);
        }
        c.rid_len.store(n as u64, Ordering::Relaxed);
    }
}

impl Counters {
    /// The id of the request last entering the app ("" when none).
    pub fn request_id(&self) -> String {
        let n = (self.rid_len.load(Ordering::Relaxed) as usize).min(128);
        let mut bytes = Vec::with_capacity(128);
        for word in &self.rid {
            bytes.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        bytes.truncate(n);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// `X-Request-Start` queue time of one request.
pub fn count_queue_time(us: u64) {
    if let Some(c) = mine() {
        c.queue.observe(us);
    }
}

/// One worker as the master sees it, read from its [`Slot`] and its counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStatus {
    pub pid: u64,
    pub ready: bool,
    pub retire_requested: bool,
    /// Open client connections.
    pub connections: u64,
    /// Last loop turn ([`crate::clock::monotonic_ms`]).
    pub tick_ms: u64,
    /// When the request in the app began; 0 when idle.
    pub busy_since_ms: u64,
    /// "METHOD /path" of the request in the app ("" when idle).
    pub current_request: String,
    pub counters: CountersSnapshot,
}

impl WorkerStatus {
    pub fn read(slot: &Slot, counters: Option<&Counters>) -> WorkerStatus {
        let busy_since_ms = slot.busy_since_ms.load(Ordering::Relaxed);
        WorkerStatus {
            pid: slot.pid.load(Ordering::Acquire),
            ready: slot.is_ready(),
            retire_requested: slot.retire_requested(),
            connections: slot.active.load(Ordering::Relaxed),
            tick_ms: slot.tick_ms.load(Ordering::Relaxed),
            busy_since_ms,
            current_request: if busy_since_ms != 0 {
                slot.what()
            } else {
                String::new()
            },
            counters: counters.map(|c| c.read()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_list_are_other() {
        assert_eq!(METHODS[method_index("GET")], "GET");
        assert_eq!(METHODS[method_index("OPTIONS")], "OPTIONS");
        assert_eq!(METHODS[method_index("PROPFIND")], "other");
        assert_eq!(METHODS[method_index("get")], "other");
    }

    #[test]
    fn statuses_fall_into_classes() {
        assert_eq!(CLASSES[class_index(101)], "1xx");
        assert_eq!(CLASSES[class_index(200)], "2xx");
        assert_eq!(CLASSES[class_index(304)], "3xx");
        assert_eq!(CLASSES[class_index(431)], "4xx");
        assert_eq!(CLASSES[class_index(503)], "5xx");
        assert_eq!(CLASSES[class_index(999)], "5xx");
    }

    #[test]
    fn bucket_bounds_are_inclusive() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(1_000), 0);
        assert_eq!(bucket_index(1_001), 1);
        assert_eq!(bucket_index(60_000_000), BUCKETS_US.len() - 1);
        assert_eq!(bucket_index(60_000_001), BUCKETS_US.len());
        assert!(BUCKETS_US.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn folding_a_dead_worker_keeps_totals_monotonic() {
        let t = Table::new(3).unwrap();
        let count = |slot: usize, status: u16, us: u64| {
            let c = t.row(slot);
            c.requests[method_index("GET")][class_index(status)].fetch_add(1, Ordering::Relaxed);
            c.total.observe(us);
            c.bytes_sent.fetch_add(10, Ordering::Relaxed);
        };
        count(0, 200, 500);
        count(1, 200, 3_000);
        count(1, 404, 3_000);
        let before = t.totals([0, 1].into_iter());
        assert_eq!(before.requests_total(), 3);
        t.fold(1);
        let after = t.totals([0, 1].into_iter());
        assert_eq!(after.requests_total(), 3, "nothing lost by the fold");
        assert_eq!(after.bytes_sent, 30);
        assert_eq!(after.total.count(), 3);
        assert_eq!(after.total.sum_us, 6_500);
        assert_eq!(t.row(1).read(), CountersSnapshot::default());
        // The next worker in the slot starts from zero; totals keep growing.
        count(1, 500, 1);
        let later = t.totals([0, 1].into_iter());
        assert_eq!(later.requests_total(), 4);
        assert_eq!(later.requests[0], [0, 2, 0, 1, 1]);
    }

    #[test]
    fn cumulative_buckets_end_at_the_count() {
        let mut h = HistogramSnapshot::default();
        h.buckets[0] = 2;
        h.buckets[3] = 1;
        h.buckets[NB - 1] = 4;
        let c = h.cumulative();
        assert_eq!(c[0], 2);
        assert_eq!(c[2], 2);
        assert_eq!(c[3], 3);
        assert_eq!(c[NB - 1], h.count());
        assert_eq!(h.count(), 7);
    }
}
