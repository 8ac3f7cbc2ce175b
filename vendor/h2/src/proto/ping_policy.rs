//! MetaStore patch: the server's policy on how often a client may PING, as grpc-go enforces
//! `keepalive.EnforcementPolicy{MinTime, PermitWithoutStream: false}` (the policy etcd sets from
//! `--grpc-keepalive-min-time`; grpc-go `internal/transport/http2_server.go`, `handlePing`).
//!
//! Every PING the client sends (not its ACKs) is judged against the previous one:
//!
//! * if the server sent HEADERS or DATA since that previous PING, the strikes go back to zero
//!   and this PING is not judged;
//! * otherwise, while the connection has no open streams, a PING sooner than two hours after
//!   the previous one is a strike; with streams open, one sooner than `min_time` is;
//! * the third strike (more than [`MAX_STRIKES`]) closes the connection with GOAWAY
//!   `ENHANCE_YOUR_CALM` and debug data `too_many_pings`.
//!
//! The first PING of a connection is never a strike (there is no previous one).

use std::time::{Duration, Instant};

/// Strikes tolerated; one more closes the connection (grpc-go's `maxPingStrikes`).
const MAX_STRIKES: u8 = 2;

/// How long an idle connection must wait between PINGs (grpc-go's `defaultPingTimeout`).
const IDLE_MIN_TIME: Duration = Duration::from_secs(2 * 60 * 60);

/// The GOAWAY debug data grpc-go sends with `ENHANCE_YOUR_CALM`.
pub(crate) const TOO_MANY_PINGS: &[u8] = b"too_many_pings";

#[derive(Debug)]
pub(crate) struct PingPolicy {
    /// Least time between two PINGs while streams are open.
    min_time: Duration,
    /// When the client's previous PING arrived.
    last_ping_at: Option<Instant>,
    strikes: u8,
    /// Set by the PING that broke the policy, taken by the connection, which then closes.
    too_many: bool,
}

impl PingPolicy {
    pub(crate) fn new(min_time: Duration) -> Self {
        PingPolicy {
            min_time,
            last_ping_at: None,
            strikes: 0,
            too_many: false,
        }
    }

    /// Judges a PING (not an ACK) received at `now`: `has_streams` whether the connection has
    /// open streams, `responded` whether the server sent HEADERS or DATA since the previous
    /// PING. Returns `true` when the connection must be closed (also noted for
    /// [`PingPolicy::take_too_many_pings`]).
    pub(crate) fn recv_ping(&mut self, now: Instant, has_streams: bool, responded: bool) -> bool {
        let last = self.last_ping_at.replace(now);
        if responded {
            self.strikes = 0;
            return false;
        }
        let least = if has_streams {
            self.min_time
        } else {
            IDLE_MIN_TIME
        };
        if last.map_or(false, |last| last + least > now) {
            self.strikes = self.strikes.saturating_add(1);
        }
        self.too_many |= self.strikes > MAX_STRIKES;
        self.strikes > MAX_STRIKES
    }

    /// Whether a PING broke the policy since the previous call.
    pub(crate) fn take_too_many_pings(&mut self) -> bool {
        std::mem::take(&mut self.too_many)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(5);

    /// Feeds PINGs `gaps` seconds apart and returns the verdicts.
    fn verdicts(gaps: &[u64], has_streams: bool, responded: bool) -> Vec<bool> {
        let mut policy = PingPolicy::new(MIN);
        let mut now = Instant::now();
        gaps.iter()
            .map(|gap| {
                now += Duration::from_secs(*gap);
                policy.recv_ping(now, has_streams, responded)
            })
            .collect()
    }

    #[test]
    fn the_third_strike_closes_the_connection() {
        assert_eq!(
            verdicts(&[0, 1, 1, 1], true, false),
            [false, false, false, true]
        );
    }

    #[test]
    fn pings_at_least_min_time_apart_are_never_strikes() {
        assert_eq!(verdicts(&[0, 5, 5, 6, 5], true, false), [false; 5]);
    }

    #[test]
    fn an_idle_connection_may_ping_only_every_two_hours() {
        assert_eq!(
            verdicts(&[0, 60, 60, 60], false, false),
            [false, false, false, true]
        );
        assert_eq!(verdicts(&[0, 7200, 7200, 7200], false, false), [false; 4]);
    }

    #[test]
    fn headers_or_data_sent_between_pings_clear_the_strikes() {
        assert_eq!(verdicts(&[0, 1, 1, 1, 1], true, true), [false; 5]);
        let mut policy = PingPolicy::new(MIN);
        let t = Instant::now();
        let s = Duration::from_secs(1);
        assert!(!policy.recv_ping(t, true, false));
        assert!(!policy.recv_ping(t + s, true, false)); // strike 1
        assert!(!policy.recv_ping(t + 2 * s, true, false)); // strike 2
        assert!(!policy.recv_ping(t + 3 * s, true, true)); // reset, not judged
        assert!(!policy.recv_ping(t + 4 * s, true, false)); // strike 1
        assert!(!policy.recv_ping(t + 5 * s, true, false)); // strike 2
        assert!(policy.recv_ping(t + 6 * s, true, false)); // strike 3
    }
}
