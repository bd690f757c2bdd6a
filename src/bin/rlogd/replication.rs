//! Replication: the master streams its store to a follower, and the follower writes an exact
//! copy.
//!
//! The follower says where its store ends ([`Position`]); the master sends the records after
//! that point, date by date (`RECORDS` frames carrying each record's index entry and its bytes
//! as stored), then `FINISH` when a date is sealed, then waits for new commits (it is woken by
//! the committer, so live records go out as soon as they are durable) with a `HEARTBEAT` every
//! second of silence. Dates are taken from the master's store, never from either clock. The
//! follower checks every date, position, size and CRC before writing, commits after every
//! frame, and on any error reconnects and resumes from its own store.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::commit::{apply_retention, log, Ctx};
use crate::net::{self, Conn};
use crate::store::{self, Store};
use rlog::proto::format::{self, Date, Entry, ENTRY, RECORD_HEADER};
use rlog::proto::frame::{self, Cursor, FrameError, Hello, Position, Role};
use rlog::proto::reader::DateReader;

/// Why the master stopped serving a follower.
pub struct FollowerError {
    /// The follower asked for something invalid (counted as refused), rather than a network error.
    pub refused: bool,
    pub msg: String,
}

fn io_err(e: io::Error) -> FollowerError {
    FollowerError {
        refused: false,
        msg: e.to_string(),
    }
}

fn refused(msg: String) -> FollowerError {
    FollowerError { refused: true, msg }
}

/// Records per RECORDS frame, and bytes after which a frame is sent.
const CHUNK_RECORDS: usize = 8192;
const CHUNK_BYTES: usize = 1 << 20;

enum Cursor2 {
    /// Waiting for a date newer than this one (or any date).
    Next(Option<Date>),
    /// Streaming `date` from record `have`.
    At(Date, u64, DateReader),
}

/// Errors: a follower speaking protocol 1 (an older rlogd) cannot copy a date of format
/// version 2: it would take its flags for damage. Refused by name instead.
fn copyable(protocol: u16, date: Date, reader: &DateReader) -> Result<(), FollowerError> {
    if protocol < 2 && reader.version >= 2 {
        return Err(refused(format!(
            "{date} is in store format version {}, which a follower speaking protocol {protocol} (an older rlogd) cannot copy: upgrade the follower",
            reader.version
        )));
    }
    Ok(())
}

/// Serves one follower, which spoke `protocol` in its HELLO, until it disconnects or the
/// daemon stops.
pub fn serve_follower(
    conn: &mut Conn,
    pos: Position,
    protocol: u16,
    ctx: &Ctx,
) -> Result<(), FollowerError> {
    let root = ctx.root.as_path();
    let mut cur = match pos {
        Position::Empty => Cursor2::Next(None),
        Position::Sealed { date } => Cursor2::Next(Some(date)),
        Position::Open { date, count } => {
            let reader = match DateReader::open(root, date) {
                Ok(r) => r,
                Err(e) => {
                    // Retention removed a date the follower had not finished: it can never be
                    // completed, so the follower seals what it has and goes on.
                    let newer = store::list_dates(root)
                        .map_err(io_err)?
                        .into_iter()
                        .any(|d| d > date);
                    if e.kind() != io::ErrorKind::NotFound || !newer {
                        return Err(refused(format!(
                            "follower asks for {date}, which this master cannot read: {e}"
                        )));
                    }
                    log(&format!("follower asks for {date}, which is no longer here (retention): it seals its {count} records"));
                    let mut body = date.as_u32().to_le_bytes().to_vec();
                    body.extend_from_slice(&count.to_le_bytes());
                    frame::write_frame(conn, frame::FINISH, &body).map_err(io_err)?;
                    return serve_follower(conn, Position::Sealed { date }, protocol, ctx);
                }
            };
            copyable(protocol, date, &reader)?;
            let on_disk = reader.count_on_disk().map_err(io_err)?;
            if count > on_disk {
                return Err(refused(format!(
                    "follower has {count} records of {date}, this master only {on_disk}: the stores diverged"
                )));
            }
            Cursor2::At(date, count, reader)
        }
    };
    let mut out = Vec::new();
    let mut last_sent = Instant::now();
    loop {
        let (snapshot, version) = {
            let s = ctx.shared.state.lock();
            (s.open, s.version)
        };
        if ctx.stopping.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut progressed = false;
        match &mut cur {
            Cursor2::Next(after) => {
                let dates = store::list_dates(root).map_err(io_err)?;
                if let Some(d) = dates.into_iter().find(|d| after.is_none_or(|a| *d > a)) {
                    let reader = DateReader::open(root, d).map_err(io_err)?;
                    copyable(protocol, d, &reader)?;
                    if protocol >= 2 {
                        let mut body = d.as_u32().to_le_bytes().to_vec();
                        body.extend_from_slice(&reader.version.to_le_bytes());
                        frame::write_frame(conn, frame::BEGIN, &body).map_err(io_err)?;
                    }
                    cur = Cursor2::At(d, 0, reader);
                    progressed = true;
                }
            }
            Cursor2::At(date, have, reader) => {
                let sealed = store::is_sealed(root, *date);
                let avail = if sealed {
                    reader.count_on_disk().map_err(io_err)?
                } else {
                    match snapshot {
                        Some((d, n)) if d == *date => n,
                        _ => 0,
                    }
                };
                if *have < avail {
                    let n = send_chunk(conn, reader, *date, *have, avail, &mut out)?;
                    *have += n;
                    progressed = true;
                    last_sent = Instant::now();
                } else if sealed {
                    let mut body = date.as_u32().to_le_bytes().to_vec();
                    body.extend_from_slice(&have.to_le_bytes());
                    frame::write_frame(conn, frame::FINISH, &body).map_err(io_err)?;
                    last_sent = Instant::now();
                    cur = Cursor2::Next(Some(*date));
                    progressed = true;
                }
            }
        }
        if progressed {
            continue;
        }
        // Nothing to send: wait for the next commit, with a heartbeat every second.
        {
            let mut s = ctx.shared.state.lock();
            if s.version == version && !s.stopping {
                ctx.shared
                    .changed
                    .wait_until(&mut s, Instant::now() + Duration::from_millis(1000));
            }
        }
        if last_sent.elapsed() >= Duration::from_millis(1000) {
            frame::write_frame(conn, frame::HEARTBEAT, &[]).map_err(io_err)?;
            last_sent = Instant::now();
        }
    }
}

/// Sends records `from..avail` of `date` (at most one chunk); returns how many went.
fn send_chunk(
    conn: &mut Conn,
    reader: &mut DateReader,
    date: Date,
    from: u64,
    avail: u64,
    out: &mut Vec<u8>,
) -> Result<u64, FollowerError> {
    let n = (avail - from).min(CHUNK_RECORDS as u64) as usize;
    let mut entries = Vec::with_capacity(n * ENTRY);
    reader.raw_entries(from, n, &mut entries).map_err(io_err)?;
    out.clear();
    let at = frame::begin_frame(out, frame::RECORDS);
    out.extend_from_slice(&date.as_u32().to_le_bytes());
    out.extend_from_slice(&from.to_le_bytes());
    let count_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut sent = 0u32;
    for (i, raw) in entries.chunks_exact(ENTRY).enumerate() {
        let id = from + i as u64;
        let e = Entry::decode(raw)
            .map_err(|m| io_err(io::Error::other(format!("{date} record {id}: {m}"))))?;
        // Keep a frame within the follower's limit: a large record goes in a frame of its own.
        if sent > 0 && out.len() + ENTRY + RECORD_HEADER + e.len as usize > CHUNK_BYTES {
            break;
        }
        out.extend_from_slice(raw);
        reader.raw_record(id, &e, out).map_err(io_err)?;
        sent += 1;
    }
    out[count_at..count_at + 4].copy_from_slice(&sent.to_le_bytes());
    frame::end_frame(out, at);
    use std::io::Write;
    conn.write_all(out).map_err(io_err)?;
    Ok(sent as u64)
}

/// A position as a person reads it, for log lines.
pub fn describe(pos: Position) -> String {
    match pos {
        Position::Empty => "an empty store (from the oldest date)".into(),
        Position::Open { date, count } => format!("{date} record {count} (open)"),
        Position::Sealed { date } => format!("the end of {date} (sealed; next date)"),
    }
}

/// Settings of `rlogd follow`.
pub struct FollowSettings {
    /// `HOST:PORT` of the master's `rlogd://` (or `--replication`) listener.
    pub master: String,
    pub data: PathBuf,
    /// The token sent to the master (`--token-file`, re-read on SIGHUP).
    pub token: rlog::sync::Mutex<Vec<u8>>,
    pub tls: Option<rlog::output::tls::TlsSettings>,
    pub retain_days: Option<u32>,
    pub max_frame: usize,
    pub file_size: u64,
}

/// Where the follower's store ends.
pub fn position(store: &Store) -> Position {
    match (store.open_date(), store.newest()) {
        (Some((date, count)), _) => Position::Open { date, count },
        (None, Some(date)) => Position::Sealed { date },
        (None, None) => Position::Empty,
    }
}

/// Runs the follower until `stop` is set: connect, replicate, and on any error reconnect (with
/// a backoff from 100 ms to 2 s) and resume from the local store. Errors: the local store
/// cannot be opened.
pub fn follow(settings: &FollowSettings, stop: &AtomicBool) -> io::Result<()> {
    let mut store = crate::commit::open_store(
        &settings.data,
        store::Options {
            file_size: settings.file_size,
        },
    )?;
    let mut backoff = Duration::from_millis(100);
    let mut last_retention = Instant::now() - Duration::from_secs(3600);
    // The newest protocol first; protocol 1 from then on if the master is an older rlogd.
    let mut protocol = frame::PROTOCOL_MAX;
    while !stop.load(Ordering::Acquire) {
        let mut progressed = false;
        match session(
            settings,
            &mut store,
            stop,
            &mut progressed,
            &mut last_retention,
            &mut protocol,
        ) {
            Ok(()) => return Ok(()),
            Err(e) => {
                log(&format!("replication from {}: {e}", settings.master));
                // Records appended but not committed (a frame that failed half way, a write
                // that failed) must not survive: reopen the store, which recovers it to what
                // was committed.
                drop(store);
                store = crate::commit::open_store(
                    &settings.data,
                    store::Options {
                        file_size: settings.file_size,
                    },
                )?;
            }
        }
        if progressed {
            backoff = Duration::from_millis(100);
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(20));
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    Ok(())
}

fn session(
    s: &FollowSettings,
    store: &mut Store,
    stop: &AtomicBool,
    progressed: &mut bool,
    last_retention: &mut Instant,
    protocol: &mut u16,
) -> Result<(), String> {
    let mut conn = net::connect(&s.master, s.tls.as_ref(), Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    conn.set_timeouts(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let pos = position(store);
    let hello = Hello {
        version: *protocol,
        token: s.token.lock().clone(),
        role: Role::Follower(pos),
    };
    frame::write_frame(&mut conn, frame::HELLO, &hello.encode()).map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    // The protocol of this session: what the master answered, at most what was asked.
    let speaking = match frame::read_frame(&mut conn, s.max_frame, &mut body) {
        Ok(frame::WELCOME) => {
            let (v, _) = frame::decode_welcome(&body).map_err(|e| format!("WELCOME: {e}"))?;
            v.clamp(frame::PROTOCOL, *protocol)
        }
        Ok(frame::ERROR) => {
            let why = String::from_utf8_lossy(&body);
            if *protocol > frame::PROTOCOL && why.contains("unsupported protocol version") {
                // An older rlogd: its dates are all of format version 1.
                *protocol = frame::PROTOCOL;
                *progressed = true;
                return Err(format!(
                    "master refused protocol {}: {why}; speaking protocol {} (an older rlogd, whose dates are format version 1)",
                    frame::PROTOCOL_MAX,
                    frame::PROTOCOL
                ));
            }
            return Err(format!("master refused: {why}"));
        }
        Ok(k) => return Err(format!("expected WELCOME, got frame kind {k}")),
        Err(e) => return Err(format!("handshake: {e}")),
    };
    log(&format!(
        "replicating from {} at {} (protocol {speaking})",
        s.master,
        describe(pos)
    ));
    // The date the master announced with BEGIN (protocol 2), and its format version.
    let mut begun: Option<(Date, u32)> = None;
    loop {
        if stop.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(days) = s.retain_days {
            if last_retention.elapsed() >= Duration::from_secs(1) {
                *last_retention = Instant::now();
                apply_retention(store, days);
            }
        }
        let kind = match frame::read_frame(&mut conn, s.max_frame, &mut body) {
            Ok(k) => k,
            Err(FrameError::Io(e))
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Err("the master went silent (no heartbeat)".into())
            }
            Err(e) => return Err(format!("read: {e}")),
        };
        match kind {
            frame::BEGIN => {
                let mut c = Cursor::new(&body);
                let date = Date::from_u32(c.u32()?).map_err(|e| format!("master sent {e}"))?;
                let version = c.u32()?;
                c.done()?;
                if !format::VERSIONS.contains(&version) {
                    return Err(format!(
                        "master sent {date} in store format version {version}, which this rlogd cannot write: upgrade the follower"
                    ));
                }
                begun = Some((date, version));
            }
            frame::RECORDS => {
                apply_records(store, &body, speaking, begun)?;
                *progressed = true;
            }
            frame::FINISH => {
                let mut c = Cursor::new(&body);
                let date = Date::from_u32(c.u32()?)?;
                let count = c.u64()?;
                c.done()?;
                if store.open_date() != Some((date, count)) {
                    // A date with no records on the master: create it empty, then seal.
                    if count == 0 && store.newest().is_none_or(|n| date > n) {
                        let version = version_of(date, speaking, begun)?;
                        store
                            .begin(date, version)
                            .map_err(|e| format!("store: {e}"))?;
                    } else {
                        return Err(format!(
                            "master finished {date} at {count} records, this store is at {}",
                            describe(position(store))
                        ));
                    }
                }
                store.seal().map_err(|e| format!("store: {e}"))?;
                log(&format!("{date} finished ({count} records)"));
                *progressed = true;
            }
            frame::HEARTBEAT => {}
            frame::ERROR => return Err(format!("master: {}", String::from_utf8_lossy(&body))),
            k => return Err(format!("unexpected frame kind {k}")),
        }
    }
}

/// The format version of a date the master starts sending: what its BEGIN said (protocol 2),
/// or 1 (an older master, whose dates are all version 1). Errors: no BEGIN for that date.
fn version_of(date: Date, speaking: u16, begun: Option<(Date, u32)>) -> Result<u32, String> {
    if speaking < 2 {
        return Ok(1);
    }
    match begun {
        Some((d, v)) if d == date => Ok(v),
        _ => Err(format!("master sent {date} without a BEGIN for it")),
    }
}

/// Checks and writes one RECORDS frame, then commits it. Everything the master sent is
/// checked (date, first id, count, each entry and record with its CRC) before anything is
/// written; the placement of each record (and its flags, against the date's version) is
/// checked as it is appended.
fn apply_records(
    store: &mut Store,
    body: &[u8],
    speaking: u16,
    begun: Option<(Date, u32)>,
) -> Result<(), String> {
    let mut c = Cursor::new(body);
    let date = Date::from_u32(c.u32()?).map_err(|e| format!("master sent {e}"))?;
    let first = c.u64()?;
    let count = c.u32()? as usize;
    if count > body.len() / (ENTRY + RECORD_HEADER) + 1 {
        return Err(format!(
            "RECORDS frame announces {count} records, more than it can hold"
        ));
    }
    let mut records = Vec::with_capacity(count);
    for i in 0..count {
        let e = Entry::decode(c.bytes(ENTRY)?)?;
        let rec = c.bytes(RECORD_HEADER + e.len as usize)?;
        let h = format::decode_record_header(rec)?;
        if !e.matches(&h) || h.crc != format::record_crc(rec) {
            return Err(format!(
                "master sent a bad record ({date} record {}): CRC or header mismatch",
                first + i as u64
            ));
        }
        records.push((e, rec));
    }
    c.done()?;
    match store.open_date() {
        Some((d, n)) if d == date => {
            if first != n {
                return Err(format!(
                    "master sent {date} from record {first}, this store has {n}"
                ));
            }
        }
        _ => {
            if first != 0 || store.newest().is_some_and(|n| date <= n) {
                return Err(format!(
                    "master sent {date} from record {first}, which does not follow this store (at {})",
                    describe(position(store))
                ));
            }
            let version = version_of(date, speaking, begun)?;
            store
                .begin(date, version)
                .map_err(|e| format!("store: {e}"))?;
        }
    }
    for (e, rec) in records {
        store
            .append_replica(&e, rec)
            .map_err(|m| format!("master sent a bad record: {m}"))?;
    }
    store.commit().map_err(|e| format!("store: {e}"))
}
