//! The worker loop of a handle with uWSGI-style sinks (`Config::sinks`): take the caller's
//! messages, route each one, run each destination sink's encoder chain, and deliver per sink
//! with resty's retries — all on the worker thread, so `log` costs the same with or without
//! encoders.
//!
//! Each sink holds its encoded, framed records until they are delivered; a sink that fails
//! keeps them (bounded by its `drop_limit`) and retries later with backoff while the other
//! sinks go on delivering. Accounting is per message through the [`Ledger`]: a message counts
//! as sent once all its copies are delivered, as lost once they are all settled and one was
//! given up on (see `ledger.rs`).
//!
//! rlogd sinks (`rlogd://`) keep each record's `log` time with it, and number their records:
//! each sink's pending buffer carries consecutive sequence numbers (`Buffer::first_seq`, which
//! only ever moves forward) under a producer id of its own, so a batch resent after a lost
//! acknowledgement is dropped by rlogd as a duplicate, and each copy is stored exactly once.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::buffer::Buffer;
use crate::encode::Scratch;
use crate::ledger::{Ledger, Settled};
use crate::logger::{Inner, PendingError};
use crate::sink::{SinkSet, SinkSpec};
use crate::stats::Tally;
use crate::target::Target;
use crate::transport::{datagram, reason, rlogd, socket, stream, tls, Transport};

/// The C view of one sink's counters (`rlog_logger_sink_stats`). Counts are copies of messages
/// (a message routed to two loggers is one copy in each); bytes are encoded bytes, framing and
/// the `socket:...,TEXT` prefix included. Append-only, like `struct rlog_stats`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct rlog_sink_stats {
    /// Copies delivered.
    pub sent: u64,
    pub sent_bytes: u64,
    /// Copies queued, then given up on (too large for a datagram, or the handle closed first).
    pub lost: u64,
    pub lost_bytes: u64,
    /// Copies refused because this logger already held `drop_limit` bytes.
    pub dropped: u64,
    pub dropped_bytes: u64,
    /// Copies an encoder failed on (for example gzip of an empty record).
    pub encode_errors: u64,
    /// Copies held now, waiting for delivery.
    pub pending: u64,
    pub pending_bytes: u64,
    /// Connect or send attempts repeated after a failure.
    pub retries: u64,
    /// Connections (or datagram sockets) opened.
    pub connects: u64,
}

/// Per-sink counters (copies, and encoded bytes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SinkCounters {
    /// Copies delivered, and their encoded bytes (framing and TEXT prefix included).
    pub sent: Tally,
    /// Copies given up on after queuing (unsendable, or the handle closed first).
    pub lost: Tally,
    /// Copies not queued: the sink held `drop_limit` bytes already.
    pub dropped: Tally,
    /// Copies an encoder failed on.
    pub encode_errors: u64,
    pub retries: u64,
    pub connects: u64,
}

/// One sink's runtime state.
struct SinkRt {
    conn: Option<Box<dyn Transport>>,
    /// Encoded, framed records waiting for delivery.
    pending: Buffer,
    /// The message each pending record is a copy of.
    owners: VecDeque<u64>,
    failures: u32,
    retry_at: Option<Instant>,
    counters: SinkCounters,
    /// The chain's buffers and encoder states.
    scratch: Scratch,
    /// This sink's producer id for rlogd (unused by other targets).
    producer: u64,
}

/// What one round did, for the shared state.
#[derive(Default)]
struct Round {
    settled: Settled,
    bytes: u64,
    failed: bool,
    error: Option<String>,
    retries: u64,
    connects: u64,
}

/// Sleeps `d`, or less if the handle starts closing or its close deadline comes first.
/// Returns false when the close deadline has passed (stop retrying).
fn pause(inner: &Inner, d: Duration) -> bool {
    let until = Instant::now() + d;
    let mut st = inner.state.lock();
    loop {
        if let Some(deadline) = st.closing {
            if Instant::now() >= deadline {
                return false;
            }
            if inner
                .work
                .wait_until(&mut st, until.min(deadline))
                .timed_out()
            {
                return Instant::now() < deadline;
            }
            continue;
        }
        if inner.work.wait_until(&mut st, until).timed_out() {
            return true;
        }
    }
}

fn open(spec: &SinkSpec, producer: u64) -> io::Result<Box<dyn Transport>> {
    let timeout = spec.limits.timeout;
    let sock = match &spec.target {
        Target::Rlogd { host, port } | Target::RlogdTls { host, port } => {
            return Ok(Box::new(rlogd::Rlogd::connect_to(
                host,
                *port,
                spec.tls.as_deref(),
                &spec.rlogd,
                timeout,
                producer,
            )?))
        }
        Target::Udp { host, port } => return Ok(Box::new(datagram::udp(host, *port, timeout)?)),
        Target::UnixDgram { path } => return Ok(Box::new(datagram::unix(path, timeout)?)),
        Target::Tcp { host, port } | Target::Tls { host, port } => {
            socket::connect_tcp(host, *port, timeout)?
        }
        Target::UnixStream { path } => socket::connect_unix(path, timeout)?,
    };
    match &spec.tls {
        Some(settings) => Ok(Box::new(tls::Tls::handshake(sock, settings, timeout)?)),
        None => Ok(Box::new(stream::Stream::new(sock))),
    }
}

/// Sink `index`'s producer id, from the worker's random id `worker`: distinct for distinct
/// indexes (the mix is a bijection of `worker + index`), and never 0 (rlogd reserves it).
fn sink_producer(worker: u64, index: usize) -> u64 {
    // splitmix64's finaliser.
    let mut z = worker.wrapping_add(index as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z.max(1)
}

impl SinkRt {
    fn new(producer: u64) -> SinkRt {
        SinkRt {
            conn: None,
            pending: Buffer::default(),
            owners: VecDeque::new(),
            failures: 0,
            retry_at: None,
            counters: SinkCounters::default(),
            scratch: Scratch::default(),
            producer,
        }
    }

    /// Settles the first `n` pending copies as delivered (`ok`) or given up on.
    fn settle_first(&mut self, n: usize, ok: bool, ledger: &mut Ledger, round: &mut Round) {
        let t = self.pending.tally_of_first(n);
        if ok {
            self.counters.sent.add(t);
            round.bytes += t.bytes;
        } else {
            self.counters.lost.add(t);
        }
        self.pending.consume(n);
        for seq in self.owners.drain(..n) {
            ledger.copy_done(seq, ok, &mut round.settled);
        }
    }

    /// A usable connection, with resty's connect retries.
    fn connect(&mut self, inner: &Inner, spec: &SinkSpec, round: &mut Round) -> Result<(), String> {
        if let Some(c) = self.conn.as_mut() {
            if c.is_alive() {
                return Ok(());
            }
            self.conn = None;
        }
        let limits = &spec.limits;
        let mut tries = 0;
        loop {
            match open(spec, self.producer) {
                Ok(c) => {
                    self.counters.connects += 1;
                    round.connects += 1;
                    self.conn = Some(c);
                    return Ok(());
                }
                Err(e) => {
                    if tries >= limits.max_retry_times || !pause(inner, limits.backoff(tries)) {
                        return Err(format!(
                            "{}: try to connect to the log server failed after {} retries: {}",
                            spec.label(),
                            limits.max_retry_times,
                            reason(&e)
                        ));
                    }
                    tries += 1;
                    self.counters.retries += 1;
                    round.retries += 1;
                }
            }
        }
    }

    /// Delivers the pending records with resty's send retries. Returns false when some are
    /// still held.
    fn deliver(
        &mut self,
        inner: &Inner,
        spec: &SinkSpec,
        ledger: &mut Ledger,
        round: &mut Round,
    ) -> bool {
        let limits = &spec.limits;
        let mut tries = 0;
        loop {
            if self.pending.is_empty() {
                return true;
            }
            let failure = match self.connect(inner, spec, round) {
                Err(e) => e,
                Ok(()) => {
                    let conn = self.conn.as_mut().expect("connected above");
                    let sent = conn.send(&self.pending);
                    if let Some(notice) = conn.take_notice() {
                        round.error = Some(format!("{}: {notice}", spec.label()));
                    }
                    match sent {
                        Ok(()) => {
                            let n = self.pending.len();
                            self.settle_first(n, true, ledger, round);
                            if limits.pool_size == 0 {
                                self.conn = None;
                            }
                            continue;
                        }
                        Err(e) => {
                            let resumable = conn.resumable();
                            self.settle_first(e.delivered, true, ledger, round);
                            if let Some(why) = e.unsendable(&self.pending) {
                                round.error = Some(format!("{}: {why}: not sent", spec.label()));
                                self.settle_first(1, false, ledger, round);
                                continue;
                            }
                            if !resumable {
                                self.conn = None;
                            }
                            format!(
                                "{}: try to send log messages to the log server failed after {} retries: {}",
                                spec.label(),
                                limits.max_retry_times,
                                reason(&e.error)
                            )
                        }
                    }
                }
            };
            if tries >= limits.max_retry_times || !pause(inner, limits.backoff(tries)) {
                round.error = Some(failure);
                return false;
            }
            tries += 1;
            self.counters.retries += 1;
            round.retries += 1;
        }
    }
}

/// Routes and encodes every message of `batch` into the sinks' pending records.
fn ingest(
    set: &SinkSet,
    sinks: &mut [SinkRt],
    batch: &Buffer,
    ledger: &mut Ledger,
    dests: &mut Vec<usize>,
    frame: &mut Vec<u8>,
    round: &mut Round,
) {
    let mut unrouted = 0u64;
    for rec in batch.records() {
        let seq = ledger.open(rec.bytes.len());
        set.router.route(rec.bytes, dests);
        if dests.is_empty() {
            unrouted += 1;
            ledger.mark_lost(seq);
        }
        for &i in dests.iter() {
            let spec = &set.sinks[i];
            let SinkRt {
                pending,
                owners,
                counters,
                scratch,
                failures,
                retry_at,
                ..
            } = &mut sinks[i];
            // `drop_limit` bounds what a logger holds while it cannot deliver. A logger whose
            // last round delivered takes the whole batch, which it sends in this round: encoders
            // that make records larger (json, prefix, framing) must not turn a burst the handle
            // accepted into drops at a collector that is keeping up.
            let failing = *failures > 0 || retry_at.is_some();
            let encoded = match spec
                .chain
                .encode(rec.bytes, rec.time_us.unwrap_or(0), scratch)
            {
                Ok(e) => e,
                Err(e) => {
                    counters.encode_errors += 1;
                    round.error = Some(format!(
                        "{}: log-encoder failed: {e}; the message is not sent",
                        spec.label()
                    ));
                    ledger.mark_lost(seq);
                    continue;
                }
            };
            frame.clear();
            frame.extend_from_slice(&spec.prefix);
            spec.framing.frame(encoded, frame);
            if let Some((max, what)) = max_record(&spec.target) {
                if frame.len() > max {
                    counters.lost.add(Tally::one(frame.len()));
                    round.error = Some(format!(
                        "{}: log record of {} bytes is larger than {what} ({max} bytes): not sent",
                        spec.label(),
                        frame.len()
                    ));
                    ledger.mark_lost(seq);
                    continue;
                }
            }
            if failing && pending.bytes() + frame.len() > spec.limits.drop_limit {
                counters.dropped.add(Tally::one(frame.len()));
                round.error = Some(format!(
                    "{}: logger buffer is full, this log message will be dropped",
                    spec.label()
                ));
                ledger.mark_lost(seq);
                continue;
            }
            // rlogd stores each record with its `log` time; the other targets need none.
            let time = if spec.target.is_rlogd() {
                rec.time_us
            } else {
                None
            };
            pending.push(frame, time);
            owners.push_back(seq);
            ledger.add_copy(seq);
        }
        ledger.seal(seq, &mut round.settled);
    }
    if unrouted > 0 {
        round.error = Some(format!(
            "{unrouted} log message(s) matched no log-route and there is no default logger: not sent"
        ));
    }
}

/// The largest record target `t` can carry, and how to name that limit.
fn max_record(t: &Target) -> Option<(usize, &'static str)> {
    match t {
        Target::Udp { .. } => Some((datagram::MAX_DATAGRAM, "the largest UDP datagram")),
        Target::Rlogd { .. } | Target::RlogdTls { .. } => Some((
            crate::proto::format::MAX_PAYLOAD,
            "the largest rlogd record",
        )),
        _ => None,
    }
}

/// The worker loop for a handle with sinks.
pub(crate) fn run(inner: Arc<Inner>, set: Arc<SinkSet>) {
    let limits = &inner.config.limits;
    let capacity = crate::logger::initial_capacity(&inner.config);
    // A new worker (a new handle, or a child after fork) gets new producer ids, so its
    // sequence numbers starting from 0 are never taken for a resend of another's.
    let worker_id = crate::worker::random_producer();
    let mut sinks: Vec<SinkRt> = (0..set.sinks.len())
        .map(|i| SinkRt::new(sink_producer(worker_id, i)))
        .collect();
    // A new worker (first start, or in a child after fork) starts from zero.
    publish(&set, &sinks, &inner.state.lock());
    let mut ledger = Ledger::default();
    let mut dests = Vec::new();
    let mut frame = Vec::new();
    let mut batch = Buffer::with_capacity(capacity);
    let mut reuse = 0u64;
    let mut last_flush = Instant::now();

    loop {
        let mut st = inner.state.lock();
        let (request, closing) = loop {
            crate::logger::collect_for_worker(&mut st, limits.flush_limit);
            let now = Instant::now();
            let new_msgs = !st.buf.is_empty();
            let periodic_due = limits.periodic_flush.is_some_and(|p| now >= last_flush + p);
            if periodic_due && !new_msgs {
                last_flush = now;
            }
            // A logger waiting out its backoff does not hold up new messages for the others:
            // new work starts a round at once; a due retry starts one too.
            let retry_at = sinks.iter().filter_map(|s| s.retry_at).min();
            let retry_due = retry_at.is_some_and(|t| now >= t);
            let new_work =
                st.flush_wanted || (periodic_due && new_msgs) || (st.closing.is_some() && new_msgs);
            let closing_idle = st.closing.is_some() && retry_at.is_none();
            if st.flush_req > st.flush_done
                || new_work
                || retry_due
                || closing_idle
                || st.closing.is_some_and(|deadline| now >= deadline)
            {
                break (st.flush_req, st.closing);
            }
            let wake = [
                limits.periodic_flush.map(|p| last_flush + p),
                retry_at,
                st.closing,
            ];
            crate::worker::wait_for_work(&inner, &mut st, wake);
        };
        let explicit = st.flush_req > st.flush_done || closing.is_some();
        st.flush_wanted = false;
        std::mem::swap(&mut st.buf, &mut batch);
        st.inflight = batch.tally();
        inner.batch_taken(&mut st);
        drop(st);

        let mut round = Round::default();
        ingest(
            &set,
            &mut sinks,
            &batch,
            &mut ledger,
            &mut dests,
            &mut frame,
            &mut round,
        );
        batch.clear();
        let now = Instant::now();
        for (i, rt) in sinks.iter_mut().enumerate() {
            if rt.pending.is_empty() {
                continue;
            }
            // A sink waiting out its backoff is left alone unless a flush was asked for.
            if !explicit && rt.retry_at.is_some_and(|t| now < t) {
                continue;
            }
            let spec = &set.sinks[i];
            if rt.deliver(&inner, spec, &mut ledger, &mut round) {
                rt.failures = 0;
                rt.retry_at = None;
            } else {
                round.failed = true;
                rt.retry_at = Some(Instant::now() + spec.limits.backoff(rt.failures));
                rt.failures = rt.failures.saturating_add(1);
            }
        }
        last_flush = Instant::now();

        let mut st = inner.state.lock();
        inner.batch_done(&mut st, last_flush);
        if let Some(deadline) = closing {
            let out_of_time = Instant::now() >= deadline;
            let holding = sinks.iter().any(|s| !s.pending.is_empty());
            // The last look at the rings: `log` calls that append after it see `closed`.
            st.collect();
            if st.buf.is_empty() && (!holding || out_of_time) {
                for rt in sinks.iter_mut() {
                    let n = rt.pending.len();
                    rt.settle_first(n, false, &mut ledger, &mut round);
                }
                publish(&set, &sinks, &st);
                let rest = std::mem::take(&mut st.buf);
                st.counters.lost.add(rest.tally());
                finish_round(&inner, &mut st, &round, &ledger);
                st.flush_done = request;
                st.flush_result = if round.failed { -1 } else { round.bytes as i64 };
                st.drop_rings();
                st.closed = true;
                inner.done.notify_all();
                drop(st);
                crate::lifecycle::unregister(&inner);
                return;
            }
        }
        publish(&set, &sinks, &st);
        finish_round(&inner, &mut st, &round, &ledger);
        st.flush_done = request;
        st.flush_result = if round.failed { -1 } else { round.bytes as i64 };
        inner.done.notify_all();
        drop(st);

        reuse += 1;
        if reuse > limits.max_buffer_reuse {
            reuse = 0;
            batch = Buffer::with_capacity(capacity);
            // Memory a logger grew while it could not deliver is released too.
            // The sequence goes on where it was: rlogd would drop reused numbers as duplicates.
            for rt in sinks.iter_mut().filter(|rt| rt.pending.is_empty()) {
                let next_seq = rt.pending.first_seq;
                rt.pending = Buffer::default();
                rt.pending.first_seq = next_seq;
                rt.owners = VecDeque::new();
            }
        }
    }
}

/// Publishes every sink's counters for `Logger::sink_stats`. Called with the state lock held
/// (`_held`), so the `live` lock is never held across a `fork()`.
fn publish(set: &SinkSet, sinks: &[SinkRt], _held: &crate::logger::State) {
    let mut live = set.live.lock();
    for (out, rt) in live.iter_mut().zip(sinks) {
        let c = &rt.counters;
        *out = rlog_sink_stats {
            sent: c.sent.msgs,
            sent_bytes: c.sent.bytes,
            lost: c.lost.msgs,
            lost_bytes: c.lost.bytes,
            dropped: c.dropped.msgs,
            dropped_bytes: c.dropped.bytes,
            encode_errors: c.encode_errors,
            pending: rt.pending.len() as u64,
            pending_bytes: rt.pending.bytes() as u64,
            retries: c.retries,
            connects: c.connects,
        };
    }
}

impl crate::logger::Logger {
    /// How many uWSGI-style loggers (sinks) this handle delivers to; 0 for a plain
    /// `host`/`port`/`path` config without `logger`/`log-encoder`/`log-route` keys.
    pub fn sink_count(&self) -> usize {
        self.0.config.sinks.as_ref().map_or(0, |s| s.sinks.len())
    }

    /// Sink `i`'s label (`logger "NAME"`, or `logger TARGET` for an unnamed one) and its
    /// counters as of the worker's last round; `None` when there is no sink `i`.
    pub fn sink_stats(&self, i: usize) -> Option<(String, rlog_sink_stats)> {
        self.own_process();
        let set = self.0.config.sinks.as_ref()?;
        let spec = set.sinks.get(i)?;
        // The state lock first: `live` is only ever taken under it (see `publish`).
        let _st = self.0.state.lock();
        let stats = set.live.lock().get(i).copied().unwrap_or_default();
        Some((spec.label(), stats))
    }
}

fn finish_round(inner: &Inner, st: &mut crate::logger::State, round: &Round, ledger: &Ledger) {
    st.counters.sent.add(round.settled.sent);
    st.counters.lost.add(round.settled.lost);
    st.counters.retries += round.retries;
    st.counters.connects += round.connects;
    if let Some(e) = &round.error {
        inner.post_error(st, PendingError::Text(e.clone()));
    }
    st.inflight = Tally::ZERO;
    st.sinks_held = ledger.unsettled();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_producers_are_distinct_and_nonzero() {
        for worker in [0u64, 1, u64::MAX, 0x1234_5678_9abc_def0] {
            let ids: std::collections::HashSet<u64> =
                (0..64).map(|i| sink_producer(worker, i)).collect();
            assert_eq!(ids.len(), 64);
            assert!(!ids.contains(&0));
        }
    }
}
