//! The NATS client protocol, as text: reading what the server sends (INFO, MSG, HMSG, PING,
//! PONG, +OK, -ERR) and writing what a publisher sends (CONNECT, PING, PONG, SUB, HPUB).

use std::io::Write;

/// The longest control line taken from a server (an INFO with many cluster URLs is long).
pub const MAX_CONTROL_LINE: usize = 64 * 1024;
/// The largest message body taken from a server: acknowledgements are small.
const MAX_BODY: usize = 8 << 20;

/// One operation from the server, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// The server's INFO JSON.
    Info(&'a [u8]),
    Msg(Msg<'a>),
    Ping,
    Pong,
    Ok,
    /// `-ERR 'text'`: the text without its quotes.
    Err(&'a str),
}

/// A message delivered to a subscription (MSG, or HMSG with headers).
#[derive(Debug, PartialEq, Eq)]
pub struct Msg<'a> {
    pub subject: &'a [u8],
    pub sid: &'a [u8],
    pub reply: Option<&'a [u8]>,
    /// The header block (`NATS/1.0[ STATUS[ TEXT]]\r\n...\r\n\r\n`), empty for MSG.
    pub headers: &'a [u8],
    pub payload: &'a [u8],
}

/// Reads one operation from the start of `buf`: `Ok(None)` when it is not all there yet,
/// else the operation and the bytes it took.
///
/// Errors: bytes that are no NATS operation (the connection is then of no use).
pub fn parse(buf: &[u8]) -> Result<Option<(Op<'_>, usize)>, String> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_CONTROL_LINE {
            return Err(format!(
                "a protocol line longer than {MAX_CONTROL_LINE} bytes from the server"
            ));
        }
        return Ok(None);
    };
    let line = &buf[..eol];
    let after = eol + 2;
    let (verb, rest) = match line.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&line[..i], trim(&line[i + 1..])),
        None => (line, &line[line.len()..]),
    };
    let op = if verb.eq_ignore_ascii_case(b"PING") {
        Op::Ping
    } else if verb.eq_ignore_ascii_case(b"PONG") {
        Op::Pong
    } else if verb.eq_ignore_ascii_case(b"+OK") {
        Op::Ok
    } else if verb.eq_ignore_ascii_case(b"-ERR") {
        let text = std::str::from_utf8(rest).unwrap_or("(not UTF-8)");
        Op::Err(text.trim_matches('\''))
    } else if verb.eq_ignore_ascii_case(b"INFO") {
        Op::Info(rest)
    } else if verb.eq_ignore_ascii_case(b"MSG") || verb.eq_ignore_ascii_case(b"HMSG") {
        let headed = verb.len() == 4;
        let args: Vec<&[u8]> = rest
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|a| !a.is_empty())
            .collect();
        let sizes = if headed { 2 } else { 1 };
        if args.len() != 2 + sizes && args.len() != 3 + sizes {
            return Err(format!("a malformed {} line from the server", show(verb)));
        }
        let reply = (args.len() == 3 + sizes).then(|| args[2]);
        let num = |a: &[u8]| -> Result<usize, String> {
            std::str::from_utf8(a)
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|&n| n <= MAX_BODY)
                .ok_or_else(|| format!("a bad size in a {} line from the server", show(verb)))
        };
        let total = num(args[args.len() - 1])?;
        let head = if headed {
            num(args[args.len() - 2])?
        } else {
            0
        };
        if head > total {
            return Err("an HMSG whose headers are longer than the message".into());
        }
        if buf.len() < after + total + 2 {
            return Ok(None);
        }
        let body = &buf[after..after + total];
        if &buf[after + total..after + total + 2] != b"\r\n" {
            return Err(format!(
                "a {} body not followed by CRLF from the server",
                show(verb)
            ));
        }
        let m = Msg {
            subject: args[0],
            sid: args[1],
            reply,
            headers: &body[..head],
            payload: &body[head..],
        };
        return Ok(Some((Op::Msg(m), after + total + 2)));
    } else {
        return Err(format!(
            "an unknown operation \"{}\" from the server",
            show(verb)
        ));
    };
    Ok(Some((op, after)))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(32)]).into_owned()
}

/// The status of a header block (`NATS/1.0 503` → 503), if it has one.
pub fn status(headers: &[u8]) -> Option<(u16, String)> {
    let first = headers.split(|&b| b == b'\r').next()?;
    let rest = first.strip_prefix(b"NATS/1.0")?;
    let rest = std::str::from_utf8(rest).ok()?.trim();
    let (code, text) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((code.parse().ok()?, text.trim().to_string()))
}

/// What CONNECT says about this client.
pub struct Connect<'a> {
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    pub token: Option<&'a str>,
    pub tls: bool,
    pub name: &'a str,
}

/// `CONNECT {...}\r\nPING\r\n`: quiet (`verbose` off), headers and no-responders on; the PING
/// is answered once the server has taken the CONNECT (or refused it with -ERR).
pub fn connect(out: &mut Vec<u8>, c: &Connect<'_>) {
    out.extend_from_slice(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":");
    out.extend_from_slice(if c.tls { b"true" } else { b"false" });
    out.extend_from_slice(b",\"lang\":\"rust-rlog\",\"version\":\"");
    out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    out.extend_from_slice(
        b"\",\"protocol\":1,\"headers\":true,\"no_responders\":true,\"echo\":false,\"name\":",
    );
    json_str(out, c.name);
    for (key, v) in [
        ("user", c.user),
        ("pass", c.password),
        ("auth_token", c.token),
    ] {
        if let Some(v) = v {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            json_str(out, v);
        }
    }
    out.extend_from_slice(b"}\r\nPING\r\n");
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// `SUB subject sid`.
pub fn sub(out: &mut Vec<u8>, subject: &str, sid: u32) {
    let _ = write!(out, "SUB {subject} {sid}\r\n");
}

pub fn pong(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PONG\r\n");
}

/// The header block that names a message for JetStream's deduplication.
const MSG_ID_HEAD: &[u8] = b"NATS/1.0\r\nNats-Msg-Id: ";

/// Bytes an HPUB's headers take with a message id of `id_len` bytes.
pub fn header_len(id_len: usize) -> usize {
    MSG_ID_HEAD.len() + id_len + 4
}

/// `HPUB subject reply.N hlen tlen\r\n` + a `Nats-Msg-Id: ID` header + `payload\r\n`.
pub fn hpub(out: &mut Vec<u8>, subject: &str, reply: &str, n: u64, id: &str, payload: &[u8]) {
    let hlen = header_len(id.len());
    let _ = write!(
        out,
        "HPUB {subject} {reply}{n} {hlen} {}\r\n",
        hlen + payload.len()
    );
    out.extend_from_slice(MSG_ID_HEAD);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_operation() {
        let buf = b"INFO {\"a\":1} \r\nPING\r\npong\r\n+OK\r\n-ERR 'Authorization Violation'\r\n\
                    MSG _INBOX.x.1 1 5\r\nhello\r\nHMSG _INBOX.x.2 1 16 18\r\nNATS/1.0 503\r\n\r\nhi\r\n\
                    MSG a 2 r.1 0\r\n\r\n";
        let mut at = 0;
        let mut ops = Vec::new();
        while let Some((op, n)) = parse(&buf[at..]).unwrap() {
            ops.push(format!("{op:?}"));
            if let Op::Msg(m) = &op {
                if m.subject == b"_INBOX.x.2" {
                    assert_eq!(status(m.headers), Some((503, String::new())));
                    assert_eq!(m.payload, b"hi");
                }
                if m.subject == b"a" {
                    assert_eq!(m.reply, Some(&b"r.1"[..]));
                    assert!(m.payload.is_empty());
                }
            }
            at += n;
        }
        assert_eq!(at, buf.len());
        assert_eq!(ops.len(), 8, "{ops:?}");
        assert!(ops[0].contains("Info"));
        assert_eq!(ops[1], "Ping");
        assert_eq!(ops[2], "Pong");
        assert_eq!(ops[4], "Err(\"Authorization Violation\")");
    }

    #[test]
    fn waits_for_what_is_not_all_there() {
        let full = b"HMSG _INBOX.x.2 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse(full).unwrap().is_some());
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse(b"HELLO\r\n")
            .unwrap_err()
            .contains("unknown operation"));
        assert!(parse(b"MSG a\r\n").unwrap_err().contains("malformed"));
        assert!(parse(b"MSG a 1 x\r\n").unwrap_err().contains("bad size"));
        assert!(parse(b"MSG a 1 2\r\nabXY").unwrap_err().contains("CRLF"));
        assert!(parse(b"HMSG a 1 5 2\r\n")
            .unwrap_err()
            .contains("headers are longer"));
        assert!(parse(&vec![b'x'; MAX_CONTROL_LINE + 1]).is_err());
    }

    #[test]
    fn statuses() {
        assert_eq!(
            status(b"NATS/1.0 503 No Responders\r\n\r\n"),
            Some((503, "No Responders".into()))
        );
        assert_eq!(status(b"NATS/1.0\r\nA: b\r\n\r\n"), None);
    }

    #[test]
    fn writes_connect_and_hpub() {
        let mut out = Vec::new();
        connect(
            &mut out,
            &Connect {
                user: Some("u\"1"),
                password: Some("p"),
                token: None,
                tls: false,
                name: "rlog",
            },
        );
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("CONNECT {\"verbose\":false,\"pedantic\":false,"),
            "{s}"
        );
        assert!(s.contains("\"headers\":true,\"no_responders\":true"), "{s}");
        assert!(s.contains("\"user\":\"u\\\"1\",\"pass\":\"p\"}"), "{s}");
        assert!(s.ends_with("}\r\nPING\r\n"));
        let json = &s["CONNECT ".len()..s.find("\r\n").unwrap()];
        super::super::json::parse(json.as_bytes()).unwrap();

        let mut out = Vec::new();
        hpub(&mut out, "logs", "_INBOX.ab.", 7, "ff-9", b"hello");
        let hl = header_len(4);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "HPUB logs _INBOX.ab.7 {hl} {}\r\nNATS/1.0\r\nNats-Msg-Id: ff-9\r\n\r\nhello\r\n",
                hl + 5
            )
        );
        assert_eq!(hl, "NATS/1.0\r\nNats-Msg-Id: ff-9\r\n\r\n".len());
    }
}
