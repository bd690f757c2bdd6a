//! The worker thread: one per logger, owner of all its I/O.
//!
//! It sleeps until a flush is wanted (a `log` crossed `flush_limit`), requested (`flush`), due
//! (`periodic_flush`, or the retry of a batch that failed), or the logger is closing; then it
//! swaps the filled buffer for its empty one under the lock and delivers outside it. A batch that
//! cannot be delivered after the retries is *kept*, still counted against `drop_limit`, and tried
//! again later, as lua-resty-logger-socket keeps its send buffer: messages are lost only when the
//! logger is shut down (or the process exits) with the collector still unreachable, or when a
//! message can never be sent (larger than a UDP datagram) — and each loss is counted.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::buffer::Buffer;
use crate::config::{Config, Limits};
use crate::logger::{Inner, PendingError, State};
use crate::stats::Tally;
use crate::sync::MutexGuard;
use crate::transport::{self, reason, Transport};

/// Starts the worker thread for `inner`. All signals are blocked in it, so the host's signal
/// handling (nginx's SIGQUIT/SIGHUP, a Python program's SIGINT) keeps going to the host's threads.
pub(crate) fn spawn(inner: Arc<Inner>) -> io::Result<JoinHandle<()>> {
    let _mask = crate::lifecycle::BlockSignals::new();
    std::thread::Builder::new()
        .name("rlog-worker".into())
        .spawn(move || match inner.config.sinks.clone() {
            // uWSGI-style loggers, encoders and routes: per-sink delivery (fanout.rs).
            Some(set) => crate::fanout::run(inner, set),
            None => run(inner),
        })
}

/// The longest one delivery can take with these limits: every connect and send attempt of
/// resty's nested retry loops timing out, plus every pause between them.
pub(crate) fn longest_delivery(l: &Limits) -> Duration {
    let r = l.max_retry_times.min(64) + 1;
    let attempt = l.timeout * 3; // connect + handshake + send
    let pauses = l.max_backoff() * r;
    let connect_loop = attempt * r + pauses;
    (connect_loop * r + pauses + Duration::from_secs(1)).min(Duration::from_secs(3600))
}

/// What one delivery did.
#[derive(Debug, Default)]
struct Outcome {
    sent: Tally,
    lost: Tally,
    retries: u64,
    connects: u64,
    error: Option<String>,
    /// Bytes delivered, or -1 when the batch (or part of it) is still held.
    result: i64,
}

/// The connection a worker keeps between flushes.
struct Sink<'a> {
    inner: &'a Inner,
    conn: Option<Box<dyn Transport>>,
    /// This worker's random producer id: with each message's sequence number it lets a
    /// deduplicating collector (rlogd) drop what a resend repeats. A new worker (a new logger,
    /// or a child after fork) gets a new id.
    producer: u64,
}

/// A random, nonzero producer id.
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

impl<'a> Sink<'a> {
    fn config(&self) -> &'a Config {
        &self.inner.config
    }

    /// Sleeps `d`, or less if the logger starts closing or its close deadline comes first.
    /// Returns false when the close deadline has passed (stop retrying).
    fn pause(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let mut st = self.inner.state.lock();
        loop {
            if let Some(deadline) = st.closing {
                if Instant::now() >= deadline {
                    return false;
                }
                let until = until.min(deadline);
                if self.inner.work.wait_until(&mut st, until).timed_out() {
                    return Instant::now() < deadline;
                }
                continue;
            }
            if self.inner.work.wait_until(&mut st, until).timed_out() {
                return true;
            }
        }
    }

    /// A usable connection: the kept one if the peer has not closed it, else a new one, with
    /// resty's connect retries. Errors: resty's "try to connect ..." string.
    fn connect(&mut self, out: &mut Outcome) -> Result<(), String> {
        if let Some(c) = self.conn.as_mut() {
            if c.is_alive() {
                return Ok(());
            }
            self.conn = None;
        }
        let limits = &self.config().limits;
        let mut tries = 0;
        loop {
            match transport::connect(self.config(), self.producer) {
                Ok(c) => {
                    out.connects += 1;
                    self.conn = Some(c);
                    return Ok(());
                }
                Err(e) => {
                    if tries >= limits.max_retry_times || !self.pause(limits.backoff(tries)) {
                        return Err(format!(
                            "try to connect to the log server failed after {} retries: {}",
                            limits.max_retry_times,
                            reason(&e)
                        ));
                    }
                    tries += 1;
                    out.retries += 1;
                }
            }
        }
    }

    /// Delivers `batch`, with resty's send retries around its connect retries. What is
    /// delivered is removed from `batch`; what is left is still held.
    fn deliver(&mut self, batch: &mut Buffer) -> Outcome {
        let mut out = Outcome::default();
        self.drop_unsendable(batch, &mut out);
        let limits = &self.config().limits;
        let total = batch.tally();
        let mut unsendable = 0u64;
        let mut tries = 0;
        loop {
            if batch.is_empty() {
                out.result = (total.bytes - unsendable) as i64;
                return out;
            }
            let failure = match self.connect(&mut out) {
                Err(e) => e,
                Ok(()) => {
                    let conn = self.conn.as_mut().expect("connected above");
                    let sent = conn.send(batch);
                    if let Some(notice) = conn.take_notice() {
                        out.error = Some(notice);
                    }
                    match sent {
                        Ok(()) => {
                            out.sent.add(batch.tally());
                            batch.clear();
                            if limits.pool_size == 0 {
                                self.conn = None;
                            }
                            continue;
                        }
                        Err(e) => {
                            let resumable = conn.resumable();
                            out.sent.add(batch.tally_of_first(e.delivered));
                            batch.consume(e.delivered);
                            if let Some(why) = e.unsendable(batch) {
                                let t = batch.tally_of_first(1);
                                out.lost.add(t);
                                unsendable += t.bytes;
                                out.error = Some(format!("{why}: not sent"));
                                batch.consume(1);
                                continue;
                            }
                            if !resumable {
                                self.conn = None;
                            }
                            reason(&e.error)
                        }
                    }
                }
            };
            if tries >= limits.max_retry_times || !self.pause(limits.backoff(tries)) {
                out.error = Some(format!(
                    "try to send log messages to the log server failed after {} retries: {failure}",
                    limits.max_retry_times
                ));
                out.result = -1;
                return out;
            }
            tries += 1;
            out.retries += 1;
        }
    }

    /// Counts as lost, and removes, the records the transport can never carry.
    fn drop_unsendable(&self, batch: &mut Buffer, out: &mut Outcome) {
        let Some((max, what)) = transport::max_record(&self.config().endpoint) else {
            return;
        };
        if batch.records().all(|r| r.bytes.len() <= max) {
            return;
        }
        let mut kept = Buffer::with_capacity(batch.bytes());
        kept.first_seq = batch.first_seq;
        for r in batch.records() {
            if r.bytes.len() > max {
                out.lost.add(Tally::one(r.bytes.len()));
                out.error = Some(format!(
                    "log message of {} bytes is larger than {what} ({max} bytes): not sent",
                    r.bytes.len()
                ));
            } else {
                kept.push(r.bytes, r.time_us);
            }
        }
        *batch = kept;
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
/// `flush()`, shutdown and a kept batch's retry do not wait for a tick.
pub(crate) const POLL: Duration = Duration::from_millis(5);

/// Sleeps on the logger's `work` condition variable until it is notified or the earliest of
/// `deadlines` passes (with none, until notified). Callers re-check their conditions after.
pub(crate) fn wait_for_work(
    inner: &Inner,
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
    if inner.before_long_wait(st, until) {
        return;
    }
    let polls = st.worker_polls;
    st.worker_polls |= grace;
    match until {
        Some(t) => {
            inner.work.wait_until(st, t);
        }
        None => inner.work.wait(st),
    }
    st.worker_polls = polls;
}

/// How long after its last delivery the worker keeps looking at the rings every `POLL` while
/// threads hold credit past `flush_limit`, before it fences them and sleeps.
pub(crate) const IDLE_GRACE: Duration = Duration::from_millis(100);

/// The worker loop.
fn run(inner: Arc<Inner>) {
    let config = &inner.config;
    let limits = &config.limits;
    let capacity = crate::logger::initial_capacity(config);
    let mut sink = Sink {
        inner: &inner,
        conn: None,
        producer: random_producer(),
    };
    // Sequence number of the next message the worker takes from the logger's buffer.
    let mut next_seq: u64 = 0;
    let mut batch = Buffer::with_capacity(capacity);
    let mut reuse = 0u64;
    let mut last_flush = Instant::now();
    // When the last delivery started: pacing counts from there, so a send that takes a
    // while is not followed by a full POLL of idleness.
    let mut flush_started = last_flush;
    let mut failures = 0u32;
    let mut retry_at: Option<Instant> = None;
    // Flushes come faster than one per 2 POLL: wait with a POLL timeout and let `log` skip
    // the wake-up (see `POLL`).
    let mut poll = false;
    let mut last_wanted_flush: Option<Instant> = None;

    loop {
        let mut st = inner.state.lock();
        let (request, closing) = loop {
            crate::logger::collect_for_worker(&mut st, limits.flush_limit);
            let now = Instant::now();
            let held = !st.buf.is_empty() || !batch.is_empty();
            let periodic_due = limits.periodic_flush.is_some_and(|p| now >= last_flush + p);
            if periodic_due && !held {
                last_flush = now;
            }
            // A kept batch is retried when its pause is over, whatever else wants a flush;
            // an explicit flush request or the close deadline does not wait for it.
            let retry_due = retry_at.is_none_or(|t| now >= t);
            let wanted = st.closing.is_some()
                || st.flush_wanted
                || (periodic_due && held)
                || retry_at.is_some();
            // While flushes are frequent, one per POLL at most: what arrives meanwhile joins
            // the next batch instead of costing a send of its own.
            let next_paced = flush_started + POLL;
            // ... unless what is held nears drop_limit.
            let paced = poll
                && st.closing.is_none()
                && now < next_paced
                && st.buf.bytes() + (st.inflight.bytes as usize) < limits.drop_limit / 4;
            if st.flush_req > st.flush_done
                || (retry_due && wanted && !paced)
                || st.closing.is_some_and(|deadline| now >= deadline)
            {
                break (st.flush_req, st.closing);
            }
            let tick = poll.then(|| if paced { next_paced } else { now + POLL });
            st.worker_polls = tick.is_some();
            let wake = [
                limits.periodic_flush.map(|p| last_flush + p),
                retry_at,
                st.closing,
                tick,
            ];
            wait_for_work(&inner, &mut st, wake);
            st.worker_polls = false;
            if tick.is_some_and(|t| Instant::now() >= t) {
                // One look per tick: if this one finds nothing wanted, traffic has slowed and
                // the next wait lasts until `log` wakes the worker.
                poll = false;
                st.poll_mode = false;
            }
        };
        if st.flush_wanted {
            let now = Instant::now();
            poll = last_wanted_flush.is_some_and(|t| now < t + 2 * POLL);
            last_wanted_flush = Some(now);
        }
        st.poll_mode = poll;
        st.flush_wanted = false;
        if batch.is_empty() {
            std::mem::swap(&mut st.buf, &mut batch);
            batch.first_seq = next_seq;
        } else {
            batch.append(&st.buf);
            st.buf.clear();
        }
        next_seq = batch.first_seq + batch.len() as u64;
        st.inflight = batch.tally();
        inner.batch_taken(&mut st);
        drop(st);

        flush_started = Instant::now();
        let out = if batch.is_empty() {
            Outcome::default()
        } else {
            sink.deliver(&mut batch)
        };
        last_flush = Instant::now();

        let mut st = inner.state.lock();
        inner.batch_done(&mut st, last_flush);
        st.counters.sent.add(out.sent);
        st.counters.lost.add(out.lost);
        st.counters.retries += out.retries;
        st.counters.connects += out.connects;
        if let Some(e) = out.error {
            inner.post_error(&mut st, PendingError::Text(e));
        }
        if batch.is_empty() {
            failures = 0;
            retry_at = None;
        } else {
            retry_at = Some(last_flush + limits.backoff(failures));
            failures = failures.saturating_add(1);
        }
        if let Some(deadline) = closing {
            let out_of_time = Instant::now() >= deadline;
            // The last look at the rings: `log` calls that append after it see `closed`.
            st.collect();
            if st.buf.is_empty() && (batch.is_empty() || out_of_time) {
                if !batch.is_empty() {
                    st.counters.lost.add(batch.tally());
                    batch.clear();
                }
                let mut rest = std::mem::take(&mut st.buf);
                if !rest.is_empty() {
                    st.counters.lost.add(rest.tally());
                    rest.clear();
                }
                st.inflight = Tally::ZERO;
                st.flush_done = request;
                st.flush_result = out.result;
                st.drop_rings();
                st.closed = true;
                inner.done.notify_all();
                drop(st);
                crate::lifecycle::unregister(&inner);
                return;
            }
        }
        st.inflight = batch.tally();
        st.flush_done = request;
        st.flush_result = out.result;
        inner.done.notify_all();
        drop(st);

        if batch.is_empty() {
            reuse += 1;
            if reuse > limits.max_buffer_reuse {
                reuse = 0;
                batch = Buffer::with_capacity(capacity);
            }
        }
    }
}
