//! rlogd's wire frames as a peer sends them: the frame header (length, kind), HELLO (token,
//! role, a follower's position), BATCH (records, zlib payloads and their announced sizes),
//! ACK, WELCOME.
//!
//! Invariants: no panic, no allocation past the limits given; an accepted HELLO encodes back
//! to itself; an accepted BATCH's records lie inside its payload and re-encode to a batch that
//! decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rlog::proto::frame;

const MAX_FRAME: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    // A stream of frames, as a connection reads them.
    let mut r = data;
    let mut body = Vec::new();
    while let Ok(_kind) = frame::read_frame(&mut r, MAX_FRAME, &mut body) {
        assert!(body.len() < MAX_FRAME);
    }

    if let Ok(h) = frame::Hello::decode(data) {
        assert!(h.token.len() <= frame::MAX_TOKEN);
        assert_eq!(frame::Hello::decode(&h.encode()).unwrap(), h);
    }

    if let Ok(b) = frame::decode_batch(data, MAX_FRAME, 1 << 16) {
        let mut again = Vec::new();
        let raw: usize = b
            .records
            .iter()
            .map(|r| frame::BATCH_RECORD_HEAD + r.len)
            .sum();
        frame::batch_head(
            &mut again,
            b.producer,
            b.first_seq,
            b.records.len() as u32,
            frame::CODEC_NONE,
            raw as u32,
        );
        for rec in &b.records {
            assert!(rec.start + rec.len <= b.data.len());
            frame::batch_record(
                &mut again,
                rec.time_us,
                rec.rtype,
                &b.data[rec.start..rec.start + rec.len],
            );
        }
        let b2 = frame::decode_batch(&again, MAX_FRAME, 1 << 16).unwrap();
        assert_eq!((b2.producer, b2.first_seq), (b.producer, b.first_seq));
        assert_eq!(b2.records.len(), b.records.len());
        for (x, y) in b.records.iter().zip(&b2.records) {
            assert_eq!((x.time_us, x.rtype), (y.time_us, y.rtype));
            assert_eq!(
                &b.data[x.start..x.start + x.len],
                &b2.data[y.start..y.start + y.len]
            );
        }
    }

    if let Ok((p, s)) = frame::decode_ack(data) {
        assert_eq!(frame::encode_ack(p, s)[..], data[..]);
    }
    if let Ok((_v, max)) = frame::decode_welcome(data) {
        assert_eq!(data[2..6], max.to_le_bytes());
    }
    let _ = frame::constant_time_eq(data, &data[data.len() / 2..]);
});
