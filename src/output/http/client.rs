//! One HTTP/1.1 connection on rlog's own sockets (plain or TLS): a request is written whole,
//! and its response is read whole ([`super::response`]) before the connection may carry
//! another (Kong #3332: a response left half-read answered the next request).

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::Socket;

use super::super::socket::{connect_tcp, NoSigPipe};
use super::super::tls::Stream;
use super::super::tls::{Tls, TlsSettings};
use super::response::read_response;
pub use super::response::Response;

/// An open connection.
pub struct Conn {
    stream: Stream,
    /// The same socket, to look at it without reading.
    probe: Socket,
    /// Bytes read and not yet used.
    rbuf: Vec<u8>,
    /// The last response allowed the connection to be reused.
    reusable: bool,
    /// The connection's `timeout`: also how long a whole response may take once the request is
    /// written, so that a body trickled for ever (each read within the socket's timeout) cannot
    /// hold the output.
    timeout: Duration,
    pub last_used: Instant,
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
            timeout,
            last_used: Instant::now(),
        })
    }

    /// Whether the connection may carry another request: the last response allowed it, and
    /// the server has not closed it meanwhile.
    pub fn is_alive(&mut self) -> bool {
        if !self.reusable || !self.rbuf.is_empty() {
            return false;
        }
        // An HTTP server speaks only when asked: anything else is its goodbye.
        self.stream.is_idle(&self.probe)
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
    /// [`Conn::write_request`] sent, within `timeout` (or by the close deadline, if that comes
    /// first): a server that trickles an endless body must not hold the output.
    pub fn read_response(&mut self, until: Option<Instant>) -> io::Result<Response> {
        let whole_by = Instant::now() + self.timeout;
        let until = Some(until.map_or(whole_by, |u| u.min(whole_by)));
        let (resp, reusable) = read_response(&mut self.stream, &mut self.rbuf, until)?;
        self.reusable = reusable;
        self.last_used = Instant::now();
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// A MOCK HTTP server (no real server sends a broken chunk size on demand): reads the
    /// request head, answers `answer` and keeps the connection open until the client closes.
    fn mock(answer: &'static [u8]) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = c.write_all(answer);
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
        });
        port
    }

    fn ask(port: u16) -> io::Result<Response> {
        let mut c = Conn::open("127.0.0.1", port, None, Duration::from_secs(5))?;
        c.round_trip(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            b"",
            None,
        )
    }

    #[test]
    fn a_chunk_size_that_overflows_is_a_bad_response_not_a_panic() {
        // A first chunk, then a size of 2^64 - 1: `out.len() + size` wrapped around and the
        // chunk was sliced past the end of what was read (a panic on the driver's thread).
        let port = mock(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\nxy");
        let e = ask(port).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains("longer than"), "{e}");
    }

    #[test]
    fn a_chunked_body_is_read_whole() {
        let port = mock(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: v\r\n\r\n");
        let r = ask(port).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
    }
}
