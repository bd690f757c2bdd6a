//! Transports: how a batch of messages reaches the collector.
//!
//! Every transport is owned by a logger's worker thread and does blocking I/O bounded by the
//! config's `timeout`; callers of `log` never touch one. A transport delivers the records of a
//! [`Buffer`] in order and, when it fails part way, says how many leading records got through so
//! the worker can resend only the rest.

pub mod socket;
pub mod stream;
pub mod tls;
pub mod udp;
pub mod unix_dgram;

use std::io;

use crate::buffer::Buffer;
use crate::config::{Config, Endpoint};

/// A failed send: `delivered` leading records got through before `error`.
#[derive(Debug)]
pub struct SendError {
    pub delivered: usize,
    pub error: io::Error,
}

/// A connected sink.
pub trait Transport: Send {
    /// Delivers every record of `batch`, in order.
    fn send(&mut self, batch: &Buffer) -> Result<(), SendError>;

    /// Whether a kept connection can still be used: false once the peer has closed it. Checked
    /// before a connection is reused, so a collector that closed an idle connection does not
    /// swallow the next batch.
    fn is_alive(&mut self) -> bool;
}

/// The largest record the endpoint can carry, if it has a limit (UDP: 65507 bytes).
pub fn max_record(endpoint: &Endpoint) -> Option<usize> {
    match endpoint {
        Endpoint::Udp { .. } => Some(udp::MAX_DATAGRAM),
        _ => None,
    }
}

/// Opens a connection to the configured endpoint (TLS handshake included), bounded by
/// `timeout`.
pub fn connect(config: &Config) -> io::Result<Box<dyn Transport>> {
    let timeout = config.limits.timeout;
    let sock = match &config.endpoint {
        Endpoint::Udp { host, port } => return Ok(Box::new(udp::Udp::connect(host, *port)?)),
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
