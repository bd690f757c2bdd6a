//! The `msgpack` encoder (uWSGI's msgpack plugin): a `|`-separated list of items compiled once
//! into a list, written per record.
//!
//! Items: `map:N array:N str:S bin:S int:N float:F nil true false` and the dynamic `msg msgbin
//! msgnl msgbinnl unix micros strftime:FMT`. The bytes follow the plugin's choices exactly (ints
//! as `d0`..`d3` except positive and small negative fixints; floats in [-126, 127] as float32,
//! others float64; strings as fixstr, `str16`, `str32` — never `str8`, which old decoders lack),
//! so every decoder reads identical values, floats included. Unlike the plugin, an unknown item,
//! a number that does not parse, or a map/array whose items are missing is an init error (the
//! plugin skips, reads 0, or sends a truncated object); empty items (`a||b`) are skipped as the
//! plugin skips them.

use super::clock::{ClockCache, Strftime};
use super::template::strip_nl;

#[derive(Debug, Clone)]
enum Item {
    Map(u32),
    Array(u32),
    Str(Vec<u8>),
    Bin(Vec<u8>),
    Int(i64),
    Float(f64),
    Nil,
    True,
    False,
    Msg,
    MsgBin,
    MsgNl,
    MsgBinNl,
    Unix,
    Micros,
    Strftime(Strftime),
}

/// A compiled msgpack item list.
#[derive(Debug, Clone)]
pub struct Msgpack {
    items: Vec<Item>,
}

impl Msgpack {
    /// Compiles `spec` (`map:2|str:foo|msg|...`).
    ///
    /// Errors: an unknown item, a bad number, or containers left incomplete, naming the item.
    pub fn compile(spec: &str) -> Result<Msgpack, String> {
        let mut items = Vec::new();
        // Items still owed to the open containers, innermost last (with the opener's text).
        let mut owed: Vec<(u64, &str)> = Vec::new();
        for tok in spec.split('|').filter(|t| !t.is_empty()) {
            let (kind, arg) = match tok.split_once(':') {
                Some((k, a)) => (k, Some(a)),
                None => (tok, None),
            };
            let bad = |what: &str| format!("msgpack item \"{tok}\": {what}");
            let count = |a: Option<&str>| -> Result<u32, String> {
                a.map_or(Ok(0), |a| {
                    a.parse::<u32>()
                        .map_err(|_| bad("expected a count 0..4294967295"))
                })
            };
            let item = match kind {
                "map" => Item::Map(count(arg)?),
                "array" => Item::Array(count(arg)?),
                "str" => Item::Str(arg.unwrap_or("").as_bytes().to_vec()),
                "bin" => Item::Bin(arg.unwrap_or("").as_bytes().to_vec()),
                "int" => Item::Int(arg.map_or(Ok(0), |a| {
                    a.trim().parse::<i64>().map_err(|_| bad("expected a 64-bit integer"))
                })?),
                "float" => Item::Float(arg.map_or(Ok(0.0), |a| {
                    a.trim().parse::<f64>().map_err(|_| bad("expected a number"))
                })?),
                "nil" => Item::Nil,
                "true" => Item::True,
                "false" => Item::False,
                "msg" => Item::Msg,
                "msgbin" => Item::MsgBin,
                "msgnl" => Item::MsgNl,
                "msgbinnl" => Item::MsgBinNl,
                "unix" => Item::Unix,
                "micros" => Item::Micros,
                "strftime" => Item::Strftime(Strftime::new(arg.unwrap_or(""))?),
                _ => return Err(bad(
                    "unknown item (known: map array str bin int float nil true false msg msgbin msgnl msgbinnl unix micros strftime)",
                )),
            };
            // This item fills one slot of the innermost open container...
            if let Some((n, _)) = owed.last_mut() {
                *n -= 1;
                if *n == 0 {
                    owed.pop();
                }
            }
            // ...and a container opens slots of its own.
            match item {
                Item::Map(n) if n > 0 => owed.push((2 * n as u64, tok)),
                Item::Array(n) if n > 0 => owed.push((n as u64, tok)),
                _ => {}
            }
            items.push(item);
        }
        if let Some((n, opener)) = owed.last() {
            return Err(format!(
                "msgpack \"{spec}\": \"{opener}\" is missing {n} item(s) at the end of the list"
            ));
        }
        if items.is_empty() {
            return Err(format!("msgpack \"{spec}\": no items"));
        }
        Ok(Msgpack { items })
    }

    /// Whether some item needs the record's time.
    pub fn needs_time(&self) -> bool {
        self.items
            .iter()
            .any(|i| matches!(i, Item::Unix | Item::Micros | Item::Strftime(_)))
    }

    /// Whether some item needs the time below the second (`micros`).
    pub fn needs_subsecond(&self) -> bool {
        self.items.iter().any(|i| matches!(i, Item::Micros))
    }

    /// Appends the encoded object(s) for `msg` logged at `time_us`; `clocks` holds the worker's
    /// cache for each strftime item (grown as needed).
    ///
    /// Errors: a strftime item's text longer than [`super::clock::MAX_TEXT`].
    pub fn render(
        &self,
        msg: &[u8],
        time_us: i64,
        out: &mut Vec<u8>,
        clocks: &mut Vec<ClockCache>,
    ) -> Result<(), String> {
        let mut k = 0;
        for item in &self.items {
            match item {
                Item::Map(n) => len_header(out, *n, 0x80, 0xde, 0xdf),
                Item::Array(n) => len_header(out, *n, 0x90, 0xdc, 0xdd),
                Item::Str(s) => put_str(out, s),
                Item::Bin(b) => put_bin(out, b),
                Item::Int(n) => put_int(out, *n),
                Item::Float(f) => put_float(out, *f),
                Item::Nil => out.push(0xc0),
                Item::True => out.push(0xc3),
                Item::False => out.push(0xc2),
                Item::Msg => put_str(out, strip_nl(msg)),
                Item::MsgBin => put_bin(out, strip_nl(msg)),
                Item::MsgNl => put_str(out, msg),
                Item::MsgBinNl => put_bin(out, msg),
                Item::Unix => put_int(out, time_us.div_euclid(1_000_000)),
                Item::Micros => put_int(out, time_us),
                Item::Strftime(s) => {
                    if clocks.len() <= k {
                        clocks.resize_with(k + 1, ClockCache::default);
                    }
                    put_str(out, s.text(time_us.div_euclid(1_000_000), &mut clocks[k])?);
                    k += 1;
                }
            }
        }
        Ok(())
    }
}

fn len_header(out: &mut Vec<u8>, n: u32, fix: u8, b16: u8, b32: u8) {
    if n <= 15 {
        out.push(fix + n as u8);
    } else if n <= 0xffff {
        out.push(b16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(b32);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n <= 31 {
        out.push(0xa0 + n as u8);
    } else if n <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

fn put_bin(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    if n <= 0xff {
        out.push(0xc4);
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(0xc5);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

/// The plugin's integer encoding (`uwsgi_buffer_msgpack_int`).
fn put_int(out: &mut Vec<u8>, n: i64) {
    if n > 0 && n <= 127 {
        out.push(n as u8);
    } else if (-31..0).contains(&n) {
        out.push(0xe0 | (n as i8 as u8));
    } else if (-127..=127).contains(&n) {
        out.push(0xd0);
        out.push(n as i8 as u8);
    } else if (-32767..=32767).contains(&n) {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if (-2147483648..=2147483647).contains(&n) {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// The plugin's float encoding: float32 for [-126, 127], float64 otherwise.
fn put_float(out: &mut Vec<u8>, f: f64) {
    if (-126.0..=127.0).contains(&f) {
        out.push(0xca);
        out.extend_from_slice(&(f as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&f.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(spec: &str, msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Msgpack::compile(spec)
            .unwrap()
            .render(msg, 1_700_000_000_123_456, &mut out, &mut Vec::new())
            .unwrap();
        out
    }

    /// Was: a `strftime:` item whose text passed 64 KiB was sent as an empty string.
    #[test]
    fn strftime_over_64_kib_is_a_whole_str32() {
        let out = enc(
            &format!("array:2|strftime:{}|nil", "%Y".repeat(20_000)),
            b"",
        );
        assert_eq!(&out[..6], b"\x92\xdb\x00\x01\x38\x80");
        assert_eq!(out.len(), 6 + 80_000 + 1);
        assert!(out[6..80_006].chunks(4).all(|c| c == b"2023"));
    }

    #[test]
    fn the_docs_example() {
        let out = enc("map:2|str:foo|str:bar|str:test|int:17", b"");
        assert_eq!(out, b"\x82\xa3foo\xa3bar\xa4test\x11");
        let out = enc("map:2|str:message|msg|str:t|unix", b"hi\n");
        assert_eq!(out, b"\x82\xa7message\xa2hi\xa1t\xd2\x65\x53\xf1\x00");
    }

    #[test]
    fn ints_follow_the_plugin() {
        let cases: &[(i64, &[u8])] = &[
            (0, b"\xd0\x00"),
            (1, b"\x01"),
            (127, b"\x7f"),
            (-1, b"\xff"),
            (-31, b"\xe1"),
            (-32, b"\xd0\xe0"),
            (-127, b"\xd0\x81"),
            (128, b"\xd1\x00\x80"),
            (-128, b"\xd1\xff\x80"),
            (-32768, b"\xd2\xff\xff\x80\x00"),
            (i64::MAX, b"\xd3\x7f\xff\xff\xff\xff\xff\xff\xff"),
        ];
        for (n, want) in cases {
            let mut out = Vec::new();
            put_int(&mut out, *n);
            assert_eq!(&out, want, "{n}");
        }
    }

    #[test]
    fn floats_strings_bins() {
        assert_eq!(
            enc("float:17.30", b""),
            [&[0xca][..], &17.30f32.to_be_bytes()].concat()
        );
        assert_eq!(
            enc("float:127.5", b""),
            [&[0xcb][..], &127.5f64.to_be_bytes()].concat()
        );
        let long = "x".repeat(40);
        assert_eq!(&enc(&format!("str:{long}"), b"")[..3], b"\xda\x00\x28");
        assert_eq!(enc("bin:ab", b""), b"\xc4\x02ab");
        assert_eq!(
            enc("msgnl|msgbinnl|msgbin", b"a\n"),
            b"\xa2a\n\xc4\x02a\n\xc4\x01a"
        );
        assert_eq!(enc("str", b""), b"\xa0");
        assert_eq!(enc("str:a:b", b""), b"\xa3a:b");
        assert_eq!(enc("nil||true|false", b""), b"\xc0\xc3\xc2");
        assert_eq!(
            &enc(
                "array:16|nil|nil|nil|nil|nil|nil|nil|nil|nil|nil|nil|nil|nil|nil|nil|nil",
                b""
            )[..3],
            b"\xdc\x00\x10"
        );
    }

    #[test]
    fn errors_name_the_item() {
        assert!(Msgpack::compile("map:2|str:a")
            .unwrap_err()
            .contains("\"map:2\" is missing 3"));
        assert!(Msgpack::compile("int:x").unwrap_err().contains("\"int:x\""));
        assert!(Msgpack::compile("bogus")
            .unwrap_err()
            .contains("unknown item"));
        assert!(Msgpack::compile("map:-1").is_err());
        assert!(Msgpack::compile("").is_err());
        assert!(Msgpack::compile("array:1|map:1|str:a|array:0").is_ok());
        assert!(Msgpack::compile("msg|unix").unwrap().needs_time());
        assert!(!Msgpack::compile("msg").unwrap().needs_time());
    }
}
