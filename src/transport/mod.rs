//! Transports: how a batch of messages reaches the collector.
//!
//! Every transport is owned by a logger's worker thread and does blocking I/O bounded by the
//! config's `timeout`; callers of `log` never touch one. A transport delivers the records of a
//! [`Buffer`] in order and, when it fails part way, says how many leading records got through so
//! the worker can resend only the rest.

pub mod datagram;
pub mod rlogd;
pub mod socket;
pub mod stream;
pub mod tls;

use std::io;

use crate::buffer::Buffer;
use crate::config::{Config, Endpoint};

/// A failed send: `delivered` leading records got through before `error`.
#[derive(Debug)]
pub struct SendError {
    pub delivered: usize,
    pub error: io::Error,
}

impl SendError {
    /// Why the first record of `rest` (the batch less the `delivered` records) can never be
    /// carried by this connection, if that is what failed: too large for one datagram
    /// (`EMSGSIZE`), or for the collector's frame limit ([`RecordTooLarge`]). The caller counts
    /// it lost and sends the rest: retrying it would hold up every record behind it for good.
    pub fn unsendable(&self, rest: &Buffer) -> Option<String> {
        if rest.is_empty() {
            return None;
        }
        if self.error.raw_os_error() == Some(libc::EMSGSIZE) {
            return Some(format!(
                "log record of {} bytes is too large for one datagram",
                rest.record(0).bytes.len()
            ));
        }
        self.error
            .get_ref()
            .filter(|e| e.is::<RecordTooLarge>())
            .map(|e| e.to_string())
    }
}

/// Where a stream transport stopped in a batch, so that after a send timeout the next send on the
/// same connection continues from the exact byte (see [`Transport::resumable`]).
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
                Err(SendError { delivered, error })
            }
        }
    }

    pub fn resumable(&self) -> bool {
        self.slow
    }
}

/// A transport's own "this record can never fit" (rlogd's frame limit), told apart from any
/// system error of the same kind.
#[derive(Debug)]
pub struct RecordTooLarge(pub String);

impl std::fmt::Display for RecordTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RecordTooLarge {}

/// A connected sink.
pub trait Transport: Send {
    /// Delivers every record of `batch`, in order.
    fn send(&mut self, batch: &Buffer) -> Result<(), SendError>;

    /// Whether a kept connection can still be used: false once the peer has closed it. Checked
    /// before a connection is reused, so a collector that closed an idle connection does not
    /// swallow the next batch.
    fn is_alive(&mut self) -> bool;

    /// After a failed `send`: whether the next `send` on this connection, given the same batch
    /// less the records reported delivered, continues exactly where this one stopped. A stream
    /// whose send timed out part-way through a record, still moving bytes, says so: closing it
    /// would leave that record's first part on the old connection and send it whole on a new
    /// one, so the collector would read a fragment and then the record.
    fn resumable(&self) -> bool {
        false
    }

    /// Something to report that did not fail a send (UDP refusals of datagrams already
    /// counted sent), once.
    fn take_notice(&mut self) -> Option<String> {
        None
    }
}

/// The largest record the endpoint can carry, if it has a limit, and how to name that limit in
/// the error (UDP: 65507 bytes, "the largest UDP datagram"; rlogd: 16 MiB per record).
pub fn max_record(endpoint: &Endpoint) -> Option<(usize, &'static str)> {
    match endpoint {
        Endpoint::Udp { .. } => Some((datagram::MAX_DATAGRAM, "the largest UDP datagram")),
        Endpoint::Rlogd { .. } => Some((
            crate::proto::format::MAX_PAYLOAD,
            "the largest rlogd record",
        )),
        _ => None,
    }
}

/// Opens a connection to the configured endpoint (TLS handshake included), bounded by
/// `timeout`. `producer` identifies the sending worker to collectors that deduplicate resent
/// messages (rlogd).
pub fn connect(config: &Config, producer: u64) -> io::Result<Box<dyn Transport>> {
    let timeout = config.limits.timeout;
    let sock = match &config.endpoint {
        Endpoint::Udp { host, port } => return Ok(Box::new(datagram::udp(host, *port, timeout)?)),
        Endpoint::Rlogd { .. } => return Ok(Box::new(rlogd::Rlogd::connect(config, producer)?)),
        Endpoint::Tcp { host, port } => socket::connect_tcp(host, *port, timeout)?,
        Endpoint::Unix { path } => socket::connect_unix(path, timeout)?,
    };
    match &config.tls {
        Some(settings) => Ok(Box::new(tls::Tls::handshake(sock, settings, timeout)?)),
        None => Ok(Box::new(stream::Stream::new(sock))),
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
