//! Reading one HTTP/1.1 response whole from a byte stream: head parsed with `httparse`, body
//! by `Content-Length`, chunked, or up to the close. Separate from the connection
//! ([`super::client::Conn`]) so that any reader can be parsed (the `http_response` fuzz target
//! feeds it bytes in pieces).

use std::io::{self, Read};
use std::time::Instant;

/// The longest response head taken.
const MAX_HEAD: usize = 64 << 10;
/// The longest response body taken (an Elasticsearch `_bulk` answer for 10 000 items is a few
/// MB).
pub const MAX_BODY: usize = 64 << 20;
const MAX_HEADERS: usize = 64;
/// The longest chunk-size line taken.
const MAX_CHUNK_LINE: usize = 4096;

/// A response, read whole.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The start of the body as text, for messages.
    pub fn body_text(&self, max: usize) -> String {
        let b = &self.body[..self.body.len().min(max)];
        let t = String::from_utf8_lossy(b);
        let t = t.trim();
        if self.body.len() > max {
            format!("{t}...")
        } else {
            t.to_string()
        }
    }
}

fn bad_response(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads the answer to one request from `stream`: 1xx interim responses (but 101) are skipped,
/// the final one is returned with whether the connection may carry another request (the
/// response allowed it and no byte follows it). `rbuf` holds bytes already read before the
/// call, and on return the bytes read past the response.
///
/// Errors: the stream failed or closed early, `until` passed (looked at before each read), or
/// the bytes are not an HTTP/1.x response within the limits (head 64 KiB, body 64 MiB).
pub fn read_response<R: Read>(
    stream: &mut R,
    rbuf: &mut Vec<u8>,
    until: Option<Instant>,
) -> io::Result<(Response, bool)> {
    let mut r = Reading {
        stream,
        rbuf,
        until,
    };
    loop {
        let (resp, head_len, framing) = r.read_head()?;
        r.rbuf.drain(..head_len);
        if (100..200).contains(&resp.status) && resp.status != 101 {
            continue; // 100 Continue and friends: the real answer follows
        }
        return r.read_body(resp, framing);
    }
}

struct Reading<'a, R> {
    stream: &'a mut R,
    /// Bytes read and not yet used.
    rbuf: &'a mut Vec<u8>,
    until: Option<Instant>,
}

impl<R: Read> Reading<'_, R> {
    /// Reads more bytes into `rbuf`. Errors: the peer closed (`UnexpectedEof`), a timeout.
    fn fill(&mut self) -> io::Result<()> {
        super::super::past(self.until)?;
        let mut buf = [0u8; 16 << 10];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection before the whole response",
                    ))
                }
                Ok(n) => {
                    self.rbuf.extend_from_slice(&buf[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn read_head(&mut self) -> io::Result<(Response, usize, BodyLen)> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut r = httparse::Response::new(&mut headers);
            match r.parse(self.rbuf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = r.code.unwrap_or(0);
                    let mut resp = Response {
                        status,
                        reason: r.reason.unwrap_or("").to_string(),
                        headers: r
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_ascii_lowercase(),
                                    String::from_utf8_lossy(h.value).trim().to_string(),
                                )
                            })
                            .collect(),
                        body: Vec::new(),
                    };
                    let close = resp
                        .header("connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                        || r.version == Some(0)
                            && !resp
                                .header("connection")
                                .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive"));
                    let framing = body_len(&resp, close)?;
                    resp.body.clear();
                    return Ok((resp, n, framing));
                }
                Ok(httparse::Status::Partial) => {
                    if self.rbuf.len() > MAX_HEAD {
                        return Err(bad_response(format!(
                            "the response head is longer than {MAX_HEAD} bytes"
                        )));
                    }
                    self.fill()?;
                }
                Err(e) => {
                    let start =
                        String::from_utf8_lossy(&self.rbuf[..self.rbuf.len().min(40)]).into_owned();
                    return Err(bad_response(format!(
                        "not an HTTP response ({e}): \"{}\"",
                        start.escape_debug()
                    )));
                }
            }
        }
    }

    /// The body as `framing` says; returns the response and whether the connection may be
    /// reused.
    fn read_body(&mut self, mut resp: Response, framing: BodyLen) -> io::Result<(Response, bool)> {
        let reusable = match framing {
            BodyLen::Empty { keep } => keep && self.rbuf.is_empty(),
            BodyLen::Length { n, keep } => {
                if n > MAX_BODY {
                    return Err(bad_response(format!(
                        "a response body of {n} bytes (rlog reads {MAX_BODY} at most)"
                    )));
                }
                while self.rbuf.len() < n {
                    self.fill()?;
                }
                resp.body = self.rbuf.drain(..n).collect();
                keep && self.rbuf.is_empty()
            }
            BodyLen::Chunked { keep } => {
                self.read_chunked(&mut resp.body)?;
                keep && self.rbuf.is_empty()
            }
            BodyLen::ToClose => {
                loop {
                    if self.rbuf.len() > MAX_BODY {
                        return Err(bad_response(format!(
                            "a response body longer than {MAX_BODY} bytes"
                        )));
                    }
                    match self.fill() {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                        Err(e) => return Err(e),
                    }
                }
                resp.body = std::mem::take(self.rbuf);
                false
            }
        };
        Ok((resp, reusable))
    }

    /// Decodes a chunked body into `out`, trailers skipped.
    fn read_chunked(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        loop {
            let line = self.line()?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| bad_response(format!("a bad chunk size \"{size_text}\"")))?;
            if size == 0 {
                // Trailers, up to an empty line.
                while !self.line()?.is_empty() {}
                return Ok(());
            }
            // `out` holds at most MAX_BODY bytes: no sum that could overflow.
            if size > MAX_BODY - out.len() {
                return Err(bad_response(format!(
                    "a response body longer than {MAX_BODY} bytes"
                )));
            }
            while self.rbuf.len() < size + 2 {
                self.fill()?;
            }
            out.extend_from_slice(&self.rbuf[..size]);
            if &self.rbuf[size..size + 2] != b"\r\n" {
                return Err(bad_response("a chunk not followed by CRLF".into()));
            }
            self.rbuf.drain(..size + 2);
        }
    }

    /// One CRLF-terminated line of `rbuf`, without its CRLF.
    fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.rbuf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.rbuf[..i]).into_owned();
                self.rbuf.drain(..i + 2);
                return Ok(l);
            }
            if self.rbuf.len() > MAX_CHUNK_LINE {
                return Err(bad_response("a chunk header line too long".into()));
            }
            self.fill()?;
        }
    }
}

/// How the body of a response is delimited; `keep`: the connection may be reused after it.
#[derive(Debug, Clone, Copy)]
enum BodyLen {
    Empty { keep: bool },
    Length { n: usize, keep: bool },
    Chunked { keep: bool },
    ToClose,
}

fn body_len(resp: &Response, close: bool) -> io::Result<BodyLen> {
    let keep = !close;
    if resp.status == 204 || resp.status == 304 || (100..200).contains(&resp.status) {
        return Ok(BodyLen::Empty { keep });
    }
    if let Some(te) = resp.header("transfer-encoding") {
        if te
            .rsplit(',')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"))
        {
            return Ok(BodyLen::Chunked { keep });
        }
        return Ok(BodyLen::ToClose);
    }
    if let Some(cl) = resp.header("content-length") {
        let n = cl
            .parse::<usize>()
            .map_err(|_| bad_response(format!("a bad Content-Length \"{cl}\"")))?;
        return Ok(if n == 0 {
            BodyLen::Empty { keep }
        } else {
            BodyLen::Length { n, keep }
        });
    }
    Ok(BodyLen::ToClose)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> io::Result<(Response, bool)> {
        let mut src = bytes;
        read_response(&mut src, &mut Vec::new(), None)
    }

    const CHUNKED: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[test]
    fn chunked_bodies_content_length_and_close() {
        let (r, keep) =
            read(format!("{CHUNKED}3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n").as_bytes())
                .unwrap();
        assert_eq!((r.status, &r.body[..], keep), (200, &b"abcde"[..], true));
        let (r, keep) =
            read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 No\r\nContent-Length: 2\r\nRetry-After: 7\r\n\r\nhi").unwrap();
        assert_eq!(
            (r.status, r.header("retry-after"), &r.body[..], keep),
            (503, Some("7"), &b"hi"[..], true)
        );
        let (r, keep) = read(b"HTTP/1.0 200 OK\r\n\r\nto the end").unwrap();
        assert_eq!((&r.body[..], keep), (&b"to the end"[..], false));
    }

    /// A chunk size near `usize::MAX` after a first chunk overflowed `out.len() + size` (a
    /// panic with overflow checks; without them the sum wrapped below the limit, `size + 2`
    /// wrapped to 1 and slicing `rbuf[..size]` panicked): any server, or anything on the path
    /// of a plain `http://` output, could crash the output's thread. Now an error.
    #[test]
    fn huge_chunk_sizes_are_errors_not_panics() {
        for size in [
            "ffffffffffffffff",
            "fffffffffffffffe",
            "fffffffffffffff0",
            "4000001",
        ] {
            let resp = format!("{CHUNKED}1\r\na\r\n{size}\r\nabc\r\n0\r\n\r\n");
            let e = read(resp.as_bytes()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{size}: {e}");
            assert!(e.to_string().contains("longer than"), "{size}: {e}");
        }
        // Too many hex digits for a usize: a bad size, not a panic either.
        let resp = format!("{CHUNKED}1ffffffffffffffff\r\nabc\r\n");
        assert!(read(resp.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("bad chunk size"));
    }
}
