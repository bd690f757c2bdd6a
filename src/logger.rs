//! `Logger`: the caller-facing half of a logger — its buffer, limits, counters and error slot —
//! and the handle on its worker thread.
//!
//! `log` takes the state lock for the time of a memcpy and a few counter updates: no I/O, no
//! allocation once the buffer has grown to its load, no lock held across I/O (the worker swaps
//! buffers under the lock and sends outside it). Everything that talks to the network runs on the
//! worker (`worker.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::sync::{Condvar, Mutex};

use crate::buffer::Buffer;
use crate::config::Config;
use crate::lifecycle;
use crate::stats::{rlog_stats, Counters, Tally};
use crate::worker;

/// The runtime error `log` reports when a message does not fit.
pub const BUFFER_FULL: &str = "logger buffer is full, this log message will be dropped";

/// The error waiting to be returned once by `last_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingError {
    /// [`BUFFER_FULL`], kept as a tag so the drop path never allocates.
    BufferFull,
    Text(String),
}

impl PendingError {
    pub fn as_str(&self) -> &str {
        match self {
            PendingError::BufferFull => BUFFER_FULL,
            PendingError::Text(s) => s,
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
    /// Messages logged and not yet taken by the worker.
    pub buf: Buffer,
    /// What the worker holds: the batch being sent, or kept after a failed flush.
    pub inflight: Tally,
    /// Messages whose copies wait in the queues of uWSGI-style loggers (`fanout.rs`): counted
    /// as buffered, but bounded by each logger's own `drop_limit` rather than the handle's, so
    /// one dead logger cannot make the handle drop what the others would deliver.
    pub sinks_held: Tally,
    pub counters: Counters,
    pub error: Option<PendingError>,
    /// A log call crossed `flush_limit` (or was dropped): the worker should flush.
    pub flush_wanted: bool,
    /// The worker is in a short timed wait after which it looks at `flush_wanted` itself
    /// (`worker::POLL`): setting `flush_wanted` is enough, no wake-up needed.
    pub worker_polls: bool,
    /// Explicit flush requests: the worker completes request `n` by setting `flush_done = n`.
    pub flush_req: u64,
    pub flush_done: u64,
    /// Bytes the last completed flush delivered, or -1 if it failed.
    pub flush_result: i64,
    /// Set by shutdown: deliver what is held until this instant, then stop.
    pub closing: Option<Instant>,
    /// The worker has stopped; nothing more will be delivered.
    pub closed: bool,
    pub worker: Option<JoinHandle<()>>,
}

impl State {
    /// Messages held in memory: buffered plus in flight.
    pub fn buffered(&self) -> Tally {
        let mut t = self.buf.tally();
        t.add(self.inflight);
        t.add(self.sinks_held);
        t
    }
}

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
}

impl Inner {
    /// Makes `e` the pending error (the caller holds the state lock).
    pub(crate) fn post_error(&self, st: &mut State, e: PendingError) {
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
    /// Starts a logger for `config`: allocates its buffer and starts its worker thread.
    ///
    /// Errors: the thread could not be started.
    pub fn start(config: Config) -> Result<Logger, String> {
        let cap = initial_capacity(&config);
        let inner = Arc::new(Inner {
            config,
            state: Mutex::new(State {
                buf: Buffer::with_capacity(cap),
                inflight: Tally::ZERO,
                sinks_held: Tally::ZERO,
                counters: Counters::default(),
                error: None,
                flush_wanted: false,
                worker_polls: false,
                flush_req: 0,
                flush_done: 0,
                flush_result: 0,
                closing: None,
                closed: false,
                worker: None,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            generation: AtomicU64::new(lifecycle::generation()),
            error_pending: AtomicBool::new(false),
        });
        let handle = worker::spawn(inner.clone())
            .map_err(|e| format!("cannot start the rlog worker thread: {e}"))?;
        inner.state.lock().worker = Some(handle);
        lifecycle::register(inner.clone());
        Ok(Logger(inner))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// Makes sure this logger belongs to the current process: in a child after `fork()` it
    /// forgets the parent's messages (the parent sends them) and counters, and starts its own
    /// worker.
    #[inline]
    pub(crate) fn own_process(&self) {
        if self.0.generation.load(Ordering::Acquire) != lifecycle::generation() {
            self.adopt_after_fork();
        }
    }

    #[cold]
    fn adopt_after_fork(&self) {
        let inner = &self.0;
        let mut st = inner.state.lock();
        let gen = lifecycle::generation();
        if inner.generation.load(Ordering::Acquire) == gen {
            return;
        }
        st.buf.clear();
        st.inflight = Tally::ZERO;
        st.sinks_held = Tally::ZERO;
        st.counters = Counters::default();
        inner.take_error_locked(&mut st);
        st.flush_wanted = false;
        st.worker_polls = false;
        st.flush_req = 0;
        st.flush_done = 0;
        st.flush_result = 0;
        // The parent's worker thread does not exist here: its handle must not be joined.
        std::mem::forget(st.worker.take());
        if st.closing.is_none() {
            match worker::spawn(inner.clone()) {
                Ok(h) => st.worker = Some(h),
                Err(e) => {
                    st.closed = true;
                    st.closing = Some(Instant::now());
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
        self.own_process();
        let inner = &*self.0;
        let limits = &inner.config.limits;
        let time = if !inner.config.needs_time {
            None
        } else if inner.config.coarse_time {
            Some(crate::encode::clock::coarse_now_micros())
        } else {
            Some(now_micros())
        };
        let mut guard = inner.state.lock();
        let st = &mut *guard;
        if st.closing.is_some() {
            return Logged::Closed;
        }
        let held = st.buf.bytes() + st.inflight.bytes as usize + msg.len();
        if held > limits.drop_limit {
            return self.drop_message(st, msg.len());
        }
        st.buf.push(msg, time);
        st.counters.logged.add(Tally::one(msg.len()));
        if held >= limits.flush_limit && !st.flush_wanted {
            self.wake_worker(st);
        }
        Logged::Buffered(msg.len())
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
    /// a worker that polls sees the flag by itself within `worker::POLL`.
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
        if st.buffered().is_zero() {
            return 0;
        }
        st.flush_req += 1;
        let mine = st.flush_req;
        inner.work.notify_one();
        let give_up = Instant::now() + worker::longest_delivery(&inner.config.limits) * 2;
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

    /// Looks at the pending error without taking it.
    pub fn peek_error_len(&self) -> usize {
        self.own_process();
        if !self.0.error_pending.load(Ordering::Acquire) {
            return 0;
        }
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
        let st = self.0.state.lock();
        st.counters.snapshot(st.buffered())
    }

    /// Asks the worker to deliver what is held within `timeout`, then stop, and waits for it
    /// (at most `timeout`). Returns true when every message this logger accepted was delivered.
    /// Later `log` calls return [`Logged::Closed`].
    pub fn close(&self, timeout: Duration) -> bool {
        self.begin_close(timeout);
        self.wait_closed(Instant::now() + timeout + CLOSE_GRACE)
    }

    /// Marks the logger closing with a delivery deadline `timeout` from now (the first call's
    /// deadline stands) and wakes the worker.
    pub(crate) fn begin_close(&self, timeout: Duration) {
        self.own_process();
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
        let all = st.closed && st.counters.sent == st.counters.logged;
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

/// Microseconds since the Unix epoch (vDSO clock read: no syscall).
#[inline]
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
