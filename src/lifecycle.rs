//! Process life: the registry of live loggers, `fork()` and exit.
//!
//! - **fork**: a `pthread_atfork` prepare handler takes the registry and every logger's state lock
//!   (so no other thread is half-way through an append when the address space is copied) and the
//!   parent and child handlers release them. Each lock is one futex word (see `sync.rs`): no
//!   process-wide waiter table that could hold the parent's threads in the child. The child
//!   handler also bumps the *fork generation*; each logger
//!   notices on its next call that its worker belongs to another process, forgets the parent's
//!   messages (the parent still sends them) and starts a worker of its own.
//! - **exit**: an `atexit` handler asks every live logger to deliver what it holds within its
//!   `timeout` and waits for them together.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Once, OnceLock};
use std::time::Instant;

use crate::queue::{Inner, Logger, State, CLOSE_GRACE};

crate::static_mutex! {
    static REGISTRY: Mutex<Vec<Arc<Inner>>> = Vec::new();
}
static HOOKS: Once = Once::new();

/// Adds a started logger to the registry (installing the fork and exit hooks the first time).
pub(crate) fn register(inner: Arc<Inner>) {
    HOOKS.call_once(|| {
        pin_library();
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

/// Marks this shared library as never to be unloaded (`RTLD_NODELETE`). Worker threads run its
/// code until the process ends; a host that `dlclose`s it (LuaJIT does when its VM is closed at
/// exit) must not unmap that code under them. A no-op when rlog is linked statically.
fn pin_library() {
    let mut info: libc::Dl_info = empty_dl_info();
    let anchor = pin_library as *const libc::c_void;
    // SAFETY: dladdr only reads the address and fills `info`; dli_fname, when non-NULL, points
    // to a NUL-terminated path owned by the dynamic loader, valid while the object is loaded,
    // which it is during this call. dlopen with RTLD_NOLOAD only looks up that already-loaded
    // object and adds the NODELETE flag; the handle it returns is deliberately never closed.
    unsafe {
        if libc::dladdr(anchor, &mut info) != 0 && !info.dli_fname.is_null() {
            libc::dlopen(
                info.dli_fname,
                libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
            );
        }
    }
}

fn empty_dl_info() -> libc::Dl_info {
    libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    }
}

/// Removes a logger whose worker has stopped.
pub(crate) fn unregister(inner: &Arc<Inner>) {
    REGISTRY.lock().retain(|i| !Arc::ptr_eq(i, inner));
}

/// What the forking thread holds across `fork()`: the registry and every logger's state lock,
/// so no other thread is half-way through changing them when the address space is copied.
struct Held {
    states: Vec<(Arc<Inner>, crate::sync::MutexGuard<'static, State>)>,
    registry: Option<crate::sync::MutexGuard<'static, Vec<Arc<Inner>>>>,
    /// What the [`ForkHook`] holds (the default logger's init lock and retired list), taken
    /// first.
    global: Option<Box<dyn ForkHold>>,
    /// The descriptors a child closes (`sync::ChildCloses`), taken last.
    fds: Option<crate::sync::MutexGuard<'static, Vec<i32>>>,
}

thread_local! {
    static HELD: RefCell<Held> = const {
        RefCell::new(Held {
            states: Vec::new(),
            registry: None,
            global: None,
            fds: None,
        })
    };
}

/// Locks another module holds across `fork()` (taken before the registry and the loggers'
/// locks): the default logger's (`global.rs`), which registers it, so that this module does not
/// depend on it.
pub(crate) type ForkHook = fn() -> Box<dyn ForkHold>;

/// What a [`ForkHook`] took; dropped after the fork in both processes.
pub(crate) trait ForkHold {
    /// In the child, before the locks are released.
    fn in_child(&mut self);
}

static FORK_HOOK: OnceLock<ForkHook> = OnceLock::new();

/// Sets the [`ForkHook`] (once; later calls change nothing).
pub(crate) fn set_fork_hook(hook: ForkHook) {
    let _ = FORK_HOOK.set(hook);
}

extern "C" fn before_fork() {
    let global = FORK_HOOK.get().map(|h| h());
    let reg = REGISTRY.lock();
    let mut states = Vec::with_capacity(reg.len());
    for inner in reg.iter() {
        let guard = inner.state.lock();
        // SAFETY: the guard borrows `inner.state`, which lives in the `Arc<Inner>` stored next to
        // it in the same tuple; `release_all` drops the guard before that Arc, so the borrow
        // never outlives what it borrows.
        let guard: crate::sync::MutexGuard<'static, State> = unsafe { std::mem::transmute(guard) };
        states.push((inner.clone(), guard));
    }
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        h.states = states;
        h.registry = Some(reg);
        h.global = global;
        h.fds = Some(crate::sync::child_closes_lock());
    });
}

/// Releases what `before_fork` took: in the parent, and in the child (where the forking thread
/// is the only thread, and the holder of every one of these locks).
fn release_all() {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        for (inner, guard) in h.states.drain(..) {
            drop(guard);
            drop(inner);
        }
        h.fds = None;
        h.registry = None;
        h.global = None;
    });
}

extern "C" fn after_fork_parent() {
    release_all();
}

extern "C" fn after_fork_child() {
    crate::sync::next_fork_generation();
    crate::producer::forget_slot();
    HELD.with(|h| {
        if let Some(g) = h.borrow_mut().global.as_mut() {
            g.in_child();
        }
        if let Some(fds) = h.borrow_mut().fds.as_mut() {
            crate::sync::close_in_child(fds);
        }
    });
    release_all();
}

/// Delivers what every logger holds, each within its `timeout`. What could not be delivered is
/// counted, and, since nobody is left to ask for the stats or the error, said on stderr, one
/// line per logger (nginx sends its workers' stderr to the error log; uWSGI to its log).
extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let loggers: Vec<Logger> = REGISTRY.lock().iter().cloned().map(Logger).collect();
        let mut waits = Vec::with_capacity(loggers.len());
        for lg in &loggers {
            let timeout = lg.config().limits.timeout;
            let lost_before = lg.stats().lost;
            lg.begin_close(timeout);
            waits.push((lost_before, Instant::now() + timeout + CLOSE_GRACE));
        }
        for (lg, (lost_before, until)) in loggers.iter().zip(waits) {
            if lg.wait_closed(until) {
                continue;
            }
            if let Some((what, why)) = lg.undelivered(lost_before) {
                let _ = writeln!(
                    std::io::stderr(),
                    "rlog: {what} to {} could not be delivered before exit: {why}",
                    lg.config().describe_target()
                );
            }
        }
    });
}
