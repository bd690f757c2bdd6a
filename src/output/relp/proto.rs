//! RELP frames (rsyslog's Reliable Event Logging Protocol, as librelp speaks it):
//!
//! ```text
//! FRAME   = TXNR SP COMMAND SP DATALEN [SP DATA] TRAILER
//! TXNR    = 1..999999999 (wraps back to 1)
//! TRAILER = LF
//! rsp DATA = RSP-CODE [SP HUMANMSG] [LF CMDDATA]
//! ```
//!
//! Writing appends a frame to a buffer; [`Parser`] splits bytes read from the server into frames.

use std::io;

/// The largest transaction number; the next one is 1.
pub const MAX_TXNR: u32 = 999_999_999;

/// The transaction number after `t`.
pub fn next_txnr(t: u32) -> u32 {
    if t >= MAX_TXNR {
        1
    } else {
        t + 1
    }
}

/// Appends one frame to `out`.
pub fn write_frame(out: &mut Vec<u8>, txnr: u32, command: &str, data: &[u8]) {
    crate::encode::template::push_int(out, txnr as i64);
    out.push(b' ');
    out.extend_from_slice(command.as_bytes());
    out.push(b' ');
    crate::encode::template::push_int(out, data.len() as i64);
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

/// One frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub txnr: u32,
    pub command: String,
    pub data: Vec<u8>,
}

/// A `rsp` frame's data: its code and the rest of its first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rsp {
    pub code: u16,
    pub text: String,
    /// What follows the first line (the offers of an `open`'s response).
    pub cmddata: Vec<u8>,
}

impl Rsp {
    /// Parses `rsp` data.
    ///
    /// Errors: no three-digit code at its start.
    pub fn parse(data: &[u8]) -> io::Result<Rsp> {
        let (line, cmddata) = match data.iter().position(|&b| b == b'\n') {
            Some(i) => (&data[..i], data[i + 1..].to_vec()),
            None => (data, Vec::new()),
        };
        let code = line
            .get(..3)
            .filter(|c| c.iter().all(u8::is_ascii_digit))
            .and_then(|c| std::str::from_utf8(c).ok()?.parse::<u16>().ok())
            .filter(|_| line.len() == 3 || line[3] == b' ')
            .ok_or_else(|| {
                bad(format!(
                    "RELP response without a status code: \"{}\"",
                    String::from_utf8_lossy(line).escape_debug()
                ))
            })?;
        let text = String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned();
        Ok(Rsp {
            code,
            text,
            cmddata,
        })
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Splits a byte stream into frames. Bytes go in with [`Parser::room`] + [`Parser::filled`];
/// [`Parser::next`] takes out whole frames.
#[derive(Debug)]
pub struct Parser {
    buf: Vec<u8>,
    /// Start of the unparsed bytes.
    at: usize,
    /// Largest DATALEN taken from the server.
    max_data: usize,
}

impl Parser {
    pub fn new(max_data: usize) -> Parser {
        Parser {
            buf: Vec::with_capacity(4096),
            at: 0,
            max_data,
        }
    }

    /// Space to read into (at least 4 KiB); call [`Parser::filled`] with what was read.
    pub fn room(&mut self) -> &mut [u8] {
        if self.at > 0 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + 4096, 0);
        &mut self.buf[len..]
    }

    /// `n` bytes of the last [`Parser::room`] were filled.
    pub fn filled(&mut self, n: usize) {
        let keep = self.buf.len() - 4096 + n;
        self.buf.truncate(keep);
    }

    /// Whether no unparsed byte is left.
    pub fn next_is_empty(&self) -> bool {
        self.at >= self.buf.len()
    }

    /// The next whole frame, `None` if more bytes are needed.
    ///
    /// Errors: a malformed header, a DATALEN over the limit, a missing trailer.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        let b = &self.buf[self.at..];
        let mut fields = [0usize; 2];
        let mut pos = 0;
        // TXNR SP COMMAND SP: two spaces.
        for f in &mut fields {
            match b[pos..].iter().take(40).position(|&c| c == b' ') {
                Some(i) => {
                    *f = pos + i;
                    pos += i + 1;
                }
                None if b.len() - pos < 40 => return Ok(None),
                None => return Err(bad("RELP frame header too long".into())),
            }
        }
        let txnr = parse_num(&b[..fields[0]], "TXNR")?;
        let command = std::str::from_utf8(&b[fields[0] + 1..fields[1]])
            .ok()
            .filter(|c| !c.is_empty() && c.bytes().all(|x| x.is_ascii_alphabetic()))
            .ok_or_else(|| bad("RELP frame with a bad command".into()))?
            .to_string();
        // DATALEN, then SP DATA or directly the trailer.
        let digits = b[pos..].iter().take_while(|c| c.is_ascii_digit()).count();
        if pos + digits >= b.len() {
            return if digits > 9 {
                Err(bad("RELP DATALEN too long".into()))
            } else {
                Ok(None)
            };
        }
        let len = parse_num(&b[pos..pos + digits], "DATALEN")? as usize;
        if len > self.max_data {
            return Err(bad(format!(
                "RELP frame of {len} bytes from the server, more than {}",
                self.max_data
            )));
        }
        pos += digits;
        let data_at = match (len, b[pos]) {
            (0, b'\n') => pos,
            (_, b' ') => pos + 1,
            _ => return Err(bad("RELP frame: bad byte after DATALEN".into())),
        };
        let end = data_at + len;
        if b.len() <= end {
            return Ok(None);
        }
        if b[end] != b'\n' {
            return Err(bad("RELP frame without its LF trailer".into()));
        }
        let frame = Frame {
            txnr,
            command,
            data: b[data_at..end].to_vec(),
        };
        self.at += end + 1;
        Ok(Some(frame))
    }
}

fn parse_num(b: &[u8], what: &str) -> io::Result<u32> {
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return Err(bad(format!(
            "RELP frame with a bad {what} \"{}\"",
            String::from_utf8_lossy(b).escape_debug()
        )));
    }
    Ok(std::str::from_utf8(b)
        .expect("digits")
        .parse()
        .expect("nine digits fit"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(p: &mut Parser, bytes: &[u8]) {
        let room = p.room();
        room[..bytes.len()].copy_from_slice(bytes);
        p.filled(bytes.len());
    }

    #[test]
    fn frames_round_trip() {
        let mut out = Vec::new();
        write_frame(&mut out, 1, "open", b"relp_version=0\ncommands=syslog");
        write_frame(&mut out, 2, "close", b"");
        assert_eq!(
            out,
            b"1 open 30 relp_version=0\ncommands=syslog\n2 close 0\n".to_vec()
        );
        let mut p = Parser::new(1024);
        // Byte by byte: a frame appears only once whole.
        let mut got = Vec::new();
        for &c in &out {
            feed(&mut p, &[c]);
            while let Some(f) = p.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].txnr, 1);
        assert_eq!(got[0].command, "open");
        assert_eq!(got[0].data, b"relp_version=0\ncommands=syslog");
        assert_eq!(got[1].command, "close");
        assert!(got[1].data.is_empty());
    }

    #[test]
    fn responses() {
        let r = Rsp::parse(b"200 OK\nrelp_version=0\ncommands=syslog\n").unwrap();
        assert_eq!((r.code, r.text.as_str()), (200, "OK"));
        assert!(r.cmddata.starts_with(b"relp_version=0"));
        let r = Rsp::parse(b"500 message too large").unwrap();
        assert_eq!((r.code, r.text.as_str()), (500, "message too large"));
        assert_eq!(Rsp::parse(b"200").unwrap().code, 200);
        assert!(Rsp::parse(b"OK").is_err());
        assert!(Rsp::parse(b"2000").is_err());
    }

    #[test]
    fn txnr_wraps_to_one() {
        assert_eq!(next_txnr(1), 2);
        assert_eq!(next_txnr(MAX_TXNR - 1), MAX_TXNR);
        assert_eq!(next_txnr(MAX_TXNR), 1);
    }

    #[test]
    fn malformed_frames_are_errors() {
        for bad in [
            &b"x rsp 0\n"[..],
            b"1 rsp 3 abcd\n",
            b"1 r5p 0\n",
            b"1 rsp 0x\n",
            b"1234567890 rsp 0\n",
        ] {
            let mut p = Parser::new(1024);
            feed(&mut p, bad);
            assert!(p.next_frame().is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let mut p = Parser::new(4);
        feed(&mut p, b"1 rsp 5 ");
        assert!(p
            .next_frame()
            .unwrap_err()
            .to_string()
            .contains("more than 4"));
    }
}
