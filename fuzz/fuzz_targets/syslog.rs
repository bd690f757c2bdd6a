//! `log-encoder = syslog ARGS`: the arguments a user writes (`key=value` pairs, `\,` and `\\`
//! escapes, facilities and severities by name or number, header fields, RFC 5424 structured
//! data) and the header `rlog::encode::syslog::Syslog` writes before a message at a time.
//!
//! Input: 8 bytes of time (µs, folded into years 1970-9999, the `rlog_log` call's clock), the
//! arguments up to a NUL byte, then the message.
//!
//! Invariants: no panic; an accepted argument list gives a header of the RFC's shape — PRI
//! below 192, a full timestamp (5424) or `Mmm dd hh:mm:ss` (3164), fields of printable ASCII
//! within the RFC's lengths, structured data that is `-` or well-formed — followed by the
//! message (one trailing newline dropped); and the fields read off a header, given back as
//! arguments, write the very same line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rlog::encode::syslog::{Flavor, Syslog, SyslogState};

const MAX_US: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z

fn render(s: &Syslog, msg: &[u8], t: i64) -> Vec<u8> {
    let mut out = Vec::new();
    s.render(msg, t, &mut out, &mut SyslogState::default());
    out
}

fn printable(f: &[u8], max: usize) -> bool {
    !f.is_empty() && f.len() <= max && f.iter().all(|c| (33..=126).contains(c))
}

/// `v` escaped for an argument list.
fn esc(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .replace('\\', "\\\\")
        .replace(',', "\\,")
}

/// Splits `n` space-separated fields off the front of `line`.
fn fields(line: &[u8], n: usize) -> (Vec<&[u8]>, &[u8]) {
    let mut out = Vec::new();
    let mut rest = line;
    for _ in 0..n {
        let i = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
        out.push(&rest[..i]);
        rest = rest.get(i + 1..).unwrap_or_default();
    }
    (out, rest)
}

/// The length of the structured data at the start of `b` (`-` or `[...]` elements).
fn sd_len(b: &[u8]) -> usize {
    if b.starts_with(b"-") {
        return 1;
    }
    let mut i = 0;
    while b.get(i) == Some(&b'[') {
        let mut quoted = false;
        i += 1;
        loop {
            match b.get(i) {
                None => panic!(
                    "structured data not closed: {:?}",
                    String::from_utf8_lossy(b)
                ),
                Some(b'\\') if quoted => i += 2,
                Some(b'"') => {
                    quoted = !quoted;
                    i += 1
                }
                Some(b']') if !quoted => {
                    i += 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
    }
    assert!(
        i > 0,
        "no structured data: {:?}",
        String::from_utf8_lossy(b)
    );
    i
}

fn digits(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_digit)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let time_us = i64::from_le_bytes(data[..8].try_into().unwrap()).rem_euclid(MAX_US);
    let rest = &data[8..];
    let (args, msg) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let args = String::from_utf8_lossy(args);
    let Ok(s) = Syslog::compile(&args) else {
        return;
    };
    let line = render(&s, msg, time_us);
    let body = msg.strip_suffix(b"\n").unwrap_or(msg);

    assert_eq!(line[0], b'<');
    let close = line.iter().position(|&c| c == b'>').expect("PRI closed");
    let pri: u32 = std::str::from_utf8(&line[1..close])
        .unwrap()
        .parse()
        .unwrap();
    assert!(pri < 192, "PRI {pri}");
    let after = &line[close + 1..];
    let again = match s.flavor {
        Flavor::Rfc5424 => {
            let (f, rest) = fields(after, 6);
            assert_eq!(f[0], b"1");
            let ts = f[1];
            assert_eq!(ts.len(), 32, "{:?}", String::from_utf8_lossy(ts));
            for (i, &c) in ts.iter().enumerate() {
                match i {
                    4 | 7 => assert_eq!(c, b'-'),
                    10 => assert_eq!(c, b'T'),
                    13 | 16 | 29 => assert_eq!(c, b':'),
                    19 => assert_eq!(c, b'.'),
                    26 => assert!(c == b'+' || c == b'-'),
                    _ => assert!(c.is_ascii_digit(), "{:?}", String::from_utf8_lossy(ts)),
                }
            }
            assert!(
                printable(f[2], 255)
                    && printable(f[3], 48)
                    && printable(f[4], 128)
                    && printable(f[5], 32)
            );
            let n = sd_len(rest);
            let sd = &rest[..n];
            let m = &rest[n..];
            if body.is_empty() {
                assert!(m.is_empty());
            } else {
                assert_eq!(&m[..1], b" ");
                assert_eq!(&m[1..], body);
            }
            format!(
                "facility={},severity={},hostname={},app={},procid={},msgid={},sd={}",
                pri / 8,
                pri % 8,
                esc(f[2]),
                esc(f[3]),
                esc(f[4]),
                esc(f[5]),
                esc(sd)
            )
        }
        Flavor::Rfc3164 => {
            let (f, rest) = fields(after, 4);
            // `Mmm dd` has a space before a one-digit day.
            let (f, rest) = if f[1].is_empty() {
                fields(after, 5)
            } else {
                (f, rest)
            };
            let day = f[f.len() - 3];
            let time = f[f.len() - 2];
            assert_eq!(f[0].len(), 3);
            assert!(matches!(day.len(), 1 | 2) && digits(day));
            assert!(time.len() == 8 && time[2] == b':' && time[5] == b':');
            let host = f[f.len() - 1];
            assert!(printable(host, 255));
            let (app, rest) = rest.split_at(rest.iter().position(|&c| c == b'[').expect("APP["));
            let close = rest.iter().position(|&c| c == b']').expect("]");
            let procid = &rest[1..close];
            assert!(printable(app, 48) && printable(procid, 128));
            assert_eq!(&rest[close..close + 3], b"]: ");
            assert_eq!(&rest[close + 3..], body);
            format!(
                "rfc3164,facility={},severity={},hostname={},app={},procid={}",
                pri / 8,
                pri % 8,
                esc(host),
                esc(app),
                esc(procid)
            )
        }
    };
    let s2 = Syslog::compile(&again).unwrap_or_else(|e| panic!("{again}: {e}"));
    assert_eq!(render(&s2, msg, time_us), line, "{again}");
});
