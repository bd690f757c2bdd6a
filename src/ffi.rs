//! The C ABI (`include/rlog.h` is generated from this file by cbindgen).
//!
//! Every function here only checks its arguments and crosses the panic boundary: a panic inside
//! rlog becomes the function's error value, never an unwind into C. NULL pointers and lengths
//! that do not fit return the error value. Ownership: an `rlog_logger *` is a `Box` created by
//! `rlog_logger_new` and consumed by `rlog_logger_free`; everything else is borrowed for the
//! call.

use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::global;
use crate::logger::{Logged, Logger};
use crate::stats::rlog_stats;

/// An independent logger, created by `rlog_logger_new` and freed by `rlog_logger_free`.
pub struct rlog_logger {
    logger: Logger,
}

/// Runs `body`, turning a panic into `fail`.
fn guard<T>(fail: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fail)
}

/// The config text behind a C string. Errors: NULL, or not UTF-8.
///
/// # Safety
/// `config` is NULL or points to a NUL-terminated string.
unsafe fn config_text<'a>(config: *const c_char) -> Result<&'a str, String> {
    if config.is_null() {
        return Err("config is NULL".into());
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(config) }
        .to_str()
        .map_err(|_| "config is not valid UTF-8".into())
}

/// Copies `msg` into `buf` (at most `len - 1` bytes, then a NUL). Returns `msg.len()`.
///
/// # Safety
/// `buf` is NULL or valid for `len` bytes of writes.
unsafe fn copy_out(msg: &str, buf: *mut c_char, len: usize) -> usize {
    if !buf.is_null() && len > 0 {
        let n = msg.len().min(len - 1);
        // SAFETY: `buf` is valid for `len` bytes and n + 1 <= len; `msg` is valid for n bytes;
        // the two cannot overlap (one is Rust-owned).
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    msg.len()
}

/// The message behind (`msg`, `len`). Errors (as text): NULL, or a length `log` cannot return.
///
/// # Safety
/// `msg` is NULL or valid for `len` bytes of reads.
unsafe fn message<'a>(msg: *const c_char, len: usize) -> Result<&'a [u8], String> {
    // SAFETY: forwarded caller contract.
    unsafe { message_within(msg, len, c_int::MAX as usize, "INT_MAX") }
}

/// `message`, with `max` (called `max_name` in the error) as the longest length accepted.
///
/// # Safety
/// `msg` is NULL or valid for `len` bytes of reads; `max` <= isize::MAX.
unsafe fn message_within<'a>(
    msg: *const c_char,
    len: usize,
    max: usize,
    max_name: &str,
) -> Result<&'a [u8], String> {
    if msg.is_null() {
        return Err("log message is NULL".into());
    }
    if len > max {
        return Err(format!(
            "log message length {len} is larger than {max_name}"
        ));
    }
    // SAFETY: non-NULL, valid for `len` bytes by the caller's contract, len <= isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(msg.cast::<u8>(), len) })
}

fn logged(result: Logged) -> c_int {
    match result {
        Logged::Buffered(n) => n as c_int,
        Logged::Dropped => 0,
        Logged::Closed => -1,
    }
}

/// Copies the pending error of `lg` out (see `rlog_last_error`).
///
/// # Safety
/// As `copy_out`.
#[inline]
unsafe fn last_error_of(lg: &Logger, buf: *mut c_char, buf_len: usize) -> usize {
    if buf.is_null() || buf_len == 0 {
        // The Lua binding asks this after every log: keep it to a load or two.
        return lg.peek_error_len();
    }
    match lg.take_error() {
        // SAFETY: forwarded caller contract.
        Some(e) => unsafe { copy_out(e.as_str(), buf, buf_len) },
        None => {
            // SAFETY: forwarded caller contract; buf_len > 0.
            unsafe { *buf = 0 };
            0
        }
    }
}

/// Fills `out` with `min(out_size, sizeof(struct rlog_stats))` bytes of `lg`'s counters.
///
/// # Safety
/// `out` is NULL or valid for `out_size` bytes of writes.
unsafe fn stats_of(lg: &Logger, out: *mut rlog_stats, out_size: usize) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe { copy_stats(&lg.stats(), out, out_size) }
}

/// Copies `s` into the caller's `out`, as much of it as `out_size` holds.
///
/// # Safety
/// `out` is NULL or valid for `out_size` bytes of writes.
unsafe fn copy_stats(s: &rlog_stats, out: *mut rlog_stats, out_size: usize) -> c_int {
    if out.is_null() {
        return -1;
    }
    let n = out_size.min(std::mem::size_of::<rlog_stats>());
    // SAFETY: `out` is valid for out_size >= n bytes; `s` is a live rlog_stats of >= n bytes.
    unsafe {
        std::ptr::copy_nonoverlapping((s as *const rlog_stats).cast::<u8>(), out.cast::<u8>(), n)
    };
    0
}

/// A negative timeout means "the logger's configured `timeout`".
fn timeout_of(timeout_ms: c_int) -> Option<Duration> {
    (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64))
}

/// Initialises (or re-initialises) the process-wide default logger from config text (see the
/// README's config reference).
///
/// Returns 0 on success; -1 on error, with the message copied into `err` (at most `err_len - 1`
/// bytes and a NUL; `err` may be NULL). A failed call changes nothing: a logger already
/// installed stays. A re-init with the same config text keeps the installed logger. One with
/// another config retires the old logger, which still delivers what it held within its
/// `timeout`; its counters stay in `rlog_stats`, and what it could not deliver becomes the
/// pending error.
///
/// # Safety
/// `config` is NULL or a NUL-terminated string; `err` is NULL or valid for `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rlog_init(
    config: *const c_char,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    guard(-1, || {
        // SAFETY: forwarded caller contract.
        let r = unsafe { config_text(config) }.and_then(global::init);
        match r {
            Ok(()) => 0,
            Err(e) => {
                // SAFETY: forwarded caller contract.
                unsafe { copy_out(&e, err, err_len) };
                -1
            }
        }
    })
}

/// Returns 1 after a successful `rlog_init` in this process (and before `rlog_shutdown`), else 0.
#[no_mangle]
pub extern "C" fn rlog_initted() -> c_int {
    guard(0, || global::current().is_some() as c_int)
}

/// Buffers one message of `len` bytes (any bytes, NUL and non-UTF-8 included) for the default
/// logger. Never blocks on I/O; safe from any thread.
///
/// Returns `len` when buffered; 0 when dropped (the buffer would pass `drop_limit`; the pending
/// error says so); -1 when not initialised, or `msg` is NULL, or `len` > INT_MAX.
///
/// # Safety
/// `msg` is NULL or valid for `len` bytes of reads.
#[no_mangle]
pub unsafe extern "C" fn rlog_log(msg: *const c_char, len: usize) -> c_int {
    guard(-1, || {
        // The checks `message` makes, inline, so the common call goes straight to the logger.
        if msg.is_null() || len > c_int::MAX as usize {
            // SAFETY: forwarded caller contract.
            return bad_message(unsafe { message(msg, len) }.err());
        }
        // SAFETY: non-NULL, valid for `len` bytes by the caller's contract, len <= isize::MAX.
        let bytes = unsafe { std::slice::from_raw_parts(msg.cast::<u8>(), len) };
        global::log(bytes).map_or(-1, logged)
    })
}

/// `rlog_log`, also telling whether an error is pending afterwards — for bindings that return the
/// pending error with every call (the Lua binding's `log`): one call instead of `rlog_log` and
/// `rlog_last_error(NULL, 0)`. An addition to the SPEC's ABI.
///
/// Returns what `rlog_log` returns (`len`, 0 when dropped, -1) when no error is pending; when
/// one is, `-2 - r`, where `r` >= 0 is what `rlog_log` returned: take the error with
/// `rlog_last_error`. -1 also when `msg` is NULL or `len` > INT_MAX - 2.
///
/// # Safety
/// `msg` is NULL or valid for `len` bytes of reads.
#[no_mangle]
pub unsafe extern "C" fn rlog_log_pending(msg: *const c_char, len: usize) -> c_int {
    guard(-1, || {
        // SAFETY: forwarded caller contract; INT_MAX - 2 <= isize::MAX.
        let bytes =
            match unsafe { message_within(msg, len, (c_int::MAX - 2) as usize, "INT_MAX - 2") } {
                Ok(b) => b,
                Err(e) => return bad_message(Some(e)),
            };
        let Some(r) = global::log(bytes).map(logged) else {
            return -1;
        };
        let pending = global::current().is_some_and(|lg| lg.error_flagged());
        match (r, pending) {
            (-1, _) | (_, false) => r,
            (r, true) => -2 - r,
        }
    })
}

/// `rlog_log`'s answer to a NULL message or a length it cannot return: the reason becomes the
/// default logger's pending error.
#[cold]
#[inline(never)]
fn bad_message(reason: Option<String>) -> c_int {
    if let (Some(lg), Some(e)) = (global::current(), reason) {
        lg.set_error(e);
    }
    -1
}

/// Sends everything the default logger holds and waits for the outcome (bounded by the
/// configured timeouts and retries).
///
/// Returns the bytes delivered by this flush; 0 if there was nothing to send; -1 on error (the
/// reason is the pending error; the messages stay buffered and are retried) or when not
/// initialised.
#[no_mangle]
pub extern "C" fn rlog_flush() -> i64 {
    guard(-1, || global::current().map_or(-1, |lg| lg.flush()))
}

/// Copies the default logger's pending error into `buf` (at most `buf_len - 1` bytes, then a
/// NUL) and clears it: each error is returned once.
///
/// Returns the error's full length (larger than `buf_len - 1` when it was truncated); 0 when
/// there is none or not initialised. With `buf` NULL or `buf_len` 0, returns the length and
/// leaves the error pending.
///
/// # Safety
/// `buf` is NULL or valid for `buf_len` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn rlog_last_error(buf: *mut c_char, buf_len: usize) -> usize {
    guard(0, || match global::current() {
        // SAFETY: forwarded caller contract.
        Some(lg) => unsafe { last_error_of(lg, buf, buf_len) },
        None => 0,
    })
}

/// Fills `out` with `min(out_size, sizeof(struct rlog_stats))` bytes of the default logger's
/// counters (pass `sizeof(struct rlog_stats)`).
///
/// Returns 0; -1 when not initialised or `out` is NULL.
///
/// # Safety
/// `out` is NULL or valid for `out_size` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn rlog_stats(out: *mut rlog_stats, out_size: usize) -> c_int {
    guard(-1, || match global::stats() {
        // SAFETY: forwarded caller contract.
        Some(s) => unsafe { copy_stats(&s, out, out_size) },
        None => -1,
    })
}

/// Delivers what the default logger holds within `timeout_ms` (negative: the configured
/// `timeout`), stops its thread and uninstalls it; `rlog_initted()` is 0 afterwards.
///
/// Returns 0 if every message it accepted was delivered; 1 if some were not (lost, or still
/// undelivered at the deadline: see the stats); -1 when not initialised.
#[no_mangle]
pub extern "C" fn rlog_shutdown(timeout_ms: c_int) -> c_int {
    guard(-1, || match global::shutdown(timeout_of(timeout_ms)) {
        None => -1,
        Some(true) => 0,
        Some(false) => 1,
    })
}

/// The library version, a static NUL-terminated string such as "0.1.0".
#[no_mangle]
pub extern "C" fn rlog_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Creates an independent logger from config text, with its own buffer, thread and counters.
///
/// Returns the logger; NULL on error, with the message copied into `err` (at most
/// `err_len - 1` bytes and a NUL; `err` may be NULL).
///
/// # Safety
/// `config` is NULL or a NUL-terminated string; `err` is NULL or valid for `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rlog_logger_new(
    config: *const c_char,
    err: *mut c_char,
    err_len: usize,
) -> *mut rlog_logger {
    guard(std::ptr::null_mut(), || {
        // SAFETY: forwarded caller contract.
        let r = unsafe { config_text(config) }
            .and_then(crate::config::Config::parse)
            .and_then(Logger::start);
        match r {
            Ok(logger) => Box::into_raw(Box::new(rlog_logger { logger })),
            Err(e) => {
                // SAFETY: forwarded caller contract.
                unsafe { copy_out(&e, err, err_len) };
                std::ptr::null_mut()
            }
        }
    })
}

/// The logger behind a handle.
///
/// # Safety
/// `lg` is NULL or a live handle from `rlog_logger_new`.
unsafe fn handle<'a>(lg: *mut rlog_logger) -> Option<&'a Logger> {
    // SAFETY: caller contract: NULL or a live Box-allocated handle.
    unsafe { lg.as_ref() }.map(|h| &h.logger)
}

/// As `rlog_log`, for `lg`. Returns `len`, 0 (dropped) or -1 (`lg` or `msg` NULL, `len` >
/// INT_MAX).
///
/// # Safety
/// `lg` is NULL or a live handle; `msg` is NULL or valid for `len` bytes of reads.
#[no_mangle]
pub unsafe extern "C" fn rlog_logger_log(
    lg: *mut rlog_logger,
    msg: *const c_char,
    len: usize,
) -> c_int {
    guard(-1, || {
        // SAFETY: forwarded caller contract.
        let Some(lg) = (unsafe { handle(lg) }) else {
            return -1;
        };
        // SAFETY: forwarded caller contract.
        match unsafe { message(msg, len) } {
            Ok(bytes) => logged(lg.log(bytes)),
            Err(e) => {
                lg.set_error(e);
                -1
            }
        }
    })
}

/// As `rlog_flush`, for `lg`. Returns bytes delivered, 0, or -1 (error, or `lg` NULL).
///
/// # Safety
/// `lg` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn rlog_logger_flush(lg: *mut rlog_logger) -> i64 {
    // SAFETY: forwarded caller contract.
    guard(-1, || unsafe { handle(lg) }.map_or(-1, |lg| lg.flush()))
}

/// As `rlog_last_error`, for `lg`. Returns the error's full length, 0 if none or `lg` NULL.
///
/// # Safety
/// `lg` is NULL or a live handle; `buf` is NULL or valid for `buf_len` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn rlog_logger_last_error(
    lg: *mut rlog_logger,
    buf: *mut c_char,
    buf_len: usize,
) -> usize {
    guard(0, || match unsafe { handle(lg) } {
        // SAFETY: forwarded caller contract.
        Some(lg) => unsafe { last_error_of(lg, buf, buf_len) },
        None => 0,
    })
}

/// As `rlog_stats`, for `lg`. Returns 0; -1 when `lg` or `out` is NULL.
///
/// # Safety
/// `lg` is NULL or a live handle; `out` is NULL or valid for `out_size` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn rlog_logger_stats(
    lg: *mut rlog_logger,
    out: *mut rlog_stats,
    out_size: usize,
) -> c_int {
    guard(-1, || match unsafe { handle(lg) } {
        // SAFETY: forwarded caller contract.
        Some(lg) => unsafe { stats_of(lg, out, out_size) },
        None => -1,
    })
}

/// Delivers what `lg` holds within `timeout_ms` (negative: the configured `timeout`), stops
/// its thread and frees the handle, which must not be used again.
///
/// Returns 0 if every message it accepted was delivered; 1 if not; -1 when `lg` is NULL.
///
/// # Safety
/// `lg` is NULL or a live handle, not used by any other thread during or after this call.
#[no_mangle]
pub unsafe extern "C" fn rlog_logger_free(lg: *mut rlog_logger, timeout_ms: c_int) -> c_int {
    guard(-1, || {
        if lg.is_null() {
            return -1;
        }
        // SAFETY: a live handle from rlog_logger_new, handed back to us for good.
        let h = unsafe { Box::from_raw(lg) };
        let timeout = timeout_of(timeout_ms).unwrap_or(h.logger.config().limits.timeout);
        if h.logger.close(timeout) {
            0
        } else {
            1
        }
    })
}

/// Copies sink `index`'s counters and label out (shared by the two sink-stats entry points).
///
/// # Safety
/// `out` is NULL or valid for `out_size` bytes of writes; `name` is NULL or valid for
/// `name_len` bytes of writes.
unsafe fn sink_stats_of(
    lg: &Logger,
    index: usize,
    out: *mut crate::stats::rlog_sink_stats,
    out_size: usize,
    name: *mut c_char,
    name_len: usize,
) -> c_int {
    use crate::stats::rlog_sink_stats;
    if out.is_null() {
        return -1;
    }
    let Some((label, s)) = lg.sink_stats(index) else {
        return -1;
    };
    let n = out_size.min(std::mem::size_of::<rlog_sink_stats>());
    // SAFETY: `out` is valid for out_size >= n bytes; `s` is a live rlog_sink_stats of >= n bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&s as *const rlog_sink_stats).cast::<u8>(),
            out.cast::<u8>(),
            n,
        )
    };
    // SAFETY: forwarded caller contract for `name`.
    unsafe { copy_out(&label, name, name_len) };
    0
}

/// How many outputs `lg` delivers to: the `logger = ...` lines plus the `host`/`port`/`path`
/// one; 1 for a plain config (its `host`/`port`/`path` output); -1 when `lg` is NULL.
///
/// # Safety
/// `lg` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn rlog_logger_sink_count(lg: *mut rlog_logger) -> c_int {
    // SAFETY: forwarded caller contract.
    guard(-1, || {
        unsafe { handle(lg) }.map_or(-1, |lg| lg.sink_count() as c_int)
    })
}

/// Fills `out` (min(`out_size`, sizeof) bytes) with the counters of `lg`'s logger number
/// `index` (config order, the `host`/`port`/`path` logger first) and copies its label
/// (`logger "NAME"` or `logger TARGET`, NUL-terminated, cut to `name_len`) into `name` (may be
/// NULL). Returns 0; -1 when `lg` or `out` is NULL or there is no such logger.
///
/// # Safety
/// `lg` is NULL or a live handle; `out` is NULL or valid for `out_size` bytes of writes;
/// `name` is NULL or valid for `name_len` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn rlog_logger_sink_stats(
    lg: *mut rlog_logger,
    index: usize,
    out: *mut crate::stats::rlog_sink_stats,
    out_size: usize,
    name: *mut c_char,
    name_len: usize,
) -> c_int {
    guard(-1, || match unsafe { handle(lg) } {
        // SAFETY: forwarded caller contract.
        Some(lg) => unsafe { sink_stats_of(lg, index, out, out_size, name, name_len) },
        None => -1,
    })
}

/// As `rlog_logger_sink_stats`, for the default logger. -1 when not initialised.
///
/// # Safety
/// `out` is NULL or valid for `out_size` bytes of writes; `name` is NULL or valid for
/// `name_len` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn rlog_sink_stats(
    index: usize,
    out: *mut crate::stats::rlog_sink_stats,
    out_size: usize,
    name: *mut c_char,
    name_len: usize,
) -> c_int {
    guard(-1, || match global::current() {
        // SAFETY: forwarded caller contract.
        Some(lg) => unsafe { sink_stats_of(lg, index, out, out_size, name, name_len) },
        None => -1,
    })
}
