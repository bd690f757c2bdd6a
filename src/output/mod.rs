//! Outputs: how a batch of records reaches a destination.
//!
//! Every output implements [`Output`]: send a batch, say how many leading records got through
//! and what stopped the rest ([`Failure`]: retry, or a record refused for good). One
//! [`driver::Driver`] per output holds the records, opens connections and retries; outputs are
//! owned by the worker's threads and do blocking I/O bounded by their `timeout`; callers of
//! `log` never touch one.

pub mod clickhouse;
pub mod datagram;
pub mod dead_letter;
pub mod driver;
pub mod http;
pub mod nats;
pub mod relp;
pub mod rlogd;
pub mod socket;
pub mod spool;
pub mod spool_key;
pub mod stream;
pub mod tls;

use std::io;
use std::time::Instant;

use crate::buffer::Buffer;

/// A failed send: `done` leading records got through before `failure`.
#[derive(Debug)]
pub struct SendError {
    pub done: usize,
    pub failure: Failure,
}

/// Why a send stopped, as the driver acts on it.
#[derive(Debug)]
pub enum Failure {
    /// The connection or the peer failed: try again later (after `after`, if the peer said so).
    /// `resume`: the next send on this same connection continues exactly where this one
    /// stopped (a stream whose send timed out part-way through a record, still moving bytes):
    /// closing it would leave that record's first part on the old connection and send it whole
    /// on a new one.
    Retry {
        error: io::Error,
        after: Option<std::time::Duration>,
        resume: bool,
    },
    /// The first record not done can never be carried by this output (larger than a datagram,
    /// or than the collector's frame limit), whatever is retried: the driver gives it up,
    /// counted, and sends the rest.
    Reject { why: String },
}

impl SendError {
    /// A failure to retry on a new connection.
    pub fn retry(done: usize, error: io::Error) -> SendError {
        SendError {
            done,
            failure: Failure::Retry {
                error,
                after: None,
                resume: false,
            },
        }
    }

    /// Record `done` can never be carried: `why`.
    pub fn reject(done: usize, why: String) -> SendError {
        SendError {
            done,
            failure: Failure::Reject { why },
        }
    }
}

/// Where a stream transport stopped in a batch, so that after a send timeout the next send on the
/// same connection continues from the exact byte (see [`Failure::Retry`]).
#[derive(Debug, Default)]
pub struct Resume {
    /// Bytes at the start of the next batch that the connection has already taken.
    taken: usize,
    /// The last send timed out after moving bytes: the connection is sound, only slow.
    slow: bool,
}

impl Resume {
    /// Where the next send of `batch` starts.
    pub fn start(&self, batch: &Buffer) -> usize {
        self.taken.min(batch.bytes())
    }

    /// Settles a send of `batch`: `written` bytes of it reached the socket and the connection
    /// took `taken` (the same for a plain stream; for TLS, what rustls sealed, which may be more);
    /// `moved` says whether this send put any byte on the socket. Records count as delivered
    /// once their bytes are on the socket; the next send skips the rest of what was taken.
    ///
    /// A send that timed out having moved bytes leaves the connection to be resumed. One that
    /// moved nothing means the peer reads nothing on it (a wedged collector thread, a stuck
    /// backend): it is given up for a new connection, which may well work, at the cost of the
    /// record it had begun.
    pub fn settle(
        &mut self,
        batch: &Buffer,
        result: io::Result<()>,
        written: usize,
        taken: usize,
        moved: bool,
    ) -> Result<(), SendError> {
        match result {
            Ok(()) => {
                *self = Resume::default();
                Ok(())
            }
            Err(error) => {
                let delivered = batch.whole_records_within(written);
                self.taken = taken - batch.tally_of_first(delivered).bytes as usize;
                let timeout = matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                );
                self.slow = timeout && moved;
                Err(SendError {
                    done: delivered,
                    failure: Failure::Retry {
                        error,
                        after: None,
                        resume: self.slow,
                    },
                })
            }
        }
    }
}

/// One open connection to a destination: what every output (tcp, unix stream, tls, udp, unix
/// datagram, rlogd) implements. Batching, retries, backoff and accounting are the driver's
/// (`driver.rs`); an output only sends a batch and says what came of it.
pub trait Output: Send {
    /// Delivers every record of `batch`, in order (for an acknowledged output: until each is
    /// acknowledged). On failure, says how many leading records got through and why the rest
    /// did not. `until`: the logger is closing; stop by then (a `TimedOut` retry), however
    /// slowly the peer still reads (each blocking call is already bounded by the socket's
    /// timeout, which the driver caps by the time left).
    fn send(&mut self, batch: &Buffer, until: Option<Instant>) -> Result<(), SendError>;

    /// Whether a kept connection can still be used: false once the peer has closed it. Checked
    /// before a connection is reused, so a collector that closed an idle connection does not
    /// swallow the next batch.
    fn is_alive(&mut self) -> bool;

    /// Something to report that did not fail a send (UDP refusals of datagrams already
    /// counted sent), once.
    fn take_notice(&mut self) -> Option<String> {
        None
    }

    /// The descriptors the connection holds (a fork child closes them: `sync::ChildCloses`).
    fn fds(&self) -> Vec<i32>;
}

/// A record's identity: its output's producer id plus its sequence (wrapping). It is what the
/// spool keeps as the record's id, so a record replayed from disk, by this process or by the
/// next one (with another producer id), is numbered back to the same identity (see
/// `Driver::deliver_all`): the same `Nats-Msg-Id`, `_id` or `X-Rlog-Batch` on every resend.
pub fn record_key(producer: u64, seq: u64) -> u64 {
    producer.wrapping_add(seq)
}

/// [`record_key`] as the text the outputs send (16 hex digits).
pub fn record_id(producer: u64, seq: u64) -> String {
    format!("{:016x}", record_key(producer, seq))
}

/// Whether the close deadline `until` has passed: the error a send stops with then.
pub fn past(until: Option<Instant>) -> io::Result<()> {
    match until {
        Some(u) if Instant::now() >= u => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the close deadline passed",
        )),
        _ => Ok(()),
    }
}

/// The reason part of resty's error strings: short, lower-case, as nginx's cosockets say it.
pub fn reason(e: &io::Error) -> String {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        TimedOut | WouldBlock => "timeout".into(),
        ConnectionReset => "connection reset by peer".into(),
        ConnectionAborted => "connection aborted".into(),
        BrokenPipe => "broken pipe".into(),
        NotFound => "no such file or directory".into(),
        PermissionDenied => "permission denied".into(),
        UnexpectedEof => "closed".into(),
        _ => match e.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code)
                .to_string()
                .to_lowercase(),
            None => e.to_string(),
        },
    }
}
