//! Handle-level accounting when one message becomes several copies (routes, several loggers).
//!
//! Every message the worker takes from the caller's buffer gets a sequence number and a slot
//! that counts its copies still on their way. A message is *settled* once every copy is
//! delivered or given up on: then it counts once, as `sent` if every copy was delivered, else
//! as `lost`. Until then it counts as `buffered` (in flight). A message that no route matched
//! and no default logger took has no copy: it settles at once, as `lost`. So each message is in
//! exactly one of buffered / sent / lost at any moment, and `logged == sent + lost + spooled +
//! buffered` holds whatever the fan-out.

use std::collections::VecDeque;

use crate::stats::Tally;

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Copies not yet delivered or given up on.
    remaining: u32,
    /// Some copy was given up on (or the message had no destination).
    lost: bool,
    /// The caller's message length.
    bytes: usize,
    settled: bool,
}

/// What settled during a round, to add to the handle's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub sent: Tally,
    pub lost: Tally,
}

/// The slots of all unsettled messages, oldest first.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Sequence number of `slots[0]`.
    base: u64,
    slots: VecDeque<Slot>,
    unsettled: Tally,
}

impl Ledger {
    /// Opens a slot for a message of `bytes` bytes with no copies yet; returns its number.
    pub fn open(&mut self, bytes: usize) -> u64 {
        self.slots.push_back(Slot {
            remaining: 0,
            lost: false,
            bytes,
            settled: false,
        });
        self.unsettled.add(Tally::one(bytes));
        self.base + self.slots.len() as u64 - 1
    }

    fn slot(&mut self, seq: u64) -> &mut Slot {
        let i = (seq - self.base) as usize;
        &mut self.slots[i]
    }

    /// One more copy of `seq` is on its way.
    pub fn add_copy(&mut self, seq: u64) {
        self.slot(seq).remaining += 1;
    }

    /// A copy of `seq` could not even be queued (encoder error, sink full): the message will
    /// count as lost.
    pub fn mark_lost(&mut self, seq: u64) {
        self.slot(seq).lost = true;
    }

    /// All copies of `seq` are queued: settles it now if none is pending.
    pub fn seal(&mut self, seq: u64, out: &mut Settled) {
        let s = *self.slot(seq);
        if s.remaining == 0 {
            self.settle(seq, out);
        }
    }

    /// A copy of `seq` was delivered (`ok`) or given up on.
    pub fn copy_done(&mut self, seq: u64, ok: bool, out: &mut Settled) {
        let s = self.slot(seq);
        debug_assert!(s.remaining > 0 && !s.settled);
        s.remaining -= 1;
        if !ok {
            s.lost = true;
        }
        if s.remaining == 0 {
            self.settle(seq, out);
        }
    }

    fn settle(&mut self, seq: u64, out: &mut Settled) {
        let s = self.slot(seq);
        s.settled = true;
        let t = Tally::one(s.bytes);
        if s.lost {
            out.lost.add(t);
        } else {
            out.sent.add(t);
        }
        self.unsettled.msgs -= 1;
        self.unsettled.bytes -= t.bytes;
        while self.slots.front().is_some_and(|s| s.settled) {
            self.slots.pop_front();
            self.base += 1;
        }
    }

    /// Messages (and their caller bytes) not yet settled.
    pub fn unsettled(&self) -> Tally {
        self.unsettled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settles_once_all_copies_are_done() {
        let mut l = Ledger::default();
        let mut s = Settled::default();
        let a = l.open(3);
        l.add_copy(a);
        l.add_copy(a);
        l.seal(a, &mut s);
        assert_eq!(s, Settled::default());
        let mut l2 = Ledger::default();
        let mut s2 = Settled::default();
        let x = l2.open(5);
        l2.mark_lost(x);
        l2.seal(x, &mut s2);
        assert_eq!(s2.lost, Tally::one(5));
        assert_eq!(l2.unsettled(), Tally::ZERO);

        assert_eq!(l.unsettled(), Tally { msgs: 1, bytes: 3 });
        let c = l.open(7);
        l.add_copy(c);
        l.seal(c, &mut s);
        l.copy_done(c, true, &mut s); // settles out of order
        assert_eq!(s.sent, Tally::one(7));
        l.copy_done(a, true, &mut s);
        assert_eq!(l.unsettled(), Tally { msgs: 1, bytes: 3 });
        l.copy_done(a, false, &mut s);
        assert_eq!(s.lost, Tally::one(3));
        assert_eq!(l.unsettled(), Tally::ZERO);
        assert!(l.slots.is_empty());
        let d = l.open(1);
        assert_eq!(d, 2);
    }
}
