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

/// The longest text one strftime item may give (16 MiB, rlogd's largest record). A format that
/// gives more (`%20000000Y`) is refused at init; should one get there only at some later time,
/// that record is an encoder error, reported and counted, never a record with the time missing.
pub const MAX_TEXT: usize = 16 << 20;

/// A compiled strftime format.
#[derive(Debug, Clone)]
pub struct Strftime {
    /// The format with [`MARK`] appended: libc's `strftime` returns 0 both for "did not fit"
    /// and for an empty result, and with the mark a result is never empty.
    format: CString,
}

/// Appended to the format, removed from the result.
const MARK: u8 = 0x01;

/// The last second one [`Strftime`] rendered, and its text (owned by the worker).
#[derive(Debug, Default)]
pub struct ClockCache {
    sec: Option<i64>,
    text: Vec<u8>,
}

impl Strftime {
    /// Compiles `format`. Reads `TZ` now (`tzset`), as uWSGI does at start.
    ///
    /// Errors: the format contains a NUL byte; its text for the current time is longer than
    /// [`MAX_TEXT`].
    pub fn new(format: &str) -> Result<Strftime, String> {
        let nul = || {
            format!(
                "strftime format \"{}\" contains a NUL byte",
                format.escape_debug()
            )
        };
        if format.contains('\0') {
            return Err(nul());
        }
        let marked = if format.is_empty() {
            Vec::new()
        } else {
            let mut m = format.as_bytes().to_vec();
            m.push(MARK);
            m
        };
        let s = Strftime {
            format: CString::new(marked).map_err(|_| nul())?,
        };
        // SAFETY: tzset has no arguments and only (re)reads TZ into libc's own state.
        unsafe { tzset() };
        let mut probe = Vec::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        s.format_into(now, &mut probe)
            .map_err(|e| format!("{e} (given \"{}\")", format.escape_debug()))?;
        Ok(s)
    }

    /// Appends the local time of `unix_secs`, formatted, to `out`. Unlike uWSGI (64 bytes, and
    /// nothing at all when the result is longer) the output is never cut short.
    ///
    /// Errors: the text would be longer than [`MAX_TEXT`] (nothing is appended).
    pub fn render(
        &self,
        unix_secs: i64,
        out: &mut Vec<u8>,
        cache: &mut ClockCache,
    ) -> Result<(), String> {
        out.extend_from_slice(self.text(unix_secs, cache)?);
        Ok(())
    }

    /// The local time of `unix_secs`, formatted (from `cache` when it holds that second).
    ///
    /// Errors: the text would be longer than [`MAX_TEXT`].
    pub fn text<'c>(&self, unix_secs: i64, cache: &'c mut ClockCache) -> Result<&'c [u8], String> {
        if cache.sec != Some(unix_secs) {
            cache.text.clear();
            cache.sec = None;
            self.format_into(unix_secs, &mut cache.text)?;
            cache.sec = Some(unix_secs);
        }
        Ok(&cache.text)
    }

    fn format_into(&self, unix_secs: i64, out: &mut Vec<u8>) -> Result<(), String> {
        if self.format.as_bytes().is_empty() {
            return Ok(());
        }
        let tm = local_tm(unix_secs);
        let start = out.len();
        // Room for the text and the mark.
        let most = MAX_TEXT + 1;
        let mut cap = 256usize;
        loop {
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
            // With the mark, 0 can only mean "did not fit".
            if n > 0 {
                debug_assert_eq!(out[start + n - 1], MARK);
                out.truncate(start + n - 1);
                return Ok(());
            }
            out.truncate(start);
            if cap >= most {
                return Err(format!(
                    "strftime gives more than {MAX_TEXT} bytes, the most one time item may hold"
                ));
            }
            cap = (cap * 4).min(most);
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
pub(crate) fn local_tm(unix_secs: i64) -> libc::tm {
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
        s.render(0, &mut out, &mut ClockCache::default()).unwrap();
        assert_eq!(out.len(), 160, "{}", String::from_utf8_lossy(&out));
        let e = Strftime::new("").unwrap();
        let mut out = b"x".to_vec();
        e.render(0, &mut out, &mut ClockCache::default()).unwrap();
        assert_eq!(out, b"x");
        assert!(Strftime::new("a\0b").is_err());
    }

    /// Was: past 64 KiB strftime's text came out empty, silently.
    #[test]
    fn text_over_64_kib_is_kept_whole() {
        let s = Strftime::new(&"%Y-".repeat(40_000)).unwrap();
        let mut out = b"<".to_vec();
        s.render(0, &mut out, &mut ClockCache::default()).unwrap();
        assert_eq!(out.len(), 1 + 40_000 * 5);
        assert!(out[1..].chunks(5).all(|c| c == b"1970-" || c == b"1969-"));
        // The mark appended to the format never shows.
        let e = Strftime::new("%%").unwrap();
        let mut out = Vec::new();
        e.render(0, &mut out, &mut ClockCache::default()).unwrap();
        assert_eq!(out, b"%");
    }

    #[test]
    fn text_past_the_limit_is_an_init_error() {
        let e = Strftime::new("x%20000000Y").unwrap_err();
        assert!(
            e.contains("more than 16777216 bytes") && e.contains("%20000000Y"),
            "{e}"
        );
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
        for t in [1_700_000_000, 1_700_000_000, 1_700_000_001] {
            s.render(t, &mut out, &mut cache).unwrap();
        }
        assert_eq!(out, b"100% 20100% 20100% 21");
    }
}
