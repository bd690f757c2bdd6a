//! The process-wide default logger behind `rlog_init` / `rlog_log` (the lua-resty-logger-socket
//! model: one logger per process or nginx worker).
//!
//! `rlog_log` reads one atomic pointer and goes straight to the logger. A logger installed here
//! is never freed: a second `rlog_init` (or `rlog_shutdown`) retires the old one — it delivers
//! what it holds and stops its thread, releasing its buffers — but its small header stays
//! allocated, so a `log` racing with the swap never touches freed memory. That costs a few
//! hundred bytes per re-init, which is rare by nature.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Duration;

use crate::sync::Mutex;

use crate::config::Config;
use crate::logger::{Logged, Logger};

static DEFAULT: AtomicPtr<Logger> = AtomicPtr::new(std::ptr::null_mut());
/// Serialises init and shutdown.
static SWAP: Mutex<()> = Mutex::new(());

/// The default logger, if initialised.
#[inline]
pub fn current() -> Option<&'static Logger> {
    let p = DEFAULT.load(Ordering::Acquire);
    // SAFETY: every non-null pointer stored in DEFAULT comes from Box::leak in `init` and is
    // never freed, so it is valid for 'static.
    unsafe { p.as_ref() }
}

/// Parses `text`, starts a logger and makes it the default, retiring the previous one (which
/// delivers what it holds within its own `timeout`, in the background).
///
/// Errors: the config error, or the thread could not start. The previous default, if any,
/// stays in place.
pub fn init(text: &str) -> Result<(), String> {
    let config = Config::parse(text)?;
    let _g = SWAP.lock();
    let logger: &'static Logger = Box::leak(Box::new(Logger::start(config)?));
    let old = DEFAULT.swap(logger as *const Logger as *mut Logger, Ordering::AcqRel);
    // SAFETY: as in `current`: a leaked, never-freed logger.
    if let Some(old) = unsafe { old.as_ref() } {
        old.begin_close(old.config().limits.timeout);
    }
    Ok(())
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

/// `log` met a closed logger: a concurrent `init` replaced it (log to the new one), or a
/// `shutdown` removed it (not initialised).
#[cold]
#[inline(never)]
fn log_after_swap(old: &Logger, msg: &[u8]) -> Option<Logged> {
    match current() {
        Some(new) if !std::ptr::eq(new, old) => Some(new.log(msg)),
        _ => None,
    }
}

/// Uninstalls the default logger and closes it within `timeout` (None: its configured
/// `timeout`). `None`: not initialised; `Some(true)`: every message it accepted was delivered.
pub fn shutdown(timeout: Option<Duration>) -> Option<bool> {
    let _g = SWAP.lock();
    let old = DEFAULT.swap(std::ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: as in `current`: a leaked, never-freed logger.
    let old = unsafe { old.as_ref() }?;
    Some(old.close(timeout.unwrap_or(old.config().limits.timeout)))
}
