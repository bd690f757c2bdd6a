//! The worker: one thread per logger, the one delivery loop for every config.
//!
//! It waits until a round is due (a `log` crossed `flush_limit`, `flush()` asked, the periodic
//! flush or a retry is due, or the logger is closing), takes what the caller side queued
//! (`Inner::take_round`), and hands each output its records:
//!
//! - **direct**: a plain `host`/`port`/`path` config's one output takes the caller's messages
//!   as they are: the queue's buffer is moved (or appended) into the driver's, no copy per
//!   message. What the output holds stays counted against the handle's `drop_limit`, as
//!   lua-resty-logger-socket keeps its send buffer.
//! - **routed**: uWSGI-style configs route each message, run each output's encoder chain and
//!   framing, and queue the record with the output; each output bounds what it holds by its own
//!   `drop_limit`. Accounting is per message through the [`Ledger`]: a message counts as sent
//!   once all its copies are delivered, as lost once they are all settled and one was given up.
//!
//! One output is driven on this thread. With several, each output's driver runs on a thread of
//! its own, fed through a [`Lane`], so a dead or slow output never delays a healthy one; this
//! thread routes and encodes, and waits for the drivers only when `flush()` or the close asks.
//! Drivers (`output::driver`) own batching, retries, backoff and the connection.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::sync::{Arc, Condvar as StdCondvar, Mutex as StdMutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::buffer::Buffer;
use crate::config::OutputSet;
use crate::encode::Scratch;
use crate::ledger::{Ledger, Outcome, Settled, PRIMARY};
use crate::output::dead_letter::{self, DeadLetters};
use crate::output::driver::{self, Control, Disk, Driver, OutputCounters, Round, Settle};
use crate::output::spool_key;
use crate::output::tls::TlsSettings;
use crate::queue::{Closed, Held, Inner, OutputsSettled, PendingError, RoundEnd, Taken};
use crate::stats::{rlog_sink_stats, Tally};

/// An output's counters as the C struct, with what it holds now.
fn sink_stats(c: &OutputCounters, pending: Tally) -> rlog_sink_stats {
    rlog_sink_stats {
        sent: c.sent.msgs,
        sent_bytes: c.sent.bytes,
        lost: c.lost.msgs,
        lost_bytes: c.lost.bytes,
        dropped: c.dropped.msgs,
        dropped_bytes: c.dropped.bytes,
        encode_errors: c.encode_errors,
        pending: pending.msgs,
        pending_bytes: pending.bytes,
        retries: c.retries,
        connects: c.connects,
        spooled: c.spooled.msgs,
        spooled_bytes: c.spooled.bytes,
    }
}

/// Starts the worker thread for `inner`, with the TLS settings built for each output. All
/// signals are blocked in it (and in the driver threads it starts), so the host's signal
/// handling (nginx's SIGQUIT/SIGHUP, a Python program's SIGINT) keeps going to the host's
/// threads.
/// `dead`: where outputs put the records they refuse for good (`dead_letter`).
/// `stopped` runs when the worker has stopped.
/// `disks`: opens the outputs' disk queues (`spool`), or says why it cannot; called on the
/// worker thread, so a caller never waits for the disk.
pub(crate) fn spawn(
    inner: Arc<Inner>,
    tls: Vec<Option<Arc<TlsSettings>>>,
    dead: Option<Arc<DeadLetters>>,
    disks: Option<OpenDisks>,
    stopped: impl FnOnce(&Arc<Inner>) + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let _mask = crate::sync::BlockSignals::new();
    std::thread::Builder::new()
        .name("rlog-worker".into())
        .spawn(move || {
            run(&inner, tls, dead, disks.map(|open| open()));
            stopped(&inner);
        })
}

/// Opens the outputs' disk queues, one per output in order (see [`spawn`]).
pub(crate) type OpenDisks = Box<dyn FnOnce() -> Result<Vec<Disk>, String> + Send>;

/// A random, nonzero id.
pub(crate) fn random_producer() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most `b.len()` bytes into the buffer we own.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    let mut id = u64::from_le_bytes(b);
    if n != 8 {
        // No getrandom: mix the time, the pid and an address.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        id ^= t.rotate_left(17)
            ^ (std::process::id() as u64).rotate_left(48)
            ^ (&b as *const _ as u64);
    }
    id.max(1)
}

/// Output `index`'s producer id, from the worker's random id `worker`: distinct for distinct
/// indexes (the mix is a bijection of `worker + index`), and never 0 (rlogd reserves it).
fn output_producer(worker: u64, index: usize) -> u64 {
    // splitmix64's finaliser.
    let mut z = worker.wrapping_add(index as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z.max(1)
}

/// The worker.
fn run(
    inner: &Arc<Inner>,
    tls: Vec<Option<Arc<TlsSettings>>>,
    dead: Option<Arc<DeadLetters>>,
    disks: Option<Result<Vec<Disk>, String>>,
) {
    let set = inner.config.outputs.clone();
    // A new worker (a new logger, or a child after fork) gets new producer ids, so its
    // sequence numbers starting from 0 are never taken for a resend of another's.
    let worker_id = random_producer();
    // A config that only names its one output (`logger = http://...`) is delivered as a
    // resty config is: its messages need no routing, encoding nor per-copy ledger.
    let direct = inner.config.delivers_directly();
    let mut drivers: Vec<Driver> = set
        .outputs
        .iter()
        .zip(tls)
        .enumerate()
        .map(|(i, (spec, tls))| {
            let producer = if direct {
                worker_id
            } else {
                output_producer(worker_id, i)
            };
            Driver::new(spec.clone(), tls, producer, inner.config.uwsgi_style)
                .with_dead_letters(dead.clone())
        })
        .collect();
    match disks {
        Some(Ok(disks)) => {
            drivers = drivers
                .into_iter()
                .zip(disks)
                .map(|(d, disk)| d.with_disk(disk))
                .collect()
        }
        // A fork child could not open a spool of its own: it delivers from memory.
        Some(Err(e)) => inner.report(e),
        None => {}
    }
    if let Some(spool) = &inner.config.spool {
        let keys = spool_key::keys(&inner.config);
        if let Some(e) = spool_key::unclaimed_report(&spool.dir, &keys) {
            inner.report(e);
        }
    }
    // One output gets a thread of its own, as several do, when it is an http one with records
    // to route and encode: the worker then encodes the next records while the output waits
    // for the endpoint to take a request in and answer it, where inline the two take turns
    // (ClickHouse parses an insert in about the time rlog takes to encode the next one:
    // BENCHMARKS.md, "One output thread").
    let own_thread = !direct && drivers.len() == 1 && drivers[0].spec.target.is_http();
    if drivers.len() == 1 && !own_thread {
        let d = drivers.pop().expect("one driver");
        run_inline(inner, &set, d, direct);
    } else {
        run_lanes(inner, &set, drivers, dead);
    }
}

/// Pauses of a driver on the worker thread: on the logger's condition variable, woken when it
/// starts closing.
struct QueueControl<'a>(&'a Inner);

impl Control for QueueControl<'_> {
    fn pause(&self, d: Duration) -> bool {
        self.0.pause(d)
    }

    fn deadline(&self) -> Option<Instant> {
        self.0.closing_deadline()
    }
}

/// Settles a round's records into `settled`: a direct output's records are the caller's
/// messages; a routed output's are copies, settled through the ledger (a message counts once
/// all its copies are settled), but for those replayed from disk, which have no owner.
struct Settler<'a> {
    ledger: Option<&'a mut Ledger>,
    settled: &'a mut Settled,
}

impl Settle for Settler<'_> {
    fn settle(
        &mut self,
        owners: std::collections::vec_deque::Drain<'_, u64>,
        t: Tally,
        outcome: Outcome,
    ) {
        match self.ledger.as_deref_mut() {
            Some(ledger) if owners.len() > 0 => {
                for seq in owners {
                    ledger.copy_done(seq, outcome, self.settled);
                }
            }
            // Records that are messages of their own.
            _ => self.settled.add(t, outcome),
        }
    }
}

/// The router's and encoders' working state, kept by the thread that routes.
struct Router {
    dests: Vec<usize>,
    frame: Vec<u8>,
    scratch: Vec<Scratch>,
}

impl Router {
    fn new(n: usize) -> Router {
        Router {
            dests: Vec::new(),
            frame: Vec::new(),
            scratch: (0..n).map(|_| Scratch::default()).collect(),
        }
    }
}

/// Where routing puts an output's records, and what it knows of that output's state.
trait Inbox {
    /// Bytes the output holds (queued and pending).
    fn held(&self, i: usize) -> usize;
    fn failing(&self, i: usize) -> bool;
    fn push(&mut self, i: usize, record: &[u8], time: Option<i64>, owner: u64);
    /// The last copy pushed to output `i` is no longer its message's primary copy.
    fn demote(&mut self, i: usize);
    fn counters(&mut self, i: usize) -> &mut OutputCounters;
    /// Writes a record output `i` can never carry to the dead letters; returns the error.
    fn dead_letter(&self, i: usize, why: &str, record: &[u8]) -> String;
}

/// Routes and encodes messages `range` of `batch` into the outputs' records, opening a ledger
/// slot for each message (with lanes, the shared ledger, locked by the caller).
fn ingest(
    set: &OutputSet,
    r: &mut Router,
    ledger: &mut Ledger,
    (batch, range): (&Buffer, Range<usize>),
    inbox: &mut dyn Inbox,
    settled: &mut Settled,
    error: &mut Option<String>,
) {
    let mut unrouted = 0u64;
    for rec in range.map(|k| batch.record(k)) {
        let seq = ledger.open(rec.bytes.len());
        // The first copy queued is the message's primary copy (see `ledger`).
        let mut primary = PRIMARY;
        let mut primary_in = None;
        set.router.route(rec.bytes, &mut r.dests);
        if r.dests.is_empty() {
            unrouted += 1;
            ledger.mark_lost(seq);
        }
        for &i in r.dests.iter() {
            let spec = &set.outputs[i];
            // `drop_limit` bounds what a logger holds while it cannot deliver. A logger whose
            // last round delivered takes the whole batch, which it sends in this round: encoders
            // that make records larger (json, prefix, framing) must not turn a burst the handle
            // accepted into drops at a collector that is keeping up.
            let failing = inbox.failing(i);
            let encoded =
                match spec
                    .chain
                    .encode(rec.bytes, rec.time_us.unwrap_or(0), &mut r.scratch[i])
                {
                    Ok(e) => e,
                    Err(e) => {
                        inbox.counters(i).encode_errors += 1;
                        *error = Some(format!(
                            "{}: log-encoder failed: {e}; the message is not sent",
                            spec.label()
                        ));
                        ledger.mark_lost(seq);
                        continue;
                    }
                };
            r.frame.clear();
            r.frame.extend_from_slice(&spec.prefix);
            spec.framing.frame(encoded, &mut r.frame);
            if let Some((max, what)) = driver::max_record(&spec.target) {
                if r.frame.len() > max {
                    inbox.counters(i).lost.add(Tally::one(r.frame.len()));
                    let why = format!(
                        "log record of {} bytes is larger than {what} ({max} bytes)",
                        r.frame.len()
                    );
                    *error = Some(inbox.dead_letter(i, &why, &r.frame));
                    ledger.mark_rejected(seq);
                    continue;
                }
            }
            if failing && inbox.held(i) + r.frame.len() > spec.limits.drop_limit {
                inbox.counters(i).dropped.add(Tally::one(r.frame.len()));
                *error = Some(format!(
                    "{}: logger buffer is full, this log message will be dropped",
                    spec.label()
                ));
                ledger.mark_lost(seq);
                continue;
            }
            // rlogd stores each record with its `log` time, and so do Loki and OTLP; the other
            // targets need none.
            let time = if spec.keeps_time() { rec.time_us } else { None };
            inbox.push(i, &r.frame, time, seq | primary);
            if primary != 0 {
                primary_in = Some(i);
            }
            primary = 0;
            ledger.add_copy(seq);
        }
        // A copy given up on here (refused for good, dropped, not encoded) decides the
        // message's fate: lost. No copy of it may carry it on disk as spooled (and later sent),
        // or the refusal would vanish from the counters: its copies are all plain copies.
        if let Some(i) = primary_in.filter(|_| ledger.is_lost(seq)) {
            inbox.demote(i);
        }
        ledger.seal(seq, settled);
    }
    if unrouted > 0 {
        *error = Some(format!(
            "{unrouted} log message(s) matched no log-route and there is no default logger: not sent"
        ));
    }
}

/// The one driver of the inline loop, as an [`Inbox`].
struct One<'a>(&'a mut Driver);

impl Inbox for One<'_> {
    fn held(&self, _: usize) -> usize {
        self.0.pending.bytes()
    }
    fn failing(&self, _: usize) -> bool {
        self.0.failing()
    }
    fn push(&mut self, _: usize, record: &[u8], time: Option<i64>, owner: u64) {
        self.0.pending.push(record, time);
        self.0.owners.push_back(owner);
    }
    fn demote(&mut self, _: usize) {
        if let Some(o) = self.0.owners.back_mut() {
            *o &= !PRIMARY;
        }
    }
    fn counters(&mut self, _: usize) -> &mut OutputCounters {
        &mut self.0.counters
    }
    fn dead_letter(&self, _: usize, why: &str, record: &[u8]) -> String {
        self.0.dead_letter(why, record)
    }
}

/// Removes, and counts as lost and rejected (dead letters), the messages a direct output can
/// never carry (larger than a UDP datagram or an rlogd record); returns the error to report.
fn drop_unsendable(d: &mut Driver, settled: &mut Settled) -> Option<String> {
    let (max, what) = driver::max_record(&d.spec.target)?;
    if d.pending.records().all(|r| r.bytes.len() <= max) {
        return None;
    }
    let batch = std::mem::take(&mut d.pending);
    let mut kept = Buffer::with_capacity(batch.bytes());
    kept.first_seq = batch.first_seq;
    let mut error = None;
    for r in batch.records() {
        if r.bytes.len() > max {
            let t = Tally::one(r.bytes.len());
            settled.add(t, Outcome::Rejected);
            d.counters.lost.add(t);
            let why = format!(
                "log message of {} bytes is larger than {what} ({max} bytes)",
                r.bytes.len()
            );
            error = Some(d.dead_letter(&why, r.bytes));
        } else {
            kept.push(r.bytes, r.time_us);
        }
    }
    d.pending = kept;
    error
}

/// One output, driven on the worker thread.
fn run_inline(inner: &Inner, set: &OutputSet, mut d: Driver, direct: bool) {
    let limits = &inner.config.limits;
    let capacity = crate::queue::initial_capacity(&inner.config);
    let mut router = Router::new(1);
    let mut ledger = Ledger::default();
    let mut batch = Buffer::with_capacity(if direct { 0 } else { capacity });
    if direct {
        d.pending = Buffer::with_capacity(capacity);
    }
    // Sequence number of the next message a direct output takes: a batch resent after a
    // failure keeps its numbers, so rlogd stores each message once.
    let mut next_seq = 0u64;
    let mut pacing = crate::queue::Pacing::new();
    let mut reuse = 0u64;
    inner.publish(0, rlog_sink_stats::default());
    loop {
        // The spool's next look for dead processes' spools wakes the worker, but is no retry:
        // a close with nothing left to deliver does not wait for it.
        let (retry_at, tend_at) = (d.retry_at, d.disk_due());
        let taken: Taken = if direct {
            inner.take_round(
                &mut pacing,
                retry_at,
                tend_at,
                &mut d.pending,
                Some(&mut next_seq),
            )
        } else {
            inner.take_round(&mut pacing, retry_at, tend_at, &mut batch, None)
        };
        let mut round = Round::default();
        let mut settled = Settled::default();
        d.tend_disk();
        if direct {
            if let Some(e) = drop_unsendable(&mut d, &mut settled) {
                round.error = Some(e);
            }
        } else {
            ingest(
                set,
                &mut router,
                &mut ledger,
                (&batch, 0..batch.len()),
                &mut One(&mut d),
                &mut settled,
                &mut round.error,
            );
            batch.clear();
        }
        // Write-ahead (`spool_mode = always`), or behind what already waits on disk.
        d.spool_pending(
            false,
            &mut Settler {
                ledger: (!direct).then_some(&mut ledger),
                settled: &mut settled,
            },
            &mut round,
        );
        let started = Instant::now();
        if d.due(started, taken.explicit) {
            let ctl = QueueControl(inner);
            let mut s = Settler {
                ledger: (!direct).then_some(&mut ledger),
                settled: &mut settled,
            };
            if !direct {
                // Spooled records replayed are numbered after those in memory.
                next_seq = next_seq.max(d.pending.first_seq + d.pending.len() as u64);
            }
            let mut delivered = d.deliver_all(&ctl, &mut s, &mut round, &mut next_seq);
            if !delivered {
                // `spool_mode = overflow`: what could not be delivered goes to disk.
                d.spool_pending(true, &mut s, &mut round);
                delivered = !d.holds();
            }
            if !delivered {
                d.after_failure(Instant::now());
            }
        }
        // A spool's trouble outranks this round's retries, and stays until read.
        let alert = round.alert.is_some();
        if alert {
            round.error = round.alert.take();
        }
        let disk = d.disk_counts().map(|c| {
            settled.lost.add(c.lost);
            (c.spooled, c.adopted)
        });
        let end = RoundEnd {
            request: taken.request,
            closing: taken.closing,
            settled,
            disk,
            bytes: round.bytes,
            failed: round.failed,
            error: round.error.take(),
            alert,
            retries: round.retries,
            connects: round.connects,
            held: if direct {
                Held::Inflight(d.pending.tally())
            } else {
                Held::Outputs(ledger.unsettled())
            },
            holding: d.holds(),
            outputs: vec![(0, sink_stats(&d.counters, d.pending.tally()))],
        };
        if inner.end_round(&mut pacing, end, &mut |settled| {
            // Closing with records left: with a spool they wait on disk for the next process;
            // without one, or when the disk fails, they are lost.
            let mut r = Round::default();
            let mut s = Settler {
                ledger: (!direct).then_some(&mut ledger),
                settled,
            };
            d.spool_at_close(&mut s, &mut r);
            let n = d.pending.len();
            d.settle_first(n, Outcome::Lost, &mut s, &mut r);
            let disk = d.disk_counts().map(|c| {
                settled.lost.add(c.lost);
                (c.spooled, c.adopted)
            });
            Closed {
                held: if direct {
                    Held::Inflight(Tally::ZERO)
                } else {
                    Held::Outputs(Tally::ZERO)
                },
                outputs: vec![(0, sink_stats(&d.counters, d.pending.tally()))],
                disk,
            }
        }) {
            return;
        }
        reuse += 1;
        if reuse > limits.max_buffer_reuse && d.pending.is_empty() {
            reuse = 0;
            // Memory grown while the output could not deliver is released. The sequence goes
            // on where it was: rlogd would drop reused numbers as duplicates.
            let seq = d.pending.first_seq;
            d.pending = Buffer::with_capacity(if direct { capacity } else { 0 });
            d.pending.first_seq = seq;
            d.owners = VecDeque::new();
            if !direct {
                batch = Buffer::with_capacity(capacity);
            }
        }
    }
}

/// The least a slice of a batch routed to the output threads holds (see `run_lanes`): the
/// slice is `flush_limit` bytes when that is more.
const ROUTE_SLICE: usize = 1 << 20;

/// The end of the slice of `batch` that starts at message `from`: `slice` bytes of messages
/// (at least one message), or the rest.
fn slice_end(batch: &Buffer, from: usize, slice: usize) -> usize {
    let start = batch.tally_of_first(from).bytes as usize;
    let mut to = from;
    while to < batch.len()
        && (to == from || (batch.tally_of_first(to).bytes as usize) - start < slice)
    {
        to += 1;
    }
    to
}

/// How often a closing worker with several outputs looks at what their drivers still hold.
const CLOSE_LOOK: Duration = Duration::from_millis(20);

/// An output's inbox and its driver's state as the router sees it, shared between the worker
/// thread and the driver's thread.
#[derive(Default)]
struct LaneState {
    inbox: Buffer,
    owners: VecDeque<u64>,
    /// Bytes the driver holds (pending delivery), as of its last hand-over or round.
    held: usize,
    failing: bool,
    /// The driver is delivering: what queues meanwhile is bounded by `drop_limit`.
    busy: bool,
    /// Hand-overs given to the driver, and how many it has answered (tried to deliver).
    given: u64,
    done: u64,
    /// Deliver now, backoff or not (a flush, or the close).
    explicit: bool,
    /// The close deadline: deliver until then, then stop.
    closing: Option<Instant>,
    /// Stop: what is still held is lost.
    stop: bool,
    /// Bytes delivered and whether a delivery failed since the last explicit hand-over.
    bytes: u64,
    failed: bool,
    /// What the router counted (copies dropped, encoder errors, copies too large).
    counters: OutputCounters,
    /// The driver's counters and what it held, as of its last round.
    driver: OutputCounters,
    pending: Tally,
}

impl LaneState {
    /// The output's counters: the router's and the driver's, and what both hold.
    fn stats(&self) -> rlog_sink_stats {
        let mut c = self.driver;
        c.dropped = self.counters.dropped;
        c.encode_errors = self.counters.encode_errors;
        c.lost.add(self.counters.lost);
        let mut pending = self.pending;
        pending.add(self.inbox.tally());
        sink_stats(&c, pending)
    }
}

/// The hand-over between the worker thread and one output's driver thread.
#[derive(Default)]
struct Lane {
    m: StdMutex<LaneState>,
    cv: StdCondvar,
}

impl Lane {
    fn lock(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.m.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Pauses of a driver on its own thread: woken when the close starts.
struct LaneControl<'a>(&'a Lane);

impl Control for LaneControl<'_> {
    fn deadline(&self) -> Option<Instant> {
        self.0.lock().closing
    }

    fn pause(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let mut ls = self.0.lock();
        loop {
            let now = Instant::now();
            if ls.stop {
                return false;
            }
            let deadline = ls.closing.map_or(until, |c| c.min(until));
            if ls.closing.is_some_and(|c| now >= c) {
                return false;
            }
            if now >= deadline {
                return true;
            }
            ls = self
                .0
                .cv
                .wait_timeout(ls, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The lanes, as the router's [`Inbox`] (their locks taken for the whole batch).
struct Lanes<'a> {
    states: Vec<std::sync::MutexGuard<'a, LaneState>>,
    set: &'a OutputSet,
    dead: Option<&'a DeadLetters>,
}

impl Inbox for Lanes<'_> {
    fn held(&self, i: usize) -> usize {
        self.states[i].held + self.states[i].inbox.bytes()
    }
    fn failing(&self, i: usize) -> bool {
        // A driver that is delivering takes nothing until it is done: what waits for it is
        // bounded as if it failed (an idle one takes the whole batch at once).
        self.states[i].failing || self.states[i].busy
    }
    fn push(&mut self, i: usize, record: &[u8], time: Option<i64>, owner: u64) {
        self.states[i].inbox.push(record, time);
        self.states[i].owners.push_back(owner);
    }
    fn demote(&mut self, i: usize) {
        if let Some(o) = self.states[i].owners.back_mut() {
            *o &= !PRIMARY;
        }
    }
    fn counters(&mut self, i: usize) -> &mut OutputCounters {
        &mut self.states[i].counters
    }
    fn dead_letter(&self, i: usize, why: &str, record: &[u8]) -> String {
        let label = self.set.outputs[i].label();
        let kept = dead_letter::keep(self.dead, &label, why, record);
        format!("{label}: {why}: not sent{kept}")
    }
}

/// Several outputs: each driver on its own thread.
fn run_lanes(
    inner: &Arc<Inner>,
    set: &Arc<OutputSet>,
    drivers: Vec<Driver>,
    dead: Option<Arc<DeadLetters>>,
) {
    let limits = &inner.config.limits;
    let capacity = crate::queue::initial_capacity(&inner.config);
    let ledger = Arc::new(StdMutex::new(Ledger::default()));
    let lanes: Vec<Arc<Lane>> = drivers.iter().map(|_| Arc::new(Lane::default())).collect();
    for i in 0..drivers.len() {
        inner.publish(i, rlog_sink_stats::default());
    }
    let mut threads = Vec::new();
    {
        let _mask = crate::sync::BlockSignals::new();
        for (i, d) in drivers.into_iter().enumerate() {
            let (worker, lane, shared) = (inner.clone(), lanes[i].clone(), ledger.clone());
            let t = std::thread::Builder::new()
                .name("rlog-output".into())
                .spawn(move || drive(&worker, &lane, &shared, i, d));
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    inner.report(format!("cannot start an rlog output thread: {e}"));
                    // Its inbox is bounded by its drop_limit, and given up on at the close.
                    lanes[i].lock().failing = true;
                }
            }
        }
    }
    let mut router = Router::new(lanes.len());
    let mut batch = Buffer::with_capacity(capacity);
    let mut pacing = crate::queue::Pacing::new();
    let mut reuse = 0u64;
    let mut closing = false;
    // A flush taken and not yet complete: its request, and the hand-over each lane must have
    // answered. The worker goes on routing meanwhile: a dead output's retries, which a flush
    // waits for, must not hold up the healthy outputs.
    let mut deferred: Option<(u64, Vec<u64>)> = None;
    loop {
        if let Some((request, given)) = &deferred {
            let answered = lanes.iter().zip(given).all(|(l, &g)| {
                let ls = l.lock();
                ls.done >= g || ls.stop
            });
            if answered {
                let (mut bytes, mut failed) = (0, false);
                for l in &lanes {
                    let ls = l.lock();
                    bytes += ls.bytes;
                    failed |= ls.failed;
                }
                inner.complete_flush(*request, if failed { -1 } else { bytes as i64 });
                deferred = None;
            }
        }
        // Drivers wait out their own backoff. Closing, the worker looks again every
        // CLOSE_LOOK for what the drivers still hold (a round at once would spin while a
        // dead output waits out its backoff).
        let retry_at = closing.then(|| Instant::now() + CLOSE_LOOK);
        let taken = inner.take_round(&mut pacing, retry_at, None, &mut batch, None);
        closing = taken.closing.is_some();
        // The batch is routed a slice at a time, each handed over as soon as it is routed: a
        // driver starts delivering the first slice of a large batch while the next is encoded.
        let slice = limits.flush_limit.max(ROUTE_SLICE);
        let mut from = 0;
        let mut given = Vec::with_capacity(lanes.len());
        loop {
            let to = slice_end(&batch, from, slice);
            let mut settled = Settled::default();
            let mut error = None;
            let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
            let mut inbox = Lanes {
                states: lanes.iter().map(|l| l.lock()).collect(),
                set,
                dead: dead.as_deref(),
            };
            ingest(
                set,
                &mut router,
                &mut ledger,
                (&batch, from..to),
                &mut inbox,
                &mut settled,
                &mut error,
            );
            given.clear();
            for (ls, lane) in inbox.states.iter_mut().zip(&lanes) {
                // A flush: its result counts from the first slice, and only the last slice's
                // hand-over is explicit (tried at once even during a backoff) — one retry cycle
                // against a dead output per flush, not one per slice.
                let last = to >= batch.len();
                if taken.explicit && from == 0 {
                    ls.bytes = 0;
                    ls.failed = false;
                }
                if taken.explicit && last {
                    ls.explicit = true;
                }
                if (taken.explicit && last) || !ls.inbox.is_empty() {
                    ls.given += 1;
                    lane.cv.notify_all();
                }
                if let Some(c) = taken.closing {
                    ls.closing = Some(c);
                    lane.cv.notify_all();
                }
                given.push(ls.given);
            }
            let outputs: Vec<_> = inbox
                .states
                .iter()
                .enumerate()
                .map(|(i, ls)| (i, ls.stats()))
                .collect();
            drop(inbox);
            // Under the ledger's lock: the drivers' settlements and this one reach the counters
            // in the order the ledger saw them. The slice is in the ledger now (unsettled): no
            // longer in flight.
            let routed = batch.tally_of_first(to).minus(batch.tally_of_first(from));
            inner.settle_outputs(OutputsSettled {
                settled,
                error: error.map(PendingError::Text),
                retries: 0,
                connects: 0,
                held: Some(ledger.unsettled()),
                outputs: &outputs,
                disk: None,
                routed,
            });
            drop(ledger);
            from = to;
            if from >= batch.len() {
                break;
            }
        }
        batch.clear();
        let mut round = Round::default();
        // The flush request this round completes: only the close's (a flush taken is
        // completed above, once the drivers answered; a round without one completes none).
        let request = if taken.closing.is_some() {
            taken.request
        } else {
            0
        };
        if taken.explicit && taken.closing.is_none() {
            // flush(): completed once every driver has tried what it was given (above, at a
            // later round; a driver's answer wakes the worker).
            inner.defer_flush(taken.request);
            deferred = Some((taken.request, given));
        } else if let Some(until) = taken.closing {
            // The close: wait for every driver to have tried what it was given.
            for (lane, &g) in lanes.iter().zip(&given) {
                let mut ls = lane.lock();
                while ls.done < g && !ls.stop {
                    let now = Instant::now();
                    if now >= until {
                        break;
                    }
                    ls = lane
                        .cv
                        .wait_timeout(ls, until - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                round.bytes += ls.bytes;
                round.failed |= ls.failed || ls.done < g;
            }
        }
        let holding = lanes.iter().any(|l| {
            let ls = l.lock();
            !ls.inbox.is_empty() || ls.held > 0
        });
        let end = RoundEnd {
            request,
            closing: taken.closing,
            settled: Settled::default(),
            bytes: round.bytes,
            failed: round.failed,
            error: None,
            alert: false,
            retries: 0,
            connects: 0,
            held: Held::Unchanged,
            holding,
            outputs: Vec::new(),
            disk: None,
        };
        let closed = inner.end_round(&mut pacing, end, &mut |settled| {
            // Closing: the drivers give up what they still hold and stop.
            for lane in &lanes {
                lane.lock().stop = true;
                lane.cv.notify_all();
            }
            for t in threads.drain(..) {
                let _ = t.join();
            }
            // A driver that could not be started leaves its inbox: lost.
            let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
            let mut s = Settler {
                ledger: Some(&mut ledger),
                settled,
            };
            let mut outputs = Vec::new();
            for (i, lane) in lanes.iter().enumerate() {
                let mut ls = lane.lock();
                let n = ls.owners.len();
                if n > 0 {
                    let t = ls.inbox.tally_of_first(n);
                    ls.counters.lost.add(t);
                    s.settle(ls.owners.drain(..), t, Outcome::Lost);
                    ls.inbox.clear();
                }
                outputs.push((i, ls.stats()));
            }
            Closed {
                held: Held::Outputs(ledger.unsettled()),
                outputs,
                disk: None,
            }
        });
        if closed {
            return;
        }
        reuse += 1;
        if reuse > limits.max_buffer_reuse {
            reuse = 0;
            batch = Buffer::with_capacity(capacity);
        }
    }
}

/// One output's driver thread: delivers what its lane is given, waits out its backoff, and
/// settles through the shared ledger.
fn drive(inner: &Inner, lane: &Lane, ledger: &StdMutex<Ledger>, i: usize, mut d: Driver) {
    // The sequence number of the next record replayed from disk (see `Driver::deliver_all`).
    let mut next_seq = 0u64;
    loop {
        // The disk queue's chores (adopting dead processes' spools, interval syncs), outside
        // the lane's lock: the router must not wait for the disk.
        d.tend_disk();
        let mut ls = lane.lock();
        let gen = loop {
            let now = Instant::now();
            if ls.stop {
                drop(ls);
                give_up(inner, lane, ledger, i, &mut d);
                return;
            }
            let has = !ls.inbox.is_empty() || d.holds();
            // Closing: try at once until the deadline; past it, wait to be stopped.
            let explicit = ls.explicit
                || (ls.closing.is_some_and(|c| now < c) && d.retry_at.is_none_or(|t| now >= t));
            if has && (explicit || d.retry_at.is_none_or(|t| now >= t)) {
                break Some(ls.given);
            }
            if ls.done < ls.given && (!has || !explicit) {
                // Nothing this hand-over can do now: answered (its records wait for the retry).
                ls.done = ls.given;
                ls.explicit = false;
                lane.cv.notify_all();
                inner.lane_answered();
            }
            let tend = d.disk_due();
            if tend.is_some_and(|t| now >= t) {
                break None;
            }
            let wait = match d.retry_at {
                Some(t) if has => t.saturating_duration_since(now),
                _ => Duration::from_secs(3600),
            };
            let wait = tend.map_or(wait, |t| wait.min(t.saturating_duration_since(now)));
            ls = lane
                .cv
                .wait_timeout(ls, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        let Some(gen) = gen else {
            continue;
        };
        ls.explicit = false;
        // The inbox's records join the pending ones, in order.
        if d.pending.is_empty() {
            let seq = d.pending.first_seq;
            std::mem::swap(&mut d.pending, &mut ls.inbox);
            d.pending.first_seq = seq;
            ls.inbox.first_seq = 0;
        } else {
            d.pending.append(&ls.inbox);
            ls.inbox.clear();
        }
        d.owners.extend(ls.owners.drain(..));
        ls.held = d.pending.bytes();
        ls.pending = d.pending.tally();
        ls.busy = true;
        drop(ls);

        let mut round = Round::default();
        let mut s = Collect::default();
        // Write-ahead (`spool_mode = always`), or behind what already waits on disk.
        d.spool_pending(false, &mut s, &mut round);
        next_seq = next_seq.max(d.pending.first_seq + d.pending.len() as u64);
        let mut ok = d.deliver_all(&LaneControl(lane), &mut s, &mut round, &mut next_seq);
        if !ok {
            // `spool_mode = overflow`: what could not be delivered goes to disk.
            d.spool_pending(true, &mut s, &mut round);
            ok = !d.holds();
        }
        if !ok {
            d.after_failure(Instant::now());
        }
        settle_lane(inner, lane, ledger, i, &mut d, s, &mut round, gen);
    }
}

/// Collects a driver's settlements, to apply them under the ledger's lock in one go: copies by
/// owner, and records of their own (replayed from disk) as counts.
#[derive(Default)]
struct Collect {
    copies: VecDeque<(u64, Outcome)>,
    records: Settled,
}

impl Settle for Collect {
    fn settle(
        &mut self,
        owners: std::collections::vec_deque::Drain<'_, u64>,
        t: Tally,
        outcome: Outcome,
    ) {
        if owners.len() == 0 {
            self.records.add(t, outcome);
        } else {
            self.copies.extend(owners.map(|o| (o, outcome)));
        }
    }
}

/// Applies a driver thread's round: its settlements to the ledger and the counters, its state
/// to its lane.
#[allow(clippy::too_many_arguments)]
fn settle_lane(
    inner: &Inner,
    lane: &Lane,
    ledger: &StdMutex<Ledger>,
    i: usize,
    d: &mut Driver,
    done: Collect,
    round: &mut Round,
    gen: u64,
) {
    {
        let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
        let mut settled = done.records;
        for (seq, outcome) in done.copies {
            ledger.copy_done(seq, outcome, &mut settled);
        }
        let disk = d.disk_counts().map(|c| {
            settled.lost.add(c.lost);
            (i, c.spooled, c.adopted)
        });
        // A spool's trouble outranks the retries, and stays until read.
        let error = match round.alert.take() {
            Some(a) => Some(PendingError::Alert(a)),
            None => round.error.take().map(PendingError::Text),
        };
        let mut ls = lane.lock();
        ls.driver = d.counters;
        ls.pending = d.pending.tally();
        // Counted before the lane says the hand-over is done: a flush that waits for it then
        // finds its messages settled.
        inner.settle_outputs(OutputsSettled {
            settled,
            error,
            retries: round.retries,
            connects: round.connects,
            held: Some(ledger.unsettled()),
            outputs: &[(i, ls.stats())],
            disk,
            routed: Tally::ZERO,
        });
        ls.held = d.pending.bytes();
        ls.failing = d.failing();
        ls.busy = false;
        ls.bytes += round.bytes;
        ls.failed |= round.failed;
        let answered = gen > ls.done;
        ls.done = ls.done.max(gen);
        lane.cv.notify_all();
        if answered {
            inner.lane_answered();
        }
    }
}

/// The logger stops: what the driver still holds is lost.
fn give_up(inner: &Inner, lane: &Lane, ledger: &StdMutex<Ledger>, i: usize, d: &mut Driver) {
    let mut ls = lane.lock();
    if d.pending.is_empty() {
        let seq = d.pending.first_seq;
        std::mem::swap(&mut d.pending, &mut ls.inbox);
        d.pending.first_seq = seq;
    } else {
        d.pending.append(&ls.inbox);
        ls.inbox.clear();
    }
    d.owners.extend(ls.owners.drain(..));
    let gen = ls.given;
    drop(ls);
    let mut done = Collect::default();
    let mut round = Round::default();
    // With a spool they wait on disk for the next process; without one, or when the disk
    // fails, they are lost.
    d.spool_at_close(&mut done, &mut round);
    let n = d.pending.len();
    d.settle_first(n, Outcome::Lost, &mut done, &mut round);
    d.disconnect();
    settle_lane(inner, lane, ledger, i, d, done, &mut round, gen);
}
