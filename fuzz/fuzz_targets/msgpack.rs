//! The `msgpack` encoder's item list (`map:N array:N str:S bin:S int:N float:F nil true false msg
//! msgbin msgnl msgbinnl unix micros strftime:FMT`) and the objects it writes.
//!
//! Input: 8 bytes of time (µs), the item list up to a NUL byte, then the message.
//! Invariants: no panic; what an accepted list writes decodes (with rmpv, an independent
//! decoder) as whole msgpack objects that use up every byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rlog::encode::msgpack::Msgpack;

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
    let Ok(m) = Msgpack::compile(&spec) else {
        return;
    };
    let mut out = Vec::new();
    let mut clocks = Vec::new();
    if m.render(msg, time_us, &mut out, &mut clocks).is_err() {
        return;
    }
    assert!(!out.is_empty());
    let mut r = &out[..];
    while !r.is_empty() {
        if let Err(e) = rmpv::decode::read_value(&mut r) {
            panic!("msgpack {spec:?} wrote bytes that do not decode: {e} ({out:02x?})");
        }
    }
});
