//! The `${...}` templates of the `format` and `json` encoders: parsed once at init into a list of
//! parts, rendered per record on the worker thread.
//!
//! Variables (uWSGI 2.0): `${msg}` (the input without one trailing newline), `${msgnl}` (the
//! input as is), `${unix}` (seconds), `${micros}`, `${millis}` (integers), `${strftime:FMT}`
//! (local time). Unlike uWSGI's parser, this one has no quirks: a `$` not followed by `{` is a
//! plain character wherever it stands, an unknown variable or an unterminated `${` is an init
//! error naming it, and nothing is cut short (uWSGI's strftime stops at 63 bytes).

use super::clock::{ClockCache, Strftime};

/// One piece of a compiled template.
#[derive(Debug, Clone)]
enum Part {
    Lit(Vec<u8>),
    Msg,
    MsgNl,
    Unix,
    Micros,
    Millis,
    Strftime(Strftime),
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

/// How variable values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As they are (`format`).
    Raw,
    /// Escaped for a JSON string (`json`); numbers as they are.
    Json,
}

impl Template {
    /// Compiles `text`.
    ///
    /// Errors: `unterminated "${" at byte N of template "..."`, `unknown variable "${x}" in
    /// template "..."`, a strftime format with a NUL byte.
    pub fn compile(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(i) = rest.find("${") {
            lit.extend_from_slice(&rest.as_bytes()[..i]);
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!(
                    "unterminated \"${{\" at byte {} of template \"{text}\"",
                    offset + i
                ));
            };
            let name = &after[..end];
            let part = match name {
                "msg" => Part::Msg,
                "msgnl" => Part::MsgNl,
                "unix" => Part::Unix,
                "micros" => Part::Micros,
                "millis" => Part::Millis,
                _ => match name.strip_prefix("strftime:") {
                    Some(fmt) => Part::Strftime(Strftime::new(fmt)?),
                    None => {
                        return Err(format!(
                            "unknown variable \"${{{name}}}\" in template \"{text}\" (known: msg, msgnl, unix, micros, millis, strftime:FMT)"
                        ))
                    }
                },
            };
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(part);
            let consumed = i + 2 + end + 1;
            offset += consumed;
            rest = &rest[consumed..];
        }
        lit.extend_from_slice(rest.as_bytes());
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// Whether rendering needs the record's time.
    pub fn needs_time(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(
                p,
                Part::Unix | Part::Micros | Part::Millis | Part::Strftime(_)
            )
        })
    }

    /// Whether rendering needs the time below the second (`${micros}`, `${millis}`).
    pub fn needs_subsecond(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Micros | Part::Millis))
    }

    /// Appends the template rendered for `msg` logged at `time_us` to `out`; `clocks` holds the
    /// worker's cache for each strftime part (grown as needed).
    ///
    /// Errors: a strftime part's text longer than [`super::clock::MAX_TEXT`].
    pub fn render(
        &self,
        mode: Mode,
        msg: &[u8],
        time_us: i64,
        out: &mut Vec<u8>,
        clocks: &mut Vec<ClockCache>,
    ) -> Result<(), String> {
        let mut k = 0;
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.extend_from_slice(l),
                Part::Msg => put(mode, strip_nl(msg), out),
                Part::MsgNl => put(mode, msg, out),
                Part::Unix => push_int(out, time_us.div_euclid(1_000_000)),
                Part::Micros => push_int(out, time_us),
                Part::Millis => push_int(out, time_us.div_euclid(1000)),
                Part::Strftime(s) => {
                    if clocks.len() <= k {
                        clocks.resize_with(k + 1, ClockCache::default);
                    }
                    let secs = time_us.div_euclid(1_000_000);
                    match mode {
                        Mode::Raw => s.render(secs, out, &mut clocks[k])?,
                        Mode::Json => json_escape(s.text(secs, &mut clocks[k])?, out),
                    }
                    k += 1;
                }
            }
        }
        Ok(())
    }
}

/// The message without one trailing newline (uWSGI's `msg`).
pub fn strip_nl(msg: &[u8]) -> &[u8] {
    msg.strip_suffix(b"\n").unwrap_or(msg)
}

fn put(mode: Mode, bytes: &[u8], out: &mut Vec<u8>) {
    match mode {
        Mode::Raw => out.extend_from_slice(bytes),
        Mode::Json => json_escape(bytes, out),
    }
}

/// Appends a decimal integer (as uWSGI's `%lld`).
pub fn push_int(out: &mut Vec<u8>, n: i64) {
    // The digits of 00..=99, two at a time: half the divisions of a digit-by-digit loop.
    const PAIRS: [u8; 200] = {
        let mut t = [0u8; 200];
        let mut i = 0;
        while i < 100 {
            t[2 * i] = b'0' + (i / 10) as u8;
            t[2 * i + 1] = b'0' + (i % 10) as u8;
            i += 1;
        }
        t
    };
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let neg = n < 0;
    let mut v = n.unsigned_abs();
    while v >= 100 {
        let p = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[p..p + 2]);
    }
    if v >= 10 {
        let p = v as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[p..p + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    if neg {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// Escapes `bytes` for the inside of a JSON string. `"` `\` and tab, newline, carriage return
/// are escaped as uWSGI escapes them (`\"` `\\` `\t` `\n` `\r`); every other control character
/// and NUL becomes `\u00XX` (uWSGI passes them raw, and stops at NUL); bytes that are not valid
/// UTF-8 become U+FFFD, so the result is always valid JSON.
pub fn json_escape(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len());
    // ASCII first, eight bytes at a time: most log lines are ASCII with few escapes.
    let mut start = 0;
    loop {
        let i = next_special(bytes, start);
        out.extend_from_slice(&bytes[start..i]);
        match bytes.get(i) {
            None => return,
            Some(&b) if b >= 0x80 => return escape_utf8(&bytes[i..], out),
            Some(&b) => escape_byte(b, out),
        }
        start = i + 1;
    }
}

/// [`json_escape`] for text with multi-byte (or invalid) UTF-8: a chunk at a time.
fn escape_utf8(bytes: &[u8], out: &mut Vec<u8>) {
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        // Runs of bytes that need no escape (most of a log line) are copied whole.
        let mut start = 0;
        for (i, &b) in valid.iter().enumerate() {
            if b >= 0x20 && b != b'"' && b != b'\\' {
                continue;
            }
            out.extend_from_slice(&valid[start..i]);
            start = i + 1;
            escape_byte(b, out);
        }
        out.extend_from_slice(&valid[start..]);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

/// The escape of `b`: `"`, `\` or an ASCII control character.
fn escape_byte(b: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\t' => out.extend_from_slice(b"\\t"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(b >> 4) as usize],
            HEX[(b & 15) as usize],
        ]),
    }
}

/// The index of the first byte of `b` from `i` on that JSON escaping must look at — `"`,
/// `\`, a control character, or a byte of a multi-byte (or invalid) UTF-8 sequence — or
/// `b.len()`. Eight bytes at a time: a byte-wise test of each word (a borrow can set a flag
/// only above a byte that really matches, so the lowest flag is exact).
fn next_special(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(word) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        let quote = x ^ (ONES * b'"' as u64);
        let backslash = x ^ (ONES * b'\\' as u64);
        let flags = ((x.wrapping_sub(ONES * 0x20) & !x)
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | x)
            & HIGH;
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !(b[i] < 0x20 || b[i] == b'"' || b[i] == b'\\' || b[i] >= 0x80) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, mode: Mode, msg: &[u8], time_us: i64) -> Vec<u8> {
        let mut out = Vec::new();
        Template::compile(t)
            .unwrap()
            .render(mode, msg, time_us, &mut out, &mut Vec::new())
            .unwrap();
        out
    }

    #[test]
    fn variables() {
        let t = 1_700_000_123_456_789;
        assert_eq!(
            render("[FOO ${msg} BAR]", Mode::Raw, b"hi\n", t),
            b"[FOO hi BAR]"
        );
        assert_eq!(render("${msgnl}|", Mode::Raw, b"hi\n", t), b"hi\n|");
        assert_eq!(render("${msg}", Mode::Raw, b"hi\n\n", t), b"hi\n");
        assert_eq!(render("${msg}", Mode::Raw, b"", t), b"");
        assert_eq!(
            render("${unix} ${millis} ${micros}", Mode::Raw, b"", t),
            b"1700000123 1700000123456 1700000123456789"
        );
        assert_eq!(render("${unix}", Mode::Raw, b"", -1), b"-1");
        assert!(!Template::compile("a ${msg}").unwrap().needs_time());
        assert!(Template::compile("${millis}").unwrap().needs_time());
        assert!(Template::compile("${strftime:%Y}").unwrap().needs_time());
    }

    /// Was: a `${strftime:...}` whose text passed 64 KiB came out empty, silently.
    #[test]
    fn strftime_over_64_kib_is_kept() {
        let fmt = "%Y".repeat(20_000);
        let t = format!("<${{strftime:{fmt}}}>");
        for mode in [Mode::Raw, Mode::Json] {
            let out = render(&t, mode, b"m", 0);
            assert_eq!(out.len(), 2 + 80_000, "{mode:?}");
            assert!(out[1..80_001]
                .chunks(4)
                .all(|c| c == b"1970" || c == b"1969"));
        }
    }

    #[test]
    fn dollars_are_plain_and_errors_name_the_template() {
        assert_eq!(render("$x $ ${msg}$", Mode::Raw, b"m", 0), b"$x $ m$");
        assert_eq!(render("$$${msg}", Mode::Raw, b"m", 0), b"$$m");
        assert_eq!(render("", Mode::Raw, b"m", 0), b"");
        let e = Template::compile("a ${msg").unwrap_err();
        assert!(e.contains("unterminated") && e.contains("a ${msg"), "{e}");
        let e = Template::compile("a ${foo} b").unwrap_err();
        assert!(e.contains("${foo}") && e.contains("a ${foo} b"), "{e}");
    }

    #[test]
    fn json_escaping_is_valid_and_complete() {
        let mut out = Vec::new();
        json_escape(b"a\"b\\c\td\ne\rf\0g\x01\x1f\x7f h\xffi", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\\"b\\\\c\\td\\ne\\rf\\u0000g\\u0001\\u001f\x7f h\u{fffd}i"
        );
        assert_eq!(
            render("{\"m\":\"${msg}\"}", Mode::Json, "é \"q\"\n".as_bytes(), 0),
            "{\"m\":\"é \\\"q\\\"\"}".as_bytes()
        );
        assert_eq!(
            render("{\"m\":\"${msgnl}\"}", Mode::Json, b"x\n", 0),
            b"{\"m\":\"x\\n\"}"
        );
    }

    /// The run-copying escape writes what a byte-at-a-time one does, on every mix of plain,
    /// escaped, control, multi-byte and invalid bytes.
    #[test]
    fn json_escape_matches_byte_at_a_time() {
        fn reference(bytes: &[u8], out: &mut Vec<u8>) {
            for chunk in bytes.utf8_chunks() {
                for &b in chunk.valid().as_bytes() {
                    match b {
                        b'"' => out.extend_from_slice(b"\\\""),
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        0..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
                        _ => out.push(b),
                    }
                }
                if !chunk.invalid().is_empty() {
                    out.extend_from_slice("\u{fffd}".as_bytes());
                }
            }
        }
        let alphabet: &[&[u8]] = &[
            b"a",
            b"xyz ",
            b"\"",
            b"\\",
            b"\n",
            b"\x01",
            b"\x1f",
            b"\x7f",
            "é".as_bytes(),
            "€".as_bytes(),
            b"\xff",
            b"\xe2\x82",
            b"\0",
            // Long ASCII runs, so that specials fall at every offset of an eight-byte word.
            b"GET /api/v1/items",
            b" ~}|{`_^]@?>=<;:/.-,+*)('&%$#! ",
        ];
        let mut x = 0x2545f4914f6cdd1du64;
        for _ in 0..20000 {
            let mut input = Vec::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for k in 0..(x % 16) {
                input
                    .extend_from_slice(alphabet[((x >> (4 * k)) % alphabet.len() as u64) as usize]);
            }
            let (mut a, mut b) = (b"pre".to_vec(), b"pre".to_vec());
            json_escape(&input, &mut a);
            reference(&input, &mut b);
            assert_eq!(a, b, "{input:?}");
        }
        // Every byte value at every offset of two words of ASCII.
        for v in 0..=255u8 {
            for at in 0..17 {
                let mut input = b"abcdefghijklmnopq".to_vec();
                input[at] = v;
                let (mut a, mut b) = (Vec::new(), Vec::new());
                json_escape(&input, &mut a);
                reference(&input, &mut b);
                assert_eq!(a, b, "{input:?}");
            }
        }
    }

    #[test]
    fn ints() {
        let mut cases = vec![
            0i64,
            7,
            -7,
            10,
            99,
            100,
            -100,
            123456789,
            i64::MAX,
            i64::MIN,
        ];
        // Every digit count, both signs, and the powers of ten around each.
        let mut p = 1i64;
        for _ in 0..18 {
            p *= 10;
            cases.extend([p - 1, p, p + 1, -(p - 1), -p, 1_700_000_000_000_000 + p]);
        }
        for n in cases {
            let mut out = Vec::new();
            push_int(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
