//! The credit hand-off: how many bytes each thread's ring may hold, and the flag-and-fence
//! protocol that keeps every byte a thread appends on credit visible to the logger.
//!
//! Under the logger's state lock (`queue.rs`), a thread is *granted* credit: bytes it may then
//! append to its ring (`ring.rs`) without the lock. [`Rings`] accounts for them: a ring's
//! `granted - drained` is what it holds or may still take, and their sum (`reserved`) counts
//! against `drop_limit` as if already held, so spending credit never passes it. The lock
//! path takes a thread's unspent credit back ([`Rings::return_credit`]) before it looks at the
//! limits, and when only other threads' unspent credit stands between a message and
//! `drop_limit` it revokes that credit ([`Rings::revoke`]).
//!
//! Two things can change while a thread appends without the lock, and [`spend`] looks at both
//! after its append, behind `sync::light_fence`: its credit was revoked (the revoker fenced with
//! `sync::heavy_fence`, then reserved what the ring held), or a [`Watch`] flag — the logger is
//! closing, or the worker is about to sleep for long ([`Watch::worker_idle`], also followed by
//! the heavy fence and a collect). The fence pair makes one of the two sides see the other: the
//! revoker or the worker sees the appended record, or the appending thread sees the flag and
//! settles under the lock. The loom model at the end of this file checks exactly that, through
//! these functions.

use std::sync::Arc;

use crate::atomics::{AtomicU8, Ordering};
use crate::buffer::Buffer;
use crate::producer::Slot;
use crate::ring::Ring;
use crate::sync;

/// [`Watch`]: the logger is closing.
pub(crate) const CLOSING: u8 = 1;
/// [`Watch`]: the worker sleeps without a near deadline; records written on credit past
/// `flush_limit` must wake it.
pub(crate) const WORKER_IDLE: u8 = 2;

/// What `log`'s lock-free path must look at after appending: [`CLOSING`], [`WORKER_IDLE`].
#[derive(Debug, Default)]
pub(crate) struct Watch(AtomicU8);

impl Watch {
    pub(crate) fn new() -> Watch {
        Watch(AtomicU8::new(0))
    }

    /// Marks the logger closing; the first call fences, so that from then on a thread that
    /// appends either sees the flag or has its record seen by the worker's last collect.
    /// Returns whether this call set the flag.
    pub(crate) fn close(&self) -> bool {
        if self.0.fetch_or(CLOSING, Ordering::AcqRel) & CLOSING != 0 {
            return false;
        }
        sync::heavy_fence();
        true
    }

    /// Marks the logger closing without the fence (a fork child whose worker failed to start:
    /// no thread there has appended to its rings).
    pub(crate) fn set_closing(&self) {
        self.0.fetch_or(CLOSING, Ordering::Release);
    }

    /// The worker is about to sleep for long: sets [`WORKER_IDLE`] and fences, so every record
    /// written on credit past `flush_limit` before a thread could see the flag is visible to the
    /// collect that must follow. Returns false (and does nothing) when the flag was set already.
    pub(crate) fn worker_idle(&self) -> bool {
        if self.0.fetch_or(WORKER_IDLE, Ordering::AcqRel) & WORKER_IDLE != 0 {
            return false;
        }
        sync::heavy_fence();
        true
    }

    /// The worker will look at the rings again by itself: clears [`WORKER_IDLE`].
    pub(crate) fn worker_busy(&self) {
        if self.is_worker_idle() {
            self.0.fetch_and(!WORKER_IDLE, Ordering::Release);
        }
    }

    pub(crate) fn is_worker_idle(&self) -> bool {
        self.0.load(Ordering::Relaxed) & WORKER_IDLE != 0
    }

    /// Whether one of `flags` is set (the lock-free path's look, after its light fence).
    #[inline(always)]
    fn any(&self, flags: u8) -> bool {
        self.0.load(Ordering::Relaxed) & flags != 0
    }
}

/// What [`spend`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spent {
    /// The thread's credit or its ring's room does not cover it: nothing was appended.
    Uncovered,
    /// Appended, and nothing watched changed: done.
    Clean,
    /// Appended at this position, and then a watched flag was seen (closing, the worker going
    /// idle while this credit is past `flush_limit`, or the credit revoked): the caller settles
    /// under the state lock.
    Watched(usize),
}

/// `log`'s lock-free path: appends `msg` to the slot's ring if its credit and the ring's room
/// cover it, then looks at what may have changed meanwhile (see the module comment).
#[inline(always)]
pub(crate) fn spend(slot: &mut Slot, watch: &Watch, msg: &[u8], time: i64) -> Spent {
    if msg.len() > slot.credit {
        return Spent::Uncovered;
    }
    let at = slot.cursor.head;
    if !slot.push(msg, time) {
        return Spent::Uncovered;
    }
    slot.credit -= msg.len();
    // Pairs with the heavy fence of `Watch::close`, `Watch::worker_idle` and `Rings::revoke`:
    // either this load sees the flag, or their collect (or reservation) sees this record.
    sync::light_fence();
    let watched = CLOSING | if slot.past_flush { WORKER_IDLE } else { 0 };
    if !watch.any(watched) && !slot.ring().is_revoked() {
        return Spent::Clean;
    }
    Spent::Watched(at)
}

/// How much credit a grant gives a thread, `held` being the bytes held or promised now and
/// `rings` how many rings the logger has: never past `drop_limit`, at most an even share of the
/// room left, and below `flush_limit` never up to it (the message that reaches it must take the
/// lock to wake the worker). Past `flush_limit`, only when `may_pass_flush` (the worker will
/// look at the rings again by itself; see `Logger::grant_credit`). Returns the credit and
/// whether it is past `flush_limit`.
pub(crate) fn credit_amount(
    flush_limit: usize,
    drop_limit: usize,
    held: usize,
    rings: usize,
    may_pass_flush: bool,
) -> (usize, bool) {
    let share = (drop_limit - held) / (2 * rings);
    let past_flush = held >= flush_limit;
    let credit = if !past_flush {
        (flush_limit - held - 1).min(share)
    } else if may_pass_flush {
        share
    } else {
        0
    }
    .min(MAX_GRANT);
    (credit, past_flush)
}

/// The most credit one grant gives a thread: it bounds how much of `drop_limit` a thread that
/// logged once and then went quiet keeps reserved.
const MAX_GRANT: usize = 64 << 10;

/// One thread's ring, as the logger accounts for it.
#[derive(Debug)]
struct RingEntry {
    ring: Arc<Ring>,
    /// Message bytes the thread was allowed to append (its credit included), minus what it gave
    /// back; `granted - drained` is what the ring holds or may still take.
    granted: usize,
    /// Message bytes moved from the ring into the buffer.
    drained: usize,
    /// The thread's credit was granted with `flush_limit` already reached (see `WORKER_IDLE`).
    past_flush: bool,
}

/// The rings of the threads that log to one logger, and their credit (state lock held for all
/// of it).
#[derive(Debug, Default)]
pub(crate) struct Rings {
    entries: Vec<RingEntry>,
    /// The sum of `granted - drained` over the rings: bytes they hold or may take.
    reserved: usize,
    /// Rings whose thread holds credit granted past `flush_limit`.
    past_flush: usize,
}

impl Rings {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Registers a new thread's ring (no credit yet).
    pub(crate) fn add(&mut self, ring: Arc<Ring>) {
        self.entries.push(RingEntry {
            ring,
            granted: 0,
            drained: 0,
            past_flush: false,
        });
    }

    pub(crate) fn index(&self, ring: &Ring) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| std::ptr::eq(Arc::as_ptr(&e.ring), ring))
    }

    /// Message bytes the rings hold now (appended, not yet moved into the buffer). Another
    /// thread's latest appends may not be seen yet: an undercount by a few records.
    pub(crate) fn actual(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.ring.written() - e.drained)
            .sum()
    }

    /// Rings whose thread holds credit granted past `flush_limit`.
    pub(crate) fn past_flush_rings(&self) -> usize {
        self.past_flush
    }

    /// Moves ring `i`'s records into `buf` (at least `budget` bytes of them, if it has that
    /// many); returns the message bytes moved and whether the ring is drained.
    pub(crate) fn drain(&mut self, i: usize, buf: &mut Buffer, budget: usize) -> (usize, bool) {
        let e = &mut self.entries[i];
        let (bytes, drained) = e.ring.drain_into(buf, budget);
        e.drained += bytes;
        self.reserved -= bytes;
        (bytes, drained)
    }

    /// Moves the rings' records into `buf`, stopping once `budget` message bytes have moved,
    /// and forgets (retires) drained rings whose thread has exited. Returns whether anything
    /// moved and whether records are left to move.
    pub(crate) fn collect_step(&mut self, buf: &mut Buffer, budget: usize) -> (bool, bool) {
        let mut moved = 0;
        let mut i = 0;
        while i < self.entries.len() {
            if moved >= budget {
                return (true, true);
            }
            // Read before draining: a ring orphaned after this load may still get records.
            let orphaned = self.entries[i].ring.is_orphaned();
            let (bytes, drained) = self.drain(i, buf, budget - moved);
            moved += bytes;
            if !drained {
                return (true, true);
            }
            if orphaned {
                let e = self.entries.swap_remove(i);
                self.reserved -= e.granted - e.drained;
                self.past_flush -= e.past_flush as usize;
                e.ring.retire();
            } else {
                i += 1;
            }
        }
        (moved > 0, false)
    }

    /// The thread of ring `i` appended `len` bytes to it under the state lock.
    pub(crate) fn appended_locked(&mut self, i: usize, len: usize) {
        self.entries[i].granted += len;
        self.reserved += len;
    }

    /// Takes back the unspent credit of ring `i`'s thread (the caller): from then on every
    /// byte the ring accounts for is a byte it holds. If the logger revoked that credit, what
    /// the thread appended after the revocation (one record at most) is accounted for now.
    pub(crate) fn return_credit(&mut self, i: usize, slot: &mut Slot) {
        if self.entries[i].ring.is_revoked() {
            self.reserve_what_it_holds(i);
            self.entries[i].ring.set_revoked(false);
        } else {
            self.entries[i].granted -= slot.credit;
            self.reserved -= slot.credit;
        }
        slot.credit = 0;
        slot.past_flush = false;
        self.clear_past_flush(i);
    }

    /// Makes ring `i`'s reservation exactly what it holds (the credit of its thread is void).
    fn reserve_what_it_holds(&mut self, i: usize) {
        let e = &mut self.entries[i];
        let held = e.ring.written() - e.drained;
        self.reserved = self.reserved + held - (e.granted - e.drained);
        e.granted = e.drained + held;
    }

    /// Ring `i`'s thread no longer holds credit granted past `flush_limit`.
    fn clear_past_flush(&mut self, i: usize) {
        let e = &mut self.entries[i];
        if e.past_flush {
            e.past_flush = false;
            self.past_flush -= 1;
        }
    }

    /// Takes back the credit other threads hold and have not spent (their next append sees the
    /// revocation and settles under the lock). Returns whether there was any.
    ///
    /// A thread that appends at this very moment, on credit it checked before the revocation,
    /// keeps that one message: the bytes held can then pass `drop_limit` by one message per
    /// such thread (never with a single thread, whose own credit is returned, not revoked).
    #[cold]
    pub(crate) fn revoke(&mut self) -> bool {
        let mut any = false;
        for e in &self.entries {
            if e.granted - e.drained > e.ring.written() - e.drained {
                e.ring.set_revoked(true);
                any = true;
            }
        }
        if !any {
            return false;
        }
        // Pairs with `spend`'s light fence: an append this fence does not make visible sees the
        // revocation, and its thread accounts for it in `return_credit`.
        sync::heavy_fence();
        for i in 0..self.entries.len() {
            if self.entries[i].ring.is_revoked() {
                self.reserve_what_it_holds(i);
                self.clear_past_flush(i);
            }
        }
        true
    }

    /// The lock path's check of a `len`-byte message against `drop_limit`, `outside` being the
    /// bytes held outside the rings (buffer, in flight): after taking back the calling thread's
    /// credit (ring `i`, if it has one), whether the bytes held or promised plus the message fit,
    /// revoking other threads' unspent credit if only that stands in the way. Returns the bytes
    /// held or promised (message not included) when it fits.
    pub(crate) fn admit(
        &mut self,
        i: Option<usize>,
        slot: &mut Slot,
        len: usize,
        outside: usize,
        drop_limit: usize,
    ) -> Option<usize> {
        if let Some(i) = i {
            self.return_credit(i, slot);
        }
        let mut held = outside + self.reserved;
        if held + len > drop_limit {
            // Over the limit only because of credit other threads have not spent: take it back.
            if outside + self.actual() + len <= drop_limit && self.revoke() {
                held = outside + self.reserved;
            }
            if held + len > drop_limit {
                return None;
            }
        }
        Some(held)
    }

    /// Gives the thread of ring `i` `credit` bytes for its next messages (`past_flush`: granted
    /// with `flush_limit` reached). Returns true when this makes it the only ring with credit
    /// past `flush_limit` (the worker may need waking to start looking at the rings).
    pub(crate) fn grant(
        &mut self,
        i: usize,
        slot: &mut Slot,
        credit: usize,
        past_flush: bool,
    ) -> bool {
        let e = &mut self.entries[i];
        e.granted += credit;
        self.reserved += credit;
        slot.credit = credit;
        if past_flush && credit > 0 {
            e.past_flush = true;
            self.past_flush += 1;
            slot.past_flush = true;
            return self.past_flush == 1;
        }
        false
    }

    /// Forgets every ring: in a fork child (the parent delivers what they hold), or once the
    /// worker has stopped (after its last collect).
    pub(crate) fn drop_all(&mut self) {
        for e in self.entries.drain(..) {
            e.ring.retire();
        }
        self.reserved = 0;
        self.past_flush = 0;
    }
}
