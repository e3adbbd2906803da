//! When a viewer session may send: its publishing interval as a small state
//! machine.
//!
//! The session asks [`Pacer::next`] what to do on each pass of its write
//! loop, giving the time; the pacer never reads a clock and does no I/O, so
//! its rules are tested without a socket or a runtime:
//! - with an interval of 0, whatever is pending is sent at once;
//! - otherwise, value updates wait until the interval since the last send
//!   has passed ([`Next::Hold`]), coalescing in the mailbox meanwhile;
//! - a snapshot, or anything entering or leaving the area, is never held
//!   back, and takes the held values along;
//! - after a send the session waits for the twin's next change
//!   ([`Next::WaitForChange`]); a hold ends that idle state, as held values
//!   wake nobody.

use std::time::{Duration, Instant};

/// What the write loop of a viewer session does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Only values are pending and the interval has not passed: wait until
    /// `until`, or for a change that must not wait, then ask again.
    Hold {
        /// When the interval since the last send has passed.
        until: Instant,
    },
    /// Everything pending was taken: wait for the twin's next change, then
    /// ask again.
    WaitForChange,
    /// Drain the mailbox and send what it held.
    Send,
}

/// The publishing-interval rules of one viewer session.
#[derive(Debug, Clone, Default)]
pub(super) struct Pacer {
    /// Shortest time between two sends of value updates; zero for none.
    interval: Duration,
    /// When the last non-empty drain happened.
    sent_at: Option<Instant>,
    /// The last drain took everything: nothing is known to be pending.
    idle: bool,
}

impl Pacer {
    /// Sets the publishing interval (the viewer's latest subscription's);
    /// it applies from the next call of [`Pacer::next`].
    pub(super) fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// What to do at `now`. `hold_values` is asked only while the interval
    /// since the last send has not passed: it answers whether values alone
    /// are pending and, if so, holds them (so that further values wake
    /// nobody until the next drain; see `SharedMailbox::hold_values`).
    pub(super) fn next(&mut self, now: Instant, hold_values: impl FnOnce() -> bool) -> Next {
        let due = self
            .sent_at
            .filter(|_| !self.interval.is_zero())
            .and_then(|sent_at| sent_at.checked_add(self.interval))
            .filter(|due| *due > now);
        if let Some(until) = due
            && hold_values()
        {
            // The next drain comes after this hold: no idle wait (which
            // held values would never end) may come before it.
            self.idle = false;
            return Next::Hold { until };
        }
        if self.idle {
            Next::WaitForChange
        } else {
            Next::Send
        }
    }

    /// The wait that [`Next::Hold`] or [`Next::WaitForChange`] asked for
    /// ended (a change arrived or the interval passed): look again.
    pub(super) fn woken(&mut self) {
        self.idle = false;
    }

    /// The mailbox was drained at `now`; `sent` when it held anything.
    /// Only a send starts a new interval.
    pub(super) fn drained(&mut self, now: Instant, sent: bool) {
        self.idle = true;
        if sent {
            self.sent_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(100);

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn never_asked() -> bool {
        panic!("the mailbox must not be asked to hold values here")
    }

    /// A pacer with `INTERVAL` that sent at `t0`.
    fn sent_at(t0: Instant) -> Pacer {
        let mut pacer = Pacer::default();
        pacer.set_interval(INTERVAL);
        assert_eq!(pacer.next(t0, never_asked), Next::Send);
        pacer.drained(t0, true);
        pacer
    }

    #[test]
    fn an_interval_of_zero_means_no_pacing() {
        let t0 = Instant::now();
        let mut pacer = Pacer::default();
        for step in 0..5 {
            let now = t0 + ms(step);
            assert_eq!(pacer.next(now, never_asked), Next::Send);
            pacer.drained(now, true);
            assert_eq!(pacer.next(now, never_asked), Next::WaitForChange);
            pacer.woken();
        }
    }

    #[test]
    fn the_first_send_is_never_held() {
        let t0 = Instant::now();
        let mut pacer = Pacer::default();
        pacer.set_interval(INTERVAL);
        assert_eq!(pacer.next(t0, never_asked), Next::Send);
    }

    #[test]
    fn values_are_held_until_the_interval_passes_then_released() {
        let t0 = Instant::now();
        let mut pacer = sent_at(t0);
        // Nothing pending right after the send: wait for the twin.
        assert_eq!(pacer.next(t0, || false), Next::WaitForChange);
        // A value arrives 10 ms later: held until t0 + 100 ms.
        pacer.woken();
        let hold = Next::Hold {
            until: t0 + INTERVAL,
        };
        assert_eq!(pacer.next(t0 + ms(10), || true), hold);
        // Woken early (by a reply, or a spurious wake-up): still held.
        pacer.woken();
        assert_eq!(pacer.next(t0 + ms(99), || true), hold);
        // The interval has passed: send, without asking to hold.
        pacer.woken();
        assert_eq!(pacer.next(t0 + INTERVAL, never_asked), Next::Send);
        pacer.drained(t0 + INTERVAL, true);
        // The next interval counts from that send.
        pacer.woken();
        assert_eq!(
            pacer.next(t0 + ms(150), || true),
            Next::Hold {
                until: t0 + ms(200)
            }
        );
    }

    #[test]
    fn a_snapshot_or_an_area_change_is_never_held() {
        let t0 = Instant::now();
        let mut pacer = sent_at(t0);
        pacer.woken();
        // The mailbox holds more than values (it refuses to hold): send at
        // once, well within the interval.
        assert_eq!(pacer.next(t0 + ms(1), || false), Next::Send);
        pacer.drained(t0 + ms(1), true);
        // And that send restarts the interval for later values.
        pacer.woken();
        assert_eq!(
            pacer.next(t0 + ms(2), || true),
            Next::Hold {
                until: t0 + ms(101)
            }
        );
    }

    #[test]
    fn a_hold_ends_the_idle_state() {
        let t0 = Instant::now();
        let mut pacer = sent_at(t0);
        // Idle after the send, yet values are pending and held: the loop
        // must wait for the interval, not for a change held values never
        // signal.
        assert!(matches!(pacer.next(t0 + ms(5), || true), Next::Hold { .. }));
        // The hold expires without a further wake-up: send.
        assert_eq!(pacer.next(t0 + INTERVAL, never_asked), Next::Send);
    }

    #[test]
    fn an_empty_drain_starts_no_interval() {
        let t0 = Instant::now();
        let mut pacer = Pacer::default();
        pacer.set_interval(INTERVAL);
        pacer.drained(t0, false);
        pacer.woken();
        assert_eq!(pacer.next(t0 + ms(1), never_asked), Next::Send);
    }

    #[test]
    fn shortening_the_interval_releases_held_values() {
        let t0 = Instant::now();
        let mut pacer = sent_at(t0);
        pacer.woken();
        assert!(matches!(
            pacer.next(t0 + ms(10), || true),
            Next::Hold { .. }
        ));
        pacer.set_interval(ms(5));
        pacer.woken();
        assert_eq!(pacer.next(t0 + ms(10), never_asked), Next::Send);
        // And an interval of 0 releases them too.
        let mut pacer = sent_at(t0);
        pacer.woken();
        pacer.set_interval(Duration::ZERO);
        assert_eq!(pacer.next(t0 + ms(1), never_asked), Next::Send);
    }

    #[test]
    fn an_interval_that_overflows_the_clock_holds_nothing() {
        let t0 = Instant::now();
        let mut pacer = Pacer::default();
        pacer.set_interval(Duration::MAX);
        pacer.drained(t0, true);
        pacer.woken();
        assert_eq!(pacer.next(t0 + ms(1), never_asked), Next::Send);
    }
}
