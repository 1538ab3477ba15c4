//! The event loop's accept-balancing and shedding decisions, as pure
//! functions of counts and time (the loop reads the scoreboard and acts;
//! `event_loop`'s module docs say why each rule exists).
//!
//! - A worker's *load* is its open connections less the ones idle for
//!   longer than [`DORMANT_MS`]: an idle connection costs no work, and since
//!   it never moves to another worker, counting it made an uneven start
//!   last for good (two workers holding 100 and 80 idle connections made
//!   half of all new clients wait the deferral, for as long as those idle
//!   connections stayed open).
//! - [`lighter_peer`]: is a peer able to accept right now holding more than
//!   a margin less load than we do?
//! - [`Deferral::my_turn`]: leave queued connections to such a peer for at
//!   most [`DEFER_MS`], then take them.
//! - [`shed_margin`]: how much heavier than a peer a worker must be before
//!   it asks a keep-alive client to reconnect.
//! - [`longest_idle`]: which idle connections to close when a worker is at
//!   `--worker-connections` and new ones are waiting (nginx reuses its
//!   idle connections the same way rather than stop accepting).

/// How much more load than the least loaded worker we may hold before
/// leaving new connections to it.
pub const BALANCE_SLACK: u64 = 2;
/// How long a loaded worker leaves queued connections to a less loaded peer
/// (exclusive wake-ups) before accepting them itself.
pub const DEFER_MS: u64 = 3;
/// A worker holding more than this much load above a peer's (or a quarter
/// more, when that is larger) closes one kept-alive connection per check,
/// so that the client reconnects to the peer.
pub const SHED_SLACK: u64 = 8;
/// A connection idle for this long no longer counts as load (it is
/// "dormant"): long enough that connections in use, which send a request at
/// least every second, always count, and a burst of new connections counts
/// from its first moment.
pub const DORMANT_MS: u64 = 1_000;
/// A peer whose loop has not turned for this long is not accepting.
const STALE_TICK_MS: u64 = 1_500;

/// What one worker reads about a peer from the scoreboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLoad {
    /// Open connections less dormant ones.
    pub load: u64,
    /// Open connections.
    pub open: u64,
    /// The peer's loop is accepting (ready, not draining).
    pub ready: bool,
    /// The peer is inside its app now.
    pub in_app: bool,
    /// The peer's last loop turn (ms).
    pub tick_ms: u64,
}

impl PeerLoad {
    /// Ready, its loop turning, and not held in its app: it would accept a
    /// connection at once.
    pub fn can_accept_now(&self, now_ms: u64) -> bool {
        self.ready && !self.in_app && now_ms.saturating_sub(self.tick_ms) < STALE_TICK_MS
    }
}

/// A worker's load: its open connections less the dormant ones.
pub fn load(open: usize, dormant: usize) -> u64 {
    open.saturating_sub(dormant) as u64
}

/// Is a peer that could accept right now holding more than `margin` less
/// load than `mine`?
pub fn lighter_peer(
    mine: u64,
    margin: u64,
    peers: impl IntoIterator<Item = PeerLoad>,
    now_ms: u64,
) -> bool {
    mine > margin
        && peers
            .into_iter()
            .any(|p| p.can_accept_now(now_ms) && p.load + margin < mine)
}

/// Does a peer that could accept right now have a free connection slot?
/// A worker at `--worker-connections` leaves new connections to it rather
/// than close idle ones of its own.
pub fn peer_has_room(limit: usize, peers: impl IntoIterator<Item = PeerLoad>, now_ms: u64) -> bool {
    peers
        .into_iter()
        .any(|p| p.can_accept_now(now_ms) && p.open < limit as u64)
}

/// The margin for shedding kept-alive connections towards a lighter peer:
/// `SHED_SLACK`, or a quarter of our load when that is larger.
pub fn shed_margin(mine: u64) -> u64 {
    SHED_SLACK.max(mine / 4)
}

/// When this worker began leaving queued connections to a lighter peer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deferral {
    since_ms: u64,
}

impl Deferral {
    /// Whether this worker should take the next queued connection, given
    /// whether a lighter peer exists. With exclusive wake-ups only this
    /// worker was told about what is queued; a lighter peer hears of the
    /// queue only when the next connection arrives (and then drains it).
    /// So leave the queue to it for a moment, then take it ourselves:
    /// nothing waits more than `DEFER_MS`. Without exclusive wake-ups every
    /// worker was woken, and the lighter one takes it.
    pub fn my_turn(&mut self, lighter_peer: bool, exclusive: bool, now_ms: u64) -> bool {
        if !lighter_peer {
            self.since_ms = 0;
            return true;
        }
        if !exclusive {
            return false;
        }
        if self.since_ms == 0 {
            self.since_ms = now_ms.max(1);
        }
        if now_ms >= self.since_ms + DEFER_MS {
            self.since_ms = 0;
            return true;
        }
        false
    }

    /// Deferring now (`my_turn` said no and the time is not up).
    pub fn active(&self) -> bool {
        self.since_ms != 0
    }

    /// The queue was drained: nothing is being left to a peer.
    pub fn clear(&mut self) {
        self.since_ms = 0;
    }
}

/// The `n` connections idle the longest, from `(index, idle since ms)`
/// pairs, oldest first: the ones to close to admit new connections. One
/// pass and no allocation beyond the `n` kept (it runs over every open
/// connection, at most once per connection accepted while full).
pub fn longest_idle(idle: impl IntoIterator<Item = (usize, u64)>, n: usize) -> Vec<usize> {
    let mut oldest: Vec<(u64, usize)> = Vec::with_capacity(n);
    for (i, since) in idle {
        if oldest.len() < n {
            oldest.push((since, i));
        } else if oldest.last().is_some_and(|&last| (since, i) < last) {
            oldest.pop();
            oldest.push((since, i));
        } else {
            continue;
        }
        // Keep `oldest` sorted: move the new entry down to its place.
        let mut k = oldest.len() - 1;
        while k > 0 && oldest[k] < oldest[k - 1] {
            oldest.swap(k, k - 1);
            k -= 1;
        }
    }
    oldest.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(load: u64) -> PeerLoad {
        PeerLoad {
            load,
            open: load,
            ready: true,
            in_app: false,
            tick_ms: 10_000,
        }
    }

    #[test]
    fn load_leaves_out_dormant_connections() {
        assert_eq!(load(100, 100), 0);
        assert_eq!(load(100, 20), 80);
        // The dormant count is from the last sweep; closes since may make it
        // larger than what is open.
        assert_eq!(load(3, 5), 0);
    }

    #[test]
    fn a_lighter_peer_is_one_below_the_margin_that_could_accept_now() {
        let now = 10_500;
        // Slack 2: 5 against 2 is lighter, 5 against 3 is not.
        assert!(lighter_peer(5, BALANCE_SLACK, [peer(2)], now));
        assert!(!lighter_peer(5, BALANCE_SLACK, [peer(3)], now));
        // A worker at or under the margin never defers.
        assert!(!lighter_peer(2, BALANCE_SLACK, [peer(0)], now));
        // A peer in its app, not ready, or whose loop stopped turning does
        // not count.
        let in_app = PeerLoad {
            in_app: true,
            ..peer(0)
        };
        let not_ready = PeerLoad {
            ready: false,
            ..peer(0)
        };
        assert!(!lighter_peer(50, BALANCE_SLACK, [in_app, not_ready], now));
        assert!(!lighter_peer(50, BALANCE_SLACK, [peer(0)], 10_000 + 1_500));
        assert!(lighter_peer(50, BALANCE_SLACK, [in_app, peer(0)], now));
    }

    #[test]
    fn idle_connections_do_not_make_a_worker_look_loaded() {
        // Issue 11.6: 100 and 80 idle connections, all dormant: neither
        // worker is lighter, so neither leaves a new client waiting.
        let now = 10_500;
        let other = PeerLoad {
            load: load(80, 80),
            open: 80,
            ..peer(0)
        };
        assert!(!lighter_peer(load(100, 100), BALANCE_SLACK, [other], now));
        // The same counts in use are an imbalance worth correcting.
        let busy = PeerLoad {
            load: load(80, 0),
            open: 80,
            ..peer(0)
        };
        assert!(lighter_peer(load(100, 0), BALANCE_SLACK, [busy], now));
    }

    #[test]
    fn shedding_starts_above_eight_or_a_quarter() {
        assert_eq!(shed_margin(0), 8);
        assert_eq!(shed_margin(32), 8);
        assert_eq!(shed_margin(40), 10);
        assert_eq!(shed_margin(400), 100);
        let now = 10_500;
        assert!(lighter_peer(64, shed_margin(64), [peer(47)], now));
        assert!(!lighter_peer(64, shed_margin(64), [peer(48)], now));
    }

    #[test]
    fn a_loaded_worker_defers_for_at_most_three_ms() {
        let mut d = Deferral::default();
        assert!(d.my_turn(false, true, 100), "no lighter peer: take it");
        assert!(!d.active());
        assert!(!d.my_turn(true, true, 100), "lighter peer: leave it");
        assert!(d.active());
        assert!(!d.my_turn(true, true, 102));
        assert!(d.my_turn(true, true, 103), "DEFER_MS is up: take it");
        assert!(!d.active(), "the next one is deferred afresh");
        assert!(!d.my_turn(true, true, 104));
        d.clear();
        assert!(!d.active());
        // Without exclusive wake-ups the lighter peer was woken too: never
        // take it, never start a deferral clock.
        assert!(!d.my_turn(true, false, 200));
        assert!(!d.active());
        assert!(d.my_turn(false, false, 200));
    }

    #[test]
    fn a_full_worker_leaves_new_connections_to_a_peer_with_room() {
        let now = 10_500;
        let full = PeerLoad {
            open: 50,
            ..peer(0)
        };
        assert!(!peer_has_room(50, [full], now));
        assert!(peer_has_room(50, [full, peer(49)], now));
        let stopped = PeerLoad {
            tick_ms: 0,
            ..peer(0)
        };
        assert!(
            !peer_has_room(50, [stopped], now),
            "a stopped peer takes nothing"
        );
    }

    #[test]
    fn the_longest_idle_connections_are_closed_first() {
        let idle = [(7, 500), (3, 100), (9, 900), (1, 300), (4, 100)];
        assert_eq!(longest_idle(idle, 2), [3, 4]);
        assert_eq!(longest_idle(idle, 3), [3, 4, 1]);
        assert_eq!(longest_idle(idle, 10), [3, 4, 1, 7, 9]);
        assert!(longest_idle(idle, 0).is_empty());
        assert!(longest_idle([], 4).is_empty());
    }
}
