//! How many of a gateway's batches may await their acknowledgement at once.
//!
//! A plain counter, with no I/O and no waiting: the gateway session opens a
//! slot before it hands a batch to the twin and closes it once the batch's
//! acknowledgement is written, and waits for a closed slot when
//! [`AckWindow::try_open`] refuses.

/// Unacknowledged batches of one gateway connection, at most `capacity`.
#[derive(Debug, Clone)]
pub(super) struct AckWindow {
    capacity: usize,
    unacked: usize,
}

impl AckWindow {
    /// A window of `capacity` batches (at least one).
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            unacked: 0,
        }
    }

    /// Counts one more unacknowledged batch; false, counting nothing, when
    /// `capacity` batches already await their acknowledgement.
    pub(super) fn try_open(&mut self) -> bool {
        if self.unacked >= self.capacity {
            return false;
        }
        self.unacked += 1;
        true
    }

    /// A batch was acknowledged: its slot is free again.
    pub(super) fn acked(&mut self) {
        self.unacked = self.unacked.saturating_sub(1);
    }

    /// Batches awaiting their acknowledgement.
    #[cfg(test)]
    fn unacked(&self) -> usize {
        self.unacked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_refuses_the_batch_after_a_full_window_and_frees_on_ack() {
        let mut window = AckWindow::new(3);
        assert!(window.try_open());
        assert!(window.try_open());
        assert!(window.try_open());
        assert!(!window.try_open(), "a fourth unacknowledged batch waits");
        assert_eq!(window.unacked(), 3, "the refusal counted nothing");
        window.acked();
        assert_eq!(window.unacked(), 2);
        assert!(window.try_open(), "an ack makes room for one");
        assert!(!window.try_open());
    }

    #[test]
    fn a_window_of_zero_still_lets_one_batch_through() {
        let mut window = AckWindow::new(0);
        assert!(window.try_open());
        assert!(!window.try_open());
        window.acked();
        assert!(window.try_open());
    }

    #[test]
    fn acks_beyond_the_open_batches_do_not_widen_the_window() {
        let mut window = AckWindow::new(2);
        window.acked();
        assert_eq!(window.unacked(), 0);
        assert!(window.try_open());
        assert!(window.try_open());
        assert!(!window.try_open(), "still two, not three");
        window.acked();
        window.acked();
        window.acked();
        assert_eq!(window.unacked(), 0);
    }
}
