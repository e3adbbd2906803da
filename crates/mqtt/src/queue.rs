//! The order of a source's acknowledgements.
//!
//! MQTT requires a client to send PUBACKs in the order the PUBLISHes
//! arrived (MQTT 3.1.1 §4.6, MQTT 5 §4.6), but a message's readings become
//! durable when the twin and history get to them. [`AckQueue`] holds the
//! messages in arrival order, each settled when its outcome is known, and
//! lets a message go (to be acknowledged) only once every message before it
//! has gone: a plain structure with no I/O. When it holds its capacity the
//! source stops taking messages from the broker (it polls the connection only
//! to write acknowledgements still queued), so a slow twin slows delivery;
//! what the broker may send meanwhile is bounded by its own in-flight limit
//! (MQTT 5's receive maximum, which the source sets to the same capacity).

use std::collections::VecDeque;

/// Messages awaiting their acknowledgement, in arrival order, at most
/// `capacity` of them.
#[derive(Debug)]
pub struct AckQueue<T> {
    capacity: usize,
    next_seq: u64,
    slots: VecDeque<Slot<T>>,
}

#[derive(Debug)]
struct Slot<T> {
    seq: u64,
    item: T,
    settled: bool,
}

impl<T> AckQueue<T> {
    /// A queue of at most `capacity` messages (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            next_seq: 0,
            slots: VecDeque::new(),
        }
    }

    /// True when `capacity` messages await their acknowledgement: take no
    /// more from the broker until one goes.
    pub fn is_full(&self) -> bool {
        self.slots.len() >= self.capacity
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no message is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds a message after every other, already settled or not, and
    /// returns its sequence number. A message that arrives while the queue
    /// is full is still held (the broker sent it; dropping it would lose
    /// its place in the order of acknowledgements).
    pub fn push(&mut self, item: T, settled: bool) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots.push_back(Slot { seq, item, settled });
        seq
    }

    /// Marks message `seq` settled; false when it is not held (already
    /// gone, or dropped by [`AckQueue::clear`]).
    pub fn settle(&mut self, seq: u64) -> bool {
        match self.slots.iter_mut().find(|slot| slot.seq == seq) {
            Some(slot) => {
                slot.settled = true;
                true
            }
            None => false,
        }
    }

    /// Message `seq`, while it is held.
    pub fn get_mut(&mut self, seq: u64) -> Option<&mut T> {
        self.slots
            .iter_mut()
            .find(|slot| slot.seq == seq)
            .map(|slot| &mut slot.item)
    }

    /// The first message, if it is settled: it goes now. Messages behind
    /// an unsettled one wait for it, settled or not.
    pub fn pop_settled(&mut self) -> Option<T> {
        if self.slots.front().is_some_and(|slot| slot.settled) {
            return self.slots.pop_front().map(|slot| slot.item);
        }
        None
    }

    /// The sequence number of the first message not yet settled: the one
    /// whose outcome the source waits for next.
    pub fn first_unsettled(&self) -> Option<u64> {
        self.slots
            .iter()
            .find(|slot| !slot.settled)
            .map(|slot| slot.seq)
    }

    /// Drops every message (the connection they came on is gone: the broker
    /// sends them again on the next one); how many were dropped.
    pub fn clear(&mut self) -> usize {
        let dropped = self.slots.len();
        self.slots.clear();
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_go_in_arrival_order_whatever_order_they_settle_in() {
        let mut queue = AckQueue::new(8);
        let a = queue.push("a", false);
        let b = queue.push("b", false);
        let c = queue.push("c", true);
        assert_eq!(queue.first_unsettled(), Some(a));
        assert!(queue.settle(c));
        assert!(queue.settle(b));
        assert_eq!(queue.pop_settled(), None, "b and c wait for a");
        assert!(queue.settle(a));
        assert_eq!(queue.pop_settled(), Some("a"));
        assert_eq!(queue.pop_settled(), Some("b"));
        assert_eq!(queue.pop_settled(), Some("c"));
        assert_eq!(queue.pop_settled(), None);
        assert!(queue.is_empty());
        assert!(!queue.settle(b), "gone already");
    }

    #[test]
    fn a_queue_is_full_at_its_capacity_until_a_message_goes() {
        let mut queue = AckQueue::new(2);
        queue.push(1, true);
        let second = queue.push(2, false);
        assert!(queue.is_full());
        assert_eq!(queue.first_unsettled(), Some(second));
        assert_eq!(queue.pop_settled(), Some(1));
        assert!(!queue.is_full());
        queue.push(3, true);
        assert!(queue.is_full());
        // One more that the broker sent anyway keeps its place.
        queue.push(4, true);
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.pop_settled(), None, "2 is not settled");
        assert!(queue.settle(second));
        assert_eq!(queue.pop_settled(), Some(2));
        assert_eq!(queue.pop_settled(), Some(3));
        assert_eq!(queue.pop_settled(), Some(4));
    }

    #[test]
    fn clearing_drops_everything_and_old_numbers_settle_nothing() {
        let mut queue = AckQueue::new(0);
        let first = queue.push('x', false);
        assert!(queue.is_full(), "a queue holds at least one");
        assert_eq!(queue.clear(), 1);
        let second = queue.push('y', false);
        assert_ne!(first, second, "numbers are never reused");
        assert!(!queue.settle(first));
        assert_eq!(queue.pop_settled(), None);
        assert!(queue.settle(second));
        assert_eq!(queue.pop_settled(), Some('y'));
    }
}
