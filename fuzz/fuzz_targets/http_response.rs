//! HTTP/1.1 responses as a server (or anything on the path of a plain `http://` output) sends
//! them: status line, headers, bodies by `Content-Length`, chunked (sizes, extensions,
//! trailers) or up to the close, 1xx interim responses, pipelined bytes after a response —
//! read by `rlog::output::http::response::read_response`, the function the http, Loki,
//! Elasticsearch, OTLP and ClickHouse outputs read every answer with, from a reader that hands
//! the bytes over in pieces of sizes the input chooses (TCP may cut anywhere).
//!
//! First byte: the mode (even: raw bytes; odd: a response built from the input, then parsed
//! back) and the piece size.
//!
//! Invariants: no panic, no hang; a body is never longer than the bytes given; a response
//! declared reusable left no byte unread; the same bytes give the same result whatever the
//! piece sizes; a well-formed response (any status, reason, headers, body and framing) reads
//! back as itself, and one pipelined after it reads back too.
#![no_main]

use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use rlog::output::http::response::{read_response, Response};

/// Hands `data` over `piece` bytes at a time (0: all at once), then end of stream.
struct Pieces<'a> {
    data: &'a [u8],
    piece: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = self.data.len().min(buf.len());
        if self.piece > 0 {
            n = n.min(self.piece);
        }
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// What reading responses off `data` until an error or the end gives: each response (status,
/// reason, headers, body, reusable) or the error's kind, in order.
fn read_all(data: &[u8], piece: usize) -> Vec<Result<(Response, bool), io::ErrorKind>> {
    let mut src = Pieces { data, piece };
    let mut rbuf = Vec::new();
    let mut out = Vec::new();
    for _ in 0..8 {
        match read_response(&mut src, &mut rbuf, None) {
            Ok((resp, reusable)) => {
                assert!(
                    resp.body.len() <= data.len(),
                    "a body longer than the input"
                );
                assert!(!(100..200).contains(&resp.status) || resp.status == 101);
                if reusable {
                    assert!(rbuf.is_empty(), "reusable with bytes left unread");
                }
                let again = reusable || !rbuf.is_empty() || !src.data.is_empty();
                out.push(Ok((resp, reusable)));
                if !again {
                    break;
                }
            }
            Err(e) => {
                out.push(Err(e.kind()));
                break;
            }
        }
    }
    out
}

fn same(
    a: &[Result<(Response, bool), io::ErrorKind>],
    b: &[Result<(Response, bool), io::ErrorKind>],
) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            // Not `reusable`: whether bytes after a response were read with it depends on the
            // pieces (the connection's liveness check sees the others on the socket).
            (Ok((r, _)), Ok((s, _))) => {
                r.status == s.status
                    && r.reason == s.reason
                    && r.headers == s.headers
                    && r.body == s.body
            }
            (Err(e), Err(f)) => e == f,
            _ => false,
        })
}

/// Takes bytes off the front of the input.
struct Cut<'a>(&'a [u8]);

impl<'a> Cut<'a> {
    fn byte(&mut self) -> u8 {
        let b = self.0.first().copied().unwrap_or(0);
        self.0 = self.0.get(1..).unwrap_or(&[]);
        b
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

/// A header name: lower-case letters ending in `x` (never one of the framing headers).
fn token(c: &mut Cut, max: u8) -> String {
    let n = 1 + (c.byte() % max) as usize;
    c.bytes(n)
        .iter()
        .map(|b| (b'a' + b % 26) as char)
        .collect::<String>()
        + "x"
}

/// Printable text without leading or trailing blanks (reason phrases, header values).
fn text(c: &mut Cut, max: u8) -> String {
    let n = (c.byte() % max) as usize;
    let t: String = c.bytes(n).iter().map(|b| (b' ' + b % 95) as char).collect();
    t.trim().to_string()
}

struct Built {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    close: bool,
}

/// One response built from the input, serialized to `wire`.
fn build(c: &mut Cut, wire: &mut Vec<u8>) -> Built {
    let status = [
        200u16, 201, 202, 204, 206, 301, 400, 404, 409, 413, 429, 500, 503,
    ][c.byte() as usize % 13];
    let status = if c.byte() % 4 == 0 {
        200 + (c.byte() as u16 * 3) % 400
    } else {
        status
    };
    let reason = text(c, 24);
    let mut headers = Vec::new();
    for _ in 0..c.byte() % 6 {
        let name = token(c, 12);
        headers.push((name, text(c, 40)));
    }
    let body_allowed = !(status == 204 || status == 304);
    // 0 length, 1 chunked, 2 up to the close, 3 none (204, 304)
    let framing = if body_allowed { c.byte() % 3 } else { 3 };
    let close = framing == 2 || c.byte() % 5 == 0;
    let blen = (c.byte() as usize) * 4 + c.byte() as usize % 4;
    let body = if body_allowed {
        c.bytes(blen).to_vec()
    } else {
        Vec::new()
    };
    wire.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    for (n, v) in &headers {
        // Header names go out in mixed case: they are read lower-cased.
        let mixed: String = n
            .chars()
            .enumerate()
            .map(|(i, ch)| {
                if i % 2 == 0 {
                    ch.to_ascii_uppercase()
                } else {
                    ch
                }
            })
            .collect();
        wire.extend_from_slice(format!("{mixed}: {v}\r\n").as_bytes());
    }
    if close {
        wire.extend_from_slice(b"Connection: close\r\n");
    }
    match framing {
        0 => {
            wire.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            wire.extend_from_slice(&body);
        }
        1 => {
            wire.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            let mut rest = &body[..];
            while !rest.is_empty() {
                let n = (1 + c.byte() as usize * 2).min(rest.len());
                let ext = if c.byte() % 3 == 0 { ";name=value" } else { "" };
                wire.extend_from_slice(format!("{n:x}{ext}\r\n").as_bytes());
                wire.extend_from_slice(&rest[..n]);
                wire.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            wire.extend_from_slice(b"0\r\n");
            if c.byte() % 3 == 0 {
                wire.extend_from_slice(b"X-Trailer: t\r\n");
            }
            wire.extend_from_slice(b"\r\n");
        }
        2 => {
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(&body);
        }
        _ => wire.extend_from_slice(b"\r\n"),
    }
    Built {
        status,
        reason,
        headers,
        body,
        close: close || framing == 2,
    }
}

fn check(b: &Built, got: &Response) {
    assert_eq!(got.status, b.status);
    assert_eq!(got.reason, b.reason);
    assert_eq!(got.body, b.body);
    for (n, v) in &b.headers {
        assert!(
            got.headers.iter().any(|(m, w)| m == n && w == v),
            "header {n}: {v} lost: {:?}",
            got.headers
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let piece = (mode >> 1) as usize % 17; // 0: whole reads
    if mode & 1 == 0 {
        let whole = read_all(rest, 0);
        let cut = read_all(rest, piece.max(1));
        assert!(same(&whole, &cut), "piece {piece}: {whole:?} != {cut:?}");
        return;
    }

    // Round trip: maybe a 100 Continue, a response, maybe another after it.
    let mut c = Cut(rest);
    let mut wire = Vec::new();
    if c.byte() % 4 == 0 {
        wire.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let first = build(&mut c, &mut wire);
    let second_at = wire.len();
    let second = if !first.close && c.byte() % 2 == 0 {
        Some(build(&mut c, &mut wire))
    } else {
        None
    };
    let mut src = Pieces { data: &wire, piece };
    let mut rbuf = Vec::new();
    let (got, reusable) = read_response(&mut src, &mut rbuf, None)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&wire)));
    check(&first, &got);
    if first.close {
        assert!(!reusable);
    }
    if let Some(second) = second {
        assert!(rbuf.len() + src.data.len() == wire.len() - second_at);
        let (got, reusable) = read_response(&mut src, &mut rbuf, None)
            .unwrap_or_else(|e| panic!("second: {e}: {:?}", String::from_utf8_lossy(&wire)));
        check(&second, &got);
        assert_eq!(reusable, !second.close);
    } else if !first.close {
        assert!(reusable);
    }
});
