//! What a NATS server (or anything answering on its port) sends a `nats://` output: protocol
//! lines (INFO, MSG, HMSG, PING, PONG, +OK, -ERR) with their sizes and bodies, the INFO JSON,
//! header blocks with a status (`NATS/1.0 503`), and JetStream's PubAck or API error JSON —
//! `rlog::output::nats::{proto, json, ack}`.
//!
//! First byte: the mode. 0 mod 3: a byte stream parsed op by op, as the connection does;
//! 1: the rest is JSON (read as INFO and as a reply); 2: what rlog writes (HPUB, CONNECT)
//! from values the input chooses, read back.
//!
//! Invariants: no panic; each op takes at least one byte and no more than there are; any
//! prefix of a whole op is "not all there yet" (never an error, never another op); a MSG's
//! parts lie in the bytes given; the JSON reader accepts every document serde_json accepts
//! (nested 32 deep at most) and reads the same values; an HPUB's headers and payload read back
//! as written; a CONNECT is JSON carrying the name and credentials given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rlog::output::nats::ack;
use rlog::output::nats::json::{self, Value};
use rlog::output::nats::proto::{self, Op};

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether rlog's reading `a` of a document is serde_json's `b`. Objects with a repeated key
/// are not compared (serde_json keeps the last, rlog the first; a NATS server repeats none).
fn same(a: &Value, b: &serde_json::Value) -> bool {
    match (a, b) {
        (Value::Null, serde_json::Value::Null) => true,
        (Value::Bool(x), serde_json::Value::Bool(y)) => x == y,
        (Value::Num(_), serde_json::Value::Number(n)) => a.as_u64() == n.as_u64(),
        (Value::Str(x), serde_json::Value::String(y)) => x == y,
        (Value::Arr(x), serde_json::Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Obj(m), serde_json::Value::Object(o)) => {
            let mut keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
            keys.sort_unstable();
            keys.dedup();
            if keys.len() != m.len() {
                return true;
            }
            m.len() == o.len() && m.iter().all(|(k, v)| o.get(k).is_some_and(|w| same(v, w)))
        }
        _ => false,
    }
}

fn check_json(text: &[u8]) {
    let ours = json::parse(text);
    if let Ok(theirs) = serde_json::from_slice::<serde_json::Value>(text) {
        if depth(&theirs) <= 32 {
            let v = ours.unwrap_or_else(|e| panic!("refused JSON serde_json reads: {e}"));
            assert!(same(&v, &theirs), "{v:?} != {theirs}");
        }
    }
}

fn stream(buf: &[u8], cut: u8) {
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        let (op, n) = match proto::parse(rest) {
            Ok(Some(x)) => x,
            Ok(None) => return,
            Err(e) => {
                assert!(!e.is_empty());
                return;
            }
        };
        assert!(n > 0 && n <= rest.len());
        // Alone, the op reads the same; any prefix of it is not all there yet.
        let (again, m) = proto::parse(&rest[..n]).unwrap().unwrap();
        assert_eq!((&again, m), (&op, n));
        let k = cut as usize % n;
        assert_eq!(proto::parse(&rest[..k]), Ok(None), "prefix {k} of {n}");
        match op {
            Op::Msg(msg) => {
                let inside = |s: &[u8]| {
                    s.is_empty()
                        || rest.as_ptr_range().start <= s.as_ptr()
                            && s.as_ptr_range().end <= rest[..n].as_ptr_range().end
                };
                assert!(
                    inside(msg.subject)
                        && inside(msg.sid)
                        && inside(msg.headers)
                        && inside(msg.payload)
                );
                let _ = proto::status(msg.headers);
                let _ = ack::read(msg.headers, msg.payload);
            }
            Op::Info(j) => check_json(j),
            // The text, or a fixed word for one that is not UTF-8.
            Op::Err(t) => assert!(t.len() < n || t == "(not UTF-8)", "{t:?}"),
            Op::Ping | Op::Pong | Op::Ok => {}
        }
        at += n;
    }
}

/// Letters and dots, never empty (subjects, inboxes).
fn token(b: &[u8]) -> String {
    let t: String = b
        .iter()
        .map(|c| {
            if c % 7 == 0 {
                '.'
            } else {
                (b'a' + c % 26) as char
            }
        })
        .collect();
    format!("s{t}")
}

fn written(data: &[u8]) {
    let mut parts = data.splitn(5, |&b| b == 0);
    let subject = token(parts.next().unwrap_or_default());
    let reply = token(parts.next().unwrap_or_default());
    let id = String::from_utf8_lossy(parts.next().unwrap_or_default()).replace(['\r', '\n'], "");
    let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let payload = parts.next().unwrap_or_default();

    // HPUB, read back as the HMSG a subscriber would get (the reply subject in the sid's place).
    let mut out = Vec::new();
    proto::hpub(&mut out, &subject, &reply, 7, &id, payload);
    assert!(out.starts_with(b"HPUB "));
    out[1..4].copy_from_slice(b"MSG");
    let (op, n) = proto::parse(&out).unwrap().expect("a whole HPUB");
    assert_eq!(n, out.len());
    let Op::Msg(m) = op else { panic!("{op:?}") };
    assert_eq!(m.subject, subject.as_bytes());
    assert_eq!(m.sid, format!("{reply}7").as_bytes());
    assert_eq!(m.payload, payload);
    assert_eq!(m.headers.len(), proto::header_len(id.len()));
    assert_eq!(proto::status(m.headers), None);

    // CONNECT: JSON with the name and credentials given.
    let mut out = Vec::new();
    proto::connect(
        &mut out,
        &proto::Connect {
            user: Some(&id),
            password: Some(&name),
            token: None,
            tls: false,
            name: &name,
        },
    );
    let line = &out[..out.windows(2).position(|w| w == b"\r\n").unwrap()];
    let j = line.strip_prefix(b"CONNECT ").unwrap();
    let theirs: serde_json::Value = serde_json::from_slice(j).expect("CONNECT is JSON");
    assert_eq!(theirs["name"], serde_json::Value::String(name.clone()));
    assert_eq!(theirs["user"], serde_json::Value::String(id.clone()));
    assert_eq!(theirs["pass"], serde_json::Value::String(name.clone()));
    let ours = json::parse(j).unwrap();
    assert_eq!(
        ours.get("name").and_then(Value::as_str),
        Some(name.as_str())
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => stream(rest, mode / 3),
        1 => {
            check_json(rest);
            let _ = ack::read(b"", rest);
        }
        _ => written(rest),
    }
});
