//! The `relp://` output: RELP to rsyslog's imrelp (librelp). Each record is one `syslog`
//! transaction; a record counts as sent when its `rsp 200` arrives, which means rsyslog has
//! taken it into its main queue (not that it is on disk). Up to `relp_window` transactions are
//! in flight; what was not acknowledged when a connection broke is sent again on the next one
//! by the driver (it resends what `done` does not cover), so a record whose acknowledgement was
//! lost may arrive twice.
//!
//! - `rsp 500` for a record: a [`Failure::Retry`](super::Failure) with the server's text. librelp
//!   answers 500 when the host could not take the message (imrelp: its input could not submit
//!   it), a condition of the server, not of the record; so it is never a reject.
//! - `serverclose` (rsyslog shutting down): a retry on a new connection.
//! - The connection ends with `close` when the output is dropped (the logger closing).
//! - `relps://`: the same session over TLS (rustls), for imrelp's `tls="on"`.

pub mod proto;
mod stream;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::Socket;

use super::socket::connect_tcp;
use super::tls::TlsSettings;
use super::{Output, SendError};
use crate::buffer::Buffer;
use proto::{next_txnr, write_frame, Frame, Parser, Rsp};
use stream::Stream;

/// Per-output RELP settings (`relp_window`, `NAME.relp_window`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelpSettings {
    /// Transactions sent and not yet acknowledged, at most.
    pub window: usize,
}

/// librelp's default window, and rsyslog omrelp's.
pub const DEFAULT_WINDOW: usize = 128;

impl Default for RelpSettings {
    fn default() -> RelpSettings {
        RelpSettings {
            window: DEFAULT_WINDOW,
        }
    }
}

/// imrelp's default `maxDataSize`: librelp ends a session that sends a larger frame.
pub const MAX_RECORD: usize = 128 * 1024;

/// The offers of our `open`.
fn offers() -> Vec<u8> {
    format!(
        "relp_version=0\nrelp_software=rlog,{}\ncommands=syslog",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

/// Bytes of frames written in one go before looking for responses.
const WRITE_CHUNK: usize = 256 * 1024;

/// A TLS session that the server ends before it answers `open`: librelp checks the client's
/// certificate (`tls.authMode`) after the handshake and drops the connection without a TLS
/// alert when it does not like it, which would otherwise read as a bare "closed".
fn closed_after_handshake(e: io::Error, tls: bool) -> io::Error {
    use io::ErrorKind::*;
    if tls && matches!(e.kind(), UnexpectedEof | ConnectionReset | BrokenPipe) {
        io::Error::other(
            "the RELP server closed the TLS session before answering open: imrelp drops \
             clients whose certificate its tls.authMode refuses (none sent, wrong CA, name \
             not in tls.permittedPeer); see rsyslog's log",
        )
    } else {
        e
    }
}

fn protocol(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A RELP session with imrelp, past `open`.
pub struct Relp {
    sock: Stream,
    /// The same socket, to look at it without reading (`is_alive`).
    probe: Socket,
    window: usize,
    /// The last transaction number used.
    txnr: u32,
    parser: Parser,
    out: Vec<u8>,
    /// The pid that opened the session: only it may say `close` on it.
    pid: u32,
    /// The session broke or the server closed it: no `close` on drop.
    broken: bool,
}

impl Relp {
    /// Connects, runs the TLS handshake when `tls` is given, and opens a RELP session (offers
    /// `commands=syslog`).
    ///
    /// Errors: connect failures; the handshake's (a `HandshakeFailed`); a refused `open`
    /// (`the server refused the RELP session: …`); a server that does not offer the `syslog`
    /// command.
    pub fn connect_to(
        host: &str,
        port: u16,
        tls: Option<&TlsSettings>,
        settings: &RelpSettings,
        timeout: Duration,
    ) -> io::Result<Relp> {
        let sock = connect_tcp(host, port, timeout)?;
        let probe = sock.try_clone()?;
        let mut r = Relp {
            sock: Stream::open(sock, tls, timeout)?,
            probe,
            window: settings.window.max(1),
            txnr: 0,
            parser: Parser::new(MAX_RECORD),
            out: Vec::new(),
            pid: std::process::id(),
            broken: true,
        };
        r.txnr = 1;
        write_frame(&mut r.out, 1, "open", &offers());
        let tls_on = tls.is_some();
        let f = (|| {
            r.sock.write_all(&r.out)?;
            r.sock.flush()?;
            r.read_frame()
        })()
        .map_err(|e| closed_after_handshake(e, tls_on))?;
        if f.command != "rsp" || f.txnr != 1 {
            return Err(protocol(format!(
                "expected the response to RELP open, got \"{} {}\"",
                f.txnr, f.command
            )));
        }
        let rsp = Rsp::parse(&f.data)?;
        if rsp.code != 200 {
            return Err(io::Error::other(format!(
                "the server refused the RELP session: {} {}",
                rsp.code, rsp.text
            )));
        }
        let offers = String::from_utf8_lossy(&rsp.cmddata);
        let syslog = offers.lines().any(|l| {
            l.strip_prefix("commands=")
                .is_some_and(|c| c.split(',').any(|c| c.trim() == "syslog"))
        });
        if !syslog {
            return Err(protocol(format!(
                "the RELP server does not offer the syslog command (its offers: {})",
                offers.replace('\n', " ")
            )));
        }
        // A response may wait for rsyslog's queue: give it more than a plain send.
        r.probe
            .set_read_timeout(Some(timeout.max(Duration::from_secs(5))))?;
        r.broken = false;
        Ok(r)
    }

    /// Reads until one whole frame is parsed. Errors: the connection's, or a malformed frame.
    fn read_frame(&mut self) -> io::Result<Frame> {
        loop {
            if let Some(f) = self.parser.next_frame()? {
                return Ok(f);
            }
            let room = self.parser.room();
            let n = match self.sock.read(room) {
                Ok(0) => {
                    self.parser.filled(0);
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the RELP server closed the connection",
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => {
                    self.parser.filled(0);
                    return Err(e);
                }
            };
            self.parser.filled(n);
        }
    }

    /// Applies one frame from the server to the transactions in flight (txnr, acknowledged),
    /// which start at record `acked`. Errors: a `rsp` other than 200, `serverclose`, a response
    /// to no transaction in flight, an unknown command.
    fn take(&mut self, f: Frame, inflight: &mut VecDeque<(u32, bool)>) -> io::Result<()> {
        match f.command.as_str() {
            "rsp" => {
                let Some(slot) = inflight.iter_mut().find(|(t, _)| *t == f.txnr) else {
                    return Err(protocol(format!(
                        "RELP response to transaction {}, which is not in flight",
                        f.txnr
                    )));
                };
                let rsp = Rsp::parse(&f.data)?;
                if rsp.code != 200 {
                    return Err(io::Error::other(format!(
                        "rsyslog answered {} {}",
                        rsp.code, rsp.text
                    )));
                }
                slot.1 = true;
                Ok(())
            }
            "serverclose" => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the RELP server closed the session (serverclose)",
            )),
            c => Err(protocol(format!("unexpected RELP command \"{c}\""))),
        }
    }
}

impl Output for Relp {
    fn send(&mut self, batch: &Buffer, until: Option<Instant>) -> Result<(), SendError> {
        let mut inflight: VecDeque<(u32, bool)> = VecDeque::new();
        let mut acked = 0usize;
        let mut sent = 0usize;
        let result = (|| -> io::Result<()> {
            while sent < batch.len() || !inflight.is_empty() {
                super::past(until)?;
                if sent < batch.len() && inflight.len() < self.window {
                    self.out.clear();
                    while sent < batch.len()
                        && inflight.len() < self.window
                        && self.out.len() < WRITE_CHUNK
                    {
                        self.txnr = next_txnr(self.txnr);
                        write_frame(&mut self.out, self.txnr, "syslog", batch.record(sent).bytes);
                        inflight.push_back((self.txnr, false));
                        sent += 1;
                    }
                    self.sock.write_all(&self.out)?;
                    self.sock.flush()?;
                    continue;
                }
                let f = self.read_frame()?;
                self.take(f, &mut inflight)?;
                // Whatever else has arrived already, without blocking.
                while let Some(f) = self.parser.next_frame()? {
                    self.take(f, &mut inflight)?;
                }
                while inflight.front().is_some_and(|(_, ok)| *ok) {
                    inflight.pop_front();
                    acked += 1;
                }
            }
            Ok(())
        })();
        result.map_err(|e| {
            self.broken = true;
            SendError::retry(acked, e)
        })
    }

    fn is_alive(&mut self) -> bool {
        // The server speaks only when spoken to, but for `serverclose`: anything unasked for
        // ends the session.
        !self.broken && self.sock.is_idle(&self.probe)
    }

    fn fds(&self) -> Vec<i32> {
        vec![self.probe.as_raw_fd(), self.sock.fd()]
    }
}

impl Drop for Relp {
    /// Ends the session with `close` (briefly: 200 ms for the answer), as librelp clients do,
    /// so rsyslog does not log a broken session. Only in the process that opened it.
    fn drop(&mut self) {
        if self.broken || self.pid != std::process::id() {
            return;
        }
        let t = Some(Duration::from_millis(200));
        let _ = self.probe.set_write_timeout(t);
        let _ = self.probe.set_read_timeout(t);
        self.txnr = next_txnr(self.txnr);
        self.out.clear();
        write_frame(&mut self.out, self.txnr, "close", b"");
        if self.sock.write_all(&self.out).is_ok() && self.sock.flush().is_ok() {
            let _ = self.read_frame();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Failure;
    use std::net::TcpListener;

    #[test]
    fn offers_say_syslog() {
        let o = String::from_utf8(offers()).unwrap();
        assert!(o.starts_with("relp_version=0\nrelp_software=rlog,"));
        assert!(o.ends_with("\ncommands=syslog"));
    }

    /// What the mock received: (txnr, data) of each `syslog` frame.
    type Received = Vec<(u32, Vec<u8>)>;

    /// A MOCK RELP server (rsyslog cannot be made to answer 500 or to send `serverclose`
    /// mid-batch on demand): answers `open` with 200, then each `syslog` frame as `answer`
    /// says (given the frame's index and txnr); returns the (txnr, data) it received.
    fn mock(
        answer: impl Fn(usize, u32) -> Option<String> + Send + 'static,
    ) -> (u16, std::thread::JoinHandle<Received>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut p = Parser::new(1 << 20);
            let mut got = Vec::new();
            let mut pending = Vec::new();
            loop {
                let room = p.room();
                let n = c.read(room).unwrap_or(0);
                p.filled(n);
                if n == 0 {
                    return got;
                }
                while let Some(f) = p.next_frame().unwrap() {
                    let mut out = Vec::new();
                    match f.command.as_str() {
                        "open" => write_frame(
                            &mut out,
                            f.txnr,
                            "rsp",
                            b"200 OK\nrelp_version=0\ncommands=syslog",
                        ),
                        "syslog" => {
                            let i = got.len();
                            got.push((f.txnr, f.data));
                            pending.push((i, f.txnr));
                        }
                        "close" => {
                            write_frame(&mut out, f.txnr, "rsp", b"200 OK");
                            let _ = c.write_all(&out);
                            return got;
                        }
                        _ => panic!("unexpected {}", f.command),
                    }
                    // Answers in reverse order within what arrived together: out of order.
                    if p.next_is_empty() {
                        for (i, t) in pending.drain(..).rev() {
                            match answer(i, t) {
                                Some(a) if a == "serverclose" => {
                                    write_frame(&mut out, 0, "serverclose", b"")
                                }
                                Some(a) => write_frame(&mut out, t, "rsp", a.as_bytes()),
                                None => {}
                            }
                        }
                    }
                    if c.write_all(&out).is_err() {
                        return got;
                    }
                }
            }
        });
        (port, h)
    }

    fn batch(n: usize) -> Buffer {
        let mut b = Buffer::with_capacity(1024);
        for i in 0..n {
            b.push(format!("m{i}").as_bytes(), None);
        }
        b
    }

    fn connect(port: u16, window: usize) -> Relp {
        Relp::connect_to(
            "127.0.0.1",
            port,
            None,
            &RelpSettings { window },
            Duration::from_secs(5),
        )
        .unwrap()
    }

    #[test]
    fn txnr_wraps_and_out_of_order_answers_settle_in_order() {
        let (port, h) = mock(|_, _| Some("200 OK".into()));
        let mut r = connect(port, 3);
        r.txnr = proto::MAX_TXNR - 2;
        r.send(&batch(10), None).unwrap();
        drop(r);
        let got = h.join().unwrap();
        let txnrs: Vec<u32> = got.iter().map(|g| g.0).collect();
        assert_eq!(txnrs, [999_999_998, 999_999_999, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(got[9].1, b"m9");
    }

    #[test]
    fn a_500_is_a_retry_with_its_text_after_the_acknowledged_prefix() {
        let (port, h) = mock(|i, _| {
            Some(if i == 4 {
                "500 queue full".into()
            } else {
                "200 OK".into()
            })
        });
        let mut r = connect(port, 2);
        let e = r.send(&batch(8), None).unwrap_err();
        assert_eq!(e.done, 4, "records 0..4 were acknowledged");
        match e.failure {
            Failure::Retry { error, resume, .. } => {
                assert_eq!(error.to_string(), "rsyslog answered 500 queue full");
                assert!(!resume);
            }
            f => panic!("{f:?}"),
        }
        assert!(!r.is_alive(), "a failed session is not reused");
        drop(r);
        h.join().unwrap();
    }

    #[test]
    fn serverclose_mid_batch_is_a_retry() {
        let (port, h) = mock(|i, _| {
            Some(if i >= 3 {
                "serverclose".into()
            } else {
                "200 OK".into()
            })
        });
        let mut r = connect(port, 1);
        let e = r.send(&batch(5), None).unwrap_err();
        assert_eq!(e.done, 3);
        match e.failure {
            Failure::Retry { error, .. } => {
                assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
                assert!(error.to_string().contains("serverclose"), "{error}");
            }
            f => panic!("{f:?}"),
        }
        drop(r);
        h.join().unwrap();
    }

    #[test]
    fn an_unanswered_window_times_out_without_sending_more() {
        let (port, h) = mock(|_, _| None);
        let mut r = connect(port, 4);
        r.probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let e = r.send(&batch(10), None).unwrap_err();
        assert_eq!(e.done, 0);
        drop(r);
        assert_eq!(
            h.join().unwrap().len(),
            4,
            "never more than the window in flight"
        );
    }
}
