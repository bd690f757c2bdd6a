//! The lock and condition variable rlog uses, with `std`'s futex-based implementation underneath.
//!
//! Why not parking_lot: its waiters live in one process-wide table. After `fork()` the child
//! inherits the entries of threads that do not exist in it (the parent's worker parked on a
//! condition variable), a `notify_one` can wake such a ghost instead of the child's own worker,
//! and a fair unlock can hand the lock to it for good — the hang an nginx test caught with rlog
//! initialised in the master. std's primitives keep all their state in the object itself (one
//! futex word), so a child that holds no lock inherited from a vanished thread is sound; the
//! `pthread_atfork` handlers in `lifecycle.rs` make sure of that.
//!
//! Poisoning is not used: rlog's state stays consistent across a panic (a panic can only come
//! from a bug, and the FFI boundary turns it into an error), so a poisoned lock is just taken.

use std::ops::{Deref, DerefMut};
use std::time::Instant;

/// A mutual-exclusion lock that ignores poisoning.
#[derive(Debug, Default)]
pub struct Mutex<T>(std::sync::Mutex<T>);

/// Holds a [`Mutex`] locked; a [`Condvar`] can release and retake it while waiting.
pub struct MutexGuard<'a, T>(Option<std::sync::MutexGuard<'a, T>>);

impl<T> Mutex<T> {
    pub const fn new(value: T) -> Mutex<T> {
        Mutex(std::sync::Mutex::new(value))
    }

    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        MutexGuard(Some(self.std_lock()))
    }

    /// The plain std guard (for the fork handlers, which keep it across `fork()`).
    #[inline]
    pub fn std_lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        self.0.as_ref().expect("guard is held outside a wait")
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        self.0.as_mut().expect("guard is held outside a wait")
    }
}

/// Whether a timed wait ended because its deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitResult(bool);

impl WaitResult {
    pub fn timed_out(self) -> bool {
        self.0
    }
}

/// A condition variable over [`Mutex`].
#[derive(Debug, Default)]
pub struct Condvar(std::sync::Condvar);

impl Condvar {
    pub const fn new() -> Condvar {
        Condvar(std::sync::Condvar::new())
    }

    /// Releases the lock, waits for a notification (or a spurious wake-up), retakes the lock.
    pub fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
        let g = guard.0.take().expect("guard is held");
        guard.0 = Some(self.0.wait(g).unwrap_or_else(|e| e.into_inner()));
    }

    /// As [`Condvar::wait`], but gives up at `deadline`.
    pub fn wait_until<T>(&self, guard: &mut MutexGuard<'_, T>, deadline: Instant) -> WaitResult {
        let now = Instant::now();
        if now >= deadline {
            return WaitResult(true);
        }
        let g = guard.0.take().expect("guard is held");
        let (g, r) = self
            .0
            .wait_timeout(g, deadline - now)
            .unwrap_or_else(|e| e.into_inner());
        guard.0 = Some(g);
        WaitResult(r.timed_out())
    }

    #[inline]
    pub fn notify_one(&self) {
        self.0.notify_one();
    }

    #[inline]
    pub fn notify_all(&self) {
        self.0.notify_all();
    }
}
