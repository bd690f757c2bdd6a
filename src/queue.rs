//! `Logger`: the caller-facing half of a logger — its buffer, limits, counters and error slot —
//! and the handle on its worker thread.
//!
//! `log` appends to the calling thread's ring (`ring.rs`) while the thread has *credit*: bytes
//! the state lock granted it in advance, sized so that spending them cannot cross `flush_limit`
//! or `drop_limit` (the accounting and its fence protocol: `credit.rs`). That common path is a
//! memcpy and a release store — no lock, no locked instruction, no syscall, no allocation. A
//! message the credit does not cover takes the lock, and there the lua-resty-logger-socket
//! rules are applied exactly: bytes held (rings, buffer and in flight) plus this message over
//! `drop_limit` drop it; at `flush_limit` the worker is woken. Whoever holds the lock may move
//! ring records into the logger's `Buffer` (`State::collect`), which is what the worker swaps
//! out and sends outside the lock. Everything that talks to the network runs on the worker
//! (`worker.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sync::{Condvar, Mutex, MutexGuard};

use crate::buffer::Buffer;
use crate::config::Config;
use crate::credit::{self, Rings, Watch};
use crate::ledger::Settled;
use crate::producer::{self, RingOwner, Slot};
use crate::ring::Ring;
use crate::stats::{rlog_sink_stats, rlog_stats, Counters, Tally};
use crate::sync;

/// The runtime error `log` reports when a message does not fit.
pub const BUFFER_FULL: &str = "logger buffer is full, this log message will be dropped";

/// The error waiting to be returned once by `last_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingError {
    /// [`BUFFER_FULL`], kept as a tag so the drop path never allocates.
    BufferFull,
    Text(String),
    /// Messages were lost (a full spool) or are at risk (held in memory while the spool's disk
    /// fails): kept until it is read, not replaced by a later [`PendingError::Text`] (the
    /// retries that go on meanwhile).
    Alert(String),
}

impl PendingError {
    pub fn as_str(&self) -> &str {
        match self {
            PendingError::BufferFull => BUFFER_FULL,
            PendingError::Text(s) | PendingError::Alert(s) => s,
        }
    }
}

/// How long past its delivery deadline a closing caller waits for the worker to count what it
/// could not deliver and stop (it notices the deadline between two attempts).
pub(crate) const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// What `log` did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    /// Buffered; its length.
    Buffered(usize),
    /// Refused: it did not fit under `drop_limit`.
    Dropped,
    /// The logger is shutting down and takes nothing more.
    Closed,
}

/// Everything the caller side and the worker share, under one lock.
#[derive(Debug)]
pub(crate) struct State {
    /// Messages logged and not yet taken by the worker (ring records move here on `collect`).
    pub buf: Buffer,
    /// The rings of the threads that log here, and their credit.
    rings: Rings,
    /// What the worker holds: the batch being sent, or kept after a failed flush.
    pub inflight: Tally,
    /// Messages whose copies wait in the queues of uWSGI-style outputs (`pipeline.rs`): counted
    /// as buffered, but bounded by each logger's own `drop_limit` rather than the handle's, so
    /// one dead logger cannot make the handle drop what the others would deliver.
    pub sinks_held: Tally,
    /// Each output's disk queue: what it holds now and what it adopted so far (`spooled` and
    /// `adopted` are their sums).
    disks: Vec<(Tally, Tally)>,
    pub counters: Counters,
    pub error: Option<PendingError>,
    /// A log call crossed `flush_limit` (or was dropped): the worker should flush.
    pub flush_wanted: bool,
    /// The worker is in a short timed wait after which it looks at `flush_wanted` itself
    /// (`POLL`): setting `flush_wanted` is enough, no wake-up needed.
    pub worker_polls: bool,
    /// Flushes are frequent and the worker paces them (`POLL`): it looks at the rings
    /// every tick, so threads may get credit past `flush_limit`.
    pub poll_mode: bool,
    /// The worker is delivering a batch and collects again when done: credit past
    /// `flush_limit` is safe too.
    pub worker_busy: bool,
    /// When the worker last finished a delivery (see `IDLE_GRACE`).
    pub last_delivery: Instant,
    /// Explicit flush requests: the worker completes request `n` by setting `flush_done = n`.
    pub flush_req: u64,
    pub flush_done: u64,
    /// A flush request the worker took and completes later, when its outputs' threads have
    /// answered (several outputs: the worker goes on routing meanwhile).
    pub flush_taken: u64,
    /// An output's thread answered a hand-over: the worker may complete a flush it took.
    pub lanes_answered: bool,
    /// Bytes the last completed flush delivered, or -1 if it failed.
    pub flush_result: i64,
    /// Set by shutdown: deliver what is held until this instant, then stop.
    pub closing: Option<Instant>,
    /// The worker has stopped; nothing more will be delivered.
    pub closed: bool,
    pub worker: Option<JoinHandle<()>>,
    /// Each output's counters as of its driver's last round (`rlog_logger_sink_stats`).
    pub outputs: Vec<rlog_sink_stats>,
}

impl State {
    /// Output `i`'s disk queue holds `spooled` and adopted `adopted` so far.
    fn set_disk(&mut self, i: usize, spooled: Tally, adopted: Tally) {
        if self.disks.len() <= i {
            self.disks.resize(i + 1, (Tally::ZERO, Tally::ZERO));
        }
        self.disks[i] = (spooled, adopted);
        let (mut s, mut a) = (Tally::ZERO, Tally::ZERO);
        for (sp, ad) in &self.disks {
            s.add(*sp);
            a.add(*ad);
        }
        self.counters.spooled = s;
        self.counters.adopted = a;
    }

    /// Messages held in memory: buffered plus in flight. Ring records count once collected
    /// (every reader of this collects first).
    pub fn buffered(&self) -> Tally {
        let mut t = self.buf.tally();
        t.add(self.inflight);
        t.add(self.sinks_held);
        t
    }

    /// Moves every ring's records into `buf` (counting them logged) and forgets rings whose
    /// thread has exited. Returns whether anything was moved.
    pub(crate) fn collect(&mut self) -> bool {
        let mut moved = false;
        loop {
            let (m, more) = self.collect_step(usize::MAX);
            moved |= m;
            if !more {
                return moved;
            }
        }
    }

    /// `collect`, stopping once `budget` message bytes have moved. Returns whether anything
    /// moved and whether records are left to move.
    fn collect_step(&mut self, budget: usize) -> (bool, bool) {
        let before = self.buf.tally();
        let step = self.rings.collect_step(&mut self.buf, budget);
        self.count_logged(before);
        step
    }

    /// Moves ring `i`'s records into `buf` (at least `budget` bytes of them, if it has that
    /// many); returns the message bytes moved and whether the ring is drained.
    fn drain_ring(&mut self, i: usize, budget: usize) -> (usize, bool) {
        let before = self.buf.tally();
        let r = self.rings.drain(i, &mut self.buf, budget);
        self.count_logged(before);
        r
    }

    /// Counts logged what ring records moved into `buf` since it held `before`.
    fn count_logged(&mut self, before: Tally) {
        let after = self.buf.tally();
        self.counters.logged.add(Tally {
            msgs: after.msgs - before.msgs,
            bytes: after.bytes - before.bytes,
        });
    }

    /// Rings whose thread holds credit granted past `flush_limit`.
    pub(crate) fn past_flush_rings(&self) -> usize {
        self.rings.past_flush_rings()
    }

    /// Bytes held, for `flush_limit`: buffer, in flight and ring contents.
    fn held_actual(&self) -> usize {
        self.outside_rings() + self.rings.actual()
    }

    /// Bytes held outside the rings: buffer and in flight (with the rings' reservation, what
    /// counts against `drop_limit`; copies waiting in the queues of uWSGI-style loggers are
    /// bounded by each logger's own limit, see `sinks_held`).
    fn outside_rings(&self) -> usize {
        self.buf.bytes() + self.inflight.bytes as usize
    }

    /// Forgets every ring: in a fork child (the parent delivers what they hold), or once the
    /// worker has stopped (after its last `collect`).
    pub(crate) fn drop_rings(&mut self) {
        self.rings.drop_all();
    }
}

/// Bytes of ring each producing thread gets: room for many default `flush_limit`s, so the
/// worker normally drains a ring long before it fills, and small enough to stay in a core's
/// L2 cache. A thread that fills it (a `flush_limit` larger than the ring, or a collector that
/// cannot keep up) moves it into the buffer itself, under the lock. Waking the worker to do
/// that earlier measured slower: the worker reading the lines the thread is writing costs the
/// thread more than the copy.
const RING_BYTES: usize = 256 << 10;

/// The most message bytes the worker moves from rings to the buffer per hold of the state
/// lock: a thread that needs the lock meanwhile waits for one such copy at most (a few µs).
const COLLECT_STEP: usize = 16 << 10;

/// `State::collect`, for the worker before it decides what to do: in steps, letting a thread
/// that waits for the lock in between; records that arrived on credit past `flush_limit`
/// (granted while the worker was busy or polling) want a flush.
pub(crate) fn collect_for_worker(st: &mut MutexGuard<'_, State>, flush_limit: usize) {
    let mut moved = false;
    loop {
        let (m, more) = st.collect_step(COLLECT_STEP);
        moved |= m;
        if !more {
            break;
        }
        st.bump();
    }
    if moved && st.buf.bytes() + st.inflight.bytes as usize >= flush_limit {
        st.flush_wanted = true;
    }
}

/// While `log` crosses `flush_limit` more often than once per 2 `POLL`, the worker waits for
/// at most `POLL` and looks for itself, `log` sets `flush_wanted` without a wake-up system
/// call, and flushes are paced to one per `POLL` (unless a quarter of `drop_limit` is held): a
/// flush starts up to `POLL` later, and one worker wake-up and one send carry what many
/// `flush_limit` crossings would have. In nginx at ~70 k requests/s that took rlog's own
/// thread from 0.5 µs to 0.13–0.18 µs per request (1 ms measured 0.4–0.55 µs: most of a
/// loopback send's cost is per call — the kernel wakes the collector from the sender's
/// context). A tick that finds nothing wanted ends this (the next crossing wakes the worker,
/// as when idle), so an idle logger costs no timer wake-ups.
/// `flush()`, shutdown and a due retry do not wait for a tick.
pub(crate) const POLL: Duration = Duration::from_millis(5);

/// How long after its last delivery the worker keeps looking at the rings every `POLL` while
/// threads hold credit past `flush_limit`, before it fences them and sleeps.
pub(crate) const IDLE_GRACE: Duration = Duration::from_millis(100);

/// The worker's pacing of its rounds (see [`POLL`]), kept by the worker.
#[derive(Debug)]
pub(crate) struct Pacing {
    /// Flushes come faster than one per 2 POLL: wait with a POLL timeout and let `log` skip
    /// the wake-up.
    poll: bool,
    /// When the last round ended (the periodic flush counts from there).
    last_flush: Instant,
    /// When the last round started: pacing counts from there, so a send that takes a while
    /// is not followed by a full POLL of idleness.
    flush_started: Instant,
    last_wanted_flush: Option<Instant>,
}

impl Pacing {
    pub(crate) fn new() -> Pacing {
        let now = Instant::now();
        Pacing {
            poll: false,
            last_flush: now,
            flush_started: now,
            last_wanted_flush: None,
        }
    }
}

/// What a round took: the flush request it answers, the close deadline, and whether the
/// outputs must try now even while waiting out a backoff (a flush or the close asks).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Taken {
    pub request: u64,
    pub closing: Option<Instant>,
    pub explicit: bool,
}

/// What the outputs hold after a round, for `buffered` and the limits.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Held {
    /// A direct output's records (the caller's messages), counted against the handle's
    /// `drop_limit`.
    Inflight(Tally),
    /// Messages not yet settled by routed outputs, each bounded by its own `drop_limit`.
    Outputs(Tally),
    /// Routed outputs on their own threads, which report what they hold themselves.
    Unchanged,
}

/// Called by `Inner::end_round` when the worker stops: the outputs give up what they hold
/// (adding it to the `Settled`), and say what they still hold and their final counters.
pub(crate) type CloseOutputs<'a> = dyn FnMut(&mut Settled) -> Closed + 'a;

/// What the outputs hold once the worker stops (see [`CloseOutputs`]).
#[derive(Debug)]
pub(crate) struct Closed {
    pub held: Held,
    pub outputs: Vec<(usize, rlog_sink_stats)>,
    /// What the disk queue holds then, and what it adopted (see `RoundEnd::disk`).
    pub disk: Option<(Tally, Tally)>,
}

/// What an output's driver thread (or the router feeding the drivers) did, for
/// [`Inner::settle_outputs`].
pub(crate) struct OutputsSettled<'a> {
    pub settled: Settled,
    pub error: Option<PendingError>,
    pub retries: u64,
    pub connects: u64,
    /// The messages still unsettled (in the outputs' queues).
    pub held: Option<Tally>,
    /// Outputs' counters.
    pub outputs: &'a [(usize, rlog_sink_stats)],
    /// An output's disk queue: (output, spooled, adopted).
    pub disk: Option<(usize, Tally, Tally)>,
    /// Messages of the batch in flight that the router has now routed into the outputs'
    /// queues (counted in `held` from now on, no longer in flight).
    pub routed: Tally,
}

/// How a round ended (see `Inner::end_round`).
#[derive(Debug)]
pub(crate) struct RoundEnd {
    pub request: u64,
    pub closing: Option<Instant>,
    pub settled: Settled,
    /// A disk queue's records now (`spooled`) and those it adopted from dead processes so far
    /// (`adopted`): the counters are set to these.
    pub disk: Option<(Tally, Tally)>,
    /// Bytes delivered, and whether a delivery failed (the flush's result is then -1).
    pub bytes: u64,
    pub failed: bool,
    pub error: Option<String>,
    /// `error` says messages were lost or are at risk: it is not replaced by later retry
    /// errors.
    pub alert: bool,
    pub retries: u64,
    pub connects: u64,
    pub held: Held,
    /// Whether the outputs still hold records.
    pub holding: bool,
    pub outputs: Vec<(usize, rlog_sink_stats)>,
}

/// Distinguishes loggers in the threads' slots (an address could be reused).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One logger: its config, shared state and worker.
#[derive(Debug)]
pub struct Inner {
    pub(crate) config: Config,
    pub(crate) state: Mutex<State>,
    /// Wakes the worker: a flush is wanted, requested, or the logger is closing.
    pub(crate) work: Condvar,
    /// Wakes callers waiting on a flush or on shutdown.
    pub(crate) done: Condvar,
    /// The fork generation this logger's worker belongs to (see `lifecycle`).
    generation: AtomicU64,
    /// Mirrors `State.error.is_some()`, so "is an error pending?" — asked after every `log`
    /// by the Lua binding — is one atomic load instead of a lock.
    error_pending: AtomicBool,
    /// What `log`'s lock-free path must look at after appending (`credit::CLOSING`,
    /// `credit::WORKER_IDLE`).
    watch: Watch,
    /// This logger's id in the threads' slots.
    id: u64,
    /// Rings whose thread exited since the worker was last woken for them.
    orphans: AtomicUsize,
    /// Starts this logger's worker: at start, and in a fork child (set by `Logger::start`, so
    /// the queue does not depend on the pipeline it feeds).
    spawn: SpawnWorker,
}

/// Starts a worker thread for a logger.
pub(crate) struct SpawnWorker(
    pub(crate) Box<dyn Fn(Arc<Inner>) -> std::io::Result<JoinHandle<()>> + Send + Sync>,
);

impl std::fmt::Debug for SpawnWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpawnWorker")
    }
}

/// Threads that exit before the worker is woken to drain and free their rings: each holds a
/// `RING_BYTES` ring until then. Without it, a thread-per-request host with a large
/// `flush_limit` kept one 256 KiB ring per finished thread until the next flush (500 MB for
/// 2 000 threads between two periodic flushes).
const ORPHANS_WAKE: usize = 4;

impl RingOwner for Inner {
    fn ring_orphaned(&self) {
        self.orphan_one();
    }
}

impl Inner {
    /// A thread that had a ring here exited: every `ORPHANS_WAKE` of them, wake the worker,
    /// whose next collect drains their rings and frees them.
    fn orphan_one(&self) {
        if self.orphans.fetch_add(1, Ordering::AcqRel) + 1 < ORPHANS_WAKE {
            return;
        }
        self.orphans.store(0, Ordering::Release);
        // Under the lock: the worker is either waiting (and woken) or about to collect.
        let _st = self.state.lock();
        self.work.notify_one();
    }

    /// The worker is about to sleep until `until` (None: until woken). While threads hold
    /// credit past `flush_limit`, a long sleep could leave what they write unflushed: set
    /// `WORKER_IDLE` (their next append then takes the lock and wakes the worker), fence so
    /// that every record written before they can see the flag is visible, and collect those.
    /// Returns true when that collect made a flush wanted: the worker should not sleep.
    pub(crate) fn before_long_wait(
        &self,
        st: &mut MutexGuard<'_, State>,
        until: Option<Instant>,
    ) -> bool {
        let long = until.is_none_or(|t| t > Instant::now() + POLL);
        if !long || st.past_flush_rings() == 0 || !self.watch.worker_idle() {
            return false;
        }
        let wanted = st.flush_wanted;
        collect_for_worker(st, self.config.limits.flush_limit);
        st.flush_wanted && !wanted
    }

    /// The worker has taken a batch and delivers it outside the lock: it will collect again
    /// when done, so threads may spend credit past `flush_limit` again.
    pub(crate) fn batch_taken(&self, st: &mut State) {
        st.worker_busy = true;
        self.watch.worker_busy();
    }

    /// The worker has finished delivering a batch (at `at`) and holds the lock again.
    pub(crate) fn batch_done(&self, st: &mut State, at: Instant) {
        st.worker_busy = false;
        st.last_delivery = at;
    }

    /// Sleeps `d`, or less if the logger starts closing or its close deadline comes first.
    /// Returns false when the close deadline has passed (stop retrying). For the driver of the
    /// worker thread's own output.
    pub(crate) fn pause(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let mut st = self.state.lock();
        loop {
            if let Some(deadline) = st.closing {
                if Instant::now() >= deadline {
                    return false;
                }
                let until = until.min(deadline);
                if self.work.wait_until(&mut st, until).timed_out() {
                    return Instant::now() < deadline;
                }
                continue;
            }
            if self.work.wait_until(&mut st, until).timed_out() {
                return true;
            }
        }
    }

    /// The worker took flush request `request` and completes it later ([`Inner::complete_flush`]).
    pub(crate) fn defer_flush(&self, request: u64) {
        let mut st = self.state.lock();
        st.flush_taken = st.flush_taken.max(request);
    }

    /// Completes the flush requests up to `request`: `result` is what `flush()` returns.
    pub(crate) fn complete_flush(&self, request: u64, result: i64) {
        let mut st = self.state.lock();
        if request > st.flush_done {
            st.flush_done = request;
            st.flush_result = result;
            self.done.notify_all();
        }
    }

    /// An output's thread answered a hand-over: the worker looks whether a flush it took is
    /// complete.
    pub(crate) fn lane_answered(&self) {
        let mut st = self.state.lock();
        st.lanes_answered = true;
        if !st.worker_polls {
            self.work.notify_one();
        }
    }

    /// The close deadline, once the logger is closing.
    pub(crate) fn closing_deadline(&self) -> Option<Instant> {
        self.state.lock().closing
    }

    /// Makes `text` the pending error.
    pub(crate) fn report(&self, text: String) {
        let mut st = self.state.lock();
        self.post_error(&mut st, PendingError::Text(text));
    }

    /// Sets output `i`'s published counters.
    pub(crate) fn publish(&self, i: usize, stats: rlog_sink_stats) {
        let mut st = self.state.lock();
        if st.outputs.len() <= i {
            st.outputs.resize(i + 1, rlog_sink_stats::default());
        }
        st.outputs[i] = stats;
    }

    /// Settles what an output's driver thread (or the router feeding it) did.
    pub(crate) fn settle_outputs(&self, s: OutputsSettled<'_>) {
        let OutputsSettled {
            settled,
            error,
            retries,
            connects,
            held,
            outputs,
            disk,
            routed,
        } = s;
        let mut st = self.state.lock();
        settled.add_to(&mut st.counters);
        if let Some((i, spooled, adopted)) = disk {
            st.set_disk(i, spooled, adopted);
        }
        st.counters.retries += retries;
        st.counters.connects += connects;
        if let Some(e) = error {
            self.post_error(&mut st, e);
        }
        if let Some(t) = held {
            st.sinks_held = t;
        }
        st.inflight = st.inflight.minus(routed);
        for &(i, stats) in outputs {
            if st.outputs.len() <= i {
                st.outputs.resize(i + 1, rlog_sink_stats::default());
            }
            st.outputs[i] = stats;
        }
    }

    /// Waits until a delivery round is due, then takes what the caller side queued into
    /// `into`: swapped in (routed configs), or, with `direct_seq`, appended to the records a
    /// direct output still holds and numbered from `*direct_seq` on. `retry_at`: when the
    /// worker's own output retries a failed delivery. `tend_at`: when the worker wants a round
    /// anyway to look after its output (the spool's look for dead processes' spools); unlike a
    /// retry, it does not hold back a close that has nothing left to deliver.
    ///
    /// A round is due when `flush()` asks, a `log` crossed `flush_limit` (paced to one round per
    /// [`POLL`] while that happens often), the periodic flush, the retry or the tending is due,
    /// or the logger is closing.
    pub(crate) fn take_round(
        &self,
        p: &mut Pacing,
        retry_at: Option<Instant>,
        tend_at: Option<Instant>,
        into: &mut Buffer,
        direct_seq: Option<&mut u64>,
    ) -> Taken {
        let limits = &self.config.limits;
        let mut st = self.state.lock();
        loop {
            collect_for_worker(&mut st, limits.flush_limit);
            let now = Instant::now();
            let new_msgs = !st.buf.is_empty();
            let periodic_due = limits
                .periodic_flush
                .is_some_and(|per| now >= p.last_flush + per);
            if periodic_due && !new_msgs {
                p.last_flush = now;
            }
            let retry_due = retry_at.is_some_and(|t| now >= t);
            let tend_due = tend_at.is_some_and(|t| now >= t);
            let wanted = st.flush_wanted || (periodic_due && new_msgs);
            // While flushes are frequent, one per POLL at most: what arrives meanwhile joins
            // the next batch instead of costing a send of its own ...
            let next_paced = p.flush_started + POLL;
            // ... unless what is held nears drop_limit.
            let paced = p.poll
                && st.closing.is_none()
                && now < next_paced
                && st.buf.bytes() + (st.inflight.bytes as usize) < limits.drop_limit / 4;
            // Closing: deliver what is new at once; what waits out a backoff, when it is due
            // (or at the deadline).
            let closing_due = st.closing.is_some() && (new_msgs || retry_at.is_none() || retry_due);
            if st.flush_req > st.flush_done.max(st.flush_taken)
                // A flush taken is waiting for the outputs' threads, and one answered.
                || (st.flush_taken > st.flush_done && std::mem::take(&mut st.lanes_answered))
                || closing_due
                || retry_due
                || tend_due
                || (wanted && !paced)
                || st.closing.is_some_and(|deadline| now >= deadline)
            {
                break;
            }
            let tick = p.poll.then(|| if paced { next_paced } else { now + POLL });
            st.worker_polls = tick.is_some();
            let wake = [
                limits.periodic_flush.map(|per| p.last_flush + per),
                retry_at,
                tend_at,
                st.closing,
                tick,
            ];
            self.wait_for_work(&mut st, wake);
            st.worker_polls = false;
            if tick.is_some_and(|t| Instant::now() >= t) {
                // One look per tick: if this one finds nothing wanted, traffic has slowed and
                // the next wait lasts until `log` wakes the worker.
                p.poll = false;
                st.poll_mode = false;
            }
        }
        let now = Instant::now();
        if st.flush_wanted {
            p.poll = p.last_wanted_flush.is_some_and(|t| now < t + 2 * POLL);
            p.last_wanted_flush = Some(now);
        }
        st.poll_mode = p.poll;
        st.flush_wanted = false;
        match direct_seq {
            Some(seq) => {
                if into.is_empty() {
                    std::mem::swap(&mut st.buf, into);
                    into.first_seq = *seq;
                } else {
                    into.append(&st.buf);
                    st.buf.clear();
                }
                *seq = into.first_seq + into.len() as u64;
            }
            None => std::mem::swap(&mut st.buf, into),
        }
        st.inflight = into.tally();
        self.batch_taken(&mut st);
        p.flush_started = now;
        Taken {
            request: st.flush_req,
            closing: st.closing,
            explicit: st.flush_req > st.flush_done.max(st.flush_taken) || st.closing.is_some(),
        }
    }

    /// Sleeps on the `work` condition variable until it is notified or the earliest of
    /// `deadlines` passes (with none, until notified). Callers re-check their conditions after.
    fn wait_for_work(
        &self,
        st: &mut MutexGuard<'_, State>,
        deadlines: impl IntoIterator<Item = Option<Instant>>,
    ) {
        let mut until = deadlines.into_iter().flatten().min();
        // Threads hold credit past flush_limit: look again within POLL for a while rather than
        // fence them right away (see `Logger::grant_credit`).
        let now = Instant::now();
        let grace = st.past_flush_rings() > 0 && now < st.last_delivery + IDLE_GRACE;
        if grace {
            until = Some(until.map_or(now + POLL, |t| t.min(now + POLL)));
        }
        if self.before_long_wait(st, until) {
            return;
        }
        let polls = st.worker_polls;
        st.worker_polls |= grace;
        match until {
            Some(t) => {
                self.work.wait_until(st, t);
            }
            None => self.work.wait(st),
        }
        st.worker_polls = polls;
    }

    /// Ends a round: settles its outcome, completes the flush it answered, and, when the
    /// logger is closing and nothing more can be delivered (nothing held, or the deadline has
    /// passed), calls `close` (without the state lock) to give up what the outputs still hold,
    /// counts the rest lost and stops. Returns true when the worker must stop.
    pub(crate) fn end_round(
        &self,
        p: &mut Pacing,
        end: RoundEnd,
        close: &mut CloseOutputs<'_>,
    ) -> bool {
        let now = Instant::now();
        p.last_flush = now;
        let mut st = self.state.lock();
        self.batch_done(&mut st, now);
        end.settled.add_to(&mut st.counters);
        st.counters.retries += end.retries;
        st.counters.connects += end.connects;
        if let Some(e) = end.error {
            let e = if end.alert {
                PendingError::Alert(e)
            } else {
                PendingError::Text(e)
            };
            self.post_error(&mut st, e);
        }
        self.apply_held(&mut st, end.held);
        if let Some((spooled, adopted)) = end.disk {
            st.set_disk(0, spooled, adopted);
        }
        for (i, stats) in end.outputs {
            if st.outputs.len() <= i {
                st.outputs.resize(i + 1, rlog_sink_stats::default());
            }
            st.outputs[i] = stats;
        }
        let result = if end.failed { -1 } else { end.bytes as i64 };
        if let Some(deadline) = end.closing {
            let out_of_time = Instant::now() >= deadline;
            st.collect();
            if st.buf.is_empty() && (!end.holding || out_of_time) {
                drop(st);
                let mut settled = Settled::default();
                let closed = close(&mut settled);
                let mut st = self.state.lock();
                settled.add_to(&mut st.counters);
                self.apply_held(&mut st, closed.held);
                if let Some((spooled, adopted)) = closed.disk {
                    st.set_disk(0, spooled, adopted);
                }
                for (i, stats) in closed.outputs {
                    if i < st.outputs.len() {
                        st.outputs[i] = stats;
                    }
                }
                // The last look at the rings: `log` calls that append after it see `closed`.
                st.collect();
                let mut rest = std::mem::take(&mut st.buf);
                if !rest.is_empty() {
                    st.counters.lost.add(rest.tally());
                    rest.clear();
                }
                st.inflight = Tally::ZERO;
                st.flush_done = st.flush_done.max(end.request).max(st.flush_taken);
                st.flush_result = result;
                st.drop_rings();
                st.closed = true;
                self.done.notify_all();
                return true;
            }
        }
        if end.request > st.flush_done {
            st.flush_done = end.request;
            st.flush_result = result;
            self.done.notify_all();
        }
        false
    }

    fn apply_held(&self, st: &mut State, held: Held) {
        match held {
            Held::Inflight(t) => st.inflight = t,
            Held::Outputs(t) => {
                st.inflight = Tally::ZERO;
                st.sinks_held = t;
            }
            Held::Unchanged => st.inflight = Tally::ZERO,
        }
    }

    /// Makes `e` the pending error (the caller holds the state lock).
    pub(crate) fn post_error(&self, st: &mut State, e: PendingError) {
        if matches!(e, PendingError::Text(_)) && matches!(st.error, Some(PendingError::Alert(_))) {
            return;
        }
        st.error = Some(e);
        self.error_pending.store(true, Ordering::Release);
    }

    /// Takes the pending error (the caller holds the state lock).
    pub(crate) fn take_error_locked(&self, st: &mut State) -> Option<PendingError> {
        self.error_pending.store(false, Ordering::Release);
        st.error.take()
    }
}

/// A cheap, clonable reference to one logger.
#[derive(Debug, Clone)]
pub struct Logger(pub(crate) Arc<Inner>);

/// Buffer capacity: everything `drop_limit` lets a buffer hold (up to 64 MiB), so `log` never
/// grows it. This reserves address space, not memory: the allocator maps large blocks lazily, so
/// only pages a load has touched cost RAM, and `max_buffer_reuse` gives them back.
pub(crate) fn initial_capacity(config: &Config) -> usize {
    config.limits.drop_limit.clamp(4096, 64 << 20)
}

impl Logger {
    /// A logger for `config` whose worker `spawn` starts, not started yet (see
    /// [`Logger::start_worker`]); `outputs`: how many outputs it delivers to.
    pub(crate) fn unstarted(config: Config, spawn: SpawnWorker) -> Logger {
        let cap = initial_capacity(&config);
        let outputs = vec![rlog_sink_stats::default(); config.outputs.outputs.len()];
        Logger(Arc::new(Inner {
            config,
            state: Mutex::new(State {
                buf: Buffer::with_capacity(cap),
                rings: Rings::default(),
                inflight: Tally::ZERO,
                sinks_held: Tally::ZERO,
                disks: Vec::new(),
                counters: Counters::default(),
                error: None,
                flush_wanted: false,
                worker_polls: false,
                poll_mode: false,
                worker_busy: false,
                last_delivery: Instant::now(),
                flush_req: 0,
                flush_done: 0,
                flush_taken: 0,
                lanes_answered: false,
                flush_result: 0,
                closing: None,
                closed: false,
                worker: None,
                outputs,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            generation: AtomicU64::new(sync::fork_generation()),
            error_pending: AtomicBool::new(false),
            watch: Watch::new(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            orphans: AtomicUsize::new(0),
            spawn,
        }))
    }

    /// Starts the worker thread.
    ///
    /// Errors: the thread could not be started.
    pub(crate) fn start_worker(&self) -> Result<(), String> {
        sync::prepare_fences();
        let handle = (self.0.spawn.0)(self.0.clone())
            .map_err(|e| format!("cannot start the rlog worker thread: {e}"))?;
        self.0.state.lock().worker = Some(handle);
        Ok(())
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// Makes sure this logger belongs to the current process: in a child after `fork()` it
    /// forgets the parent's messages (the parent sends them) and counters, and starts its own
    /// worker.
    #[inline]
    pub(crate) fn own_process(&self) {
        if self.0.generation.load(Ordering::Acquire) != sync::fork_generation() {
            self.adopt_after_fork();
        }
    }

    #[cold]
    fn adopt_after_fork(&self) {
        let inner = &self.0;
        let mut st = inner.state.lock();
        let gen = sync::fork_generation();
        if inner.generation.load(Ordering::Acquire) == gen {
            return;
        }
        st.buf.clear();
        st.drop_rings();
        st.poll_mode = false;
        st.worker_busy = false;
        inner.watch.worker_busy();
        st.inflight = Tally::ZERO;
        st.sinks_held = Tally::ZERO;
        st.counters = Counters::default();
        inner.take_error_locked(&mut st);
        st.flush_wanted = false;
        st.worker_polls = false;
        st.flush_req = 0;
        st.flush_done = 0;
        st.flush_taken = 0;
        st.lanes_answered = false;
        st.flush_result = 0;
        st.outputs
            .iter_mut()
            .for_each(|o| *o = rlog_sink_stats::default());
        // The parent's worker thread does not exist here: its handle must not be joined.
        std::mem::forget(st.worker.take());
        if st.closing.is_some() {
            // Closing in the parent (retired by a re-init, or being freed): the parent delivers
            // what it held, and there is nothing here to wait for.
            st.closed = true;
        } else {
            match (inner.spawn.0)(inner.clone()) {
                Ok(h) => st.worker = Some(h),
                Err(e) => {
                    st.closed = true;
                    st.closing = Some(Instant::now());
                    inner.watch.set_closing();
                    inner.post_error(
                        &mut st,
                        PendingError::Text(format!(
                            "cannot start the rlog worker thread after fork: {e}"
                        )),
                    );
                }
            }
        }
        inner.generation.store(gen, Ordering::Release);
    }

    /// Buffers one message (lua-resty-logger-socket's rules): when the bytes held (in flight
    /// included) plus this message exceed `drop_limit` it is dropped and counted, and the
    /// pending error becomes [`BUFFER_FULL`]; when they reach `flush_limit` the worker is woken
    /// to flush. Never blocks on I/O.
    #[inline]
    pub fn log(&self, msg: &[u8]) -> Logged {
        let inner = &*self.0;
        let time = if inner.config.needs_time {
            capture_time(&inner.config)
        } else {
            0
        };
        producer::with_slot(
            #[inline(always)]
            |slot| self.append(slot, msg, time),
        )
    }

    /// `log` with the calling thread's slot: the lock-free append when the thread's credit and
    /// ring space cover the message, else the locked path.
    #[inline(always)]
    fn append(&self, slot: &mut Slot, msg: &[u8], time: i64) -> Logged {
        let inner = &*self.0;
        // A fork child starts with an empty slot (`lifecycle`), so a slot naming this logger
        // is one of this process.
        if slot.logger_id == inner.id && msg.len() <= slot.credit {
            credit::spend!(slot, inner.watch, msg, time,
                clean => Logged::Buffered(msg.len()),
                watched(at) => self.pushed_while_watched(slot, at, msg.len()));
        }
        self.log_locked(slot, msg, time)
    }

    /// `log`'s path under the state lock, for a message the thread's credit or ring space does
    /// not cover (and the first message of a thread): applies the limits exactly, places the
    /// message, wakes the worker at `flush_limit`, and grants the thread new credit.
    #[cold]
    #[inline(never)]
    fn log_locked(&self, slot: &mut Slot, msg: &[u8], time: i64) -> Logged {
        self.own_process();
        let inner = &*self.0;
        let gen = sync::fork_generation();
        if slot.logger_id != inner.id || slot.generation != gen {
            producer::switch_to(slot, inner.id, gen, || self.new_ring());
        }
        let limits = &inner.config.limits;
        let mut guard = inner.state.lock();
        let st = &mut *guard;
        if st.closing.is_some() {
            return Logged::Closed;
        }
        let idx = if slot.logger_id == 0 {
            None
        } else {
            st.rings.index(slot.ring())
        };
        let len = msg.len();
        let outside = st.outside_rings();
        let Some(held) = st.rings.admit(idx, slot, len, outside, limits.drop_limit) else {
            return self.drop_message(st, len);
        };
        let time_us = inner.config.needs_time.then_some(time);
        match idx {
            Some(i) => {
                if slot.push(msg, time) {
                    st.rings.appended_locked(i, len);
                } else {
                    // The ring is full or the message is larger than it takes: what the ring
                    // holds goes first, so this thread's messages stay in order.
                    st.drain_ring(i, usize::MAX);
                    st.buf.push(msg, time_us);
                    st.counters.logged.add(Tally::one(len));
                }
            }
            None => {
                // No ring (thread teardown): straight into the buffer.
                st.buf.push(msg, time_us);
                st.counters.logged.add(Tally::one(len));
            }
        }
        if !self.wake_if_flush_due(st)
            && st.worker_polls
            && st.held_actual() >= limits.drop_limit / 2
        {
            // The worker is pacing its flushes, but what is held nears drop_limit: now.
            st.worker_polls = false;
            inner.work.notify_one();
        }
        if let Some(i) = idx {
            self.grant_credit(st, i, slot, held + len);
        }
        Logged::Buffered(len)
    }

    /// Gives the thread of ring `i` credit for its next messages, `held` being the bytes held
    /// or promised now: never past `drop_limit`, at most an even share of the room left, and
    /// below `flush_limit` never up to it (the message that reaches it must come here to wake
    /// the worker). Past `flush_limit`, only while the worker will look at the rings again by
    /// itself (it polls, is delivering, or has been woken; otherwise each crossing comes here
    /// and wakes it). That is safe until the worker sleeps for long, which it only does after
    /// setting `WORKER_IDLE`, fencing (a membarrier) and collecting what such credit wrote;
    /// later appends see the flag and come here (`Inner::before_long_wait`). With such credit
    /// out, the worker keeps looking every `POLL` for `IDLE_GRACE` after its last
    /// delivery before it sleeps, so the membarrier — whose IPIs cost ~19 µs on this machine
    /// and interrupt the logging thread — is rare.
    fn grant_credit(&self, st: &mut State, i: usize, slot: &mut Slot, held: usize) {
        let limits = &self.0.config.limits;
        let (credit, past_flush) = credit::credit_amount(
            limits.flush_limit,
            limits.drop_limit,
            held,
            st.rings.len(),
            (st.poll_mode || st.worker_busy || st.flush_wanted) && !self.0.watch.is_worker_idle(),
        );
        if st.rings.grant(i, slot, credit, past_flush) && !st.flush_wanted && !st.worker_polls {
            self.0.work.notify_one();
        }
    }

    /// A ring and its registration, for a thread that logs here for the first time.
    fn new_ring(&self) -> Option<(Arc<Ring>, std::sync::Weak<dyn RingOwner>)> {
        let inner = &*self.0;
        let mut st = inner.state.lock();
        if st.closing.is_some() {
            return None;
        }
        let ring = Arc::new(Ring::new(RING_BYTES, inner.config.needs_time));
        st.rings.add(ring.clone());
        let owner: std::sync::Weak<Inner> = Arc::downgrade(&self.0);
        Some((ring, owner))
    }

    /// `log` appended a record and then saw a flag it watches (`Rings::settle_watched`): the
    /// call fails as on a closed logger if the record was taken back; else the thread has given
    /// its credit back, and the worker is woken if a flush is due (the flag may say it sleeps).
    #[cold]
    #[inline(never)]
    fn pushed_while_watched(&self, slot: &mut Slot, at: usize, len: usize) -> Logged {
        let inner = &*self.0;
        let mut guard = inner.state.lock();
        let st = &mut *guard;
        if !st.rings.settle_watched(slot, at, len, st.closed) {
            return Logged::Closed;
        }
        self.wake_if_flush_due(st);
        Logged::Buffered(len)
    }

    /// Wakes the worker if what is held has reached `flush_limit` and no flush is asked for yet;
    /// returns whether it did.
    fn wake_if_flush_due(&self, st: &mut State) -> bool {
        let due = !st.flush_wanted && st.held_actual() >= self.0.config.limits.flush_limit;
        if due {
            self.wake_worker(st);
        }
        due
    }

    /// `log`'s refusal: counted, reported, and a flush asked for (kept out of the hot path).
    #[cold]
    #[inline(never)]
    fn drop_message(&self, st: &mut State, len: usize) -> Logged {
        st.counters.dropped.add(Tally::one(len));
        self.0.post_error(st, PendingError::BufferFull);
        if !st.flush_wanted {
            self.wake_worker(st);
        }
        Logged::Dropped
    }

    /// Asks the worker to flush (once per crossing: `flush_wanted` stays set until it has);
    /// a worker that polls sees the flag by itself within `POLL`.
    #[cold]
    #[inline(never)]
    fn wake_worker(&self, st: &mut State) {
        st.flush_wanted = true;
        if !st.worker_polls {
            self.0.work.notify_one();
        }
    }

    /// Sends everything held now and waits for the result: the bytes delivered, 0 when there
    /// was nothing to send, or -1 when delivery failed (the reason is the pending error) or
    /// the logger is closed.
    pub fn flush(&self) -> i64 {
        self.own_process();
        let inner = &*self.0;
        let mut st = inner.state.lock();
        if st.closing.is_some() {
            inner.post_error(&mut st, PendingError::Text("logger is shut down".into()));
            return -1;
        }
        st.collect();
        if st.buffered().is_zero() {
            return 0;
        }
        st.flush_req += 1;
        let mine = st.flush_req;
        inner.work.notify_one();
        let give_up = Instant::now() + inner.config.limits.longest_delivery() * 2;
        while st.flush_done < mine {
            if inner.done.wait_until(&mut st, give_up).timed_out() && st.flush_done < mine {
                inner.post_error(
                    &mut st,
                    PendingError::Text(
                        "flush did not complete in time; the messages stay buffered".into(),
                    ),
                );
                return -1;
            }
        }
        st.flush_result
    }

    /// Takes the pending error, if any: each error is returned once.
    pub fn take_error(&self) -> Option<PendingError> {
        self.own_process();
        if !self.0.error_pending.load(Ordering::Acquire) {
            return None;
        }
        let mut st = self.0.state.lock();
        self.0.take_error_locked(&mut st)
    }

    /// Makes `msg` the pending error (for argument errors found at the FFI edge).
    pub fn set_error(&self, msg: String) {
        let mut st = self.0.state.lock();
        self.0.post_error(&mut st, PendingError::Text(msg));
    }

    /// Whether an error may be pending: one load. In a fork child the flag copied from the
    /// parent may say yes; `take_error` then adopts the logger and answers none.
    #[inline]
    pub fn error_flagged(&self) -> bool {
        self.0.error_pending.load(Ordering::Acquire)
    }

    /// Looks at the pending error without taking it.
    #[inline]
    pub fn peek_error_len(&self) -> usize {
        // No fork check before the flag: the Lua binding asks after every log, and a fork
        // child's flag, copied from its parent, only leads it to `take_error`, which adopts
        // the logger (forgetting the parent's error) before it answers.
        if !self.0.error_pending.load(Ordering::Acquire) {
            return 0;
        }
        self.own_process();
        self.0
            .state
            .lock()
            .error
            .as_ref()
            .map_or(0, |e| e.as_str().len())
    }

    /// The counters now.
    pub fn stats(&self) -> rlog_stats {
        self.own_process();
        let mut st = self.0.state.lock();
        if st.collect() {
            // What the rings held is in the buffer now, where the worker's own look at the
            // rings no longer finds it: if that makes a flush due, say so (a worker asleep
            // would otherwise leave it there until the next `log`).
            self.wake_if_flush_due(&mut st);
        }
        st.counters.snapshot(st.buffered())
    }

    /// Whether the logger takes messages: not closing, not closed.
    pub fn is_open(&self) -> bool {
        self.own_process();
        self.0.state.lock().closing.is_none()
    }

    /// Whether the worker has stopped (after `close`): the counters are final.
    pub fn is_closed(&self) -> bool {
        self.0.state.lock().closed
    }

    /// After a close that did not deliver everything: how many messages it left undelivered
    /// (lost since the count was `lost_before`, and any still held), as "N message(s)", and why
    /// (the pending error, else "timeout"). None when it left none.
    pub(crate) fn undelivered(&self, lost_before: u64) -> Option<(String, String)> {
        let s = self.stats();
        let n = s.lost - lost_before + s.buffered;
        if n == 0 {
            return None;
        }
        let why = self
            .take_error()
            .map_or_else(|| "timeout".to_string(), |e| e.as_str().to_string());
        let what = if n == 1 {
            "1 message".to_string()
        } else {
            format!("{n} messages")
        };
        Some((what, why))
    }

    /// Asks the worker to deliver what is held within `timeout`, then stop, and waits for it
    /// (at most `timeout`). Returns true when every message this logger accepted (or adopted
    /// from a dead process's spool) was delivered.
    /// Later `log` calls return [`Logged::Closed`].
    pub fn close(&self, timeout: Duration) -> bool {
        self.begin_close(timeout);
        self.wait_closed(Instant::now() + timeout + CLOSE_GRACE)
    }

    /// Marks the logger closing with a delivery deadline `timeout` from now (the first call's
    /// deadline stands) and wakes the worker.
    pub(crate) fn begin_close(&self, timeout: Duration) {
        self.own_process();
        self.0.watch.close();
        let mut st = self.0.state.lock();
        if st.closing.is_none() {
            st.closing = Some(Instant::now() + timeout);
            self.0.work.notify_one();
        }
    }

    /// Waits until the worker has stopped or `until` passes; joins it if it stopped.
    pub(crate) fn wait_closed(&self, until: Instant) -> bool {
        let inner = &*self.0;
        let mut st = inner.state.lock();
        while !st.closed {
            if inner.done.wait_until(&mut st, until).timed_out() {
                break;
            }
        }
        // Delivered: what it accepted and what it adopted from dead processes' spools.
        let all = st.closed
            && st.counters.sent.msgs == st.counters.logged.msgs + st.counters.adopted.msgs;
        let handle = if st.closed { st.worker.take() } else { None };
        drop(st);
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        all
    }
}

/// The time `log` records when an encoder needs it (kept out of `log`'s common path).
#[inline(never)]
fn capture_time(config: &Config) -> i64 {
    if config.coarse_time {
        crate::encode::clock::coarse_now_micros()
    } else {
        crate::encode::clock::now_micros()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads that log once and exit do not each leave a 256 KiB ring behind until the next
    /// flush: every `ORPHANS_WAKE` exits wake the worker, which drains and frees their rings.
    #[test]
    fn rings_of_exited_threads_are_freed_without_waiting_for_a_flush() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let lg = Logger::start(
            Config::parse(&format!(
                "host = 127.0.0.1\nport = {port}\nflush_limit = 1000000\ndrop_limit = 2000000"
            ))
            .unwrap(),
        )
        .unwrap();
        for _ in 0..200 {
            let lg = lg.clone();
            std::thread::spawn(move || lg.log(b"one line\n"))
                .join()
                .unwrap();
        }
        let mut rings = usize::MAX;
        for _ in 0..500 {
            rings = lg.0.state.lock().rings.len();
            if rings < ORPHANS_WAKE {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            rings < ORPHANS_WAKE,
            "{rings} rings of exited threads still held"
        );
        let s = lg.stats();
        assert_eq!((s.logged, s.buffered, s.sent), (200, 200, 0), "{s:?}");
        drop(l);
        assert!(!lg.close(Duration::from_millis(10)));
    }
}
