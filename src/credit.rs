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
//! Two things can change while a thread appends without the lock, and [`spend!`] looks at both
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
    #[inline]
    pub(crate) fn new() -> Watch {
        Watch(AtomicU8::new(0))
    }

    /// Marks the logger closing; the first call fences, so that from then on a thread that
    /// appends either sees the flag or has its record seen by the worker's last collect.
    /// Returns whether this call set the flag.
    #[inline]
    pub(crate) fn close(&self) -> bool {
        if self.0.fetch_or(CLOSING, Ordering::AcqRel) & CLOSING != 0 {
            return false;
        }
        sync::heavy_fence();
        true
    }

    /// Marks the logger closing without the fence (a fork child whose worker failed to start:
    /// no thread there has appended to its rings).
    #[inline]
    pub(crate) fn set_closing(&self) {
        self.0.fetch_or(CLOSING, Ordering::Release);
    }

    /// The worker is about to sleep for long: sets [`WORKER_IDLE`] and fences, so every record
    /// written on credit past `flush_limit` before a thread could see the flag is visible to the
    /// collect that must follow. Returns false (and does nothing) when the flag was set already.
    #[inline]
    pub(crate) fn worker_idle(&self) -> bool {
        if self.0.fetch_or(WORKER_IDLE, Ordering::AcqRel) & WORKER_IDLE != 0 {
            return false;
        }
        sync::heavy_fence();
        true
    }

    /// The worker will look at the rings again by itself: clears [`WORKER_IDLE`].
    #[inline]
    pub(crate) fn worker_busy(&self) {
        if self.is_worker_idle() {
            self.0.fetch_and(!WORKER_IDLE, Ordering::Release);
        }
    }

    #[inline]
    pub(crate) fn is_worker_idle(&self) -> bool {
        self.0.load(Ordering::Relaxed) & WORKER_IDLE != 0
    }

    /// Whether one of `flags` is set (the lock-free path's look, after its light fence).
    #[inline(always)]
    pub(crate) fn any(&self, flags: u8) -> bool {
        self.0.load(Ordering::Relaxed) & flags != 0
    }
}

/// `log`'s lock-free path (see the module comment), written out in the calling function: for a
/// message the slot's credit covers (the caller checks `msg.len() <= slot.credit`), appends
/// `$msg` to `$slot`'s ring if it has room, then looks at what may have changed meanwhile. The
/// caller then returns `$clean` if nothing watched changed, or `$watched` — with `$at` bound to
/// the record's position — if a watched flag was seen after the append (closing, the worker
/// going idle while this credit is past `flush_limit`, or the credit revoked), to settle under
/// the state lock (`Rings::settle_watched`). Falls through, nothing appended, when the ring has
/// no room.
///
/// A macro rather than a function that says what happened: `Logger::append` inlines it into
/// every FFI entry point, and written out in place it compiles to the same instructions as
/// before it moved here, which a function returning an enum did not (objdump of `rlog_log`,
/// `rlog_log_pending`, `rlog_logger_log`).
macro_rules! spend {
    ($slot:ident, $watch:expr, $msg:expr, $time:expr,
     clean => $clean:expr, watched($at:ident) => $watched:expr $(,)?) => {
        let $at = $slot.cursor.head;
        if $slot.push($msg, $time) {
            $slot.credit -= $msg.len();
            // Pairs with the heavy fence of `Watch::close`, `Watch::worker_idle` and
            // `Rings::revoke`: either this load sees the flag, or their collect (or
            // reservation) sees this record.
            $crate::sync::light_fence();
            let flags = $crate::credit::CLOSING
                | if $slot.past_flush {
                    $crate::credit::WORKER_IDLE
                } else {
                    0
                };
            if !$watch.any(flags) && !$slot.ring().is_revoked() {
                return $clean;
            }
            return $watched;
        }
    };
}
pub(crate) use spend;

/// How much credit a grant gives a thread, `held` being the bytes held or promised now and
/// `rings` how many rings the logger has: never past `drop_limit`, at most an even share of the
/// room left, and below `flush_limit` never up to it (the message that reaches it must take the
/// lock to wake the worker). Past `flush_limit`, only when `may_pass_flush` (the worker will
/// look at the rings again by itself; see `Logger::grant_credit`). Returns the credit and
/// whether it is past `flush_limit`.
#[inline]
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
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Registers a new thread's ring (no credit yet).
    #[inline]
    pub(crate) fn add(&mut self, ring: Arc<Ring>) {
        self.entries.push(RingEntry {
            ring,
            granted: 0,
            drained: 0,
            past_flush: false,
        });
    }

    #[inline]
    pub(crate) fn index(&self, ring: &Ring) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| std::ptr::eq(Arc::as_ptr(&e.ring), ring))
    }

    /// Message bytes the rings hold now (appended, not yet moved into the buffer). Another
    /// thread's latest appends may not be seen yet: an undercount by a few records.
    #[inline]
    pub(crate) fn actual(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.ring.written() - e.drained)
            .sum()
    }

    /// Rings whose thread holds credit granted past `flush_limit`.
    #[inline]
    pub(crate) fn past_flush_rings(&self) -> usize {
        self.past_flush
    }

    /// Moves ring `i`'s records into `buf` (at least `budget` bytes of them, if it has that
    /// many); returns the message bytes moved and whether the ring is drained.
    #[inline]
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
    #[inline]
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
    #[inline]
    pub(crate) fn appended_locked(&mut self, i: usize, len: usize) {
        self.entries[i].granted += len;
        self.reserved += len;
    }

    /// Takes back the unspent credit of ring `i`'s thread (the caller): from then on every
    /// byte the ring accounts for is a byte it holds. If the logger revoked that credit, what
    /// the thread appended after the revocation (one record at most) is accounted for now.
    #[inline]
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

    /// `spend!` appended the `len`-byte record at `at` on the calling thread's slot and then
    /// saw a watched flag (state lock held; `closed`: the worker has stopped). Closing: if the
    /// worker stopped without taking the record, nothing will: it is taken back (its credit
    /// with it) and this returns false, the call fails as on a closed logger; otherwise the
    /// worker has delivered it or will (or counts it lost). Worker idle or revoked: the thread
    /// gives its credit back. Returns true when the record stays.
    #[inline]
    pub(crate) fn settle_watched(
        &mut self,
        slot: &mut Slot,
        at: usize,
        len: usize,
        closed: bool,
    ) -> bool {
        if closed && !slot.consumed_past(at) {
            slot.retract(at, len);
            slot.credit += len;
            return false;
        }
        if let Some(i) = self.index(slot.ring()) {
            self.return_credit(i, slot);
        }
        true
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
        // Pairs with `spend!`'s light fence: an append this fence does not make visible sees the
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
    #[inline]
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
    #[inline]
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
    #[inline]
    pub(crate) fn drop_all(&mut self) {
        for e in self.entries.drain(..) {
            e.ring.retire();
        }
        self.reserved = 0;
        self.past_flush = 0;
    }
}

/// The hand-off under loom (`make loom`, docs/MODELS.md). Each model drives the functions above
/// from threads sharing a `sync::Mutex` (the logger's state lock, itself modelled): threads
/// logging on credit through [`spend!`], and a thread that revokes that credit, puts the worker
/// to sleep, or closes the logger. The lock path of `Logger::log_locked` and the settling of
/// `Logger::pushed_while_watched` are the few lines of `Shared::log_locked` and
/// `Shared::settle_watched`, which call the same functions in the same order.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::Mutex;
    use loom::sync::Arc as LoomArc;

    /// Message size in the models (a record takes 8 + 8 bytes of ring).
    const MSG: usize = 4;

    /// What the logger's state lock guards, as far as the hand-off goes.
    #[derive(Default)]
    struct Shared {
        rings: Rings,
        /// The logger's buffer: what collects moved out of the rings (and, in the worker model,
        /// what was held before, putting the logger past `flush_limit`).
        buf: Buffer,
        /// The worker has gone to sleep without a deadline.
        asleep: bool,
        /// A thread woke the worker after it had gone to sleep.
        woken_after_sleep: bool,
        /// The logger is closing (`State::closing`): the lock path takes nothing more.
        closing: bool,
        /// The worker has stopped (`State::closed`), after its last collect.
        closed: bool,
    }

    /// The logger's limits in a model.
    #[derive(Clone, Copy)]
    struct Limits {
        flush: usize,
        drop: usize,
    }

    impl Shared {
        /// The accounting's own invariants, checked at every hold of the lock: `reserved` is
        /// the sum of `granted - drained` (none negative: the subtractions would overflow, and
        /// `make loom` builds with overflow checks), `past_flush` counts the rings so marked.
        fn check(&self) {
            let r = &self.rings;
            let mut sum = 0;
            for e in &r.entries {
                assert!(
                    e.granted >= e.drained,
                    "a ring drained more than it was granted"
                );
                sum += e.granted - e.drained;
            }
            assert_eq!(
                r.reserved, sum,
                "reserved is not the rings' granted - drained"
            );
            let marked = r.entries.iter().filter(|e| e.past_flush).count();
            assert_eq!(r.past_flush, marked);
        }

        /// `Logger::log_locked` for a thread with a ring, the ring not full: refused when
        /// closing, else admit (returning the caller's credit, maybe revoking others'),
        /// append, grant. Returns whether the message was accepted.
        fn log_locked(&mut self, slot: &mut Slot, limits: Limits, may_pass_flush: bool) -> bool {
            self.check();
            if self.closing {
                return false;
            }
            let i = self.rings.index(slot.ring()).expect("registered");
            let outside = self.buf.bytes();
            let Some(held) = self.rings.admit(Some(i), slot, MSG, outside, limits.drop) else {
                self.woken_after_sleep |= self.asleep;
                return false;
            };
            assert!(slot.push(&[7; MSG], 0), "the model's rings never fill");
            self.rings.appended_locked(i, MSG);
            if outside + self.rings.actual() >= limits.flush {
                // `wake_if_flush_due`.
                self.woken_after_sleep |= self.asleep;
            }
            let (credit, past) = credit_amount(
                limits.flush,
                limits.drop,
                held + MSG,
                self.rings.len(),
                may_pass_flush,
            );
            self.rings.grant(i, slot, credit, past);
            self.check();
            true
        }

        /// `Logger::pushed_while_watched` for the record at `at`: settled (kept and the credit
        /// returned, or taken back when closed), then the worker woken if a flush is due
        /// (in the worker model: always, it runs past `flush_limit`). Returns whether the
        /// record stays.
        fn settle_watched(&mut self, slot: &mut Slot, at: usize) -> bool {
            self.check();
            if !self.rings.settle_watched(slot, at, MSG, self.closed) {
                return false;
            }
            self.woken_after_sleep |= self.asleep;
            self.check();
            true
        }

        /// Moves everything the rings hold into the buffer.
        fn collect(&mut self) {
            while self.rings.collect_step(&mut self.buf, usize::MAX).1 {}
        }
    }

    /// A thread's slot and its ring, moved into the thread that logs with it (and back).
    struct Producer(Slot, Arc<Ring>);
    // SAFETY: the slot's ring pointer points into the `Arc<Ring>` moved along with it, and the
    // slot is used by one thread at a time: built by the model's main thread, handed over whole
    // to the thread that logs with it, and handed back when that thread ends.
    unsafe impl Send for Producer {}

    impl Producer {
        fn new() -> Producer {
            let ring = Arc::new(Ring::new(4096, false));
            Producer(Slot::for_model(&ring), ring)
        }
    }

    /// `log` from a thread with a ring: the lock-free append, else the lock path, as
    /// `Logger::append` does. Returns whether the message was accepted.
    fn log(
        state: &Mutex<Shared>,
        watch: &Watch,
        slot: &mut Slot,
        limits: Limits,
        may_pass_flush: bool,
    ) -> bool {
        if MSG <= slot.credit {
            spend!(slot, watch, &[7; MSG], 0,
                clean => true,
                watched(at) => state.lock().settle_watched(slot, at));
        }
        state.lock().log_locked(slot, limits, may_pass_flush)
    }

    /// After the threads: each returns its credit (as its next `log` would first), everything
    /// is collected. Checked: every accepted byte is in the buffer, and the reservation is
    /// exactly what the rings hold — zero — so no byte appended on credit escaped it.
    fn settle_all(st: &mut Shared, slots: &mut [&mut Slot], accepted: usize) {
        st.check();
        for slot in slots.iter_mut() {
            let i = st.rings.index(slot.ring()).expect("registered");
            st.rings.return_credit(i, slot);
        }
        st.collect();
        st.check();
        assert_eq!(st.rings.reserved, 0, "reservation and contents disagree");
        assert_eq!(
            st.buf.bytes(),
            accepted,
            "accepted bytes missing from the buffer"
        );
    }

    /// Revocation. Thread A holds credit for three messages and spends it without the lock;
    /// thread B, under the lock, logs a message that fits under `drop_limit` only if A's
    /// unspent credit is taken back, so it revokes it (heavy fence) and reserves what A's ring
    /// holds. Checked: the accounting invariants at every lock hold; at the end (`settle_all`),
    /// every accepted message is in the buffer, the reservation matches, and the bytes held
    /// pass `drop_limit` by one message at most (A's append racing the revocation, as
    /// `Rings::revoke` documents).
    #[test]
    fn loom_credit_revocation_keeps_drop_limit() {
        crate::atomics::model(None, || {
            let limits = Limits {
                flush: 1000,
                drop: 28,
            };
            let mut st = Shared::default();
            let mut a = Producer::new();
            st.rings.add(a.1.clone());
            // A's first message: 4 bytes held, credit (28 - 4) / 2 = 12: three messages.
            assert!(st.log_locked(&mut a.0, limits, false));
            assert_eq!(a.0.credit, 3 * MSG);
            let mut b = Producer::new();
            st.rings.add(b.1.clone());
            let state = LoomArc::new(Mutex::new(st));
            let watch = LoomArc::new(Watch::new());

            let thread_a = {
                let (state, watch) = (state.clone(), watch.clone());
                loom::thread::spawn(move || {
                    let sent = (0..3)
                        .filter(|_| log(&state, &watch, &mut a.0, limits, false))
                        .count();
                    (a, MSG + sent * MSG)
                })
            };
            // B's 24 bytes: with A's 4 + 12 reserved they do not fit; they do once A's credit
            // is taken back, if A had appended nothing yet.
            let b_bytes = {
                let mut st = state.lock();
                st.check();
                let i = st.rings.index(&b.1).unwrap();
                let outside = st.buf.bytes();
                let admitted = st.rings.admit(Some(i), &mut b.0, 24, outside, limits.drop);
                st.check();
                if admitted.is_some() {
                    assert!(b.0.push(&[9; 24], 0));
                    st.rings.appended_locked(i, 24);
                    24
                } else {
                    0
                }
            };
            let (mut a, a_bytes) = thread_a.join().unwrap();

            let mut st = state.lock();
            settle_all(&mut st, &mut [&mut a.0, &mut b.0], a_bytes + b_bytes);
            assert!(
                st.buf.bytes() <= limits.drop + MSG,
                "{} bytes held, drop_limit {} + one message",
                st.buf.bytes(),
                limits.drop
            );
        });
    }

    /// Revocation racing two threads: A1 and A2 hold credit for two messages each (granted
    /// directly, 8 bytes each) and spend it without the lock; B, under the lock, logs a message
    /// that fits only once both credits are taken back and neither had appended. Checked as
    /// above, with the bound `Rings::revoke` documents: one message over `drop_limit` per thread
    /// whose append raced the revocation, two here.
    #[test]
    fn loom_credit_revocation_racing_two_threads() {
        crate::atomics::model(Some(2), || {
            let limits = Limits {
                flush: 1000,
                drop: 32,
            };
            let mut st = Shared::default();
            let mut holders = [Producer::new(), Producer::new()];
            for p in &mut holders {
                st.rings.add(p.1.clone());
            }
            for p in &mut holders {
                assert!(st.log_locked(&mut p.0, limits, false));
                let j = st.rings.index(&p.1).unwrap();
                st.rings.return_credit(j, &mut p.0);
                st.rings.grant(j, &mut p.0, 2 * MSG, false);
            }
            let mut b = Producer::new();
            st.rings.add(b.1.clone());
            st.check();
            let state = LoomArc::new(Mutex::new(st));
            let watch = LoomArc::new(Watch::new());

            let threads: Vec<_> = holders
                .into_iter()
                .map(|mut p| {
                    let (state, watch) = (state.clone(), watch.clone());
                    loom::thread::spawn(move || {
                        let sent = (0..2)
                            .filter(|_| log(&state, &watch, &mut p.0, limits, false))
                            .count();
                        (p, MSG + sent * MSG)
                    })
                })
                .collect();
            // B's 24 bytes: 8 held + 16 reserved + 24 > 32; 8 + 24 fits.
            let b_bytes = {
                let mut st = state.lock();
                st.check();
                let i = st.rings.index(&b.1).unwrap();
                let outside = st.buf.bytes();
                let admitted = st.rings.admit(Some(i), &mut b.0, 24, outside, limits.drop);
                st.check();
                if admitted.is_some() {
                    assert!(b.0.push(&[9; 24], 0));
                    st.rings.appended_locked(i, 24);
                    24
                } else {
                    0
                }
            };
            let mut done: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            let accepted = b_bytes + done.iter().map(|d| d.1).sum::<usize>();
            let mut st = state.lock();
            let (d0, d1) = done.split_at_mut(1);
            settle_all(
                &mut st,
                &mut [&mut d0[0].0 .0, &mut d1[0].0 .0, &mut b.0],
                accepted,
            );
            assert!(
                st.buf.bytes() <= limits.drop + 2 * MSG,
                "{} bytes held, drop_limit {} + two messages",
                st.buf.bytes(),
                limits.drop
            );
        });
    }

    /// Closing. Thread A holds credit and spends it without the lock; the closer marks the
    /// logger closing (`Watch::close`: the flag, then the heavy fence; `Logger::begin_close`),
    /// then, as the worker's last round does (`Inner::end_round`), collects under the lock,
    /// forgets the rings and marks the logger closed. Checked: the bytes in the buffer are
    /// exactly those `log` reported accepted — every record accepted was taken by the last
    /// collect, and every record refused was taken back from the ring or never appended.
    #[test]
    fn loom_credit_close_takes_every_accepted_record() {
        crate::atomics::model(None, || {
            let limits = Limits {
                flush: 1000,
                drop: 1000,
            };
            let mut st = Shared::default();
            let mut a = Producer::new();
            st.rings.add(a.1.clone());
            assert!(st.log_locked(&mut a.0, limits, false));
            assert!(a.0.credit >= 2 * MSG);
            let state = LoomArc::new(Mutex::new(st));
            let watch = LoomArc::new(Watch::new());

            let thread_a = {
                let (state, watch) = (state.clone(), watch.clone());
                loom::thread::spawn(move || {
                    let sent = (0..2)
                        .filter(|_| log(&state, &watch, &mut a.0, limits, false))
                        .count();
                    (a, MSG + sent * MSG)
                })
            };
            assert!(watch.close());
            state.lock().closing = true;
            {
                let mut st = state.lock();
                st.check();
                st.collect();
                st.rings.drop_all();
                st.closed = true;
            }
            let (_a, accepted) = thread_a.join().unwrap();
            let st = state.lock();
            assert_eq!(
                st.buf.bytes(),
                accepted,
                "the last collect did not take exactly the accepted records"
            );
        });
    }

    /// The worker going idle. Thread A holds credit granted past `flush_limit` (the worker was
    /// busy) and spends it without the lock; the worker, under the lock, sees such credit out,
    /// sets `WORKER_IDLE` (heavy fence), collects, and goes to sleep. Checked: when the threads
    /// are done, any record the worker's collect did not take was followed by a wake-up after
    /// it slept — the worker never sleeps on collectable data covered by credit past
    /// `flush_limit` — plus the accounting at every lock hold and at the end.
    #[test]
    fn loom_credit_worker_never_sleeps_on_credit_data() {
        crate::atomics::model(None, || {
            let limits = Limits {
                flush: 8,
                drop: 1000,
            };
            let mut st = Shared::default();
            // Already past flush_limit: 8 bytes wait in the buffer.
            st.buf.push(&[1; 8], None);
            let mut a = Producer::new();
            st.rings.add(a.1.clone());
            assert!(st.log_locked(&mut a.0, limits, true));
            assert!(a.0.past_flush && a.0.credit >= 2 * MSG);
            let state = LoomArc::new(Mutex::new(st));
            let watch = LoomArc::new(Watch::new());

            let thread_a = {
                let (state, watch) = (state.clone(), watch.clone());
                loom::thread::spawn(move || {
                    let sent = (0..2)
                        .filter(|_| log(&state, &watch, &mut a.0, limits, true))
                        .count();
                    (a, 8 + MSG + sent * MSG)
                })
            };
            // The worker: `Inner::before_long_wait`, then the sleep.
            {
                let mut st = state.lock();
                st.check();
                if st.rings.past_flush_rings() > 0 && watch.worker_idle() {
                    st.collect();
                }
                st.check();
                st.asleep = true;
            }
            let (mut a, accepted) = thread_a.join().unwrap();

            let mut st = state.lock();
            assert!(
                st.rings.actual() == 0 || st.woken_after_sleep,
                "the worker sleeps while {} bytes written on credit past flush_limit wait",
                st.rings.actual()
            );
            settle_all(&mut st, &mut [&mut a.0], accepted);
        });
    }
}
