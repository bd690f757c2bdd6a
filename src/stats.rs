//! Delivery counters: the C `struct rlog_stats` and the bookkeeping behind it.
//!
//! Every message `rlog_log` accepts is counted once in `logged`, and every record taken over
//! from a dead process's spool once in `adopted`; each then sits in exactly one of `buffered`
//! (memory, in flight included), `sent`, `lost` or `spooled`. That is the identity the tests
//! check: `logged + adopted == sent + lost + spooled + buffered` at every quiescent moment.

/// The C view of a logger's counters. Append-only: new fields go at the end, so a caller built
/// against an older header, passing a smaller `out_size`, still gets the fields it knows.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct rlog_stats {
    /// Messages accepted by `log`.
    pub logged: u64,
    pub logged_bytes: u64,
    /// Messages refused by `log` (buffer full, too big).
    pub dropped: u64,
    pub dropped_bytes: u64,
    /// Messages delivered to the sink: written for stream sockets, acknowledged where the
    /// protocol acknowledges.
    pub sent: u64,
    pub sent_bytes: u64,
    /// Messages accepted, then given up on (counted, with an error set).
    pub lost: u64,
    pub lost_bytes: u64,
    /// Messages now held on disk.
    pub spooled: u64,
    pub spooled_bytes: u64,
    /// Messages now held in memory, the batch in flight included.
    pub buffered: u64,
    pub buffered_bytes: u64,
    /// Connect or send attempts repeated after a failure.
    pub retries: u64,
    /// Connections established.
    pub connects: u64,
    /// Records taken over from the spool of an earlier process (killed, crashed, exited with
    /// the collector down, or a sibling prefork worker that died).
    pub adopted: u64,
    pub adopted_bytes: u64,
    /// Records an output refused for good (part of `lost`).
    pub rejected: u64,
    pub rejected_bytes: u64,
}

impl rlog_stats {
    /// Adds every counter of `o` (the counters of several loggers seen as one).
    pub fn add(&mut self, o: &rlog_stats) {
        self.logged += o.logged;
        self.logged_bytes += o.logged_bytes;
        self.dropped += o.dropped;
        self.dropped_bytes += o.dropped_bytes;
        self.sent += o.sent;
        self.sent_bytes += o.sent_bytes;
        self.lost += o.lost;
        self.lost_bytes += o.lost_bytes;
        self.spooled += o.spooled;
        self.spooled_bytes += o.spooled_bytes;
        self.buffered += o.buffered;
        self.buffered_bytes += o.buffered_bytes;
        self.retries += o.retries;
        self.connects += o.connects;
        self.adopted += o.adopted;
        self.adopted_bytes += o.adopted_bytes;
        self.rejected += o.rejected;
        self.rejected_bytes += o.rejected_bytes;
    }
}

/// A count of messages and of their bytes, moved between the states above as one unit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub msgs: u64,
    pub bytes: u64,
}

impl Tally {
    pub const ZERO: Tally = Tally { msgs: 0, bytes: 0 };

    pub fn one(bytes: usize) -> Tally {
        Tally {
            msgs: 1,
            bytes: bytes as u64,
        }
    }

    pub fn add(&mut self, other: Tally) {
        self.msgs += other.msgs;
        self.bytes += other.bytes;
    }

    pub fn is_zero(&self) -> bool {
        self.msgs == 0
    }

    /// `self` less `other` (which it holds).
    pub fn minus(self, other: Tally) -> Tally {
        Tally {
            msgs: self.msgs.saturating_sub(other.msgs),
            bytes: self.bytes.saturating_sub(other.bytes),
        }
    }
}

/// The counters a logger keeps under its state lock. `buffered` is not stored: it is derived
/// from what the buffers hold, so it can never drift from them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub logged: Tally,
    pub dropped: Tally,
    pub sent: Tally,
    pub lost: Tally,
    pub spooled: Tally,
    pub adopted: Tally,
    pub rejected: Tally,
    pub retries: u64,
    pub connects: u64,
}

impl Counters {
    /// The C struct, given what the buffers hold right now.
    pub fn snapshot(&self, buffered: Tally) -> rlog_stats {
        rlog_stats {
            logged: self.logged.msgs,
            logged_bytes: self.logged.bytes,
            dropped: self.dropped.msgs,
            dropped_bytes: self.dropped.bytes,
            sent: self.sent.msgs,
            sent_bytes: self.sent.bytes,
            lost: self.lost.msgs,
            lost_bytes: self.lost.bytes,
            spooled: self.spooled.msgs,
            spooled_bytes: self.spooled.bytes,
            buffered: buffered.msgs,
            buffered_bytes: buffered.bytes,
            retries: self.retries,
            connects: self.connects,
            adopted: self.adopted.msgs,
            adopted_bytes: self.adopted.bytes,
            rejected: self.rejected.msgs,
            rejected_bytes: self.rejected.bytes,
        }
    }
}

/// The C view of one output's counters (`rlog_logger_sink_stats`). Counts are copies of messages
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
    /// Copies on this logger's disk queue now (`spool`), this process's and adopted ones,
    /// whether or not they carry their message in the handle's counters.
    pub spooled: u64,
    pub spooled_bytes: u64,
}
