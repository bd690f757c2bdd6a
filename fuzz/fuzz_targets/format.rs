//! The store's record format as `rlogd cat`, a follower or recovery reads it from disk: file
//! headers, record headers and their CRC, index entries, date folder names.
//!
//! Invariants: no panic on any bytes; what decodes encodes back to the same meaning.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rlog::proto::format::{self, Date, Entry};

fuzz_target!(|data: &[u8]| {
    let _ = format::check_header(data, true);
    let _ = format::check_header(data, false);

    if let Ok(h) = format::decode_record_header(data) {
        // A record re-encoded from what the header says carries the same header fields.
        let payload_len = (h.len as usize).min(data.len().saturating_sub(format::RECORD_HEADER));
        let payload = &data[format::RECORD_HEADER..format::RECORD_HEADER + payload_len];
        let mut rec = Vec::new();
        // A flagged record re-encodes from its sender and the payload after the prefix.
        let (sender, payload) = if h.flags & format::FLAG_SENDER != 0 {
            match format::SenderAddr::split(payload) {
                Ok((s, rest)) => (Some(s), rest),
                Err(_) => return,
            }
        } else {
            (None, payload)
        };
        format::encode_record_from(&mut rec, &h.meta, sender.as_ref(), payload);
        let h2 = format::decode_record_header(&rec).unwrap();
        assert_eq!((h2.meta, h2.flags), (h.meta, h.flags));
        assert_eq!(h2.crc, format::record_crc(&rec));
        if payload_len == h.len as usize && h.crc == format::record_crc(&data[..rec.len()]) {
            assert_eq!(rec, &data[..rec.len()]);
        }
    }

    if let Ok(e) = Entry::decode(data) {
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        let _ = e.end();
    }

    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(d) = Date::parse(s) {
            assert_eq!(d.to_string(), s);
        }
    }
    if data.len() >= 4 {
        let n = u32::from_le_bytes(data[..4].try_into().unwrap());
        if let Ok(d) = Date::from_u32(n) {
            assert_eq!(Date::parse(&d.to_string()).unwrap(), d);
            assert_eq!(Date::of_micros(d.end_micros() - 1), d);
        }
    }
    if data.len() >= 8 {
        let us = i64::from_le_bytes(data[..8].try_into().unwrap());
        let d = Date::of_micros(us);
        assert!(Date::from_u32(d.as_u32()).is_ok());
    }
});
