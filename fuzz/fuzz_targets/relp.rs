//! What a RELP server (rsyslog's imrelp, or anything on its port) sends a `relp://` output:
//! frames (`TXNR SP COMMAND SP DATALEN [SP DATA] LF`) split by `rlog::output::relp::proto::Parser`
//! from bytes that arrive in pieces, and `rsp` data (`CODE [SP TEXT] [LF CMDDATA]`).
//!
//! First byte: the mode (even: raw bytes; odd: frames written by rlog's writer, read back) and
//! the piece size.
//!
//! Invariants: no panic; no frame's data over the limit (DATALEN over it is an error before
//! the data arrives, so memory stays bounded: `run.sh` sets `-malloc_limit_mb`); the same bytes
//! give the same frames and the same error whatever the piece sizes; frame fields are within
//! the protocol's ranges; what `write_frame` writes reads back as itself, and a response's
//! code, text and offers read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rlog::output::relp::proto::{write_frame, Frame, Parser, Rsp, MAX_TXNR};

/// The limit the relp output gives its parser (`MAX_RECORD`).
const MAX_DATA: usize = 128 * 1024;

/// Frames read off `data` fed `piece` bytes at a time, and whether it ended in an error.
fn frames(data: &[u8], piece: usize) -> (Vec<Frame>, bool) {
    let mut p = Parser::new(MAX_DATA);
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        loop {
            match p.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.txnr <= MAX_TXNR);
                    assert!(
                        !f.command.is_empty() && f.command.bytes().all(|c| c.is_ascii_alphabetic())
                    );
                    assert!(f.data.len() <= MAX_DATA);
                    if f.command == "rsp" {
                        if let Ok(r) = Rsp::parse(&f.data) {
                            assert!(r.code <= 999);
                            assert!(r.cmddata.len() < f.data.len());
                        }
                    }
                    out.push(f);
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    return (out, true);
                }
            }
        }
        if rest.is_empty() {
            return (out, false);
        }
        let room = p.room();
        let n = room.len().min(piece).min(rest.len());
        room[..n].copy_from_slice(&rest[..n]);
        p.filled(n);
        rest = &rest[n..];
    }
}

/// Letters, never empty (commands).
fn command(b: &[u8]) -> String {
    let c: String = b.iter().take(32).map(|x| (b'a' + x % 26) as char).collect();
    format!("c{c}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let piece = 1 + (mode >> 1) as usize % 64;
    if mode & 1 == 0 {
        let whole = frames(rest, usize::MAX);
        let cut = frames(rest, piece);
        assert_eq!(whole, cut, "piece {piece}");
        return;
    }

    // Round trip: frames from rlog's writer, values from the input.
    let mut wire = Vec::new();
    let mut want = Vec::new();
    for (i, part) in rest.split(|&b| b == 0xff).take(16).enumerate() {
        let (head, body) = part.split_at(part.len().min(4));
        let mut t = [0u8; 4];
        t[..head.len()].copy_from_slice(head);
        let txnr = u32::from_le_bytes(t) % (MAX_TXNR + 1);
        let cmd = if i % 3 == 0 {
            "rsp".to_string()
        } else {
            command(&body[..body.len().min(3)])
        };
        write_frame(&mut wire, txnr, &cmd, body);
        want.push(Frame {
            txnr,
            command: cmd,
            data: body.to_vec(),
        });
    }
    let (got, failed) = frames(&wire, piece);
    assert!(!failed);
    assert_eq!(got, want);

    // A response: code, text (one line) and offers.
    let code = u16::from(mode) * 3 % 1000;
    let text: String = String::from_utf8_lossy(rest).replace('\n', " ");
    let rsp = format!("{code:03} {text}\nrelp_version=0\ncommands=syslog");
    let r = Rsp::parse(rsp.as_bytes()).unwrap();
    assert_eq!((r.code, r.text.as_str()), (code, text.as_str()));
    assert_eq!(r.cmddata, b"relp_version=0\ncommands=syslog");
});
