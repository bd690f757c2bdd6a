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

use super::tls::TlsSettings;
use super::{datagram, reason, rlogd, socket, stream, tls, Failure, Output};
use crate::buffer::Buffer;
use crate::config::target::Target;
use crate::config::{Limits, OutputSpec};
use crate::stats::Tally;

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
}

/// What the driver needs from the loop it runs in.
pub trait Control {
    /// Sleeps `d`, or less if the logger starts closing or its close deadline comes first.
    /// Returns false when the close deadline has passed (stop retrying).
    fn pause(&self, d: Duration) -> bool;
}

/// Where a driver's outcomes go.
pub trait Settle {
    /// The records owned by `owners` (one per record; empty when records are the caller's
    /// messages themselves), `t` in all, were delivered (`ok`) or given up on.
    fn settle(&mut self, owners: std::collections::vec_deque::Drain<'_, u64>, t: Tally, ok: bool);
}

/// What one delivery did, for the logger: retries, connections, bytes delivered, and the
/// error to report.
#[derive(Debug, Default)]
pub struct Round {
    pub bytes: u64,
    pub failed: bool,
    pub error: Option<String>,
    pub retries: u64,
    pub connects: u64,
}

/// One output's runtime state.
pub struct Driver {
    pub spec: OutputSpec,
    /// TLS settings built when the logger started (`OutputSpec::tls` is only their text).
    tls: Option<Arc<TlsSettings>>,
    conn: Option<Box<dyn Output>>,
    /// Records waiting for delivery.
    pub pending: Buffer,
    /// The message each pending record is a copy of (empty for a direct output, whose records
    /// are the messages themselves).
    pub owners: VecDeque<u64>,
    failures: u32,
    /// A delivery failed: the next try waits until then (unless a flush is asked for).
    pub retry_at: Option<Instant>,
    pub counters: OutputCounters,
    /// This output's producer id for rlogd (unused by other targets).
    producer: u64,
    /// Names the output in messages (`logger "NAME": `), or empty for a plain config, whose
    /// messages keep resty's exact wording.
    label: String,
    /// State of the jitter's generator.
    rng: u64,
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
        }
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

    /// Settles the first `n` pending records as delivered (`ok`) or given up on.
    pub fn settle_first(&mut self, n: usize, ok: bool, settle: &mut dyn Settle, round: &mut Round) {
        if n == 0 {
            return;
        }
        let t = self.pending.tally_of_first(n);
        if ok {
            self.counters.sent.add(t);
            round.bytes += t.bytes;
        } else {
            self.counters.lost.add(t);
        }
        self.pending.consume(n);
        let owners = n.min(self.owners.len());
        settle.settle(self.owners.drain(..owners), t, ok);
    }

    /// A usable connection, with resty's connect retries. Errors: resty's "try to connect ..."
    /// string (unlabelled).
    fn connect(&mut self, ctl: &dyn Control, round: &mut Round) -> Result<(), String> {
        if let Some(c) = self.conn.as_mut() {
            if c.is_alive() {
                return Ok(());
            }
            self.conn = None;
        }
        let mut tries = 0;
        loop {
            match open(&self.spec, self.tls.as_deref(), self.producer) {
                Ok(c) => {
                    self.counters.connects += 1;
                    round.connects += 1;
                    self.conn = Some(c);
                    return Ok(());
                }
                Err(e) => {
                    let max = self.spec.limits.max_retry_times;
                    if tries >= max || !ctl.pause(self.jittered(tries)) {
                        return Err(format!(
                            "try to connect to the log server failed after {max} retries: {}",
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
            // Why this attempt failed: the connect loop's whole error (`connect`), or the send's
            // reason (`send`).
            let (failure, connect) = match self.connect(ctl, round) {
                Err(e) => (e, true),
                Ok(()) => {
                    let conn = self.conn.as_mut().expect("connected above");
                    let sent = conn.send(&self.pending);
                    if let Some(notice) = conn.take_notice() {
                        round.error = Some(self.labelled(&notice));
                    }
                    match sent {
                        Ok(()) => {
                            let n = self.pending.len();
                            self.settle_first(n, true, settle, round);
                            if self.spec.limits.pool_size == 0 {
                                self.conn = None;
                            }
                            continue;
                        }
                        Err(e) => {
                            self.settle_first(e.done, true, settle, round);
                            match e.failure {
                                Failure::Reject { why } => {
                                    round.error = Some(self.labelled(&format!("{why}: not sent")));
                                    self.settle_first(1, false, settle, round);
                                    continue;
                                }
                                Failure::Retry { error, resume, .. } => {
                                    if !resume {
                                        self.conn = None;
                                    }
                                    (reason(&error), false)
                                }
                            }
                        }
                    }
                }
            };
            if tries >= max || !ctl.pause(self.jittered(tries)) {
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
    /// in a row.
    pub fn after_failure(&mut self, now: Instant) {
        let pause = self.jittered(self.failures);
        self.retry_at = Some(now + pause);
        self.failures = self.failures.saturating_add(1);
    }

    /// Whether a delivery is due at `now`: records are held and no backoff is being waited
    /// out (or `explicit`: a flush or close asks for one now).
    pub fn due(&self, now: Instant, explicit: bool) -> bool {
        !self.pending.is_empty() && (explicit || self.retry_at.is_none_or(|t| now >= t))
    }

    /// Closes the connection (a fork child must not keep its parent's).
    pub fn disconnect(&mut self) {
        self.conn = None;
    }
}

/// Opens a connection to `spec`'s target (TLS handshake and rlogd's HELLO included), bounded
/// by its `timeout`. `producer` identifies the sender to collectors that deduplicate resent
/// records (rlogd).
fn open(
    spec: &OutputSpec,
    tls: Option<&TlsSettings>,
    producer: u64,
) -> io::Result<Box<dyn Output>> {
    let timeout = spec.limits.timeout;
    let sock = match &spec.target {
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

/// The largest record target `t` can carry, and how to name that limit.
pub fn max_record(t: &Target) -> Option<(usize, &'static str)> {
    match t {
        Target::Udp { .. } => Some((datagram::MAX_DATAGRAM, "the largest UDP datagram")),
        Target::Rlogd { .. } | Target::RlogdTls { .. } => Some((
            crate::proto::format::MAX_PAYLOAD,
            "the largest rlogd record",
        )),
        _ => None,
    }
}
