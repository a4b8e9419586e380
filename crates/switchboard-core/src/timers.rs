//! Idle deadlines: one lazily refreshed heap entry per connection.
//!
//! Activity only updates a connection's `last_seen` (O(1)); the heap entry is checked when
//! it falls due and pushed again if the connection was active since. This keeps the hot
//! path free of heap updates.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::ConnId;

/// A min-heap of `(deadline, connection)`.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, ConnId)>>,
}

impl Deadlines {
    /// Schedules a check of `conn` at `at`.
    pub(crate) fn push(&mut self, at: Instant, conn: ConnId) {
        self.heap.push(Reverse((at, conn)));
    }

    /// The earliest scheduled check.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the earliest check if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<ConnId> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, c))| c),
            _ => None,
        }
    }

    /// Drops every entry.
    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }
}
