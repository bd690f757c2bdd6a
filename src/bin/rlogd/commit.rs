//! The committer: the one thread that writes the store.
//!
//! Connections hand it batches over a bounded channel (so a fast sender is slowed down, never
//! buffered without bound). It takes every batch that is waiting, appends them all, `fsync`s
//! once (group commit), and only then answers each batch's sender and wakes the replication
//! senders. It drops records a producer already stored (same producer, sequence at or below the
//! last stored one), seals the open date when the clock has passed its end (plus a grace
//! period), and applies retention.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rlog::sync::{Condvar, Mutex};

use crate::store::{self, Store};
use rlog::proto::format::{now_micros, Date, Meta, SenderAddr};

/// Records to store, from one connection.
pub struct Incoming {
    /// 0 for senders without acknowledgements (tcp/udp/unix).
    pub producer: u64,
    /// Sequence number of the first record (records are numbered consecutively).
    pub first_seq: u64,
    pub records: Vec<rlog::proto::frame::BatchRecord>,
    pub data: Vec<u8>,
    /// The address of a plain sender, stored with its records.
    pub origin: Origin,
    /// Where to say that the batch is durable (or why it is not).
    pub reply: Option<Reply>,
    /// The share of the memory budget this batch takes; given back once it is written.
    pub held: Option<crate::limits::Held>,
}

/// Where the records of an [`Incoming`] came from: nowhere stored for librlog producers (their
/// producer id and sequence numbers identify them), one address for a `tcp://` or `unix://`
/// connection, one per record for a `udp://` listener.
pub enum Origin {
    Producer,
    One(SenderAddr),
    Each(Vec<SenderAddr>),
}

impl Origin {
    /// The sender of record `i`.
    pub fn of(&self, i: usize) -> Option<&SenderAddr> {
        match self {
            Origin::Producer => None,
            Origin::One(s) => Some(s),
            Origin::Each(v) => v.get(i),
        }
    }
}

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub stored: u64,
    pub duplicates: u64,
}

/// Where a batch's outcome goes.
pub type Reply = Sender<Result<Stored, String>>;

/// Messages to the committer.
pub enum Msg {
    Batch(Incoming),
    /// Finish what was received before this, then stop.
    Stop,
}

/// What is durable, published after every commit for the replication senders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// The open date and how many of its records are durable.
    pub open: Option<(Date, u64)>,
    /// Bumped on every change.
    pub version: u64,
    pub stopping: bool,
}

/// The published state and the condition variable to wait for it to change.
#[derive(Default)]
pub struct Shared {
    pub state: Mutex<Committed>,
    pub changed: Condvar,
}

impl Shared {
    fn publish(&self, open: Option<(Date, u64)>, stopping: bool) {
        let mut s = self.state.lock();
        s.open = open;
        s.version += 1;
        s.stopping = stopping;
        self.changed.notify_all();
    }
}

/// Counters of what the daemon did and refused; printed in its log lines.
#[derive(Debug, Default)]
pub struct Counters {
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub connections: AtomicU64,
    pub refused_oversize: AtomicU64,
    pub refused_garbage: AtomicU64,
    pub refused_auth: AtomicU64,
    pub refused_tls: AtomicU64,
    pub refused_bomb: AtomicU64,
    pub refused_path: AtomicU64,
    /// Something that is not rlogd's protocol on an `rlogd://` listener (text, TLS on a plain
    /// listener), or rlogd's protocol or TLS on a `tcp://` one.
    pub refused_protocol: AtomicU64,
    /// Connections refused because every slot was taken.
    pub refused_slots: AtomicU64,
    /// Frames refused because the memory budget (`--max-buffered`) stayed spent.
    pub refused_busy: AtomicU64,
    /// Handshakes dropped to make room for a newer connection.
    pub evicted: AtomicU64,
    /// Connections closed for silence: no handshake in time, or idle too long.
    pub timeouts: AtomicU64,
}

impl Counters {
    /// Every counter with its name, in a fixed order.
    pub fn list(&self) -> [(&'static str, u64); 14] {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("stored", g(&self.stored)),
            ("duplicates", g(&self.duplicates)),
            ("connections", g(&self.connections)),
            ("refused_oversize", g(&self.refused_oversize)),
            ("refused_garbage", g(&self.refused_garbage)),
            ("refused_auth", g(&self.refused_auth)),
            ("refused_tls", g(&self.refused_tls)),
            ("refused_bomb", g(&self.refused_bomb)),
            ("refused_path", g(&self.refused_path)),
            ("refused_protocol", g(&self.refused_protocol)),
            ("refused_slots", g(&self.refused_slots)),
            ("refused_busy", g(&self.refused_busy)),
            ("evicted", g(&self.evicted)),
            ("timeouts", g(&self.timeouts)),
        ]
    }

    /// One line with every counter.
    pub fn summary(&self) -> String {
        self.list()
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Committer settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Seal the open date this long after its end by the server's clock.
    pub seal_grace: Duration,
    /// Keep this many days (today included); `None` keeps everything.
    pub retain_days: Option<u32>,
}

rlog::static_mutex! {
    /// The daemon's own log file (`--log-file`), reopened on SIGHUP; stderr when there is none.
    static LOG_FILE: Mutex<Option<(std::path::PathBuf, std::fs::File)>> = None;
}

fn open_log(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Sends the log to `path` (appending) from now on. Errors: it cannot be opened.
pub fn log_to_file(path: &Path) -> io::Result<()> {
    let f = open_log(path)?;
    *LOG_FILE.lock() = Some((path.to_path_buf(), f));
    Ok(())
}

/// Reopens the log file (after logrotate moved it away). Errors: it cannot be opened (the old
/// one is kept).
pub fn reopen_log() -> io::Result<bool> {
    let mut g = LOG_FILE.lock();
    if let Some((path, f)) = g.as_mut() {
        *f = open_log(path)?;
        return Ok(true);
    }
    Ok(false)
}

/// Whether the log goes to a `--log-file`.
pub fn logging_to_file() -> bool {
    LOG_FILE.lock().is_some()
}

/// Prints one log line of the daemon.
pub fn log(msg: &str) {
    let line = format!("rlogd: {msg}\n");
    let mut g = LOG_FILE.lock();
    if let Some((_, f)) = g.as_mut() {
        use std::io::Write;
        if f.write_all(line.as_bytes()).is_ok() {
            return;
        }
    }
    drop(g);
    eprint!("{line}");
}

/// Runs the committer until a [`Msg::Stop`] (or every sender is gone).
pub fn run(
    mut store: Store,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    settings: Settings,
) {
    let mut pending: Vec<(Option<Reply>, Stored)> = Vec::new();
    let mut last_retention = Instant::now() - Duration::from_secs(3600);
    shared.publish(store.open_date(), false);
    loop {
        let first = rx.recv_timeout(Duration::from_millis(500));
        let mut stop = false;
        let mut msgs = Vec::new();
        match first {
            Ok(m) => msgs.push(m),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => stop = true,
        }
        // Group commit: everything already waiting goes into this commit.
        let mut bytes = 0usize;
        while bytes < (64 << 20) {
            match rx.try_recv() {
                Ok(m) => {
                    if let Msg::Batch(b) = &m {
                        bytes += b.data.len();
                    }
                    msgs.push(m)
                }
                Err(_) => break,
            }
        }
        let today = Date::today();
        let mut failure: Option<String> = None;
        for m in msgs {
            match m {
                Msg::Stop => stop = true,
                Msg::Batch(b) => {
                    let r = if failure.is_none() {
                        append(&mut store, &b, today)
                    } else {
                        Ok(Stored {
                            stored: 0,
                            duplicates: 0,
                        })
                    };
                    // Its bytes are in the store's files now: the memory it took goes back.
                    drop(b.data);
                    drop(b.held);
                    match r {
                        Ok(s) => {
                            if s.duplicates > 0 {
                                log(&format!(
                                    "producer {:016x}: dropped {} records it resent (already stored)",
                                    b.producer, s.duplicates
                                ));
                            }
                            pending.push((b.reply, s))
                        }
                        Err(e) => {
                            failure = Some(e.to_string());
                            pending.push((
                                b.reply,
                                Stored {
                                    stored: 0,
                                    duplicates: 0,
                                },
                            ));
                        }
                    }
                }
            }
        }
        if failure.is_none() && !pending.is_empty() {
            if let Err(e) = store.commit() {
                failure = Some(e.to_string());
            }
        }
        if let Some(e) = &failure {
            // The store's state on disk is unknown after a failed write or fsync: answer
            // everyone with the error and stop, so a restart recovers the files.
            log(&format!("store failure, stopping: {e}"));
            for (reply, _) in pending.drain(..) {
                if let Some(r) = reply {
                    let _ = r.send(Err(format!("store failure: {e}")));
                }
            }
            shared.publish(store.open_date(), true);
            std::process::exit(3);
        }
        if !pending.is_empty() {
            shared.publish(store.open_date(), false);
            for (reply, s) in pending.drain(..) {
                counters.stored.fetch_add(s.stored, Ordering::Relaxed);
                counters
                    .duplicates
                    .fetch_add(s.duplicates, Ordering::Relaxed);
                if let Some(r) = reply {
                    let _ = r.send(Ok(s));
                }
            }
        }
        housekeeping(&mut store, &shared, &settings, &mut last_retention);
        if stop {
            shared.publish(store.open_date(), true);
            return;
        }
    }
}

/// Appends a batch, skipping records its producer already stored.
fn append(store: &mut Store, b: &Incoming, today: Date) -> io::Result<Stored> {
    let mut s = Stored {
        stored: 0,
        duplicates: 0,
    };
    let last = if b.producer != 0 {
        store.producers.last(b.producer)
    } else {
        None
    };
    for (i, r) in b.records.iter().enumerate() {
        let seq = if b.producer != 0 {
            b.first_seq + i as u64
        } else {
            0
        };
        if last.is_some_and(|l| seq <= l) {
            s.duplicates += 1;
            continue;
        }
        let meta = Meta {
            time_us: r.time_us,
            rtype: r.rtype,
            producer: b.producer,
            seq,
        };
        let date = store.date_for(r.time_us, today);
        store.append(
            date,
            &meta,
            b.origin.of(i),
            &b.data[r.start..r.start + r.len],
        )?;
        s.stored += 1;
    }
    Ok(s)
}

fn housekeeping(
    store: &mut Store,
    shared: &Shared,
    settings: &Settings,
    last_retention: &mut Instant,
) {
    if let Some((date, _)) = store.open_date() {
        if now_micros() >= date.end_micros() + settings.seal_grace.as_micros() as i64 {
            match store.seal() {
                Ok(()) => {
                    log(&format!("sealed {date}"));
                    shared.publish(None, false);
                }
                Err(e) => {
                    log(&format!("cannot seal {date}, stopping: {e}"));
                    std::process::exit(3);
                }
            }
        }
    }
    if let Some(days) = settings.retain_days {
        if last_retention.elapsed() >= Duration::from_secs(1) {
            *last_retention = Instant::now();
            apply_retention(store, days);
        }
    }
}

/// Deletes sealed dates older than the last `days` days (today included).
pub fn apply_retention(store: &mut Store, days: u32) {
    let keep_from = Date::today().add_days(1 - days as i64);
    match store.retain(keep_from) {
        Ok(gone) => {
            for d in gone {
                log(&format!("retention: deleted {d}"));
            }
        }
        Err(e) => log(&format!("retention failed: {e}")),
    }
}

/// Opens the store and reports what recovery repaired. Errors: see [`Store::open`].
pub fn open_store(root: &Path, opts: store::Options) -> io::Result<Store> {
    let (store, report) = Store::open(root, opts)?;
    for r in &report.repairs {
        log(r);
    }
    Ok(store)
}

/// Everything a connection handler (a producer's or a follower's) needs: the way to the
/// committer and what it publishes.
pub struct Ctx {
    pub tx: crossbeam_channel::Sender<Msg>,
    pub shared: Arc<Shared>,
    pub counters: Arc<Counters>,
    /// The token clients must send (`--token-file`, re-read on SIGHUP).
    pub token: Mutex<Option<Arc<Vec<u8>>>>,
    /// The TLS setup of `rlogd://` listeners (`--tls-cert`/`--tls-key`, re-read on SIGHUP).
    pub tls: Mutex<Option<Arc<rustls::ServerConfig>>>,
    pub max_frame: usize,
    pub root: std::path::PathBuf,
    pub stopping: std::sync::atomic::AtomicBool,
    /// Batches handed to the committer whose ack is not yet written.
    pub inflight: std::sync::atomic::AtomicUsize,
    /// Connection slots (`--max-connections`).
    pub slots: crate::limits::Slots,
    /// Memory for producers' frames (`--max-buffered`).
    pub budget: Arc<crate::limits::Budget>,
    /// Time a connection has for its whole handshake (TLS and HELLO).
    pub handshake_timeout: Duration,
    /// Time a producer may stay silent after its handshake.
    pub idle_timeout: Duration,
}
