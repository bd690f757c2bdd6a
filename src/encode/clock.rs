//! Local time for `${strftime:FMT}` and msgpack `strftime:FMT`: libc `localtime_r` + `strftime`,
//! so `TZ` is honoured exactly as uWSGI (and every C program on the machine) honours it.
//!
//! [`Strftime`] is compiled once (the format as a C string, `tzset()` called) and renders a
//! record's time on the worker thread. The worker keeps a [`ClockCache`] per strftime item with
//! the text of the last second rendered, so a burst of records logged within one second costs one
//! `localtime_r` + `strftime`. (The cache is the worker's, not the config's: no lock, nothing a
//! `fork()` could leave locked.)

use std::ffi::CString;

extern "C" {
    /// POSIX `tzset` (not bound by the `libc` crate): re-reads `TZ`.
    fn tzset();
}

/// A compiled strftime format.
#[derive(Debug, Clone)]
pub struct Strftime {
    format: CString,
}

/// The last second one [`Strftime`] rendered, and its text (owned by the worker).
#[derive(Debug, Default)]
pub struct ClockCache {
    sec: Option<i64>,
    text: Vec<u8>,
}

impl Strftime {
    /// Compiles `format`. Reads `TZ` now (`tzset`), as uWSGI does at start.
    ///
    /// Errors: the format contains a NUL byte.
    pub fn new(format: &str) -> Result<Strftime, String> {
        let format = CString::new(format).map_err(|_| {
            format!(
                "strftime format \"{}\" contains a NUL byte",
                format.escape_debug()
            )
        })?;
        // SAFETY: tzset has no arguments and only (re)reads TZ into libc's own state.
        unsafe { tzset() };
        Ok(Strftime { format })
    }

    /// Appends the local time of `unix_secs`, formatted, to `out`. Unlike uWSGI (64 bytes, and
    /// nothing at all when the result is longer) the output is never cut short.
    pub fn render(&self, unix_secs: i64, out: &mut Vec<u8>, cache: &mut ClockCache) {
        out.extend_from_slice(self.text(unix_secs, cache));
    }

    /// The local time of `unix_secs`, formatted (from `cache` when it holds that second).
    pub fn text<'c>(&self, unix_secs: i64, cache: &'c mut ClockCache) -> &'c [u8] {
        if cache.sec != Some(unix_secs) {
            cache.text.clear();
            self.format_into(unix_secs, &mut cache.text);
            cache.sec = Some(unix_secs);
        }
        &cache.text
    }

    fn format_into(&self, unix_secs: i64, out: &mut Vec<u8>) {
        if self.format.as_bytes().is_empty() {
            return;
        }
        let tm = local_tm(unix_secs);
        let mut cap = 64usize;
        loop {
            let start = out.len();
            out.resize(start + cap, 0);
            // SAFETY: the destination is `cap` writable bytes inside `out`; the format is a valid
            // NUL-terminated C string; `tm` is an initialised struct tm.
            let n = unsafe {
                libc::strftime(
                    out[start..].as_mut_ptr().cast(),
                    cap,
                    self.format.as_ptr(),
                    &tm,
                )
            };
            // 0 means "did not fit" (or an empty result): retry larger, up to a sane bound.
            if n > 0 || cap >= 64 * 1024 {
                out.truncate(start + n);
                return;
            }
            out.truncate(start);
            cap *= 4;
        }
    }
}

/// Microseconds since the epoch from `CLOCK_REALTIME_COARSE`: a read of the vDSO data page, a
/// few ns, at most one kernel tick (1–10 ms) behind the precise clock. Used by `log` when the
/// Microseconds since the Unix epoch (vDSO clock read: no syscall).
#[inline]
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// encoders need only seconds.
#[inline]
pub fn coarse_now_micros() -> i64 {
    // SAFETY: an all-zero timespec is valid; clock_gettime writes it and has no other effect.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } != 0 {
        return now_micros();
    }
    ts.tv_sec as i64 * 1_000_000 + ts.tv_nsec as i64 / 1000
}

/// The broken-down local time of `unix_secs` (per `TZ`).
fn local_tm(unix_secs: i64) -> libc::tm {
    let t: libc::time_t = unix_secs as libc::time_t;
    // SAFETY: an all-zero struct tm is a valid value to be overwritten.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is thread-safe.
    unsafe { libc::localtime_r(&t, &mut tm) };
    tm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_long_output_whole() {
        let s = Strftime::new(&"%Y".repeat(40)).unwrap();
        let mut out = Vec::new();
        s.render(0, &mut out, &mut ClockCache::default());
        assert_eq!(out.len(), 160, "{}", String::from_utf8_lossy(&out));
        let e = Strftime::new("").unwrap();
        let mut out = b"x".to_vec();
        e.render(0, &mut out, &mut ClockCache::default());
        assert_eq!(out, b"x");
        assert!(Strftime::new("a\0b").is_err());
    }

    #[test]
    fn coarse_clock_is_close_to_the_precise_one() {
        let precise = now_micros();
        let coarse = coarse_now_micros();
        assert!((coarse - precise).abs() < 100_000, "{coarse} vs {precise}");
    }

    #[test]
    fn literal_percent() {
        let s = Strftime::new("100%% %S").unwrap();
        let mut cache = ClockCache::default();
        let mut out = Vec::new();
        s.render(1_700_000_000, &mut out, &mut cache);
        s.render(1_700_000_000, &mut out, &mut cache);
        s.render(1_700_000_001, &mut out, &mut cache);
        assert_eq!(out, b"100% 20100% 20100% 21");
    }
}
