//! The encoder chain (`log-encoder` lines) and what it makes of a message: `prefix suffix nl
//! gzip compress format json msgpack`, `${...}` templates, strftime formats.
//!
//! Input: 8 bytes of time (µs), then encoder lines (one per text line) up to a NUL byte, then the
//! message. Invariants: no panic; `json` escaping always gives a valid JSON string that decodes
//! to the message (invalid UTF-8 as U+FFFD); `gzip` and `compress` decompress to their input;
//! an encoded record is never empty.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use rlog::encode::{template, Chain, Encoder, Scratch};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let time_us = i64::from_le_bytes(data[..8].try_into().unwrap());
    let rest = &data[8..];
    let (spec, msg) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let spec = String::from_utf8_lossy(spec);
    let specs: Vec<_> = spec
        .lines()
        .take(8)
        .filter_map(|l| Encoder::parse(l).ok())
        .collect();
    let mut scratch = Scratch::default();
    for logger in [None, Some("a")] {
        let chain = Chain::for_logger(&specs, logger);
        // Twice: the second run reuses the scratch buffers, deflate streams and clock caches.
        for _ in 0..2 {
            if let Ok(rec) = chain.encode(msg, time_us, &mut scratch) {
                assert!(chain.is_empty() || !rec.is_empty());
            }
        }
    }

    // The SPEC's promise: a `json` template that is valid JSON with its variables in strings
    // (numbers for unix/millis/micros) always yields valid JSON, whatever the message and the
    // strftime format (here the first encoder line, without "}" and NUL).
    let fmt: String = spec
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|&c| c != '}' && c != '\0')
        .take(64)
        .collect();
    let tpl = format!(
        "json {{\"m\":\"${{msg}}\",\"n\":\"${{msgnl}}\",\"t\":\"${{strftime:{fmt}}}\",\"u\":${{unix}},\"ms\":${{millis}},\"us\":${{micros}}}}"
    );
    let enc = match Encoder::parse(&tpl) {
        Ok(enc) => enc,
        // A strftime width past 16 MiB (`%99999999Y`) is refused at init.
        Err(e) if e.contains("more than") => return,
        Err(e) => panic!("{tpl}: {e}"),
    };
    let chain = Chain::for_logger(&[enc], None);
    let rec = chain.encode(msg, time_us, &mut scratch).unwrap();
    let v: serde_json::Value = serde_json::from_slice(rec).unwrap_or_else(|e| {
        panic!(
            "json encoder gave invalid JSON ({e}): {:?}",
            String::from_utf8_lossy(rec)
        )
    });
    let stripped = msg.strip_suffix(b"\n").unwrap_or(msg);
    assert_eq!(v["m"].as_str().unwrap(), String::from_utf8_lossy(stripped));
    assert_eq!(v["n"].as_str().unwrap(), String::from_utf8_lossy(msg));
    assert_eq!(v["u"].as_i64().unwrap(), time_us.div_euclid(1_000_000));
    assert_eq!(v["us"].as_i64().unwrap(), time_us);

    // json: always a valid JSON string, and the message's text.
    let mut out = b"\"".to_vec();
    template::json_escape(msg, &mut out);
    out.push(b'"');
    let s: String = serde_json::from_slice(&out).expect("json_escape gave invalid JSON");
    assert_eq!(s, String::from_utf8_lossy(msg));

    // gzip / compress: lossless.
    if !msg.is_empty() {
        for (name, gz) in [("gzip", true), ("compress", false)] {
            let chain = Chain::for_logger(&[Encoder::parse(name).unwrap()], None);
            let rec = chain.encode(msg, time_us, &mut scratch).unwrap().to_vec();
            let mut back = Vec::new();
            if gz {
                flate2::read::GzDecoder::new(&rec[..])
                    .read_to_end(&mut back)
                    .unwrap();
            } else {
                flate2::read::ZlibDecoder::new(&rec[..])
                    .read_to_end(&mut back)
                    .unwrap();
            }
            assert_eq!(back, msg);
        }
    }
});
