//! The output driver: one per output, the same code for every kind of output.
//!
//! A driver holds its output's records until they are delivered, in order. It opens the
//! connection (and keeps it, `pool_size` permitting), sends the records, and acts on what the
//! output says came of it: records done are settled as delivered; a record the output can
//! never carry is given up on, counted, and the rest goes on; any other failure is retried with
//! lua-resty-logger-socket's nested loops (`max_retry_times` connect retries inside
//! `max_retry_times` send retries), pausing with capped exponential backoff and full jitter.
//! When a delivery still fails, the records stay held and the driver waits out a backoff
//! (`retry_at`) before the next try. Outcomes go out through [`Settle`], so the driver never
//! touches the logger's state or counters.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dead_letter::{self, DeadLetters};
use super::spool::{
    OutputSpool, OwnedRecord, SpoolError, SpoolOptions, SpoolRecord, StrayKeys, SyncMode,
};
use super::tls::TlsSettings;
use super::{
    clickhouse, datagram, http, nats, reason, relp, rlogd, socket, stream, tls, Failure, Output,
};
use crate::buffer::Buffer;
use crate::config::target::Target;
use crate::config::{Limits, OutputSpec, SpoolConfig, SpoolMode, SpoolSync};
use crate::ledger::{Outcome, PRIMARY};
use crate::stats::Tally;
use crate::sync::ChildCloses;

/// Per-output counters (copies, and encoded bytes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OutputCounters {
    /// Copies delivered, and their encoded bytes (framing and TEXT prefix included).
    pub sent: Tally,
    /// Copies given up on after queuing (unsendable, or the handle closed first).
    pub lost: Tally,
    /// Copies not queued: the output held `drop_limit` bytes already.
    pub dropped: Tally,
    /// Copies an encoder failed on.
    pub encode_errors: u64,
    pub retries: u64,
    pub connects: u64,
    /// Copies on the disk queue now (counted or not).
    pub spooled: Tally,
}

/// What the driver needs from the loop it runs in.
pub trait Control {
    /// Sleeps `d`, or less if the logger starts closing or its close deadline comes first.
    /// Returns false when the close deadline has passed (stop retrying).
    fn pause(&self, d: Duration) -> bool;

    /// The close deadline, once the logger is closing: no connect or send may run past it.
    fn deadline(&self) -> Option<Instant>;
}

/// Where a driver's outcomes go.
pub trait Settle {
    /// The records owned by `owners` (one per record; empty when the records are messages of
    /// their own: a direct output's, or records replayed from disk), `t` in all, came to
    /// `outcome`.
    fn settle(
        &mut self,
        owners: std::collections::vec_deque::Drain<'_, u64>,
        t: Tally,
        outcome: Outcome,
    );
}

/// What one delivery did, for the logger: retries, connections, bytes delivered, and the
/// error to report.
#[derive(Debug, Default)]
pub struct Round {
    pub bytes: u64,
    pub failed: bool,
    pub error: Option<String>,
    /// An error that outranks `error` and stays pending until read (messages lost to a full
    /// spool, or held in memory because the disk fails): the retries that follow in the same
    /// round, or in the next, must not hide it.
    pub alert: Option<String>,
    pub retries: u64,
    pub connects: u64,
}

/// One output's runtime state.
pub struct Driver {
    pub spec: OutputSpec,
    /// TLS settings built when the logger started (`OutputSpec::tls` is only their text).
    tls: Option<Arc<TlsSettings>>,
    /// The connection, its descriptors registered for a fork child to close (first: they are
    /// unregistered before the connection closes them).
    conn: Option<(Vec<ChildCloses>, Box<dyn Output>)>,
    /// Records waiting for delivery.
    pub pending: Buffer,
    /// The message each pending record is a copy of (empty for a direct output, whose records
    /// are the messages themselves).
    pub owners: VecDeque<u64>,
    failures: u32,
    /// A delivery failed: the next try waits until then (unless a flush is asked for).
    pub retry_at: Option<Instant>,
    pub counters: OutputCounters,
    /// This output's producer id for rlogd and NATS's message ids (unused by other targets).
    producer: u64,
    /// Names the output in messages (`logger "NAME": `), or empty for a plain config, whose
    /// messages keep resty's exact wording.
    label: String,
    /// State of the jitter's generator.
    rng: u64,
    /// The disk queue, with `spool`.
    disk: Option<Disk>,
    /// When the peer said to try again, after the last failed send (`Failure::Retry::after`).
    peer_wait: Option<Duration>,
    /// Where refused records go (`dead_letter`).
    dead: Option<Arc<DeadLetters>>,
    /// What an http output's connections share (how long its oldest records have been tried).
    http_state: http::Shared,
}

impl Driver {
    /// A driver for `spec`. `labelled`: prefix messages with the output's name.
    pub fn new(
        spec: OutputSpec,
        tls: Option<Arc<TlsSettings>>,
        producer: u64,
        labelled: bool,
    ) -> Driver {
        let label = if labelled {
            format!("{}: ", spec.label())
        } else {
            String::new()
        };
        Driver {
            spec,
            tls,
            conn: None,
            pending: Buffer::default(),
            owners: VecDeque::new(),
            failures: 0,
            retry_at: None,
            counters: OutputCounters::default(),
            producer,
            label,
            rng: producer | 1,
            disk: None,
            peer_wait: None,
            dead: None,
            http_state: http::Shared::default(),
        }
    }

    /// Gives the driver the logger's dead-letter file.
    pub fn with_dead_letters(mut self, dead: Option<Arc<DeadLetters>>) -> Driver {
        self.dead = dead;
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.spec.limits
    }

    /// Whether the output is waiting out a failed delivery's backoff (or failed its last one).
    pub fn failing(&self) -> bool {
        self.failures > 0 || self.retry_at.is_some()
    }

    /// `text` named after this output, for the pending error.
    pub fn labelled(&self, text: &str) -> String {
        format!("{}{text}", self.label)
    }

    /// The pause before retry `n` (0-based): the capped exponential backoff with full jitter,
    /// uniform in [1 ms, backoff(n)], so that many processes whose collector came back do not
    /// all retry at the same instant.
    fn jittered(&mut self, n: u32) -> Duration {
        let cap = self.spec.limits.backoff(n);
        // xorshift64*: statistical quality is all this needs.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let floor = Duration::from_millis(1).min(cap);
        let span = (cap - floor).as_nanos() as u64;
        floor + Duration::from_nanos(if span == 0 { 0 } else { r % (span + 1) })
    }

    /// Settles the first `n` pending records: they came to `outcome`.
    pub fn settle_first(
        &mut self,
        n: usize,
        outcome: Outcome,
        settle: &mut dyn Settle,
        round: &mut Round,
    ) {
        if n == 0 {
            return;
        }
        let t = self.pending.tally_of_first(n);
        match outcome {
            Outcome::Sent => {
                self.counters.sent.add(t);
                round.bytes += t.bytes;
            }
            Outcome::Lost | Outcome::Rejected => self.counters.lost.add(t),
            // The disk queue counts it from now on.
            Outcome::Spooled => {}
        }
        self.pending.consume(n);
        let owners = n.min(self.owners.len());
        settle.settle(self.owners.drain(..owners), t, outcome);
    }

    /// The first pending record is refused for good (`why`): it goes to the dead letters and
    /// counts lost and rejected.
    pub fn reject_first(&mut self, why: &str, settle: &mut dyn Settle, round: &mut Round) {
        let Some(record) = self.pending.records().next() else {
            return;
        };
        round.error = Some(self.dead_letter(why, record.bytes));
        self.settle_first(1, Outcome::Rejected, settle, round);
    }

    /// Writes `record`, refused for `why`, to the dead letters (when there is a `dead_letter`
    /// file); returns the error to report.
    pub fn dead_letter(&self, why: &str, record: &[u8]) -> String {
        let kept = dead_letter::keep(self.dead.as_deref(), &self.spec.label(), why, record);
        self.labelled(&format!("{why}: not sent{kept}"))
    }

    /// Why opening the connection failed, with the stage and the target (resty's REASON
    /// alone does not say which of several loggers failed, nor where):
    /// `connect tcp://127.0.0.1:25999: connection refused`,
    /// `TLS handshake with tls://127.0.0.1:25999: timeout (is it a TLS server?)`.
    fn open_failed(&self, e: &io::Error) -> String {
        let target = self.spec.target_text();
        match tls::HandshakeFailed::why(e) {
            Some(why) => format!("TLS handshake with {target}: {why}"),
            None => format!("connect {target}: {}", reason(e)),
        }
    }

    /// A usable connection, with resty's connect retries. Errors: resty's "try to connect ..."
    /// string (unlabelled).
    fn connect(&mut self, ctl: &dyn Control, round: &mut Round) -> Result<(), String> {
        if let Some((_, c)) = self.conn.as_mut() {
            let alive = c.is_alive();
            // What the collector said meanwhile (a line on a log stream: a wrong port).
            if let Some(notice) = c.take_notice() {
                round.error = Some(self.labelled(&notice));
            }
            if alive {
                return Ok(());
            }
            self.conn = None;
        }
        let mut tries = 0;
        loop {
            let timeout = capped(self.spec.limits.timeout, ctl.deadline());
            match open(
                &self.spec,
                self.tls.as_deref(),
                self.producer,
                timeout,
                &self.http_state,
            ) {
                Ok(c) => {
                    self.counters.connects += 1;
                    round.connects += 1;
                    let fds = c.fds().into_iter().map(ChildCloses::new).collect();
                    self.conn = Some((fds, c));
                    return Ok(());
                }
                Err(e) => {
                    let max = self.spec.limits.max_retry_times;
                    if tries >= max || !ctl.pause(self.jittered(tries)) {
                        return Err(format!(
                            "try to connect to the log server failed after {max} retries: {}",
                            self.open_failed(&e)
                        ));
                    }
                    tries += 1;
                    self.counters.retries += 1;
                    round.retries += 1;
                }
            }
        }
    }

    /// Delivers the pending records with resty's send retries around its connect retries.
    /// Returns false when some are still held (the output failed); the caller then calls
    /// [`Driver::after_failure`].
    pub fn deliver(
        &mut self,
        ctl: &dyn Control,
        settle: &mut dyn Settle,
        round: &mut Round,
    ) -> bool {
        let max = self.spec.limits.max_retry_times;
        let mut tries = 0;
        loop {
            if self.pending.is_empty() {
                self.failures = 0;
                self.retry_at = None;
                return true;
            }
            // The peer's own word on when to try again (an HTTP Retry-After).
            let mut wait: Option<Duration> = None;
            // Why this attempt failed: the connect loop's whole error (`connect`), or the send's
            // reason (`send`).
            let (failure, connect) = match self.connect(ctl, round) {
                Err(e) => (e, true),
                Ok(()) => {
                    let (fds, conn) = self.conn.as_mut().expect("connected above");
                    let until = ctl.deadline();
                    if until.is_some() {
                        // Closing: no write may outlast the deadline, or the exit report would
                        // count as undelivered what still reaches the collector after it.
                        cap_timeouts(fds, capped(self.spec.limits.timeout, until));
                    }
                    let sent = conn.send(&self.pending, until);
                    if let Some(notice) = conn.take_notice() {
                        round.error = Some(self.labelled(&notice));
                    }
                    match sent {
                        Ok(()) => {
                            let n = self.pending.len();
                            self.settle_first(n, Outcome::Sent, settle, round);
                            if self.spec.limits.pool_size == 0 {
                                self.conn = None;
                            }
                            continue;
                        }
                        Err(e) => {
                            self.settle_first(e.done, Outcome::Sent, settle, round);
                            match e.failure {
                                Failure::Reject { why } => {
                                    self.reject_first(&why, settle, round);
                                    continue;
                                }
                                Failure::Retry {
                                    error,
                                    resume,
                                    after,
                                } => {
                                    if !resume {
                                        self.conn = None;
                                    }
                                    wait = after;
                                    self.peer_wait = after;
                                    (reason(&error), false)
                                }
                            }
                        }
                    }
                }
            };
            let pause = self.jittered(tries).max(wait.unwrap_or_default());
            // A peer that asks for a pause longer than the backoff ever grows (a Retry-After
            // of minutes, a refused credential) ends this delivery: the pause is waited out
            // as the delivery's backoff (`after_failure`), not slept through here, where it
            // would hold a flush (or the worker) that long.
            let peer_asks_long = wait.is_some_and(|w| w > self.spec.limits.max_backoff());
            if tries >= max || peer_asks_long || !ctl.pause(pause) {
                // lua-resty-logger-socket's words: the send loop's error wraps the connect
                // loop's. A uWSGI-style output's message names it and says the one that failed.
                let send = format!(
                    "try to send log messages to the log server failed after {max} retries: {failure}"
                );
                round.error = Some(match (self.label.is_empty(), connect) {
                    (true, _) => send,
                    (false, true) => self.labelled(&failure),
                    (false, false) => self.labelled(&send),
                });
                round.failed = true;
                return false;
            }
            tries += 1;
            self.counters.retries += 1;
            round.retries += 1;
        }
    }

    /// A delivery failed at `now`: the next waits for a backoff that grows with each failure
    /// in a row (and at least as long as the peer asked, if it did).
    pub fn after_failure(&mut self, now: Instant) {
        let pause = self
            .jittered(self.failures)
            .max(self.peer_wait.take().unwrap_or_default());
        self.retry_at = Some(now + pause);
        self.failures = self.failures.saturating_add(1);
    }

    /// Whether a delivery is due at `now`: records are held (in memory or on disk) and no
    /// backoff is being waited
    /// out (or `explicit`: a flush or close asks for one now).
    pub fn due(&self, now: Instant, explicit: bool) -> bool {
        self.holds() && (explicit || self.retry_at.is_none_or(|t| now >= t))
    }

    /// Closes the connection (a fork child must not keep its parent's).
    pub fn disconnect(&mut self) {
        self.conn = None;
    }
}

/// Opens a connection to `spec`'s target (TLS handshake and rlogd's HELLO included), bounded
/// by `timeout`. `producer` identifies the sender to collectors that deduplicate resent
/// records (rlogd).
fn open(
    spec: &OutputSpec,
    tls: Option<&TlsSettings>,
    producer: u64,
    timeout: Duration,
    http_state: &http::Shared,
) -> io::Result<Box<dyn Output>> {
    let sock = match &spec.target {
        Target::Http { .. } => {
            return Ok(Box::new(http::Http::open(
                spec,
                tls,
                producer,
                timeout,
                http_state.clone(),
            )?))
        }
        Target::ClickHouse(t) => {
            return Ok(Box::new(clickhouse::open(
                t,
                &spec.http,
                tls,
                producer,
                timeout,
                http_state.clone(),
            )?))
        }
        Target::Rlogd { host, port } | Target::RlogdTls { host, port } => {
            return Ok(Box::new(rlogd::Rlogd::connect_to(
                host,
                *port,
                tls,
                &spec.rlogd,
                timeout,
                producer,
            )?))
        }
        Target::Nats {
            host,
            port,
            subject,
        }
        | Target::NatsTls {
            host,
            port,
            subject,
        } => {
            return Ok(Box::new(nats::Nats::connect_to(&nats::Params {
                host,
                port: *port,
                subject,
                tls,
                tls_on_demand: spec.tls_on_demand.as_ref(),
                settings: &spec.nats,
                timeout,
                producer,
            })?))
        }
        Target::Relp { host, port } | Target::RelpTls { host, port } => {
            return Ok(Box::new(relp::Relp::connect_to(
                host, *port, tls, &spec.relp, timeout,
            )?))
        }
        Target::Udp { host, port } => return Ok(Box::new(datagram::udp(host, *port, timeout)?)),
        Target::UnixDgram { path } => return Ok(Box::new(datagram::unix(path, timeout)?)),
        Target::Tcp { host, port } | Target::Tls { host, port } => {
            socket::connect_tcp(host, *port, timeout)?
        }
        Target::UnixStream { path } => socket::connect_unix(path, timeout)?,
    };
    match tls {
        Some(settings) => Ok(Box::new(tls::Tls::handshake(sock, settings, timeout)?)),
        None => Ok(Box::new(stream::Stream::new(sock))),
    }
}

/// `timeout`, or less if `deadline` comes first (1 ms at least: a zero socket timeout means
/// none).
fn capped(timeout: Duration, deadline: Option<Instant>) -> Duration {
    match deadline {
        Some(d) => timeout
            .min(d.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1)),
        None => timeout,
    }
}

/// Sets the send and receive timeouts of a connection's sockets to `t`.
fn cap_timeouts(fds: &[ChildCloses], t: Duration) {
    for f in fds {
        // SAFETY: the descriptor belongs to the live connection next to its registration, open
        // for the whole call.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(f.fd()) };
        let s = socket2::SockRef::from(&fd);
        let _ = s.set_write_timeout(Some(t));
        let _ = s.set_read_timeout(Some(t));
    }
}

/// The largest record target `t` can carry, and how to name that limit.
pub fn max_record(t: &Target) -> Option<(usize, &'static str)> {
    match t {
        Target::Udp { .. } => Some((datagram::MAX_DATAGRAM, "the largest UDP datagram")),
        Target::Rlogd { .. } | Target::RlogdTls { .. } => Some((
            crate::proto::format::MAX_PAYLOAD,
            "the largest rlogd record",
        )),
        Target::Relp { .. } | Target::RelpTls { .. } => {
            Some((relp::MAX_RECORD, "imrelp's default maxDataSize"))
        }
        _ => None,
    }
}

/// An output's disk queue (`spool`, SPEC §6), for an output whose records are the caller's
/// messages (a plain config's). The spool's own counters are the logger's `spooled` and
/// `adopted`: a record counts as spooled from the `append` that wrote it until the `commit`
/// after its delivery.
pub struct Disk {
    spool: OutputSpool,
    always: bool,
    /// The spool's directory and cap, for messages.
    dir: String,
    max_bytes: u64,
    /// Records the spool lost to damage so far (reported to the logger as `lost` once).
    lost_reported: Tally,
    /// The disk failed (full, I/O error): records stay in memory (bounded by `drop_limit`)
    /// until this instant, then the disk is tried again.
    retry_disk_at: Option<Instant>,
    /// When dead processes' spools were last looked for.
    last_adopt: Instant,
    read: Vec<OwnedRecord>,
    /// The batch a replay sends, kept between batches.
    replay: Buffer,
}

/// How often a live logger looks for spools left by dead processes (a killed prefork worker).
pub const ADOPT_EVERY: Duration = Duration::from_secs(5);

/// What a disk queue holds, for the logger's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DiskCounts {
    /// Records on disk, not yet delivered.
    pub spooled: Tally,
    /// Records taken over from dead processes since the spool was opened.
    pub adopted: Tally,
    /// Records the spool lost to damage since the last report.
    pub lost: Tally,
}

impl Disk {
    /// Opens output `key`'s queue under `cfg.dir`: creates and locks this process's own
    /// instance, a few small file operations whatever earlier processes left (what they left is
    /// adopted by the worker, [`Driver::with_disk`]: `rlog_init` does not read it).
    ///
    /// Errors: the directory cannot be created or used (the message names it).
    /// `strays`: the other keys whose dead instances this output also adopts.
    pub fn open(cfg: &SpoolConfig, key: &str, strays: StrayKeys) -> Result<Disk, String> {
        let opts = SpoolOptions {
            max_bytes: cfg.max_bytes,
            sync: match cfg.sync {
                SpoolSync::Batch => SyncMode::Batch,
                SpoolSync::Interval(d) => SyncMode::Interval(d),
                SpoolSync::None => SyncMode::None,
            },
            ..SpoolOptions::default()
        };
        let mut spool =
            OutputSpool::open_without_adopting(std::path::Path::new(&cfg.dir), key, opts)
                .map_err(|e| format!("cannot use \"spool\" directory {}: {e}", cfg.dir))?;
        spool.also_adopt_from(strays);
        Ok(Disk {
            spool,
            always: cfg.mode == SpoolMode::Always,
            dir: cfg.dir.clone(),
            max_bytes: cfg.max_bytes,
            lost_reported: Tally::ZERO,
            retry_disk_at: None,
            last_adopt: Instant::now(),
            read: Vec::new(),
            replay: Buffer::default(),
        })
    }

    /// The spool's counters now; the records lost to damage since the last call.
    pub fn counts(&mut self) -> DiskCounts {
        let s = self.spool.stats();
        // Uncounted copies (a message's other outputs' records) are not the logger's messages.
        let u = s.uncounted;
        let lost = Tally {
            msgs: s.lost_records - u.lost_records,
            bytes: s.lost_bytes - u.lost_bytes,
        };
        let new_lost = Tally {
            msgs: lost.msgs - self.lost_reported.msgs,
            bytes: lost.bytes - self.lost_reported.bytes,
        };
        self.lost_reported = lost;
        DiskCounts {
            spooled: Tally {
                msgs: s.records - u.records,
                bytes: s.bytes - u.bytes,
            },
            adopted: Tally {
                msgs: s.adopted_records - u.adopted_records,
                bytes: s.adopted_bytes - u.adopted_bytes,
            },
            lost: new_lost,
        }
    }

    /// Whether records wait on disk.
    pub fn holds(&self) -> bool {
        !self.spool.is_empty()
    }

    /// In a fork child: lets go of the parent's spool without touching its files.
    pub fn forget(self) {
        self.spool.after_fork_in_child();
    }
}

impl Driver {
    /// Gives the driver a disk queue. On the worker thread: adopts what dead processes left
    /// (reading each adopted record once), so that `rlog_init` does not.
    pub fn with_disk(mut self, mut disk: Disk) -> Driver {
        let _ = disk.spool.adopt();
        disk.last_adopt = Instant::now();
        if disk.holds() {
            // Records left by a dead process: deliver them at the first round.
            self.retry_at = Some(Instant::now());
        }
        self.disk = Some(disk);
        self
    }

    /// Looks for spools left by dead processes (every [`ADOPT_EVERY`]) and syncs the disk queue
    /// when `spool_sync = interval` wants it. Adopted records make a delivery due.
    pub fn tend_disk(&mut self) {
        let Some(disk) = self.disk.as_mut() else {
            return;
        };
        let _ = disk.spool.maybe_sync();
        if disk.last_adopt.elapsed() >= ADOPT_EVERY {
            disk.last_adopt = Instant::now();
            if disk.spool.adopt().is_ok_and(|r| r.records > 0) && self.retry_at.is_none() {
                self.retry_at = Some(Instant::now());
            }
        }
    }

    /// When the disk queue next wants looking after (see [`Driver::tend_disk`]).
    pub fn disk_due(&self) -> Option<Instant> {
        self.disk.as_ref().map(|d| d.last_adopt + ADOPT_EVERY)
    }

    /// The disk queue's counters, if there is one (and its copies, in this output's counters).
    pub fn disk_counts(&mut self) -> Option<DiskCounts> {
        let disk = self.disk.as_mut()?;
        let s = disk.spool.stats();
        self.counters.spooled = Tally {
            msgs: s.records,
            bytes: s.bytes,
        };
        Some(disk.counts())
    }

    /// Whether a record keeps its identity ([`super::record_key`]) when replayed from the spool.
    /// rlogd does not: it deduplicates by sequence per producer, and takes a replayed record
    /// under a new sequence (see `deliver_all`).
    fn stable_ids(&self) -> bool {
        !self.spec.target.is_rlogd()
    }

    /// Whether records wait, in memory or on disk.
    pub fn holds(&self) -> bool {
        !self.pending.is_empty() || self.disk.as_ref().is_some_and(Disk::holds)
    }

    /// Writes the pending records to the disk queue (numbered from `pending.first_seq`) and
    /// forgets them from memory. `when`: only in `always` mode or behind records already on
    /// disk (`Some(false)`), or in any case (`Some(true)`: a delivery failed, or the logger
    /// stops). A full spool loses them (counted, reported); a failing disk keeps them in memory
    /// and is tried again a second later.
    pub fn spool_pending(&mut self, failed: bool, settle: &mut dyn Settle, round: &mut Round) {
        // The id the spool keeps: the record's identity (or its sequence, for rlogd).
        let (stable, producer) = (self.stable_ids(), self.producer);
        let Some(disk) = self.disk.as_mut() else {
            return;
        };
        let now = Instant::now();
        if self.pending.is_empty()
            || !(failed || disk.always || disk.holds())
            || disk.retry_disk_at.is_some_and(|t| now < t)
        {
            return;
        }
        // In chunks, so that a spool near its cap takes what fits and only the rest is lost.
        // At most a quarter of a segment (8 MiB), so that writes fill segments rather than open
        // one each (a segment closed is a segment synced, even with spool_sync = interval).
        let chunk = (disk.max_bytes / 8).clamp(4 << 10, 2 << 20) as usize;
        let first = self.pending.first_seq;
        let mut written = 0;
        let mut failure = None;
        {
            let mut recs: Vec<SpoolRecord<'_>> = Vec::new();
            let mut records = self.pending.records().enumerate().peekable();
            while records.peek().is_some() {
                recs.clear();
                let mut bytes = 0;
                while let Some((i, r)) = records.next_if(|_| recs.is_empty() || bytes < chunk) {
                    bytes += r.bytes.len();
                    recs.push(SpoolRecord {
                        id: if stable {
                            super::record_key(producer, first + i as u64)
                        } else {
                            first + i as u64
                        },
                        time_us: r.time_us,
                        bytes: r.bytes,
                        // A record with no owner is a message of its own.
                        counted: self.owners.get(i).is_none_or(|o| o & PRIMARY != 0),
                    });
                }
                match disk.spool.append(&recs) {
                    Ok(()) => written += recs.len(),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        // What the disk did not take: lost (a full spool), or held in memory (a failing disk).
        let (msg, lose) = match failure {
            None => {
                disk.retry_disk_at = None;
                (None, false)
            }
            Some(SpoolError::Full) | Some(SpoolError::TooLarge) => (
                Some(format!(
                    "spool {} is full (spool_max_bytes = {}): {} message(s) lost",
                    disk.dir,
                    disk.max_bytes,
                    self.pending.len() - written
                )),
                true,
            ),
            Some(SpoolError::Io(e)) => {
                disk.retry_disk_at = Some(now + Duration::from_secs(1));
                let msg = format!(
                    "spool {}: {e}; the messages are held in memory meanwhile",
                    disk.dir
                );
                (Some(msg), false)
            }
        };
        self.settle_first(written, Outcome::Spooled, settle, round);
        if let Some(msg) = msg {
            round.alert = Some(self.labelled(&msg));
        }
        if lose {
            let n = self.pending.len();
            self.settle_first(n, Outcome::Lost, settle, round);
        }
    }

    /// [`Driver::spool_pending`] at the close: the last chance to keep the pending records, so
    /// the disk is tried even while the pause after its last failure runs.
    pub fn spool_at_close(&mut self, settle: &mut dyn Settle, round: &mut Round) {
        if let Some(disk) = self.disk.as_mut() {
            disk.retry_disk_at = None;
        }
        self.spool_pending(true, settle, round);
    }

    /// Delivers what waits on disk, oldest first, then what is in memory. Spooled records are
    /// numbered from `*next_seq` as they are read (a resend after a failure may carry new
    /// numbers: delivery from the spool is at least once). Returns false when some are still
    /// held.
    pub fn deliver_all(
        &mut self,
        ctl: &dyn Control,
        settle: &mut dyn Settle,
        round: &mut Round,
        next_seq: &mut u64,
    ) -> bool {
        let mut replayed = false;
        while let Some(disk) = self.disk.as_mut() {
            if !disk.holds() {
                break;
            }
            disk.read.clear();
            let n = match disk.spool.read(10_000, 4 << 20, &mut disk.read) {
                Ok(n) => n,
                Err(e) => {
                    round.error = Some(self.labelled(&format!(
                        "spool {}: cannot read: {e}",
                        self.disk.as_ref().map_or("", |d| d.dir.as_str())
                    )));
                    round.failed = true;
                    return false;
                }
            };
            if n == 0 {
                break;
            }
            replayed = true;
            let read = std::mem::take(&mut disk.read);
            // The spooled records go through the same delivery as the memory ones, in runs of
            // counted and uncounted records. They have no owner: each is a record of its own
            // (its message left the ledger when it went to disk; or it was adopted). An
            // uncounted copy settles only in this output's counters.
            // Records keep their identity: a run is numbered so that the output gives each the
            // identity the spool kept (runs end where the identities are not consecutive).
            // rlogd's records are numbered after everything sent so far instead.
            let stable = self.stable_ids();
            let (mut done, mut ok, mut from) = (0, true, 0);
            while ok && from < n {
                let counted = read[from].counted;
                let first_id = read[from].id;
                let run = read[from..].iter().enumerate().take_while(|(k, r)| {
                    r.counted == counted && (!stable || r.id == first_id.wrapping_add(*k as u64))
                });
                let to = from + run.count();
                // The replay buffer is kept from one batch to the next.
                let disk = self.disk.as_mut().expect("checked above");
                let mut batch = std::mem::take(&mut disk.replay);
                batch.clear();
                if stable {
                    batch.first_seq = first_id.wrapping_sub(self.producer);
                } else {
                    batch.first_seq = *next_seq;
                    *next_seq += (to - from) as u64;
                }
                for r in &read[from..to] {
                    batch.push(&r.bytes, r.time_us);
                }
                let memory = std::mem::replace(&mut self.pending, batch);
                let owners = std::mem::take(&mut self.owners);
                let mut counting = Counting {
                    inner: if counted {
                        &mut *settle
                    } else {
                        &mut Uncounted
                    },
                    done: 0,
                };
                ok = self.deliver(ctl, &mut counting, round);
                done += counting.done;
                self.owners = owners;
                let batch = std::mem::replace(&mut self.pending, memory);
                self.disk.as_mut().expect("checked above").replay = batch;
                from = to;
            }
            let disk = self.disk.as_mut().expect("checked above");
            disk.read = read;
            if let Err(e) = disk.spool.commit(done) {
                round.error = Some(format!("spool {}: {e}", disk.dir));
            }
            if done < n {
                disk.spool.rewind();
            }
            if !ok {
                return false;
            }
        }
        if replayed && !self.pending.is_empty() && !self.stable_ids() {
            // Spooled records went out numbered after these (a disk that failed kept them in
            // memory): number them after, so that rlogd, which deduplicates by sequence, keeps
            // them.
            self.pending.first_seq = *next_seq;
            *next_seq += self.pending.len() as u64;
        }
        self.deliver(ctl, settle, round)
    }
}

/// Settles uncounted copies replayed from disk: their messages are carried by another output's
/// record, so only this output's counters (the driver's) show them.
struct Uncounted;

impl Settle for Uncounted {
    fn settle(&mut self, _: std::collections::vec_deque::Drain<'_, u64>, _: Tally, _: Outcome) {}
}

/// Counts the records a delivery settled (delivered or given up), for the spool's commit.
struct Counting<'a> {
    inner: &'a mut dyn Settle,
    done: usize,
}

impl Settle for Counting<'_> {
    fn settle(
        &mut self,
        owners: std::collections::vec_deque::Drain<'_, u64>,
        t: Tally,
        outcome: Outcome,
    ) {
        self.done += t.msgs as usize;
        self.inner.settle(owners, t, outcome);
    }
}
