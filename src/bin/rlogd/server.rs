//! The collector's listeners and connection handlers: `rlogd://` (producers with acks, and
//! followers), `tcp://` and `unix://` (newline-delimited or RFC 6587 octet-counted records),
//! `udp://` (one datagram, one record).
//!
//! One thread per connection; every connection's failures (bad frames, wrong token, a failed
//! TLS handshake, oversized input) are counted, logged, and end only that connection.

use std::io::{self, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::commit::{log, Ctx, Incoming, Msg, Origin};
use crate::limits::{Held, Slot};
use crate::net::{self, Conn, Url};
use crate::replication;
use rlog::proto::format::{now_micros, SenderAddr, MAX_PAYLOAD};
use rlog::proto::frame::{self, BatchError, FrameError, Hello, Role};

/// What an `rlogd://` listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roles {
    Both,
    ProducersOnly,
    FollowersOnly,
}

/// A refused connection: which counter to bump, and why.
fn refuse(
    ctx: &Ctx,
    conn: Option<&mut Conn>,
    peer: &str,
    counter: &std::sync::atomic::AtomicU64,
    why: &str,
) {
    counter.fetch_add(1, Ordering::Relaxed);
    if let Some(c) = conn {
        let _ = frame::write_frame(c, frame::ERROR, why.as_bytes());
    }
    log(&format!(
        "refused {peer}: {why} ({})",
        ctx.counters.summary()
    ));
}

/// Logs `msg` at most once a second per `last` (a flood of refusals makes one line a second,
/// the counters say how many).
fn log_limited(last: &AtomicU64, msg: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if last.swap(now, Ordering::Relaxed) != now {
        log(msg);
    }
}

static LAST_SLOTS_LOG: AtomicU64 = AtomicU64::new(0);
static LAST_EVICT_LOG: AtomicU64 = AtomicU64::new(0);

/// Counts and logs what admitting a connection did.
fn admitted(ctx: &Ctx, slot: Option<Slot>, evicted: bool, peer: &str) -> Option<Slot> {
    if evicted {
        ctx.counters.evicted.fetch_add(1, Ordering::Relaxed);
        log_limited(
            &LAST_EVICT_LOG,
            &format!(
                "every connection slot for handshakes is taken: dropped the oldest handshake in progress for {peer} ({})",
                ctx.counters.summary()
            ),
        );
    }
    if slot.is_none() {
        ctx.counters.refused_slots.fetch_add(1, Ordering::Relaxed);
        log_limited(
            &LAST_SLOTS_LOG,
            &format!(
                "refused {peer}: every connection slot is taken ({} open) ({})",
                ctx.slots.open(),
                ctx.counters.summary()
            ),
        );
    }
    slot
}

/// Binds a listener and serves it on its own threads. Returns the address actually bound
/// (printed by the caller, so a port 0 can be found). Errors: the bind failed.
pub fn listen(url: &Url, ctx: Arc<Ctx>, roles: Roles) -> io::Result<String> {
    match url {
        Url::Rlogd(a) | Url::Tcp(a) => {
            let l = TcpListener::bind(a)?;
            let local = l.local_addr()?.to_string();
            let rlogd = matches!(url, Url::Rlogd(_));
            std::thread::Builder::new()
                .name(format!("accept {url}"))
                .spawn(move || {
                    for s in l.incoming() {
                        let Ok(s) = s else { continue };
                        let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                        let (slot, evicted) = if rlogd {
                            ctx.slots.admit_handshake(&s)
                        } else {
                            ctx.slots.admit_plain()
                        };
                        let Some(slot) = admitted(&ctx, slot, evicted, &peer) else {
                            if rlogd {
                                // Say why (librlog shows it), without waiting on the peer.
                                let mut s = s;
                                let _ = s.set_nonblocking(true);
                                let _ = frame::write_frame(
                                    &mut s,
                                    frame::ERROR,
                                    b"rlogd: every connection slot is taken, try again later",
                                );
                            }
                            continue;
                        };
                        spawn_conn(ctx.clone(), slot, move |ctx, slot| {
                            let _ = s.set_nodelay(true);
                            if rlogd {
                                serve_rlogd(s, &ctx, roles, slot)
                            } else {
                                serve_lines(Conn::Tcp(s), &ctx);
                                slot
                            }
                        });
                    }
                })?;
            Ok(local)
        }
        Url::Unix(p) => {
            if let Ok(m) = std::fs::symlink_metadata(p) {
                use std::os::unix::fs::FileTypeExt;
                if m.file_type().is_socket() {
                    std::fs::remove_file(p)?;
                }
            }
            let l = UnixListener::bind(p)?;
            std::thread::Builder::new()
                .name(format!("accept {url}"))
                .spawn(move || {
                    for s in l.incoming() {
                        let Ok(s) = s else { continue };
                        let (slot, evicted) = ctx.slots.admit_plain();
                        let Some(slot) = admitted(&ctx, slot, evicted, "unix") else {
                            continue;
                        };
                        spawn_conn(ctx.clone(), slot, move |ctx, slot| {
                            serve_lines(Conn::Unix(s), &ctx);
                            slot
                        });
                    }
                })?;
            Ok(p.clone())
        }
        Url::Udp(a) => {
            let s = UdpSocket::bind(a)?;
            let local = s.local_addr()?.to_string();
            std::thread::Builder::new()
                .name(format!("udp {url}"))
                .spawn(move || serve_udp(s, &ctx))?;
            Ok(local)
        }
    }
}

/// Runs a connection on its own thread; `f` returns the slot (changed by a handshake) that
/// is given back when it ends.
fn spawn_conn(ctx: Arc<Ctx>, slot: Slot, f: impl FnOnce(Arc<Ctx>, Slot) -> Slot + Send + 'static) {
    ctx.counters.connections.fetch_add(1, Ordering::Relaxed);
    let c2 = ctx.clone();
    let cell = Arc::new(rlog::sync::Mutex::new(Some(slot)));
    let c3 = cell.clone();
    let r = std::thread::Builder::new()
        .name("rlogd conn".into())
        .spawn(move || {
            let Some(slot) = c3.lock().take() else { return };
            let slot = f(c2.clone(), slot);
            c2.slots.release(slot);
        });
    if let Err(e) = r {
        log(&format!("cannot start a connection thread: {e}"));
        if let Some(slot) = cell.lock().take() {
            ctx.slots.release(slot);
        }
    }
}

/// What the first bytes of a connection on a plain (not TLS) `rlogd://` listener look like.
#[derive(Debug, PartialEq, Eq)]
enum Sniffed {
    /// Possibly rlogd's protocol: read it as frames.
    Frames,
    /// A TLS ClientHello.
    Tls,
    /// Text (a line-based logger, an HTTP client): the bytes seen.
    Text(Vec<u8>),
}

/// Whether `b` starts like a TLS handshake record (ContentType 22, version 3.x).
fn is_tls_hello(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] == 0x16 && b[1] == 0x03
}

/// Whether `b` starts like an rlogd HELLO frame: a length a HELLO can have, then kind HELLO.
fn is_rlogd_hello(b: &[u8]) -> bool {
    b.len() >= 5
        && (u32::from_le_bytes(b[..4].try_into().unwrap()) as usize) <= frame::MAX_TOKEN + 64
        && b[4] == frame::HELLO
}

fn classify(b: &[u8]) -> Sniffed {
    if is_tls_hello(b) {
        return Sniffed::Tls;
    }
    if b.len() >= 5 && b[2] == 0 && b[3] == 0 {
        return Sniffed::Frames;
    }
    if !b.is_empty()
        && b.iter()
            .all(|&c| c == b'\t' || c == b'\r' || c == b'\n' || (0x20..0x7f).contains(&c))
    {
        return Sniffed::Text(b.to_vec());
    }
    Sniffed::Frames
}

/// Looks at the first bytes of a plain `rlogd://` connection without consuming them: waits
/// (until `deadline`) for a frame header's worth, or a line, whichever comes first.
fn sniff(s: &std::net::TcpStream, deadline: Instant) -> io::Result<Sniffed> {
    let mut buf = [0u8; 16];
    loop {
        s.set_read_timeout(Some(net::time_left(deadline)?))?;
        let n = s.peek(&mut buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let b = &buf[..n];
        // A line may be shorter than a frame header; but a lone byte 10 may also be the
        // first byte of a frame length (the zeros after it tell).
        if n >= 5 || is_tls_hello(b) || (n >= 2 && b.contains(&b'\n')) {
            return Ok(classify(b));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a TLS client gets from a listener that does not speak TLS: a fatal
/// `handshake_failure` alert, so it fails at once with a TLS error rather than waiting.
const TLS_ALERT_HANDSHAKE_FAILURE: [u8; 7] = [0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28];

/// Shows at most 40 bytes of what a sender sent, for a log line.
fn excerpt(b: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(&b[..b.len().min(40)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    s.trim().to_string()
}

/// A handshake that ended without a HELLO: a timeout is logged as one (and counted as one),
/// a connection closed quietly is not logged, anything else is refused as garbage.
fn handshake_failed(ctx: &Ctx, conn: Option<&mut Conn>, peer: &str, e: &io::Error) {
    if net::is_timeout(e) {
        ctx.counters.timeouts.fetch_add(1, Ordering::Relaxed);
        log(&format!(
            "closed {peer}: idle timeout: no complete handshake within {} s",
            ctx.handshake_timeout.as_secs_f64()
        ));
    } else if e.kind() != io::ErrorKind::UnexpectedEof && e.kind() != io::ErrorKind::NotConnected {
        refuse(
            ctx,
            conn,
            peer,
            &ctx.counters.refused_garbage,
            &format!("bad HELLO: {e}"),
        );
    }
}

/// An `rlogd://` connection: TLS (if configured), HELLO with the token, then the role. The
/// whole handshake must be done within `--handshake-timeout`. Returns the connection's slot.
fn serve_rlogd(s: std::net::TcpStream, ctx: &Ctx, roles: Roles, mut slot: Slot) -> Slot {
    let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let deadline = Instant::now() + ctx.handshake_timeout;
    let _ = s.set_write_timeout(Some(ctx.handshake_timeout));
    let tls = ctx.tls.lock().clone();
    let sniffed = match sniff(&s, deadline) {
        Ok(x) => x,
        Err(e) => {
            handshake_failed(ctx, None, &peer, &e);
            return slot;
        }
    };
    if let Sniffed::Text(b) = &sniffed {
        let mut s = &s;
        let _ = s.write_all(if tls.is_some() {
            &b"rlogd: this port speaks TLS and rlogd's framed protocol (librlog: sock_type = rlogd, ssl = true); send plain lines to an rlogd tcp:// listener\n"[..]
        } else {
            &b"rlogd: this port speaks rlogd's framed protocol (librlog: sock_type = rlogd); send plain lines to an rlogd tcp:// listener\n"[..]
        });
        refuse(
            ctx,
            None,
            &peer,
            &ctx.counters.refused_protocol,
            &format!(
                "not rlogd's protocol: text (\"{}\"); plain lines go to a tcp:// listener",
                excerpt(b)
            ),
        );
        return slot;
    }
    let mut conn = match tls {
        Some(cfg) => match net::accept_tls(s, &cfg, deadline) {
            Ok(c) => c,
            Err(e) if net::is_timeout(&e) => {
                handshake_failed(ctx, None, &peer, &e);
                return slot;
            }
            Err(e) => {
                refuse(
                    ctx,
                    None,
                    &peer,
                    &ctx.counters.refused_tls,
                    &format!("TLS handshake failed: {e}"),
                );
                return slot;
            }
        },
        None => {
            if sniffed == Sniffed::Tls {
                let mut s = &s;
                let _ = s.write_all(&TLS_ALERT_HANDSHAKE_FAILURE);
                refuse(
                    ctx,
                    None,
                    &peer,
                    &ctx.counters.refused_protocol,
                    "a TLS ClientHello on an rlogd:// listener without TLS (start rlogd with --tls-cert and --tls-key, or connect without TLS)",
                );
                return slot;
            }
            Conn::Tcp(s)
        }
    };
    let mut body = Vec::new();
    let read = frame::read_frame(
        &mut net::DeadlineReader {
            conn: &mut conn,
            at: deadline,
        },
        frame::MAX_TOKEN + 64,
        &mut body,
    );
    // What the first frame must be, or which counter a refusal goes to and why.
    let c = &ctx.counters;
    let hello = match read {
        Ok(frame::HELLO) => Hello::decode(&body).map_err(|e| {
            let counter = if e.starts_with("invalid date") {
                &c.refused_path
            } else {
                &c.refused_garbage
            };
            (counter, format!("bad HELLO: {e}"))
        }),
        Ok(k) => Err((
            &c.refused_garbage,
            format!("expected HELLO, got frame kind {k}"),
        )),
        Err(FrameError::TooLarge(n)) => Err((
            &c.refused_oversize,
            format!("HELLO frame of {n} bytes is too large"),
        )),
        Err(FrameError::Io(e)) => {
            handshake_failed(ctx, Some(&mut conn), &peer, &e);
            return slot;
        }
        Err(e) => Err((&c.refused_garbage, format!("bad HELLO: {e}"))),
    };
    let hello = match hello {
        Ok(h) => h,
        Err((counter, why)) => {
            refuse(ctx, Some(&mut conn), &peer, counter, &why);
            return slot;
        }
    };
    if !(frame::PROTOCOL..=frame::PROTOCOL_MAX).contains(&hello.version) {
        refuse(
            ctx,
            Some(&mut conn),
            &peer,
            &ctx.counters.refused_garbage,
            &format!("unsupported protocol version {}", hello.version),
        );
        return slot;
    }
    let token = ctx.token.lock().clone();
    if let Some(token) = token {
        if !frame::constant_time_eq(&token, &hello.token) {
            refuse(
                ctx,
                Some(&mut conn),
                &peer,
                &ctx.counters.refused_auth,
                "wrong token",
            );
            return slot;
        }
    }
    let wanted = match hello.role {
        Role::Producer => roles != Roles::FollowersOnly,
        Role::Follower(_) => roles != Roles::ProducersOnly,
    };
    if !wanted {
        refuse(
            ctx,
            Some(&mut conn),
            &peer,
            &ctx.counters.refused_garbage,
            "this listener does not serve that role",
        );
        return slot;
    }
    // Past the handshake: the connection now takes a slot of the authenticated share (unless
    // it was dropped meanwhile to make room for a newer one).
    if !ctx.slots.authenticated(&mut slot) {
        return slot;
    }
    match hello.role {
        Role::Producer => {
            if welcome(&mut conn, ctx, hello.version, ctx.idle_timeout) {
                serve_producer(conn, ctx, &peer);
            }
        }
        Role::Follower(pos) => {
            if !welcome(&mut conn, ctx, hello.version, Duration::from_secs(30)) {
                return slot;
            }
            log(&format!(
                "follower {peer} connected at {}",
                replication::describe(pos)
            ));
            if let Err(e) = replication::serve_follower(&mut conn, pos, hello.version, ctx) {
                let counter = if e.refused {
                    &ctx.counters.refused_path
                } else {
                    &ctx.counters.refused_garbage
                };
                if e.refused {
                    refuse(ctx, Some(&mut conn), &peer, counter, &e.msg);
                } else {
                    log(&format!("follower {peer}: {}", e.msg));
                }
            }
        }
    }
    slot
}

/// Batches of one connection handed to the committer before their acks are written: bounds a
/// connection's memory to this many frames.
const MAX_PIPELINED: usize = 8;

/// Whether `buf` starts with a whole frame that is within the limit.
fn whole_frame(buf: &[u8], max: usize) -> bool {
    if buf.len() < 4 {
        return false;
    }
    let len = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
    len <= max && buf.len() >= 4 + len
}

/// Accepts a peer's hello: sends WELCOME with this server's frame limit and sets the idle
/// timeout for what follows. False when the peer is already gone.
fn welcome(conn: &mut Conn, ctx: &Ctx, version: u16, idle: Duration) -> bool {
    if frame::write_frame(
        conn,
        frame::WELCOME,
        &frame::encode_welcome_version(version, ctx.max_frame as u32),
    )
    .is_err()
    {
        return false;
    }
    let _ = conn.set_timeouts(Some(idle));
    true
}

/// Bodies larger than this are not kept for the connection's next frame: the memory goes
/// back with the batch, so the budget accounts for it.
const KEEP_BODY: usize = 2 << 20;

/// Reads a producer's frame, taking the bytes of its body from the memory budget as they arrive.
fn read_budgeted(
    r: &mut BufReader<Conn>,
    max: usize,
    body: &mut Vec<u8>,
    held: &mut Held,
) -> Result<u8, FrameError> {
    let (kind, len) = frame::read_head(r, max)?;
    frame::read_body(r, len, body, |n| held.take(n)).map_err(FrameError::Io)?;
    Ok(kind)
}

/// A producer: BATCH frames in, ACK frames out, each ACK only after the batch is durable.
/// Frames already received together are committed together.
fn serve_producer(conn: Conn, ctx: &Ctx, peer: &str) {
    let mut r = BufReader::with_capacity(256 << 10, conn);
    let mut body = Vec::new();
    let mut out = Vec::new();
    let max_records = ctx.max_frame / frame::BATCH_RECORD_HEAD;
    loop {
        let mut waiting = Vec::new();
        let mut closing = false;
        loop {
            let mut held = ctx.budget.hold();
            let kind = match read_budgeted(&mut r, ctx.max_frame, &mut body, &mut held) {
                Ok(k) => k,
                Err(FrameError::Io(e))
                    if waiting.is_empty() && e.kind() == io::ErrorKind::UnexpectedEof =>
                {
                    return
                }
                Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::OutOfMemory => {
                    return refuse(
                        ctx,
                        Some(r.get_mut()),
                        peer,
                        &ctx.counters.refused_busy,
                        &e.to_string(),
                    )
                }
                Err(FrameError::Io(e)) => {
                    if waiting.is_empty() {
                        if net::is_timeout(&e) {
                            ctx.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                            log(&format!(
                                "closed producer {peer}: idle timeout: no frame for {} s",
                                ctx.idle_timeout.as_secs_f64()
                            ));
                        } else {
                            log(&format!("producer {peer}: {e}"));
                        }
                        return;
                    }
                    break;
                }
                Err(FrameError::TooLarge(n)) => {
                    return refuse(
                        ctx,
                        Some(r.get_mut()),
                        peer,
                        &ctx.counters.refused_oversize,
                        &format!("frame of {n} bytes exceeds the limit of {}", ctx.max_frame),
                    )
                }
                Err(e) => {
                    return refuse(
                        ctx,
                        Some(r.get_mut()),
                        peer,
                        &ctx.counters.refused_garbage,
                        &e.to_string(),
                    )
                }
            };
            if kind != frame::BATCH {
                return refuse(
                    ctx,
                    Some(r.get_mut()),
                    peer,
                    &ctx.counters.refused_garbage,
                    &format!("unexpected frame kind {kind}"),
                );
            }
            // A compressed batch is inflated into memory of its own: take that too.
            if body.len() >= frame::BATCH_HEAD && body[20] == frame::CODEC_ZLIB {
                let raw = u32::from_le_bytes(body[21..25].try_into().unwrap()) as usize;
                if let Err(e) = held.take(raw.min(ctx.max_frame)) {
                    return refuse(
                        ctx,
                        Some(r.get_mut()),
                        peer,
                        &ctx.counters.refused_busy,
                        &e.to_string(),
                    );
                }
            }
            let decoded = frame::decode_batch(&body, ctx.max_frame, max_records);
            if body.capacity() > KEEP_BODY {
                body = Vec::new();
            }
            let batch = match decoded {
                Ok(b) => b,
                Err(BatchError::Garbage(e)) => {
                    return refuse(
                        ctx,
                        Some(r.get_mut()),
                        peer,
                        &ctx.counters.refused_garbage,
                        &e,
                    )
                }
                Err(BatchError::Bomb(e)) => {
                    return refuse(ctx, Some(r.get_mut()), peer, &ctx.counters.refused_bomb, &e)
                }
            };
            if batch.producer == 0 {
                return refuse(
                    ctx,
                    Some(r.get_mut()),
                    peer,
                    &ctx.counters.refused_garbage,
                    "producer id 0 is reserved",
                );
            }
            let (tx, rx) = crossbeam_channel::bounded(1);
            let next = batch.first_seq + batch.records.len() as u64;
            let producer = batch.producer;
            ctx.inflight.fetch_add(1, Ordering::AcqRel);
            let sent = ctx.tx.send(Msg::Batch(Incoming {
                producer,
                first_seq: batch.first_seq,
                records: batch.records,
                data: batch.data,
                origin: Origin::Producer,
                reply: Some(tx),
                held: Some(held),
            }));
            if sent.is_err() {
                // The committer has stopped (shutdown): this batch is not stored.
                ctx.inflight.fetch_sub(1, Ordering::AcqRel);
                closing = true;
                break;
            }
            waiting.push((producer, next, rx));
            if waiting.len() >= MAX_PIPELINED || !whole_frame(r.buffer(), ctx.max_frame) {
                break;
            }
        }
        out.clear();
        let mut failed = None;
        let batches = waiting.len();
        for (producer, next, rx) in waiting.drain(..) {
            match rx.recv() {
                Ok(Ok(_)) if failed.is_none() => {
                    let at = frame::begin_frame(&mut out, frame::ACK);
                    out.extend_from_slice(&frame::encode_ack(producer, next));
                    frame::end_frame(&mut out, at);
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => failed = Some(e),
                Err(_) => failed = Some("rlogd is shutting down".to_string()),
            }
        }
        let w = r.get_mut().write_all(&out);
        ctx.inflight.fetch_sub(batches, Ordering::AcqRel);
        if closing && failed.is_none() {
            failed = Some("rlogd is shutting down".to_string());
        }
        if let Some(e) = failed {
            let _ = frame::write_frame(r.get_mut(), frame::ERROR, e.as_bytes());
            return;
        }
        if w.is_err() || ctx.stopping.load(Ordering::Acquire) {
            return;
        }
    }
}

/// Splits a byte stream into records: RFC 6587 octet counting (`LEN SP MSG`) when a record
/// starts with a digit followed by digits and a space, else newline-delimited.
pub struct Framer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    max: usize,
}

/// What the framer has next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A record at this range of [`Framer::bytes`].
    Record(usize, usize),
    /// Call [`Framer::fill`].
    NeedMore,
    End,
}

/// A framer's first buffer; it grows (to the record limit) only for longer records.
const FRAMER_START: usize = 64 << 10;

impl Framer {
    pub fn new(max: usize) -> Framer {
        Framer {
            buf: vec![0; FRAMER_START],
            start: 0,
            end: 0,
            eof: false,
            max,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The bytes read and not yet taken as records.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The next record. Errors: a record longer than the limit.
    pub fn next_record(&mut self) -> Result<Next, String> {
        let avail = &self.buf[self.start..self.end];
        if avail.is_empty() {
            return Ok(if self.eof { Next::End } else { Next::NeedMore });
        }
        if avail[0].is_ascii_digit() && avail[0] != b'0' {
            let digits = avail
                .iter()
                .take(11)
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits < avail.len() && digits <= 10 && avail[digits] == b' ' {
                let len: u64 = std::str::from_utf8(&avail[..digits])
                    .unwrap()
                    .parse()
                    .unwrap();
                if len > self.max as u64 {
                    return Err(format!(
                        "octet-counted record of {len} bytes exceeds {}",
                        self.max
                    ));
                }
                let total = digits + 1 + len as usize;
                if avail.len() >= total {
                    let s = self.start + digits + 1;
                    self.start += total;
                    return Ok(Next::Record(s, s + len as usize));
                }
                if self.eof {
                    return Err("connection closed inside an octet-counted record".into());
                }
                return Ok(Next::NeedMore);
            }
            if digits == avail.len() && digits <= 10 && !self.eof {
                return Ok(Next::NeedMore);
            }
        }
        match avail.iter().position(|&b| b == b'\n') {
            Some(j) => {
                let s = self.start;
                self.start += j + 1;
                Ok(Next::Record(s, s + j))
            }
            None if avail.len() > self.max => Err(format!("line longer than {} bytes", self.max)),
            None if self.eof => {
                let s = self.start;
                self.start = self.end;
                Ok(Next::Record(s, self.end))
            }
            None => Ok(Next::NeedMore),
        }
    }

    /// By how many bytes the next [`Framer::fill`] will grow the buffer (0: it has room).
    pub fn growth(&self) -> usize {
        if self.end - self.start < self.buf.len() {
            0
        } else {
            (self.buf.len() * 2)
                .min(self.max + 16)
                .saturating_sub(self.buf.len())
        }
    }

    /// Gives a grown buffer back once everything in it was taken: true when it did.
    pub fn shrink_if_empty(&mut self) -> bool {
        if self.start == self.end && self.buf.len() > FRAMER_START {
            self.buf = vec![0; FRAMER_START];
            self.start = 0;
            self.end = 0;
            return true;
        }
        false
    }

    /// Reads more input (blocking). Errors: I/O.
    pub fn fill(&mut self, r: &mut impl Read) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = (self.buf.len() * 2).min(self.max + 16);
            if grown <= self.buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "record too long",
                ));
            }
            self.buf.resize(grown, 0);
        }
        let n = loop {
            match r.read(&mut self.buf[self.end..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if n == 0 {
            self.eof = true;
        }
        self.end += n;
        Ok(())
    }
}

/// Submits records received without acknowledgement (tcp/udp/unix), from `origin`'s
/// senders (for `Origin::Each`, the vector is taken along with the records).
fn submit_plain(
    ctx: &Ctx,
    records: &mut Vec<frame::BatchRecord>,
    data: &mut Vec<u8>,
    origin: &mut Origin,
) -> bool {
    if records.is_empty() {
        return true;
    }
    let origin = match origin {
        Origin::Each(v) => Origin::Each(std::mem::take(v)),
        Origin::One(s) => Origin::One(*s),
        Origin::Producer => Origin::Producer,
    };
    let m = Msg::Batch(Incoming {
        producer: 0,
        first_seq: 0,
        records: std::mem::take(records),
        data: std::mem::take(data),
        origin,
        reply: None,
        held: None,
    });
    ctx.tx.send(m).is_ok()
}

/// Why the first bytes of a plain (`tcp://`, `unix://`) connection are not records: a TLS
/// client or an rlogd producer (librlog, a follower) that was given the wrong port.
fn wrong_protocol(b: &[u8]) -> Option<&'static str> {
    if is_tls_hello(b) {
        Some("a TLS ClientHello on a tcp:// listener (which takes plain lines; TLS goes to an rlogd:// listener with --tls-cert)")
    } else if is_rlogd_hello(b) {
        Some("rlogd's HELLO on a tcp:// listener (which takes plain lines; librlog with sock_type = rlogd, and followers, go to an rlogd:// listener)")
    } else {
        None
    }
}

fn serve_lines(mut conn: Conn, ctx: &Ctx) {
    let peer = conn.peer();
    let _ = conn.set_timeouts(Some(ctx.idle_timeout));
    let sender = conn.sender();
    // A record holds at most MAX_PAYLOAD bytes, the sender's address included.
    let mut f = Framer::new(MAX_PAYLOAD - sender.map_or(0, |s| s.encoded_len()));
    let mut origin = sender.map_or(Origin::Producer, Origin::One);
    let mut held = ctx.budget.hold();
    let mut records = Vec::new();
    let mut data = Vec::new();
    let mut first = true;
    loop {
        if first && !f.pending().is_empty() {
            first = false;
            if let Some(why) = wrong_protocol(f.pending()) {
                if is_tls_hello(f.pending()) {
                    let _ = conn.write_all(&TLS_ALERT_HANDSHAKE_FAILURE);
                    return refuse(ctx, None, &peer, &ctx.counters.refused_protocol, why);
                }
                return refuse(
                    ctx,
                    Some(&mut conn),
                    &peer,
                    &ctx.counters.refused_protocol,
                    why,
                );
            }
        }
        match f.next_record() {
            Ok(Next::Record(s, e)) => {
                let start = data.len();
                data.extend_from_slice(&f.bytes()[s..e]);
                records.push(frame::BatchRecord {
                    time_us: now_micros(),
                    rtype: 0,
                    start,
                    len: e - s,
                });
                if data.len() >= 1 << 20 && !submit_plain(ctx, &mut records, &mut data, &mut origin)
                {
                    return;
                }
            }
            Ok(Next::NeedMore) => {
                if !submit_plain(ctx, &mut records, &mut data, &mut origin) {
                    return;
                }
                // A buffer grown for a long line comes from the memory budget, and goes
                // back to it when the line is taken.
                if f.shrink_if_empty() {
                    held = ctx.budget.hold();
                }
                let grow = f.growth();
                if grow > 0 {
                    if let Err(e) = held.take(grow) {
                        return refuse(
                            ctx,
                            None,
                            &peer,
                            &ctx.counters.refused_busy,
                            &e.to_string(),
                        );
                    }
                }
                if let Err(e) = f.fill(&mut conn) {
                    if net::is_timeout(&e) {
                        ctx.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                        log(&format!(
                            "closed {peer}: idle timeout: nothing for {} s",
                            ctx.idle_timeout.as_secs_f64()
                        ));
                    } else if e.kind() != io::ErrorKind::UnexpectedEof {
                        log(&format!("{peer}: {e}"));
                    }
                    return;
                }
            }
            Ok(Next::End) => {
                submit_plain(ctx, &mut records, &mut data, &mut origin);
                return;
            }
            Err(e) => {
                submit_plain(ctx, &mut records, &mut data, &mut origin);
                return refuse(ctx, None, &peer, &ctx.counters.refused_oversize, &e);
            }
        }
    }
}

fn serve_udp(s: UdpSocket, ctx: &Ctx) {
    let mut buf = vec![0u8; 65536];
    let mut records = Vec::new();
    let mut data = Vec::new();
    let mut origin = Origin::Each(Vec::new());
    loop {
        let _ = s.set_nonblocking(!records.is_empty());
        match s.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Origin::Each(v) = &mut origin {
                    v.push(SenderAddr::ip(from));
                }
                let start = data.len();
                data.extend_from_slice(&buf[..n]);
                records.push(frame::BatchRecord {
                    time_us: now_micros(),
                    rtype: 0,
                    start,
                    len: n,
                });
                if records.len() < 4096 {
                    continue;
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log(&format!("udp: {e}"));
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if !submit_plain(ctx, &mut records, &mut data, &mut origin) {
            return;
        }
    }
}

/// Reads the token file: its content with one trailing newline removed. Errors: unreadable or
/// empty file.
pub fn read_token(path: &str) -> Result<Vec<u8>, String> {
    let mut t = std::fs::read(path).map_err(|e| format!("cannot read token file {path}: {e}"))?;
    while t.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        t.pop();
    }
    if t.is_empty() {
        return Err(format!("token file {path} is empty"));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8], max: usize) -> Result<Vec<Vec<u8>>, String> {
        let mut f = Framer::new(max);
        let mut r = input;
        let mut out = Vec::new();
        loop {
            match f.next_record()? {
                Next::Record(s, e) => out.push(f.bytes()[s..e].to_vec()),
                Next::NeedMore => f.fill(&mut r).map_err(|e| e.to_string())?,
                Next::End => return Ok(out),
            }
        }
    }

    #[test]
    fn first_bytes() {
        assert_eq!(
            classify(b"<13>hello\n"),
            Sniffed::Text(b"<13>hello\n".to_vec())
        );
        assert_eq!(classify(&[0x16, 3, 1, 0, 5]), Sniffed::Tls);
        // A HELLO frame whose length byte is a newline (a 4-byte token).
        assert_eq!(classify(&[10, 0, 0, 0, 1, 1, 0]), Sniffed::Frames);
        assert_eq!(classify(&[10, 0]), Sniffed::Frames);
        assert!(is_rlogd_hello(&[10, 0, 0, 0, 1]));
        assert!(!is_rlogd_hello(b"hello"));
    }

    #[test]
    fn framing() {
        assert_eq!(
            split(b"a\nbb\n", 100).unwrap(),
            vec![b"a".to_vec(), b"bb".to_vec()]
        );
        assert_eq!(
            split(b"5 hello3 a\nb", 100).unwrap(),
            vec![b"hello".to_vec(), b"a\nb".to_vec()]
        );
        // Digits and a space start an octet-counted record (RFC 6587), even mid-sentence.
        assert!(split(b"123 not counted\n", 100).is_err());
        assert_eq!(split(b"tail", 100).unwrap(), vec![b"tail".to_vec()]);
        assert!(split(b"99999 x", 100).is_err());
        assert!(split(&[b'x'; 200], 100).is_err());
    }
}
