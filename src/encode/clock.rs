//! Local time for `${strftime:FMT}` and msgpack `strftime:FMT`: libc `localtime_r` + `strftime`,
//! so `TZ` is honoured exactly as uWSGI (and every C program on the machine) honours it.
//!
//! [`Strftime`] is compiled once (the format as a C string, `tzset()` called) and renders a
//! record's time on the worker thread. The text of the last second rendered is cached, so a
//! burst of records logged within one second costs one `localtime_r` + `strftime`.

use std::ffi::CString;

use parking_lot::Mutex;

extern "C" {
    /// POSIX `tzset` (not bound by the `libc` crate): re-reads `TZ`.
    fn tzset();
}

/// A compiled strftime format.
#[derive(Debug)]
pub struct Strftime {
    format: CString,
    /// The second last rendered and its text.
    cache: Mutex<Option<(i64, Vec<u8>)>>,
}

impl Clone for Strftime {
    fn clone(&self) -> Self {
        Strftime {
            format: self.format.clone(),
            cache: Mutex::new(None),
        }
    }
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
        Ok(Strftime {
            format,
            cache: Mutex::new(None),
        })
    }

    /// Appends the local time of `unix_secs`, formatted, to `out`. Unlike uWSGI (64 bytes, and
    /// nothing at all when the result is longer) the output is never cut short.
    pub fn render(&self, unix_secs: i64, out: &mut Vec<u8>) {
        let mut cache = self.cache.lock();
        if let Some((s, text)) = cache.as_ref() {
            if *s == unix_secs {
                out.extend_from_slice(text);
                return;
            }
        }
        let mut text = Vec::with_capacity(64);
        self.format_into(unix_secs, &mut text);
        out.extend_from_slice(&text);
        *cache = Some((unix_secs, text));
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
        s.render(0, &mut out);
        assert_eq!(out.len(), 160, "{}", String::from_utf8_lossy(&out));
        let e = Strftime::new("").unwrap();
        let mut out = b"x".to_vec();
        e.render(0, &mut out);
        assert_eq!(out, b"x");
        assert!(Strftime::new("a\0b").is_err());
    }

    #[test]
    fn literal_percent() {
        let s = Strftime::new("100%%").unwrap();
        let mut out = Vec::new();
        s.render(1_700_000_000, &mut out);
        assert_eq!(out, b"100%");
    }
}
