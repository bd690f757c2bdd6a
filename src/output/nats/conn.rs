//! A NATS connection's bytes: a plain or TLS stream (NATS starts in plain text and turns to
//! TLS after its INFO), what has been read and not yet parsed, and reads bounded by a deadline.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use socket2::Socket;

use super::proto::{self, Op};

pub use crate::output::tls::Stream;
use crate::output::tls::{Tls, TlsSettings};

/// Runs the TLS handshake on `sock` (already past the server's INFO).
///
/// Errors: the handshake failed, worded as the other TLS outputs word it.
pub fn upgrade(sock: Socket, settings: &TlsSettings, timeout: Duration) -> io::Result<Stream> {
    let tls = Tls::handshake(sock, settings, timeout)?;
    Ok(Stream::Tls(Box::new(tls.into_stream())))
}

/// Read bytes kept between reads: a read takes at least this much room.
const READ_CHUNK: usize = 64 * 1024;

/// The connection's stream and what it has read.
pub struct Conn {
    pub stream: Stream,
    /// The same socket, to set its read timeout and to look at it without reading.
    pub probe: Socket,
    inb: Vec<u8>,
    /// Where the unparsed bytes of `inb` start.
    pos: usize,
}

impl Conn {
    pub fn new(stream: Stream, probe: Socket) -> Conn {
        Conn {
            stream,
            probe,
            inb: Vec::with_capacity(READ_CHUNK),
            pos: 0,
        }
    }

    /// Reads what arrives before `deadline` (at least one byte, or an error: `TimedOut` when
    /// nothing came in time, `UnexpectedEof` when the server closed the connection).
    pub fn fill(&mut self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.probe
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        if self.pos > 0 && self.pos == self.inb.len() {
            self.inb.clear();
            self.pos = 0;
        } else if self.pos > READ_CHUNK {
            self.inb.drain(..self.pos);
            self.pos = 0;
        }
        let at = self.inb.len();
        self.inb.resize(at + READ_CHUNK, 0);
        let got = loop {
            match self.stream.read(&mut self.inb[at..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        self.inb.truncate(at + *got.as_ref().unwrap_or(&0));
        match got {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the NATS server closed the connection",
            )),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::ErrorKind::TimedOut.into()),
            Err(e) => Err(e),
        }
    }

    /// The next whole operation read, if there is one, and the bytes to [`Conn::consume`]
    /// after it.
    ///
    /// Errors: bytes that are no NATS operation.
    pub fn next_op(&self) -> io::Result<Option<(Op<'_>, usize)>> {
        proto::parse(&self.inb[self.pos..])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    pub fn consume(&mut self, n: usize) {
        self.pos += n;
    }

    /// Writes all of `out` and empties it.
    pub fn write_out(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        let r = self
            .stream
            .write_all(out)
            .and_then(|()| self.stream.flush());
        out.clear();
        r
    }

    /// Takes the plain socket back (to run TLS on it), with what was read so far.
    pub fn into_plain(self) -> Option<(Socket, Socket, Vec<u8>)> {
        match self.stream {
            Stream::Plain(s) => Some((s.0, self.probe, self.inb[self.pos..].to_vec())),
            Stream::Tls(_) => None,
        }
    }
}
