//! Which ring the calling thread writes to, and how much it may write without asking.
//!
//! A thread keeps one *slot* in a `const` thread-local (reading it is an address computation,
//! no lazy-init check): the logger it last logged to, that logger's ring for this thread, the
//! producer's cursor, and its *credit* — bytes the logger's state lock granted it to append
//! without taking the lock again (see `Logger::log`). Rings for other loggers the thread uses
//! wait in a second thread-local list, whose destructor tells each ring's logger that the thread
//! is gone so the worker can drain the ring and forget it.
//!
//! The slot is only touched by its own thread, from `Logger::log` (never re-entered: nothing it
//! calls logs), which is what makes handing out `&mut Slot` from `with_slot` sound.

use std::cell::{RefCell, UnsafeCell};
use std::sync::{Arc, Weak};

use crate::ring::{Cursor, Ring};

/// The calling thread's producer state for one logger.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The logger's id (`Inner::id`); 0 when the slot is empty.
    pub logger_id: u64,
    /// The fork generation the ring was made in: a child never writes to its parent's rings.
    pub generation: u64,
    /// The ring, kept alive by this thread's `OWNED` list while it is in the slot.
    ring: *const Ring,
    pub cursor: Cursor,
    /// Bytes this thread may append to the ring without taking the state lock.
    pub credit: usize,
    /// The credit was granted past `flush_limit` (see `Logger::grant_credit`).
    pub past_flush: bool,
}

impl Slot {
    const EMPTY: Slot = Slot {
        logger_id: 0,
        generation: 0,
        ring: std::ptr::null(),
        cursor: Cursor {
            head: 0,
            tail: 0,
            written: 0,
        },
        credit: 0,
        past_flush: false,
    };

    /// The slot's ring. Only called on a slot whose `logger_id` is not 0.
    #[inline]
    pub fn ring(&self) -> &Ring {
        debug_assert!(!self.ring.is_null());
        // SAFETY: a non-empty slot's ring pointer comes from an `Arc<Ring>` held in this thread's
        // OWNED list for as long as the slot refers to it (`switch_to` replaces the slot before
        // an entry can leave the list).
        unsafe { &*self.ring }
    }

    /// Appends `msg` to the slot's ring (see `Ring::try_push`).
    #[inline]
    pub fn push(&mut self, msg: &[u8], time_us: i64) -> bool {
        // SAFETY: as in `ring`.
        let ring = unsafe { &*self.ring };
        ring.try_push(&mut self.cursor, msg, time_us)
    }

    /// Whether the record appended at `at` has been moved out of the ring.
    pub fn consumed_past(&self, at: usize) -> bool {
        self.ring().consumed_past(at)
    }

    /// Takes back the last record, of `len` bytes, appended at `at` (see `Ring::retract`).
    pub fn retract(&mut self, at: usize, len: usize) {
        // SAFETY: as in `ring`.
        let ring = unsafe { &*self.ring };
        ring.retract(&mut self.cursor, at, len);
    }
}

#[cfg(all(test, loom))]
impl Slot {
    /// A slot on `ring` outside the thread-locals, for the loom models (`credit.rs`): the
    /// caller keeps `ring` alive for as long as the slot is used.
    pub(crate) fn for_model(ring: &Arc<Ring>) -> Slot {
        Slot {
            logger_id: 1,
            ring: Arc::as_ptr(ring),
            ..Slot::EMPTY
        }
    }
}

/// Who drains a ring: told when the thread that wrote to it exits, so it can free the ring
/// without waiting for its next flush.
pub(crate) trait RingOwner: Send + Sync {
    fn ring_orphaned(&self);
}

/// A ring this thread writes to, with the cursor and credit saved while another logger's ring
/// is in the slot.
struct Owned {
    logger_id: u64,
    generation: u64,
    ring: Arc<Ring>,
    /// The ring's logger, told when this thread exits (weak: a thread that logged once must not
    /// keep a freed logger alive).
    logger: Weak<dyn RingOwner>,
    cursor: Cursor,
    credit: usize,
    past_flush: bool,
}

#[derive(Default)]
struct OwnedList(Vec<Owned>);

impl Drop for OwnedList {
    /// The thread is exiting: its rings get no more records; their loggers drain and forget
    /// them. The slot is emptied first, since it points into this list: code that still logs
    /// from this thread (another thread-local's destructor; on the main thread, an `atexit`
    /// handler — glibc runs thread-local destructors before those) takes the locked path and
    /// appends to the logger's buffer directly.
    fn drop(&mut self) {
        let _ = SLOT.try_with(|s| {
            // SAFETY: the slot is this thread's; no `with_slot` call is running (destructors
            // do not run inside `Logger::log`), so nothing else refers to it.
            unsafe { *s.get() = Slot::EMPTY };
        });
        for o in &self.0 {
            o.ring.orphan();
            if let Some(inner) = o.logger.upgrade() {
                inner.ring_orphaned();
            }
        }
    }
}

thread_local! {
    static SLOT: UnsafeCell<Slot> = const { UnsafeCell::new(Slot::EMPTY) };
    static OWNED: RefCell<OwnedList> = RefCell::new(OwnedList::default());
}

/// Runs `f` with the calling thread's slot.
#[inline(always)]
pub(crate) fn with_slot<R>(f: impl FnOnce(&mut Slot) -> R) -> R {
    // Only the address comes out of `with` (a closure small enough to inline every time).
    let slot = SLOT.with(|s| s.get());
    // SAFETY: the slot is thread-local, so `slot` is valid for this thread's lifetime, and `f`
    // (Logger::log and its slow path) never calls `with_slot` again, so this is the only
    // reference to it while `f` runs.
    f(unsafe { &mut *slot })
}

/// Empties the calling thread's slot: in a fork child (the only thread there is the one that
/// forked), so its next `log` takes the locked path, which adopts the logger for this process
/// and gives the thread a ring of its own.
pub(crate) fn forget_slot() {
    let _ = SLOT.try_with(|s| {
        // SAFETY: the slot is this thread's, and no `with_slot` call is running (a fork
        // handler does not run inside `Logger::log`).
        unsafe { *s.get() = Slot::EMPTY };
    });
}

/// Puts the ring of logger `logger_id` (generation `generation`) in `slot`, saving the current
/// one. `make` creates and registers a ring when this thread has none for that logger yet, and
/// gives the logger to tell when the thread exits; `None` from it leaves the slot empty. Rings
/// of closed loggers and of another generation are forgotten on the way.
pub(crate) fn switch_to(
    slot: &mut Slot,
    logger_id: u64,
    generation: u64,
    make: impl FnOnce() -> Option<(Arc<Ring>, Weak<dyn RingOwner>)>,
) {
    // During thread teardown the list may be gone: the slot then stays empty and the caller
    // takes its locked path.
    let _ = OWNED.try_with(|owned| {
        let mut owned = owned.borrow_mut();
        if slot.logger_id != 0 {
            if let Some(o) = owned.0.iter_mut().find(|o| {
                o.logger_id == slot.logger_id && std::ptr::eq(Arc::as_ptr(&o.ring), slot.ring)
            }) {
                o.cursor = slot.cursor;
                o.credit = slot.credit;
                o.past_flush = slot.past_flush;
            }
        }
        *slot = Slot::EMPTY;
        // A ring whose logger stopped (or that belongs to the parent of this fork child) will
        // never be drained again: forget it.
        owned
            .0
            .retain(|o| o.generation == generation && !o.ring.is_retired());
        let found = owned.0.iter().position(|o| o.logger_id == logger_id);
        let o = match found {
            Some(i) => &owned.0[i],
            None => {
                let Some((ring, logger)) = make() else { return };
                owned.0.push(Owned {
                    logger_id,
                    generation,
                    ring,
                    logger,
                    cursor: Cursor::default(),
                    credit: 0,
                    past_flush: false,
                });
                owned.0.last().expect("just pushed")
            }
        };
        *slot = Slot {
            logger_id,
            generation,
            ring: Arc::as_ptr(&o.ring),
            cursor: o.cursor,
            credit: o.credit,
            past_flush: o.past_flush,
        };
    });
}
