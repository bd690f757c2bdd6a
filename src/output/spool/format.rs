//! The bytes of a segment file: a 16-byte header, then records, each framed as
//!
//! ```text
//! len   u32 LE   bytes after the crc field: 20 + payload length
//! crc   u32 LE   CRC32C of len (4 bytes LE) ‖ flags ‖ id ‖ time ‖ payload
//! flags u32 LE   bit 0: last record of its append batch; bit 1: time present; bit 2: a copy
//!                that does not carry its message in the logger's counters; other bits 0
//! id    u64 LE   the caller's stable record id (the same on every resend)
//! time  i64 LE   the log time in µs since the Unix epoch (0 when bit 1 is clear)
//! payload        the record's bytes
//! ```
//!
//! The CRC also covers the length (an improvement on "the CRC covers the rest": a flipped length
//! bit is caught even when the wrong length happens to fit). The flags word with its reserved bits
//! is what makes resynchronisation cheap: after a corrupt record the scanner only checksums
//! candidate positions whose flags have no reserved bit set and whose length fits.
//!
//! An append batch never spans two segments and its last record has the batch-end flag, so a
//! reader can tell a batch torn by a crash (no batch end before the end of the file) from a
//! complete one: recovery truncates the torn batch entirely (all or nothing).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// `RLSPOOL` + a NUL: the first bytes of every segment.
pub(crate) const MAGIC: [u8; 8] = *b"RLSPOOL\0";
/// Format version in the segment header.
pub(crate) const VERSION: u32 = 1;
/// Segment header: magic, version u32, reserved u32 (0).
pub(crate) const HEADER_LEN: u64 = 16;
/// Fixed bytes before the payload: len, crc, flags, id, time.
pub(crate) const REC_HEADER: usize = 28;
/// Value of `len` for an empty payload.
const LEN_FIXED: u32 = 20;
/// The largest payload a record may carry (a log message; rlog's buffers are far smaller).
pub(crate) const MAX_PAYLOAD: usize = 64 << 20;

pub(crate) const FLAG_BATCH_END: u32 = 1;
pub(crate) const FLAG_HAS_TIME: u32 = 2;
/// The record is a copy whose message another output's copy carries in the counters.
pub(crate) const FLAG_UNCOUNTED: u32 = 4;
const FLAGS_KNOWN: u32 = FLAG_BATCH_END | FLAG_HAS_TIME | FLAG_UNCOUNTED;

/// The segment header's bytes.
pub(crate) fn header_bytes() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Is this a segment header we can read?
pub(crate) fn header_ok(h: &[u8]) -> bool {
    h.len() >= HEADER_LEN as usize
        && h[..8] == MAGIC
        && u32::from_le_bytes(h[8..12].try_into().unwrap()) == VERSION
}

/// Bytes a record with `payload_len` payload bytes takes in a segment.
pub(crate) fn framed_len(payload_len: usize) -> u64 {
    (REC_HEADER + payload_len) as u64
}

/// Appends one framed record to `out`.
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    id: u64,
    time_us: Option<i64>,
    batch_end: bool,
    counted: bool,
    payload: &[u8],
) {
    let len = LEN_FIXED + payload.len() as u32;
    let mut flags = 0;
    if batch_end {
        flags |= FLAG_BATCH_END;
    }
    if !counted {
        flags |= FLAG_UNCOUNTED;
    }
    if time_us.is_some() {
        flags |= FLAG_HAS_TIME;
    }
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&time_us.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 4]), &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The fixed fields of a record header, parsed but not yet checked against the CRC.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecHead {
    pub len: u32,
    pub crc: u32,
    pub flags: u32,
    pub id: u64,
    pub time: i64,
}

impl RecHead {
    pub(crate) fn parse(h: &[u8; REC_HEADER]) -> RecHead {
        RecHead {
            len: u32::from_le_bytes(h[0..4].try_into().unwrap()),
            crc: u32::from_le_bytes(h[4..8].try_into().unwrap()),
            flags: u32::from_le_bytes(h[8..12].try_into().unwrap()),
            id: u64::from_le_bytes(h[12..20].try_into().unwrap()),
            time: i64::from_le_bytes(h[20..28].try_into().unwrap()),
        }
    }

    /// Length of the payload, if the header is plausible for a record starting at `pos` in a
    /// file whose valid bytes end at `end` (reserved flag bits clear, length in range and
    /// within the file).
    pub(crate) fn plausible(&self, pos: u64, end: u64) -> Option<usize> {
        if self.flags & !FLAGS_KNOWN != 0 || self.len < LEN_FIXED {
            return None;
        }
        let payload = (self.len - LEN_FIXED) as usize;
        if payload > MAX_PAYLOAD || pos + framed_len(payload) > end {
            return None;
        }
        Some(payload)
    }

    /// Does the CRC match this header with `payload`?
    pub(crate) fn crc_ok(&self, raw: &[u8; REC_HEADER], payload: &[u8]) -> bool {
        let c = crc32c::crc32c(&raw[0..4]);
        let c = crc32c::crc32c_append(c, &raw[8..REC_HEADER]);
        crc32c::crc32c_append(c, payload) == self.crc
    }

    /// Whether the record carries its message in the counters (see [`FLAG_UNCOUNTED`]).
    pub(crate) fn counted(&self) -> bool {
        self.flags & FLAG_UNCOUNTED == 0
    }

    pub(crate) fn time_us(&self) -> Option<i64> {
        (self.flags & FLAG_HAS_TIME != 0).then_some(self.time)
    }

    pub(crate) fn batch_end(&self) -> bool {
        self.flags & FLAG_BATCH_END != 0
    }
}

/// Reads the record at `pos` with positional reads and checks it; `Ok(None)` when no valid
/// record starts there. `scratch` receives the payload.
pub(crate) fn record_at(
    file: &File,
    pos: u64,
    end: u64,
    scratch: &mut Vec<u8>,
) -> io::Result<Option<RecHead>> {
    if pos + REC_HEADER as u64 > end {
        return Ok(None);
    }
    let mut raw = [0u8; REC_HEADER];
    file.read_exact_at(&mut raw, pos)?;
    let head = RecHead::parse(&raw);
    let Some(plen) = head.plausible(pos, end) else {
        return Ok(None);
    };
    scratch.clear();
    scratch.resize(plen, 0);
    file.read_exact_at(scratch, pos + REC_HEADER as u64)?;
    Ok(head.crc_ok(&raw, scratch).then_some(head))
}

/// Finds the first valid record starting in `(from, end)`, scanning forward byte by byte.
/// Only candidates whose header is plausible are checksummed, so a scan over text or zeros
/// costs little more than reading it.
pub(crate) fn resync(
    file: &File,
    from: u64,
    end: u64,
    scratch: &mut Vec<u8>,
) -> io::Result<Option<u64>> {
    const WINDOW: usize = 64 << 10;
    let mut window = vec![0u8; WINDOW];
    let mut base = from + 1;
    while base + REC_HEADER as u64 <= end {
        let n = ((end - base) as usize).min(WINDOW);
        file.read_exact_at(&mut window[..n], base)?;
        // Candidates whose 28-byte header lies entirely inside the window.
        let last = n.saturating_sub(REC_HEADER);
        for i in 0..=last {
            if i + REC_HEADER > n {
                break;
            }
            let raw: &[u8; REC_HEADER] = window[i..i + REC_HEADER].try_into().unwrap();
            let pos = base + i as u64;
            if RecHead::parse(raw).plausible(pos, end).is_some()
                && record_at(file, pos, end, scratch)?.is_some()
            {
                return Ok(Some(pos));
            }
        }
        if n < WINDOW {
            break;
        }
        base += (n - REC_HEADER + 1) as u64;
    }
    Ok(None)
}

/// Sequential reader of one segment with bounded memory: a `BufReader` over the file, checks
/// every record, resynchronises after a corrupt one.
pub(crate) struct SegReader {
    reader: io::BufReader<File>,
    pos: u64,
    end: u64,
    scratch: Vec<u8>,
}

/// One step of a [`SegReader`].
pub(crate) enum Step {
    /// A valid record (its payload is in the caller's buffer); `end` is the offset just
    /// after it.
    Record { head: RecHead, end: u64 },
    /// Bytes `[from, to)` are not a valid record; reading goes on at `to`.
    Corrupt { from: u64, to: u64 },
    /// Nothing valid from `from` to the end of the segment.
    Tail { from: u64 },
    /// The end of the segment.
    End,
}

impl SegReader {
    /// A reader positioned at `pos` (at least the header length) of `file`, whose valid bytes
    /// end at `end`.
    pub(crate) fn new(file: File, pos: u64, end: u64) -> io::Result<SegReader> {
        use std::io::{Seek, SeekFrom};
        let pos = pos.max(HEADER_LEN);
        let mut reader = io::BufReader::with_capacity(64 << 10, file);
        reader.seek(SeekFrom::Start(pos))?;
        Ok(SegReader {
            reader,
            pos,
            end,
            scratch: Vec::new(),
        })
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// Moves the end of the valid bytes (the segment being appended to grows).
    pub(crate) fn set_end(&mut self, end: u64) {
        self.end = end;
    }

    /// Reads the next record into `payload` (or reports the corrupt span / torn tail in front
    /// of it).
    pub(crate) fn step(&mut self, payload: &mut Vec<u8>) -> io::Result<Step> {
        use std::io::{Seek, SeekFrom};
        if self.pos >= self.end {
            return Ok(Step::End);
        }
        let start = self.pos;
        if start + REC_HEADER as u64 <= self.end {
            let mut raw = [0u8; REC_HEADER];
            self.reader.read_exact(&mut raw)?;
            let head = RecHead::parse(&raw);
            if let Some(plen) = head.plausible(start, self.end) {
                payload.clear();
                payload.resize(plen, 0);
                self.reader.read_exact(payload)?;
                if head.crc_ok(&raw, payload) {
                    self.pos = start + framed_len(plen);
                    return Ok(Step::Record {
                        head,
                        end: self.pos,
                    });
                }
            }
        }
        match resync(self.reader.get_ref(), start, self.end, &mut self.scratch)? {
            Some(next) => {
                self.reader.seek(SeekFrom::Start(next))?;
                self.pos = next;
                Ok(Step::Corrupt {
                    from: start,
                    to: next,
                })
            }
            None => {
                // Keep the buffered reader where `pos` says: the end may grow later (the
                // segment being appended to), and reading then goes on from here.
                self.reader.seek(SeekFrom::Start(self.end))?;
                self.pos = self.end;
                Ok(Step::Tail { from: start })
            }
        }
    }
}

/// What a full pass over one segment found (see [`scan`]).
#[derive(Debug, Default, Clone)]
pub(crate) struct Scan {
    /// Valid records from the start offset, in complete batches (or before a corrupt span).
    pub records: u64,
    /// Their payload bytes.
    pub payload_bytes: u64,
    /// Of those, the uncounted copies ([`FLAG_UNCOUNTED`]) and their payload bytes.
    pub uncounted: u64,
    pub uncounted_bytes: u64,
    /// Corrupt spans skipped (each hides at least one record).
    pub corrupt: u64,
    /// Where the valid data ends: bytes after it are a torn tail (an incomplete last batch or
    /// garbage with no valid record after it).
    pub valid_end: u64,
    /// The file's length.
    pub file_len: u64,
    /// Oldest and newest record time (µs) among the valid records.
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
}

/// How a segment file failed to open as a segment.
#[derive(Debug)]
pub(crate) enum ScanError {
    /// Shorter than a header (a crash right after creating it): nothing in it.
    Headerless,
    /// Not a segment of a version we read.
    BadHeader,
    /// Reading failed.
    Io,
}

impl From<io::Error> for ScanError {
    fn from(_: io::Error) -> Self {
        ScanError::Io
    }
}

/// Checks every record of a segment from offset `from` (a record boundary; below the header
/// means the start), counting valid records and corrupt spans and finding where the valid data
/// ends. Records of a batch that has no batch-end record before the end of the valid data are
/// a torn batch: they are not counted and `valid_end` is before them.
pub(crate) fn scan(file: &File, from: u64) -> Result<Scan, ScanError> {
    let file_len = file.metadata()?.len();
    if file_len < HEADER_LEN {
        return Err(ScanError::Headerless);
    }
    let mut h = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut h, 0)?;
    if !header_ok(&h) {
        return Err(ScanError::BadHeader);
    }
    let mut out = Scan {
        file_len,
        ..Scan::default()
    };
    let from = from.max(HEADER_LEN);
    if from >= file_len {
        out.valid_end = file_len;
        return Ok(out);
    }
    let mut rd = SegReader::new(file.try_clone()?, from, file_len)?;
    // The batch being read: counted only once its batch-end record is seen (or once a corrupt
    // span shows the data goes on after it, which is not a torn tail).
    let mut pending = Scan::default();
    let mut batch_start = from;
    let mut payload = Vec::new();
    loop {
        match rd.step(&mut payload)? {
            Step::Record { head, end } => {
                pending.records += 1;
                pending.payload_bytes += payload.len() as u64;
                if !head.counted() {
                    pending.uncounted += 1;
                    pending.uncounted_bytes += payload.len() as u64;
                }
                if let Some(t) = head.time_us() {
                    pending.min_time = Some(pending.min_time.map_or(t, |m| m.min(t)));
                    pending.max_time = Some(pending.max_time.map_or(t, |m| m.max(t)));
                }
                if head.batch_end() {
                    fold(&mut out, &mut pending);
                    batch_start = end;
                }
            }
            Step::Corrupt { to, .. } => {
                out.corrupt += 1;
                fold(&mut out, &mut pending);
                batch_start = to;
            }
            Step::Tail { .. } | Step::End => break,
        }
    }
    out.valid_end = batch_start;
    Ok(out)
}

fn fold(out: &mut Scan, pending: &mut Scan) {
    out.records += pending.records;
    out.payload_bytes += pending.payload_bytes;
    out.uncounted += pending.uncounted;
    out.uncounted_bytes += pending.uncounted_bytes;
    out.min_time = match (out.min_time, pending.min_time) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    out.max_time = match (out.max_time, pending.max_time) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    *pending = Scan::default();
}
