//! Handle-level accounting when one message becomes several copies (routes, several loggers).
//!
//! Every message the worker takes from the caller's buffer gets a sequence number and a slot
//! that counts its copies still on their way. A message is *settled* once every copy is
//! delivered or given up on: then it counts once, as `sent` if every copy was delivered, else
//! as `lost` (and `rejected` too when an output refused a copy for good). One copy of each
//! message is its *primary* copy (the first queued; its owner carries [`PRIMARY`]): when the
//! primary copy is written to its output's disk queue, the message leaves the ledger as
//! *spooled*, and its disk record carries it in the counters from then on (`spooled`, then
//! `sent` or `lost`, even across processes), whatever its other copies do; the other copies on
//! disk are uncounted records that only their output's counters show. A non-primary copy
//! written to disk counts as handed over (as if delivered). Until it settles, a message counts
//! as `buffered` (in flight). A message that no route matched
//! and no default logger took has no copy: it settles at once, as `lost`. So each message is in
//! exactly one of buffered / sent / lost / spooled at any moment, and `logged + adopted == sent
//! + lost + spooled + buffered` holds whatever the fan-out.

use std::collections::VecDeque;

use crate::stats::{Counters, Tally};

/// The bit of an owner (a copy's message number) that marks its message's primary copy.
pub const PRIMARY: u64 = 1 << 63;

/// What became of a record (a message, or one copy of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered.
    Sent,
    /// Given up on (retries exhausted, the logger closed, the spool full).
    Lost,
    /// Refused for good by its output (or too large for it): lost, and dead-lettered.
    Rejected,
    /// Written to the output's disk queue, which counts it from then on.
    Spooled,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Copies not yet delivered or given up on.
    remaining: u32,
    /// Some copy was given up on (or the message had no destination).
    lost: bool,
    /// Some copy was refused for good (a dead letter).
    rejected: bool,
    /// The primary copy went to its disk queue: the disk carries the message.
    spooled: bool,
    /// The caller's message length.
    bytes: usize,
    settled: bool,
}

/// What settled during a round, to add to the handle's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub sent: Tally,
    /// Rejected messages included.
    pub lost: Tally,
    /// Of `lost`: refused for good by an output.
    pub rejected: Tally,
}

impl Settled {
    /// Counts a record (a message: `t` is one, or several) that came to `outcome`.
    pub fn add(&mut self, t: Tally, outcome: Outcome) {
        match outcome {
            Outcome::Sent => self.sent.add(t),
            Outcome::Lost => self.lost.add(t),
            Outcome::Rejected => {
                self.lost.add(t);
                self.rejected.add(t);
            }
            Outcome::Spooled => {}
        }
    }

    /// Adds these to a logger's counters.
    pub fn add_to(&self, c: &mut Counters) {
        c.sent.add(self.sent);
        c.lost.add(self.lost);
        c.rejected.add(self.rejected);
    }
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
            rejected: false,
            spooled: false,
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

    /// A copy of `seq` is larger than its output can ever carry: the message will count as
    /// lost and rejected.
    pub fn mark_rejected(&mut self, seq: u64) {
        let s = self.slot(seq);
        s.lost = true;
        s.rejected = true;
    }

    /// Whether a copy of message `seq` was given up on already.
    pub fn is_lost(&mut self, seq: u64) -> bool {
        self.slot(seq).lost
    }

    /// All copies of `seq` are queued: settles it now if none is pending.
    pub fn seal(&mut self, seq: u64, out: &mut Settled) {
        let s = *self.slot(seq);
        if s.remaining == 0 {
            self.settle(seq, out);
        }
    }

    /// A copy of message `owner` (its number, with [`PRIMARY`] for the primary copy) came to
    /// `outcome`.
    pub fn copy_done(&mut self, owner: u64, outcome: Outcome, out: &mut Settled) {
        let seq = owner & !PRIMARY;
        let s = self.slot(seq);
        debug_assert!(s.remaining > 0 && !s.settled);
        s.remaining -= 1;
        match outcome {
            Outcome::Sent => {}
            Outcome::Lost => s.lost = true,
            Outcome::Rejected => {
                s.lost = true;
                s.rejected = true;
            }
            Outcome::Spooled if owner & PRIMARY != 0 && !s.spooled => {
                // From now on the disk record carries the message (`spooled`): it is no longer
                // in flight, whatever its other copies still wait for, or it would count twice.
                s.spooled = true;
                let bytes = s.bytes as u64;
                self.unsettled.msgs -= 1;
                self.unsettled.bytes -= bytes;
            }
            Outcome::Spooled => {}
        }
        let s = self.slot(seq);
        if s.remaining == 0 {
            self.settle(seq, out);
        }
    }

    fn settle(&mut self, seq: u64, out: &mut Settled) {
        let s = self.slot(seq);
        s.settled = true;
        let t = Tally::one(s.bytes);
        out.add(
            t,
            if s.spooled {
                Outcome::Spooled
            } else if s.rejected {
                Outcome::Rejected
            } else if s.lost {
                Outcome::Lost
            } else {
                Outcome::Sent
            },
        );
        if !s.spooled {
            // (A spooled message left the unsettled ones when its primary copy went to disk.)
            self.unsettled.msgs -= 1;
            self.unsettled.bytes -= t.bytes;
        }
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
        l.copy_done(c, Outcome::Sent, &mut s); // settles out of order
        assert_eq!(s.sent, Tally::one(7));
        l.copy_done(a, Outcome::Sent, &mut s);
        assert_eq!(l.unsettled(), Tally { msgs: 1, bytes: 3 });
        l.copy_done(a, Outcome::Lost, &mut s);
        assert_eq!(s.lost, Tally::one(3));
        assert_eq!(l.unsettled(), Tally::ZERO);
        assert!(l.slots.is_empty());
        let d = l.open(1);
        assert_eq!(d, 2);
    }

    #[test]
    fn rejected_and_spooled_copies() {
        let mut l = Ledger::default();
        let mut s = Settled::default();
        let a = l.open(4);
        l.add_copy(a);
        l.add_copy(a);
        l.seal(a, &mut s);
        l.copy_done(a, Outcome::Rejected, &mut s);
        l.copy_done(a, Outcome::Sent, &mut s);
        assert_eq!((s.lost, s.rejected), (Tally::one(4), Tally::one(4)));
        let b = l.open(6);
        l.add_copy(b);
        l.seal(b, &mut s);
        l.copy_done(b | PRIMARY, Outcome::Spooled, &mut s);
        // The disk counts it: neither sent nor lost, and no longer unsettled.
        assert_eq!(s.sent, Tally::ZERO);
        assert_eq!(s.lost, Tally::one(4));
        assert_eq!(l.unsettled(), Tally::ZERO);
        let c = l.open(2);
        l.add_copy(c);
        l.mark_rejected(c);
        l.seal(c, &mut s);
        l.copy_done(c, Outcome::Sent, &mut s);
        assert_eq!(s.rejected, Tally { msgs: 2, bytes: 6 });
        // Two copies: the primary spooled carries the message whatever the other does; a
        // non-primary copy spooled is handed over.
        let mut s = Settled::default();
        let d = l.open(3);
        l.add_copy(d);
        l.add_copy(d);
        l.seal(d, &mut s);
        l.copy_done(d, Outcome::Lost, &mut s);
        l.copy_done(d | PRIMARY, Outcome::Spooled, &mut s);
        assert_eq!(s, Settled::default());
        // The primary copy on disk while another still waits: spooled, no longer unsettled.
        let f = l.open(9);
        l.add_copy(f);
        l.add_copy(f);
        l.seal(f, &mut s);
        assert_eq!(l.unsettled(), Tally::one(9));
        l.copy_done(f | PRIMARY, Outcome::Spooled, &mut s);
        assert_eq!(l.unsettled(), Tally::ZERO);
        l.copy_done(f, Outcome::Sent, &mut s);
        assert_eq!((s, l.unsettled()), (Settled::default(), Tally::ZERO));
        let e = l.open(5);
        l.add_copy(e);
        l.add_copy(e);
        l.seal(e, &mut s);
        l.copy_done(e, Outcome::Spooled, &mut s);
        l.copy_done(e | PRIMARY, Outcome::Sent, &mut s);
        assert_eq!(s.sent, Tally::one(5));
        assert_eq!(l.unsettled(), Tally::ZERO);
    }
}
