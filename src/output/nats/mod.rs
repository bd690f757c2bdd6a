//! The `nats://HOST:PORT/SUBJECT` output: each record is one message published to JetStream
//! and counts as delivered only once the stream acknowledges it (its PubAck).
//!
//! A small synchronous client of the NATS text protocol on rlog's own sockets. Each message
//! carries a `Nats-Msg-Id`, the record's identity ([`super::record_id`]), the same across
//! resends and replays from the spool, so a message stored whose acknowledgement was lost (a connection dropped, a
//! server restarted) and sent again is dropped by the stream as a duplicate within its
//! duplicate window. Replies come to a private inbox (`_INBOX.<random>.N`), one per publish,
//! and up to `nats_window` publishes wait for theirs at once.

// The parsers are public for the fuzz targets (fuzz/fuzz_targets/nats.rs); the connection is
// not.
pub mod ack;
mod conn;
pub mod json;
pub mod proto;

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ack::Ack;
use conn::{Conn, Stream};
use proto::Op;

use super::socket::{connect_tcp, peek, NoSigPipe, Peek};
use super::{Failure, Output, SendError};
use crate::buffer::Buffer;
use crate::config::nats::NatsSettings;
use crate::config::TlsOptions;
use crate::output::tls::{self, TlsSettings};

/// The subscription id of the reply inbox.
const INBOX_SID: u32 = 1;
/// Written once this many bytes of publishes are queued, without waiting for the window.
const WRITE_CHUNK: usize = 64 * 1024;
/// How long to wait, when the stream has no room, before trying again.
const NO_ROOM_PAUSE: Duration = Duration::from_secs(1);

/// Where and how to connect.
pub struct Params<'a> {
    pub host: &'a str,
    pub port: u16,
    pub subject: &'a str,
    /// TLS whatever the server says (`nats+tls://`).
    pub tls: Option<&'a TlsSettings>,
    /// TLS to build if the server requires it (`nats://`).
    pub tls_on_demand: Option<&'a TlsOptions>,
    pub settings: &'a NatsSettings,
    pub timeout: Duration,
    pub producer: u64,
}

/// A connection to a NATS server, past CONNECT, subscribed to its reply inbox.
pub struct Nats {
    conn: Conn,
    subject: String,
    /// `_INBOX.<random>.`: replies come to this prefix and a number.
    inbox: String,
    /// The next reply number: each publish has its own, never reused on this connection.
    next_reply: u64,
    producer: u64,
    max_payload: usize,
    window: usize,
    ack_timeout: Duration,
    out: Vec<u8>,
    id: String,
    /// Per record of the batch being sent: acknowledged yet.
    acked: Vec<bool>,
    /// Per record published: when.
    sent_at: Vec<Instant>,
}

fn protocol(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A name no other connection has: the inbox's random part.
fn random_token(producer: u64) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = producer
        ^ now.rotate_left(17)
        ^ (u64::from(std::process::id()) << 40)
        ^ COUNT
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64's finalizer
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    format!("{x:016x}")
}

impl Nats {
    /// Connects: reads INFO, runs TLS when it is asked for (by the target or the server),
    /// sends CONNECT and waits for the PONG that says the server took it, and subscribes to
    /// the reply inbox.
    ///
    /// Errors: connect or TLS failures; the server's refusal (`-ERR 'Authorization
    /// Violation'`); a server without headers (NATS before 2.2) or without TLS when
    /// `nats+tls://` asks for it.
    pub fn connect_to(p: &Params<'_>) -> io::Result<Nats> {
        let sock = connect_tcp(p.host, p.port, p.timeout)?;
        let probe = sock.try_clone()?;
        let mut conn = Conn::new(Stream::Plain(NoSigPipe(sock)), probe);
        let deadline = Instant::now() + p.timeout;
        let info = loop {
            if let Some((op, n)) = conn.next_op()? {
                let info = match op {
                    Op::Info(j) => json::parse(j)
                        .map_err(|e| protocol(format!("a bad INFO from the NATS server: {e}")))?,
                    _ => return Err(protocol("expected INFO from the NATS server".into())),
                };
                conn.consume(n);
                break info;
            }
            conn.fill(deadline).map_err(|e| match e.kind() {
                io::ErrorKind::TimedOut => io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no INFO from the server: is it a NATS server?",
                ),
                _ => e,
            })?;
        };
        let flag = |k: &str| info.get(k).and_then(json::Value::as_bool).unwrap_or(false);
        if !flag("headers") {
            return Err(io::Error::other(
                "the NATS server does not support headers (NATS 2.2 or later is needed)",
            ));
        }
        let max_payload = info
            .get("max_payload")
            .and_then(json::Value::as_u64)
            .unwrap_or(1 << 20) as usize;
        let tls_wanted = p.tls.is_some() || flag("tls_required");
        if p.tls.is_some() && !flag("tls_required") && !flag("tls_available") {
            return Err(io::Error::other(
                "nats+tls:// asks for TLS and the NATS server does not offer it",
            ));
        }
        if tls_wanted {
            let built;
            let settings = match (p.tls, p.tls_on_demand) {
                (Some(s), _) => s,
                (None, Some(o)) => {
                    built = tls::settings(&o.server_name, o.verify, o.ca.as_deref())
                        .map_err(io::Error::other)?;
                    &built
                }
                (None, None) => {
                    return Err(io::Error::other("the NATS server requires TLS"));
                }
            };
            let (sock, probe, _) = conn.into_plain().expect("plain until now");
            conn = Conn::new(conn::upgrade(sock, settings, p.timeout)?, probe);
        }
        let s = p.settings;
        let mut out = Vec::new();
        proto::connect(
            &mut out,
            &proto::Connect {
                user: s.user.as_deref(),
                password: s.password.as_deref(),
                token: s.token.as_deref(),
                tls: tls_wanted,
                name: "rlog",
            },
        );
        conn.write_out(&mut out)?;
        loop {
            let mut pong = false;
            while let Some((op, n)) = conn.next_op()? {
                match op {
                    Op::Pong => pong = true,
                    Op::Ping => proto::pong(&mut out),
                    Op::Err(text) => {
                        return Err(io::Error::other(format!(
                            "the NATS server refused the connection: {text}"
                        )))
                    }
                    _ => {}
                }
                conn.consume(n);
                if pong {
                    break;
                }
            }
            conn.write_out(&mut out)?;
            if pong {
                break;
            }
            conn.fill(deadline).map_err(|e| match e.kind() {
                // A server that refuses what CONNECT says (or, over TLS 1.3, the client's
                // certificate) may hang up without a word: "closed" alone does not say when.
                io::ErrorKind::UnexpectedEof => io::Error::other(if tls_wanted {
                    "the NATS server closed the connection before answering CONNECT \
                         (did it refuse the client certificate?)"
                } else {
                    "the NATS server closed the connection before answering CONNECT"
                }),
                _ => e,
            })?;
        }
        let inbox = format!("_INBOX.{}.", random_token(p.producer));
        proto::sub(&mut out, &format!("{inbox}*"), INBOX_SID);
        conn.write_out(&mut out)?;
        Ok(Nats {
            conn,
            subject: p.subject.to_string(),
            inbox,
            next_reply: 0,
            producer: p.producer,
            max_payload,
            window: s.window,
            ack_timeout: s.ack_timeout,
            out,
            id: String::new(),
            acked: Vec::new(),
            sent_at: Vec::new(),
        })
    }

    /// The reply number a message to the inbox carries, if it is one.
    fn reply_number(&self, subject: &[u8]) -> Option<u64> {
        let rest = subject.strip_prefix(self.inbox.as_bytes())?;
        std::str::from_utf8(rest).ok()?.parse().ok()
    }
}

/// What one reply did to the batch being sent.
enum Reply {
    /// Not about this batch (a late reply to an earlier one), or a PING answered.
    Nothing,
    /// Record `i` was stored.
    Stored(usize),
    /// Record `i` is refused for good.
    Refused(usize, String),
    /// The send must stop: retry later.
    Stop(io::Error, Option<Duration>),
}

impl Nats {
    /// Acts on the next operation read, for a batch whose replies start at `base` and of
    /// which `published` records went out.
    fn on_op(&mut self, base: u64, published: usize) -> io::Result<Option<Reply>> {
        let Some((op, n)) = self.conn.next_op()? else {
            return Ok(None);
        };
        let reply = match op {
            Op::Ping => {
                proto::pong(&mut self.out);
                Reply::Nothing
            }
            Op::Err(text) => Reply::Stop(
                io::Error::other(format!("the NATS server said: {text}")),
                None,
            ),
            Op::Msg(m) => match self.reply_number(m.subject) {
                Some(r) if r >= base && r - base < published as u64 => {
                    let i = (r - base) as usize;
                    match ack::read(m.headers, m.payload) {
                        Ack::Stored { .. } => Reply::Stored(i),
                        Ack::TooLarge(why) => Reply::Refused(i, why),
                        Ack::NoResponders => Reply::Stop(
                            io::Error::other(format!(
                                "no responders on subject \"{}\": no JetStream stream takes it (or JetStream is not enabled)",
                                self.subject
                            )),
                            None,
                        ),
                        Ack::NoRoom(why) => Reply::Stop(
                            io::Error::other(format!("the stream has no room: {why}")),
                            Some(NO_ROOM_PAUSE),
                        ),
                        Ack::Other(why) => Reply::Stop(
                            io::Error::other(format!("JetStream refused a message: {why}")),
                            None,
                        ),
                    }
                }
                _ => Reply::Nothing,
            },
            Op::Info(_) | Op::Pong | Op::Ok => Reply::Nothing,
        };
        self.conn.consume(n);
        Ok(Some(reply))
    }
}

fn retry(done: usize, error: io::Error, after: Option<Duration>) -> SendError {
    SendError {
        done,
        failure: Failure::Retry {
            error,
            after,
            resume: false,
        },
    }
}

impl Output for Nats {
    fn send(&mut self, batch: &Buffer, until: Option<Instant>) -> Result<(), SendError> {
        let n = batch.len();
        self.acked.clear();
        self.acked.resize(n, false);
        self.sent_at.clear();
        let base = self.next_reply;
        self.next_reply += n as u64;
        let mut published = 0usize;
        let mut in_flight = 0usize;
        // Leading records acknowledged.
        let mut done = 0usize;
        // The first record refused for good, and why: nothing from it on is published, and
        // the send ends once every record before it is acknowledged.
        let mut refused: Option<(usize, String)> = None;
        let producer = self.producer;
        loop {
            super::past(until).map_err(|e| retry(done, e, None))?;
            let stop_at = refused.as_ref().map_or(n, |r| r.0);
            let now = Instant::now();
            while published < stop_at && in_flight < self.window {
                let r = batch.record(published);
                self.id.clear();
                use std::fmt::Write;
                let key = super::record_key(producer, batch.first_seq + published as u64);
                let _ = write!(self.id, "{key:016x}");
                let size = proto::header_len(self.id.len()) + r.bytes.len();
                if size > self.max_payload {
                    refused = Some((
                        published,
                        format!(
                            "a message of {} bytes exceeds the NATS server's max_payload of {} bytes",
                            r.bytes.len(),
                            self.max_payload
                        ),
                    ));
                    break;
                }
                proto::hpub(
                    &mut self.out,
                    &self.subject,
                    &self.inbox,
                    base + published as u64,
                    &self.id,
                    r.bytes,
                );
                self.sent_at.push(now);
                published += 1;
                in_flight += 1;
                if self.out.len() >= WRITE_CHUNK {
                    self.conn
                        .write_out(&mut self.out)
                        .map_err(|e| retry(done, e, None))?;
                }
            }
            self.conn
                .write_out(&mut self.out)
                .map_err(|e| retry(done, e, None))?;
            if let Some((at, why)) = &refused {
                if done >= *at {
                    return Err(SendError::reject(*at, why.clone()));
                }
            }
            if done == n {
                return Ok(());
            }
            // What was read already, then replies until the oldest publish waiting is out
            // of time.
            let mut acted = false;
            while let Some(reply) = self
                .on_op(base, published)
                .map_err(|e| retry(done, e, None))?
            {
                acted = true;
                match reply {
                    Reply::Nothing => {}
                    Reply::Stored(i) => {
                        if !self.acked[i] {
                            self.acked[i] = true;
                            in_flight -= 1;
                            while done < n && self.acked[done] {
                                done += 1;
                            }
                        }
                    }
                    Reply::Refused(i, why) => {
                        if !self.acked[i] && refused.as_ref().is_none_or(|r| i < r.0) {
                            in_flight -= 1;
                            refused = Some((i, format!("JetStream refused the message: {why}")));
                        }
                    }
                    Reply::Stop(e, after) => return Err(retry(done, e, after)),
                }
            }
            if acted {
                continue;
            }
            let ack_deadline = self.sent_at[done] + self.ack_timeout;
            let deadline = until.map_or(ack_deadline, |u| u.min(ack_deadline));
            if let Err(e) = self.conn.fill(deadline) {
                if e.kind() != io::ErrorKind::TimedOut {
                    return Err(retry(done, e, None));
                }
                if Instant::now() >= ack_deadline {
                    return Err(retry(
                        done,
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "no acknowledgement from JetStream within {} ms",
                                self.ack_timeout.as_millis()
                            ),
                        ),
                        None,
                    ));
                }
            }
        }
    }

    fn is_alive(&mut self) -> bool {
        loop {
            // Between sends the server may PING, or say why it is about to close.
            loop {
                match self.on_op(self.next_reply, 0) {
                    Ok(Some(Reply::Stop(..))) | Err(_) => return false,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                }
            }
            match peek(&self.conn.probe) {
                Peek::Closed => return false,
                Peek::Idle => return self.conn.write_out(&mut self.out).is_ok(),
                Peek::Data => match self.conn.fill(Instant::now() + Duration::from_millis(10)) {
                    Ok(()) => {}
                    // TLS bytes with no plaintext in them (a session ticket).
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                    Err(_) => return false,
                },
            }
        }
    }

    fn fds(&self) -> Vec<i32> {
        let mut v = vec![self.conn.probe.as_raw_fd()];
        match &self.conn.stream {
            Stream::Plain(s) => v.push(s.0.as_raw_fd()),
            Stream::Tls(s) => v.push(s.sock.0.as_raw_fd()),
        }
        v
    }
}
