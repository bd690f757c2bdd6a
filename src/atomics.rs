//! The atomics the lock-free core (`ring.rs`, `sync.rs`'s lock and condition variable, the
//! credit hand-off in `credit.rs`) is built on: std's in every real build, loom's under
//! `cfg(loom)`, so that the model checks (`make loom`, docs/MODELS.md) explore the real code
//! rather than a copy of it. A normal build compiles to exactly what it did before this module
//! existed: plain re-exports of `std::sync::atomic`, and an access record that is empty.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU8, AtomicUsize};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU8, AtomicUsize};

pub(crate) use std::sync::atomic::Ordering;

/// A spin-wait hint. Under loom it yields to the other modelled threads (a spin loop that never
/// yields would make loom explore every one of its iterations).
#[inline(always)]
pub(crate) fn spin_loop() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::hint::spin_loop();
}

/// A record of which words of a shared raw buffer each thread reads and writes, for loom's
/// data-race check: code that reads or writes words `[from, to)` of the buffer through raw
/// pointers calls `read`/`write` with that range first. In a real build it is empty and every
/// call compiles to nothing; under loom each word has a `loom::cell::UnsafeCell<()>` whose
/// access loom checks against the happens-before order (a read of a word whose last write is
/// not ordered before it, or a write racing any access, fails the model).
#[derive(Debug, Default)]
pub(crate) struct Accesses {
    #[cfg(loom)]
    words: Box<[loom::cell::UnsafeCell<()>]>,
}

impl Accesses {
    /// A record for a buffer of `words` words.
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn new(_words: usize) -> Accesses {
        Accesses {}
    }

    #[cfg(loom)]
    pub(crate) fn new(words: usize) -> Accesses {
        Accesses {
            words: (0..words)
                .map(|_| loom::cell::UnsafeCell::new(()))
                .collect(),
        }
    }

    /// The calling thread reads words `[from, to)` (indices into the buffer).
    #[inline(always)]
    pub(crate) fn read(&self, from: usize, to: usize) {
        #[cfg(loom)]
        for w in &self.words[from..to] {
            w.with(|_| ());
        }
        #[cfg(not(loom))]
        let _ = (from, to);
    }

    /// The calling thread writes words `[from, to)`.
    #[inline(always)]
    pub(crate) fn write(&self, from: usize, to: usize) {
        #[cfg(loom)]
        for w in &self.words[from..to] {
            w.with_mut(|_| ());
        }
        #[cfg(not(loom))]
        let _ = (from, to);
    }
}

/// Runs `f` under loom for every interleaving with at most `preemptions` preemptions (None:
/// every interleaving); `LOOM_MAX_PREEMPTIONS`, when set, overrides it. docs/MODELS.md says
/// which bound each model uses and how many executions that explores.
#[cfg(all(test, loom))]
pub(crate) fn model<F: Fn() + Sync + Send + 'static>(preemptions: Option<usize>, f: F) {
    let mut b = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        b.preemption_bound = preemptions;
    }
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    b.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        f();
    });
    // Shown with `--nocapture` (docs/MODELS.md quotes these counts).
    eprintln!(
        "{}: {} executions explored",
        std::thread::current().name().unwrap_or("model"),
        runs.load(Ordering::Relaxed)
    );
}
