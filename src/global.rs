//! The process-wide default logger behind `rlog_init` / `rlog_log` (the lua-resty-logger-socket
//! model: one logger per process or nginx worker).
//!
//! `rlog_log` reads one atomic pointer and goes straight to the logger. A logger installed here
//! is never freed: a second `rlog_init` with a different config (or `rlog_shutdown`) retires the
//! old one — it delivers what it holds and stops its thread, releasing its buffers — but its
//! small header stays allocated, so a `log` racing with the swap never touches freed memory.
//! That costs a few KiB per re-init with another config, which is rare by nature; a re-init
//! with the same config text keeps the running logger.
//!
//! A retired logger stays part of the default's accounting: `rlog_stats` adds its counters, and
//! what it could not deliver within its `timeout` becomes the pending error of the logger that
//! replaced it (or, with none left, a line on stderr).

use std::io::Write;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::{Duration, Instant};

use crate::sync::MutexGuard;

use crate::config::Config;
use crate::lifecycle::{self, ForkHold};
use crate::logger::{Logged, Logger, CLOSE_GRACE};
use crate::stats::rlog_stats;

static DEFAULT: AtomicPtr<Logger> = AtomicPtr::new(std::ptr::null_mut());
crate::static_mutex! {
    /// Serialises init and shutdown; holds the installed default's config text.
    static SWAP: Mutex<Option<String>> = None;
}
crate::static_mutex! {
    /// Defaults retired by a re-init since the last `shutdown`, counted in `stats`.
    static RETIRED: Mutex<Retired> = Retired {
        closing: Vec::new(),
        settled: NO_STATS,
    };
}

/// What `fork()` holds (the `pthread_atfork` handlers in `lifecycle.rs`): the init lock and the
/// retired list, so that the child gets neither half-changed nor locked by a thread it does not
/// have. Taken before the registry and the loggers' state locks.
pub(crate) struct ForkGuards {
    _swap: MutexGuard<'static, Option<String>>,
    retired: MutexGuard<'static, Retired>,
}

fn before_fork() -> Box<dyn ForkHold> {
    let swap = SWAP.lock();
    Box::new(ForkGuards {
        _swap: swap,
        retired: RETIRED.lock(),
    })
}

impl ForkHold for ForkGuards {
    /// In the child: the retired loggers are the parent's to finish and to count (its own
    /// default starts with zeroed counters).
    fn in_child(&mut self) {
        self.retired.closing.clear();
        self.retired.settled = NO_STATS;
    }
}

/// All counters zero (a `const`, for the static above; not exported to C).
const NO_STATS: rlog_stats = rlog_stats {
    logged: 0,
    logged_bytes: 0,
    dropped: 0,
    dropped_bytes: 0,
    sent: 0,
    sent_bytes: 0,
    lost: 0,
    lost_bytes: 0,
    spooled: 0,
    spooled_bytes: 0,
    buffered: 0,
    buffered_bytes: 0,
    retries: 0,
    connects: 0,
    adopted: 0,
    adopted_bytes: 0,
    rejected: 0,
    rejected_bytes: 0,
};

/// The retired defaults: those still delivering, and the final counters of those that stopped.
struct Retired {
    closing: Vec<&'static Logger>,
    settled: rlog_stats,
}

/// The default logger, if initialised.
#[inline]
pub fn current() -> Option<&'static Logger> {
    let p = DEFAULT.load(Ordering::Acquire);
    // SAFETY: every non-null pointer stored in DEFAULT comes from Box::leak in `init` and is
    // never freed, so it is valid for 'static.
    unsafe { p.as_ref() }
}

/// Parses `text`, starts a logger and makes it the default, retiring the previous one (which
/// delivers what it holds within its own `timeout`, in the background). The same text as the
/// installed default's keeps it: nothing is restarted (resty's `init` on every request, or a
/// reload that changed nothing, costs no thread and no connection).
///
/// Errors: the config error, or the thread could not start. The previous default, if any,
/// stays in place.
pub fn init(text: &str) -> Result<(), String> {
    lifecycle::set_fork_hook(before_fork);
    let mut installed = SWAP.lock();
    if current().is_some_and(|lg| lg.is_open()) && installed.as_deref() == Some(text) {
        return Ok(());
    }
    let config = Config::parse(text)?;
    let logger: &'static Logger = Box::leak(Box::new(Logger::start(config)?));
    let old = DEFAULT.swap(logger as *const Logger as *mut Logger, Ordering::AcqRel);
    *installed = Some(text.to_string());
    // SAFETY: as in `current`: a leaked, never-freed logger.
    if let Some(old) = unsafe { old.as_ref() } {
        retire(old, logger);
    }
    Ok(())
}

/// Closes a replaced default within its `timeout` and keeps it counted. A thread waits for it,
/// so that `init` does not, and reports to `successor` what it could not deliver.
fn retire(old: &'static Logger, successor: &'static Logger) {
    RETIRED.lock().closing.push(old);
    let timeout = old.config().limits.timeout;
    let lost_before = old.stats().lost;
    old.begin_close(timeout);
    let until = Instant::now() + timeout + CLOSE_GRACE;
    let _mask = crate::sync::BlockSignals::new();
    // Without a thread to wait with (none could start), the loss is still counted in the
    // stats and said at exit; only this report is skipped.
    let _ = std::thread::Builder::new()
        .name("rlog-retire".into())
        .spawn(move || report_retired(old, successor, lost_before, until));
}

fn report_retired(old: &Logger, successor: &'static Logger, lost_before: u64, until: Instant) {
    if old.wait_closed(until) {
        return;
    }
    let Some((what, why)) = old.undelivered(lost_before) else {
        return;
    };
    let msg = format!(
        "the logger to {} replaced by rlog_init could not deliver {what} within its timeout: {why}",
        old.config().describe_target()
    );
    // To the logger that replaced it while it is the default; after a shutdown or another
    // re-init, nobody would ask that one: stderr.
    match current() {
        Some(now) if std::ptr::eq(now, successor) => now.set_error(msg),
        _ => {
            let _ = writeln!(std::io::stderr(), "rlog: {msg}");
        }
    }
}

/// The default logger's counters, with those of the defaults it replaced since the last
/// `shutdown`. `None`: not initialised.
pub fn stats() -> Option<rlog_stats> {
    let mut s = current()?.stats();
    let mut retired = RETIRED.lock();
    let Retired { closing, settled } = &mut *retired;
    closing.retain(|old| {
        let stopped = old.is_closed();
        let now = old.stats();
        if stopped {
            // Its counters are final: keep their sum, not the logger.
            settled.add(&now);
        } else {
            s.add(&now);
        }
        !stopped
    });
    s.add(settled);
    Some(s)
}

/// Logs through the default logger; a call that meets a logger being retired by a concurrent
/// `init` goes to the new one. `None`: not initialised.
#[inline]
pub fn log(msg: &[u8]) -> Option<Logged> {
    let lg = current()?;
    match lg.log(msg) {
        Logged::Closed => log_after_swap(lg, msg),
        other => Some(other),
    }
}

/// `log` met a closed logger: a concurrent `init` replaced it (log to the new one, and to the
/// one after that if it was replaced too meanwhile), or a `shutdown` removed it (not
/// initialised).
#[cold]
#[inline(never)]
fn log_after_swap(mut old: &Logger, msg: &[u8]) -> Option<Logged> {
    loop {
        match current() {
            Some(new) if !std::ptr::eq(new, old) => match new.log(msg) {
                Logged::Closed => old = new,
                other => return Some(other),
            },
            _ => return None,
        }
    }
}

/// Uninstalls the default logger and closes it within `timeout` (None: its configured
/// `timeout`), and waits as long for the defaults it replaced to finish (each within its own
/// `timeout`). `None`: not initialised; `Some(true)`: every message they all accepted was
/// delivered.
pub fn shutdown(timeout: Option<Duration>) -> Option<bool> {
    let mut installed = SWAP.lock();
    let old = DEFAULT.swap(std::ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: as in `current`: a leaked, never-freed logger.
    let old = unsafe { old.as_ref() }?;
    *installed = None;
    let timeout = timeout.unwrap_or(old.config().limits.timeout);
    let until = Instant::now() + timeout + CLOSE_GRACE;
    let mut all = old.close(timeout);
    // Not waited for under the lock: `rlog_stats` (and a fork) must not wait on it.
    let (closing, settled) = {
        let mut r = RETIRED.lock();
        (
            std::mem::take(&mut r.closing),
            std::mem::replace(&mut r.settled, NO_STATS),
        )
    };
    for r in closing {
        all &= r.wait_closed(until);
    }
    all &= settled.sent == settled.logged;
    Some(all)
}
