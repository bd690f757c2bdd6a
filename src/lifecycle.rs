//! Process life: the registry of live loggers, `fork()` and exit.
//!
//! - **fork**: a `pthread_atfork` prepare handler takes every logger's state lock (so no other
//!   thread is half-way through an append when the address space is copied) and the parent and
//!   child handlers release them. The child handler also bumps the *fork generation*; each logger
//!   notices on its next call that its worker belongs to another process, forgets the parent's
//!   messages (the parent still sends them) and starts a worker of its own.
//! - **exit**: an `atexit` handler asks every live logger to deliver what it holds within its
//!   `timeout` and waits for them together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::Instant;

use parking_lot::Mutex;

use crate::logger::{Inner, Logger};

static GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTRY: Mutex<Vec<Arc<Inner>>> = Mutex::new(Vec::new());
static HOOKS: Once = Once::new();

/// The fork generation of this process: 0 in the process that loaded rlog, +1 in each fork child.
#[inline]
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// Adds a started logger to the registry (installing the fork and exit hooks the first time).
pub(crate) fn register(inner: Arc<Inner>) {
    HOOKS.call_once(|| {
        // SAFETY: the three handlers are `extern "C" fn()` items that live as long as the
        // library; pthread_atfork and atexit only store the pointers.
        unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_parent),
                Some(after_fork_child),
            );
            libc::atexit(at_exit);
        }
    });
    REGISTRY.lock().push(inner);
}

/// Removes a logger whose worker has stopped.
pub(crate) fn unregister(inner: &Arc<Inner>) {
    REGISTRY.lock().retain(|i| !Arc::ptr_eq(i, inner));
}

extern "C" fn before_fork() {
    let reg = REGISTRY.lock();
    for inner in reg.iter() {
        std::mem::forget(inner.state.lock());
    }
    std::mem::forget(reg);
}

fn release_all() {
    // SAFETY: `before_fork` locked the registry and every state lock in it and forgot the
    // guards; nothing else can have locked or changed them since, so this thread (the one that
    // called fork, in the parent or in the child) holds all of them and releases each once.
    unsafe {
        let reg = &*REGISTRY.data_ptr();
        for inner in reg.iter() {
            inner.state.force_unlock();
        }
        REGISTRY.force_unlock();
    }
}

extern "C" fn after_fork_parent() {
    release_all();
}

extern "C" fn after_fork_child() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
    release_all();
}

extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let loggers: Vec<Logger> = REGISTRY.lock().iter().cloned().map(Logger).collect();
        let mut deadlines = Vec::with_capacity(loggers.len());
        for lg in &loggers {
            let timeout = lg.config().limits.timeout;
            lg.begin_close(timeout);
            deadlines.push(Instant::now() + timeout + crate::logger::CLOSE_GRACE);
        }
        for (lg, until) in loggers.iter().zip(deadlines) {
            lg.wait_closed(until);
        }
    });
}

/// Blocks every signal in the calling thread while alive; threads spawned meanwhile inherit
/// the mask. Restores the previous mask on drop.
pub(crate) struct BlockSignals {
    old: libc::sigset_t,
}

impl BlockSignals {
    pub(crate) fn new() -> BlockSignals {
        // SAFETY: sigset_t is plain data; sigfillset and pthread_sigmask only write the sets
        // they are given, which live on this stack frame.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
            BlockSignals { old }
        }
    }
}

impl Drop for BlockSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`, a valid sigset_t.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}
