//! One HTTP/1.1 connection on rlog's own sockets (plain or TLS): a request is written whole,
//! and its response is read whole — head parsed with `httparse`, body by `Content-Length`,
//! chunked, or up to the close — before the connection may carry another (Kong #3332: a
//! response left half-read answered the next request).

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};
use socket2::Socket;

use super::super::socket::{connect_tcp, peek, NoSigPipe, Peek};
use super::super::tls::{Tls, TlsSettings};

/// The longest response head taken.
const MAX_HEAD: usize = 64 << 10;
/// The longest response body taken (an Elasticsearch `_bulk` answer for 10 000 items is a few
/// MB).
const MAX_BODY: usize = 64 << 20;
const MAX_HEADERS: usize = 64;

enum Stream {
    Plain(NoSigPipe),
    Tls(Box<StreamOwned<ClientConnection, NoSigPipe>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

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

/// An open connection.
pub struct Conn {
    stream: Stream,
    /// The same socket, to look at it without reading.
    probe: Socket,
    /// Bytes read and not yet used.
    rbuf: Vec<u8>,
    /// The last response allowed the connection to be reused.
    reusable: bool,
    pub last_used: Instant,
}

fn bad_response(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Conn {
    /// Connects to `host:port` (and runs the TLS handshake with `tls`), each step bounded by
    /// `timeout`.
    pub fn open(
        host: &str,
        port: u16,
        tls: Option<&TlsSettings>,
        timeout: Duration,
    ) -> io::Result<Conn> {
        let sock = connect_tcp(host, port, timeout)?;
        let probe = sock.try_clone()?;
        let stream = match tls {
            None => Stream::Plain(NoSigPipe(sock)),
            Some(t) => Stream::Tls(Box::new(Tls::handshake(sock, t, timeout)?.into_stream())),
        };
        Ok(Conn {
            stream,
            probe,
            rbuf: Vec::new(),
            reusable: true,
            last_used: Instant::now(),
        })
    }

    /// Whether the connection may carry another request: the last response allowed it, and
    /// the server has not closed it meanwhile.
    pub fn is_alive(&mut self) -> bool {
        if !self.reusable || !self.rbuf.is_empty() {
            return false;
        }
        loop {
            match peek(&self.probe) {
                Peek::Idle => return true,
                Peek::Closed => return false,
                Peek::Data => match &mut self.stream {
                    // An HTTP server speaks only when asked: anything else is its goodbye
                    // (a 408 for an idle connection, say).
                    Stream::Plain(_) => return false,
                    // TLS 1.3 session tickets arrive after the handshake: let rustls take them.
                    Stream::Tls(s) => {
                        match s.conn.read_tls(&mut s.sock) {
                            Ok(0) | Err(_) => return false,
                            Ok(_) => {}
                        }
                        match s.conn.process_new_packets() {
                            Ok(st) if st.peer_has_closed() || st.plaintext_bytes_to_read() > 0 => {
                                return false
                            }
                            Ok(_) => {}
                            Err(_) => return false,
                        }
                    }
                },
            }
        }
    }

    pub fn fds(&self) -> Vec<i32> {
        let mut v = vec![self.probe.as_raw_fd()];
        match &self.stream {
            Stream::Plain(s) => v.push(s.0.as_raw_fd()),
            Stream::Tls(s) => v.push(s.sock.0.as_raw_fd()),
        }
        v
    }

    /// Sends `head` then `body` and reads the whole response. Errors: the connection failed
    /// or timed out (each read and write is bounded by the socket's timeout), `until` passed,
    /// or the response is not HTTP/1.x. After an error the connection is not reusable.
    pub fn round_trip(
        &mut self,
        head: &[u8],
        body: &[u8],
        until: Option<Instant>,
    ) -> io::Result<Response> {
        self.write_request(head, body, until)?;
        self.read_response(until)
    }

    /// The first half of [`Conn::round_trip`]: sends `head` then `body`. The caller must call
    /// [`Conn::read_response`] before anything else on this connection (it may do other work
    /// in between, while the server answers). After an error the connection is not reusable.
    pub fn write_request(
        &mut self,
        head: &[u8],
        body: &[u8],
        until: Option<Instant>,
    ) -> io::Result<()> {
        self.reusable = false;
        self.rbuf.clear();
        super::super::past(until)?;
        self.stream.write_all(head)?;
        // In pieces, so that a closing logger's deadline is looked at between them.
        for chunk in body.chunks(256 << 10) {
            super::super::past(until)?;
            self.stream.write_all(chunk)?;
        }
        self.stream.flush()
    }

    /// The second half of [`Conn::round_trip`]: reads the whole response to the request
    /// [`Conn::write_request`] sent.
    pub fn read_response(&mut self, until: Option<Instant>) -> io::Result<Response> {
        let resp = loop {
            let (resp, head_len, framing) = self.read_head(until)?;
            self.rbuf.drain(..head_len);
            if (100..200).contains(&resp.status) && resp.status != 101 {
                continue; // 100 Continue and friends: the real answer follows
            }
            break self.read_body(resp, framing, until)?;
        };
        self.last_used = Instant::now();
        Ok(resp)
    }

    /// Reads more bytes into `rbuf`. Errors: the peer closed (`UnexpectedEof`), a timeout.
    fn fill(&mut self, until: Option<Instant>) -> io::Result<()> {
        super::super::past(until)?;
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

    fn read_head(&mut self, until: Option<Instant>) -> io::Result<(Response, usize, BodyLen)> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut r = httparse::Response::new(&mut headers);
            match r.parse(&self.rbuf) {
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
                    self.fill(until)?;
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

    fn read_body(
        &mut self,
        mut resp: Response,
        framing: BodyLen,
        until: Option<Instant>,
    ) -> io::Result<Response> {
        match framing {
            BodyLen::Empty { keep } => self.reusable = keep && self.rbuf.is_empty(),
            BodyLen::Length { n, keep } => {
                if n > MAX_BODY {
                    return Err(bad_response(format!(
                        "a response body of {n} bytes (rlog reads {MAX_BODY} at most)"
                    )));
                }
                while self.rbuf.len() < n {
                    self.fill(until)?;
                }
                resp.body = self.rbuf.drain(..n).collect();
                self.reusable = keep && self.rbuf.is_empty();
            }
            BodyLen::Chunked { keep } => {
                self.read_chunked(&mut resp.body, until)?;
                self.reusable = keep && self.rbuf.is_empty();
            }
            BodyLen::ToClose => {
                loop {
                    if self.rbuf.len() > MAX_BODY {
                        return Err(bad_response(format!(
                            "a response body longer than {MAX_BODY} bytes"
                        )));
                    }
                    match self.fill(until) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                        Err(e) => return Err(e),
                    }
                }
                resp.body = std::mem::take(&mut self.rbuf);
                self.reusable = false;
            }
        }
        Ok(resp)
    }

    /// Decodes a chunked body into `out`, trailers skipped.
    fn read_chunked(&mut self, out: &mut Vec<u8>, until: Option<Instant>) -> io::Result<()> {
        loop {
            let line = self.line(until)?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| bad_response(format!("a bad chunk size \"{size_text}\"")))?;
            if size == 0 {
                // Trailers, up to an empty line.
                while !self.line(until)?.is_empty() {}
                return Ok(());
            }
            if out.len() + size > MAX_BODY {
                return Err(bad_response(format!(
                    "a response body longer than {MAX_BODY} bytes"
                )));
            }
            while self.rbuf.len() < size + 2 {
                self.fill(until)?;
            }
            out.extend_from_slice(&self.rbuf[..size]);
            if &self.rbuf[size..size + 2] != b"\r\n" {
                return Err(bad_response("a chunk not followed by CRLF".into()));
            }
            self.rbuf.drain(..size + 2);
        }
    }

    /// One CRLF-terminated line of `rbuf`, without its CRLF.
    fn line(&mut self, until: Option<Instant>) -> io::Result<String> {
        loop {
            if let Some(i) = self.rbuf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.rbuf[..i]).into_owned();
                self.rbuf.drain(..i + 2);
                return Ok(l);
            }
            if self.rbuf.len() > 4096 {
                return Err(bad_response("a chunk header line too long".into()));
            }
            self.fill(until)?;
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
