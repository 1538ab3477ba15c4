//! What an attack or an overload leaves in the error log: rejected requests
//! (400, 408, 413, 431...) and connections closed to make room at
//! `--worker-connections`, counted by the worker and reported at most once
//! a second as one line each, so a flood cannot flood the log too.
//!
//! Both are logged as warnings. They are the server refusing work, which an
//! operator must be able to see in the default log (`--log-level info`)
//! and still sees with `--log-level warning`, the usual production setting;
//! gunicorn logs an invalid request as a warning too. One request at a time
//! would let a client write a line per request; the count per second keeps
//! the log's cost bounded while saying how big the problem is, and the
//! last case's peer and reason say where to look (nginx, by comparison,
//! logs "worker_connections are not enough, reusing connections" once per
//! second at most too).

use std::fmt::{self, Write};

use crate::app::Peer;

/// The shortest interval between two reports of the same kind.
pub const REPORT_EVERY_MS: u64 = 1_000;

/// Counts since the last report.
#[derive(Default)]
pub struct Incidents {
    /// Rejected requests per status (few distinct statuses: a short list).
    rejected: Vec<(u16, u64)>,
    /// The last rejection: status, peer and why.
    last: Option<(u16, Peer)>,
    last_why: String,
    /// Idle connections closed to admit new ones, and the longest idle of
    /// them (ms).
    shed: u64,
    shed_longest_idle_ms: u64,
    reported_ms: u64,
}

impl Incidents {
    pub fn new() -> Incidents {
        Incidents::default()
    }

    /// A request was answered with an error status and its connection closed.
    pub fn rejected(&mut self, status: u16, peer: Peer, why: fmt::Arguments<'_>) {
        match self.rejected.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => self.rejected.push((status, 1)),
        }
        self.last = Some((status, peer));
        self.last_why.clear();
        let _ = self.last_why.write_fmt(why);
    }

    /// An idle connection (idle for `idle_ms`) was closed to admit a new one.
    pub fn shed(&mut self, idle_ms: u64) {
        self.shed += 1;
        self.shed_longest_idle_ms = self.shed_longest_idle_ms.max(idle_ms);
    }

    /// The lines to log now, if any (and then the counts start again): the
    /// first incident after a quiet second is reported at once, later ones
    /// once a second.
    pub fn report(&mut self, now_ms: u64, worker_connections: usize) -> Vec<String> {
        let mut lines = Vec::new();
        if (self.rejected.is_empty() && self.shed == 0)
            || now_ms < self.reported_ms + REPORT_EVERY_MS
        {
            return lines;
        }
        self.reported_ms = now_ms;
        if !self.rejected.is_empty() {
            self.rejected.sort_unstable();
            let total: u64 = self.rejected.iter().map(|(_, n)| n).sum();
            let mut line = format!(
                "rejected {total} request{} (",
                if total == 1 { "" } else { "s" }
            );
            for (i, (status, n)) in self.rejected.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                let _ = write!(line, "{sep}{status}: {n}");
            }
            if let Some((status, peer)) = self.last {
                let _ = write!(line, "); last: {status} to {peer}: {}", self.last_why);
            }
            lines.push(line);
            self.rejected.clear();
            self.last = None;
        }
        if self.shed > 0 {
            lines.push(format!(
                "{worker_connections} worker_connections are not enough: closed {} idle \
                 connection{} to admit new ones (the longest idle for {:.1} s)",
                self.shed,
                if self.shed == 1 { "" } else { "s" },
                self.shed_longest_idle_ms as f64 / 1000.0
            ));
            self.shed = 0;
            self.shed_longest_idle_ms = 0;
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        Peer::Tcp("192.0.2.7:4242".parse().unwrap())
    }

    #[test]
    fn the_first_incident_is_reported_at_once_then_once_a_second() {
        let mut inc = Incidents::new();
        assert!(inc.report(5_000, 1000).is_empty(), "nothing happened");
        inc.rejected(400, peer(), format_args!("Bad({:?})", "method"));
        assert_eq!(
            inc.report(5_000, 1000),
            ["rejected 1 request (400: 1); last: 400 to 192.0.2.7: Bad(\"method\")"]
        );
        for _ in 0..3 {
            inc.rejected(
                408,
                peer(),
                format_args!("no request within --header-timeout"),
            );
        }
        inc.rejected(400, Peer::Unix, format_args!("x"));
        assert!(inc.report(5_999, 1000).is_empty(), "within the second");
        let lines = inc.report(6_000, 1000);
        assert_eq!(
            lines,
            ["rejected 4 requests (400: 1, 408: 3); last: 400 to unix: x"],
            "counted, sorted by status, reported once"
        );
        assert!(inc.report(9_000, 1000).is_empty(), "counts start again");
    }

    #[test]
    fn shedding_is_one_line_with_the_count_and_the_longest_idle() {
        let mut inc = Incidents::new();
        inc.shed(2_500);
        inc.shed(12_000);
        inc.shed(100);
        assert_eq!(
            inc.report(1_000, 50),
            [
                "50 worker_connections are not enough: closed 3 idle connections to admit new \
              ones (the longest idle for 12.0 s)"
            ]
        );
        inc.shed(0);
        assert!(inc.report(1_500, 50).is_empty());
        assert_eq!(inc.report(2_000, 50).len(), 1);
    }
}
