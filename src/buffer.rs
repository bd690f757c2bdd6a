//! The append buffer: message bytes back to back, plus where each message ends and, when an
//! encoder needs it, the time it was logged.
//!
//! Appending copies bytes and pushes an offset: once the vectors have grown to the load they see,
//! it allocates nothing. The worker swaps a full buffer for an empty one and sends the full one as
//! one contiguous slice on stream transports, or record by record on datagram ones.

use crate::stats::Tally;

#[derive(Debug, Default)]
pub struct Buffer {
    data: Vec<u8>,
    /// `ends[i]` is the offset just past message `i`.
    ends: Vec<usize>,
    /// Microseconds since the epoch, one per message, when time is captured.
    times: Vec<i64>,
}

/// One buffered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub bytes: &'a [u8],
    /// Microseconds since the Unix epoch at the `log` call, when the logger captures time.
    pub time_us: Option<i64>,
}

impl Buffer {
    /// A buffer with room for `bytes` of messages before it must grow.
    pub fn with_capacity(bytes: usize) -> Buffer {
        Buffer {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(bytes / 16 + 16),
            times: Vec::new(),
        }
    }

    /// Appends one message; `time_us` is recorded when given.
    #[inline]
    pub fn push(&mut self, msg: &[u8], time_us: Option<i64>) {
        self.data.extend_from_slice(msg);
        self.ends.push(self.data.len());
        if let Some(t) = time_us {
            self.times.push(t);
        }
    }

    /// Appends every message of `other`, in order.
    pub fn append(&mut self, other: &Buffer) {
        let base = self.data.len();
        self.data.extend_from_slice(&other.data);
        self.ends.extend(other.ends.iter().map(|e| e + base));
        self.times.extend_from_slice(&other.times);
    }

    /// Forgets the first `n` messages (they were delivered or given up on).
    pub fn consume(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if n >= self.ends.len() {
            self.clear();
            return;
        }
        let cut = self.ends[n - 1];
        self.data.drain(..cut);
        self.ends.drain(..n);
        for e in &mut self.ends {
            *e -= cut;
        }
        if !self.times.is_empty() {
            self.times.drain(..n);
        }
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.times.clear();
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Messages and bytes held.
    pub fn tally(&self) -> Tally {
        Tally {
            msgs: self.ends.len() as u64,
            bytes: self.data.len() as u64,
        }
    }

    /// Every message's bytes, back to back.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Offsets just past each message.
    pub fn ends(&self) -> &[usize] {
        &self.ends
    }

    /// Message `i`.
    pub fn record(&self, i: usize) -> Record<'_> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Record {
            bytes: &self.data[start..self.ends[i]],
            time_us: self.times.get(i).copied(),
        }
    }

    pub fn records(&self) -> impl Iterator<Item = Record<'_>> + '_ {
        (0..self.len()).map(|i| self.record(i))
    }

    /// Messages and bytes of the first `n` messages.
    pub fn tally_of_first(&self, n: usize) -> Tally {
        Tally {
            msgs: n as u64,
            bytes: if n == 0 { 0 } else { self.ends[n - 1] as u64 },
        }
    }

    /// How many whole messages lie within the first `bytes` bytes.
    pub fn whole_records_within(&self, bytes: usize) -> usize {
        self.ends.partition_point(|&e| e <= bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_consume_append() {
        let mut b = Buffer::with_capacity(16);
        b.push(b"abc", None);
        b.push(b"", None);
        b.push(b"defg", None);
        assert_eq!(b.len(), 3);
        assert_eq!(b.data(), b"abcdefg");
        assert_eq!(b.record(1).bytes, b"");
        assert_eq!(b.whole_records_within(3), 2);
        assert_eq!(b.whole_records_within(5), 2);
        assert_eq!(b.whole_records_within(7), 3);
        assert_eq!(b.tally_of_first(2), Tally { msgs: 2, bytes: 3 });
        b.consume(1);
        assert_eq!(b.data(), b"defg");
        assert_eq!(b.ends(), &[0, 4]);
        let mut c = Buffer::default();
        c.push(b"x", None);
        c.append(&b);
        assert_eq!(c.data(), b"xdefg");
        assert_eq!(c.record(2).bytes, b"defg");
        c.consume(9);
        assert!(c.is_empty());
    }

    #[test]
    fn times_follow_records() {
        let mut b = Buffer::default();
        b.push(b"a", Some(1));
        b.push(b"b", Some(2));
        b.consume(1);
        assert_eq!(
            b.record(0),
            Record {
                bytes: b"b",
                time_us: Some(2)
            }
        );
    }
}
