//! The on-disk format of an rlogd store: file headers, records, index entries, dates.
//!
//! Everything is little-endian with fixed sizes (see docs/STORAGE.md). This module only encodes
//! and decodes; it never touches files.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::civil::{civil_from_days, days_from_civil};

/// First bytes of every data file.
pub const DATA_MAGIC: &[u8; 8] = b"RLOGDATA";
/// First bytes of every index file.
pub const INDEX_MAGIC: &[u8; 8] = b"RLOGINDX";
/// Format version written in both headers of a new date. Version 2 adds the `SENDER` flag;
/// version-1 dates (written by older rlogd) are read, recovered and replicated unchanged.
pub const VERSION: u32 = 2;
/// The versions this build reads.
pub const VERSIONS: [u32; 2] = [1, 2];
/// Record and index entry flag (version 2): the payload starts with the sender's address.
pub const FLAG_SENDER: u16 = 1;
/// The longest sender prefix (an IPv6 address): `u8 family`, `u16 port`, 16 address bytes.
pub const MAX_SENDER: usize = 19;
/// Size of the data and index file headers.
pub const FILE_HEADER: usize = 16;
/// Size of a record header in a data file.
pub const RECORD_HEADER: usize = 40;
/// Size of one index entry.
pub const ENTRY: usize = 32;
/// The largest payload one record may carry (16 MiB), the sender prefix included.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// The 16-byte header of a data file of the current [`VERSION`].
pub fn data_header() -> [u8; FILE_HEADER] {
    data_header_of(VERSION)
}

/// The 16-byte header of a data file of `version`.
pub fn data_header_of(version: u32) -> [u8; FILE_HEADER] {
    let mut h = [0u8; FILE_HEADER];
    h[..8].copy_from_slice(DATA_MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h
}

/// The 16-byte header of an index file of the current [`VERSION`].
pub fn index_header() -> [u8; FILE_HEADER] {
    index_header_of(VERSION)
}

/// The 16-byte header of an index file of `version` (the last field is the entry size).
pub fn index_header_of(version: u32) -> [u8; FILE_HEADER] {
    let mut h = [0u8; FILE_HEADER];
    h[..8].copy_from_slice(INDEX_MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h[12..16].copy_from_slice(&(ENTRY as u32).to_le_bytes());
    h
}

/// Checks a file header; returns its version. Errors: what is wrong with it (a version this
/// build does not read is named).
pub fn check_header(h: &[u8], index: bool) -> Result<u32, String> {
    if h.len() < FILE_HEADER {
        return Err(format!(
            "header is {} bytes, expected {FILE_HEADER}",
            h.len()
        ));
    }
    let magic = if index { INDEX_MAGIC } else { DATA_MAGIC };
    if h[..8] != magic[..] {
        return Err("bad magic".into());
    }
    let version = u32_at(h, 8);
    if !VERSIONS.contains(&version) {
        return Err(format!(
            "unsupported version {version} (this rlogd reads versions 1 and 2)"
        ));
    }
    let want = if index {
        index_header_of(version)
    } else {
        data_header_of(version)
    };
    if h[12..16] != want[12..16] {
        return Err(format!(
            "bad header: {} {} after the version",
            if index { "entry size" } else { "reserved" },
            u32_at(h, 12)
        ));
    }
    Ok(version)
}

/// The flags records and entries of a file of `version` may carry.
pub fn flags_allowed(version: u32) -> u16 {
    if version >= 2 {
        FLAG_SENDER
    } else {
        0
    }
}

/// Where a record from a plain (`tcp://`, `udp://`, `unix://`) sender came from, stored in
/// front of its payload in version 2 (see docs/STORAGE.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenderAddr {
    Ip(SocketAddr),
    Unix,
}

impl SenderAddr {
    /// The address of an IP peer; an IPv4 client of a dual-stack (`[::]`) listener is stored
    /// as the IPv4 address it is.
    pub fn ip(a: SocketAddr) -> SenderAddr {
        SenderAddr::Ip(SocketAddr::new(a.ip().to_canonical(), a.port()))
    }

    /// Bytes the prefix takes.
    pub fn encoded_len(&self) -> usize {
        match self {
            SenderAddr::Ip(SocketAddr::V4(_)) => 7,
            SenderAddr::Ip(SocketAddr::V6(_)) => MAX_SENDER,
            SenderAddr::Unix => 3,
        }
    }

    /// Appends the prefix: `u8 family` (4, 6, 1 for unix), `u16 port`, the address bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            SenderAddr::Ip(SocketAddr::V4(a)) => {
                out.push(4);
                out.extend_from_slice(&a.port().to_le_bytes());
                out.extend_from_slice(&a.ip().octets());
            }
            SenderAddr::Ip(SocketAddr::V6(a)) => {
                out.push(6);
                out.extend_from_slice(&a.port().to_le_bytes());
                out.extend_from_slice(&a.ip().octets());
            }
            SenderAddr::Unix => {
                out.push(1);
                out.extend_from_slice(&0u16.to_le_bytes());
            }
        }
    }

    /// Splits a prefixed payload into the sender and the payload proper. Errors: an unknown
    /// family, fewer bytes than the family needs.
    pub fn split(b: &[u8]) -> Result<(SenderAddr, &[u8]), String> {
        let need = match b.first() {
            Some(4) => 7,
            Some(6) => MAX_SENDER,
            Some(1) => 3,
            Some(f) => return Err(format!("unknown sender family {f}")),
            None => return Err("empty payload where a sender was flagged".into()),
        };
        if b.len() < need {
            return Err(format!(
                "sender prefix of {} bytes, expected {need}",
                b.len()
            ));
        }
        let port = u16_at(b, 1);
        let s = match b[0] {
            4 => {
                let ip: [u8; 4] = b[3..7].try_into().unwrap();
                SenderAddr::Ip(SocketAddr::new(Ipv4Addr::from(ip).into(), port))
            }
            6 => {
                let ip: [u8; 16] = b[3..19].try_into().unwrap();
                SenderAddr::Ip(SocketAddr::new(Ipv6Addr::from(ip).into(), port))
            }
            _ => SenderAddr::Unix,
        };
        Ok((s, &b[need..]))
    }
}

impl fmt::Display for SenderAddr {
    /// `203.0.113.5:514`, `[2001:db8::1]:514`, `unix`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SenderAddr::Ip(a) => write!(f, "{a}"),
            SenderAddr::Unix => f.write_str("unix"),
        }
    }
}

/// What a record says about itself, besides its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// Microseconds since the Unix epoch.
    pub time_us: i64,
    /// The record type (go-remote-log's DataType).
    pub rtype: u16,
    /// Who sent it (0: a sender without acknowledgements) and its sequence number.
    pub producer: u64,
    pub seq: u64,
}

/// Encodes a record (header then payload) onto `out`, without a sender.
pub fn encode_record(out: &mut Vec<u8>, meta: &Meta, payload: &[u8]) {
    encode_record_from(out, meta, None, payload)
}

/// Encodes a record onto `out`; with a sender (version 2 only), the `SENDER` flag is set and
/// the payload is preceded by the sender's address, counted in the record's length.
pub fn encode_record_from(
    out: &mut Vec<u8>,
    meta: &Meta,
    sender: Option<&SenderAddr>,
    payload: &[u8],
) {
    let start = out.len();
    let prefix = sender.map_or(0, |s| s.encoded_len());
    let flags = if sender.is_some() { FLAG_SENDER } else { 0 };
    out.extend_from_slice(&((prefix + payload.len()) as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&meta.time_us.to_le_bytes());
    out.extend_from_slice(&meta.rtype.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&meta.producer.to_le_bytes());
    out.extend_from_slice(&meta.seq.to_le_bytes());
    if let Some(s) = sender {
        s.encode(out);
    }
    out.extend_from_slice(payload);
    let crc = record_crc(&out[start..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The CRC32C of a record: over its length field, the header after the CRC, and the payload.
pub fn record_crc(record: &[u8]) -> u32 {
    let c = crc32c::crc32c(&record[0..4]);
    crc32c::crc32c_append(c, &record[8..])
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Bytes after the header: the sender prefix (when flagged) and the payload.
    pub len: u32,
    pub crc: u32,
    /// [`FLAG_SENDER`] or 0.
    pub flags: u16,
    pub meta: Meta,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes(b[i..i + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap())
}

/// Decodes a record header (the first [`RECORD_HEADER`] bytes of `h`). Errors: fewer bytes than
/// that, a length over [`MAX_PAYLOAD`], unknown flags or nonzero reserved bytes. (Whether the
/// flags fit the file's version is [`Entry::fits_version`]'s job: entry and header must match.)
pub fn decode_record_header(h: &[u8]) -> Result<RecordHeader, String> {
    if h.len() < RECORD_HEADER {
        return Err(format!(
            "record header is {} bytes, expected {RECORD_HEADER}",
            h.len()
        ));
    }
    let len = u32_at(h, 0);
    if len as usize > MAX_PAYLOAD {
        return Err(format!("record length {len} exceeds {MAX_PAYLOAD}"));
    }
    let flags = u16_at(h, 18);
    if flags & !FLAG_SENDER != 0 {
        return Err(format!("unknown flags {flags:#x} in a record header"));
    }
    if u32_at(h, 20) != 0 {
        return Err("nonzero reserved bytes in a record header".into());
    }
    Ok(RecordHeader {
        len,
        crc: u32_at(h, 4),
        flags,
        meta: Meta {
            time_us: u64_at(h, 8) as i64,
            rtype: u16_at(h, 16),
            producer: u64_at(h, 24),
            seq: u64_at(h, 32),
        },
    })
}

/// One index entry: where record `id` of a date lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Data file number (`data000007` is 7).
    pub file: u32,
    /// Offset of the record header in that file.
    pub offset: u32,
    /// Payload length (the sender prefix included, when flagged).
    pub len: u32,
    pub rtype: u16,
    /// [`FLAG_SENDER`] or 0, as in the record header.
    pub flags: u16,
    pub producer: u64,
    pub seq: u64,
}

impl Entry {
    pub fn encode(&self) -> [u8; ENTRY] {
        let mut e = [0u8; ENTRY];
        e[0..4].copy_from_slice(&self.file.to_le_bytes());
        e[4..8].copy_from_slice(&self.offset.to_le_bytes());
        e[8..12].copy_from_slice(&self.len.to_le_bytes());
        e[12..14].copy_from_slice(&self.rtype.to_le_bytes());
        e[14..16].copy_from_slice(&self.flags.to_le_bytes());
        e[16..24].copy_from_slice(&self.producer.to_le_bytes());
        e[24..32].copy_from_slice(&self.seq.to_le_bytes());
        e
    }

    /// Decodes an entry (the first [`ENTRY`] bytes of `e`). Errors: fewer bytes than that, a
    /// length over [`MAX_PAYLOAD`], unknown flags.
    pub fn decode(e: &[u8]) -> Result<Entry, String> {
        if e.len() < ENTRY {
            return Err(format!(
                "index entry is {} bytes, expected {ENTRY}",
                e.len()
            ));
        }
        let entry = Entry {
            file: u32_at(e, 0),
            offset: u32_at(e, 4),
            len: u32_at(e, 8),
            rtype: u16_at(e, 12),
            flags: u16_at(e, 14),
            producer: u64_at(e, 16),
            seq: u64_at(e, 24),
        };
        if entry.len as usize > MAX_PAYLOAD {
            return Err(format!(
                "index entry length {} exceeds {MAX_PAYLOAD}",
                entry.len
            ));
        }
        if entry.flags & !FLAG_SENDER != 0 {
            return Err(format!(
                "unknown flags {:#x} in an index entry",
                entry.flags
            ));
        }
        Ok(entry)
    }

    /// Errors: this entry has flags a file of `version` may not carry (a `SENDER` flag in a
    /// version-1 date).
    pub fn fits_version(&self, version: u32) -> Result<(), String> {
        if self.flags & !flags_allowed(version) != 0 {
            return Err(format!(
                "flags {:#x} in a version-{version} date",
                self.flags
            ));
        }
        Ok(())
    }

    /// Offset just past this record in its data file.
    pub fn end(&self) -> u64 {
        self.offset as u64 + RECORD_HEADER as u64 + self.len as u64
    }

    /// Whether the record header `h` is the one this entry describes.
    pub fn matches(&self, h: &RecordHeader) -> bool {
        h.len == self.len
            && h.meta.rtype == self.rtype
            && h.flags == self.flags
            && h.meta.producer == self.producer
            && h.meta.seq == self.seq
    }
}

/// The name of data file `n`.
pub fn data_name(n: u32) -> String {
    format!("data{n:06}")
}

/// A UTC calendar date, `YYYYMMDD` as a number (20261123).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(u32);

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08}", self.0)
    }
}

const MIN_DAY: i64 = 0; // 1970-01-01
const MAX_DAY: i64 = 2932896; // 9999-12-31

impl Date {
    /// A date from its number. Errors: not a real date between 19700101 and 99991231.
    pub fn from_u32(n: u32) -> Result<Date, String> {
        let (y, m, d) = (n / 10000, n / 100 % 100, n % 100);
        if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 {
            return Err(format!("invalid date {n:08}"));
        }
        let days = days_from_civil(y as i64, m, d);
        if civil_from_days(days) != (y as i64, m, d) {
            return Err(format!("invalid date {n:08}"));
        }
        Ok(Date(n))
    }

    /// Parses exactly eight digits `YYYYMMDD`. Errors: anything else (a path, `../x`, a
    /// nonexistent day).
    pub fn parse(s: &str) -> Result<Date, String> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid date \"{s}\": expected YYYYMMDD"));
        }
        Date::from_u32(s.parse().unwrap())
    }

    pub fn as_u32(self) -> u32 {
        self.0
    }

    fn days(self) -> i64 {
        days_from_civil((self.0 / 10000) as i64, self.0 / 100 % 100, self.0 % 100)
    }

    fn from_days(days: i64) -> Date {
        let days = days.clamp(MIN_DAY, MAX_DAY);
        let (y, m, d) = civil_from_days(days);
        Date(y as u32 * 10000 + m * 100 + d)
    }

    /// The UTC date of a time in microseconds since the epoch (clamped to 1970..9999).
    pub fn of_micros(us: i64) -> Date {
        Date::from_days(us.div_euclid(86_400_000_000))
    }

    /// Today's UTC date by this machine's clock.
    pub fn today() -> Date {
        Date::of_micros(now_micros())
    }

    /// `n` days later (negative: earlier), clamped to the valid range.
    pub fn add_days(self, n: i64) -> Date {
        Date::from_days(self.days() + n)
    }

    /// Microseconds since the epoch at the start of the next day.
    pub fn end_micros(self) -> i64 {
        (self.days() + 1) * 86_400_000_000
    }
}

/// Microseconds since the Unix epoch: the clock records are stamped with.
pub use crate::encode::clock::now_micros;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(Date::of_micros(0).to_string(), "19700101");
        assert_eq!(
            Date::of_micros(1_700_000_000_000_000).to_string(),
            "20231114"
        );
        assert_eq!(
            Date::parse("20240229").unwrap().add_days(1).to_string(),
            "20240301"
        );
        assert!(Date::parse("20230229").is_err());
        assert!(Date::parse("../../x").is_err());
        assert!(Date::parse("2024011").is_err());
        assert!(Date::from_u32(0).is_err());
        let d = Date::parse("20261123").unwrap();
        assert_eq!(Date::of_micros(d.end_micros() - 1), d);
        assert_eq!(Date::of_micros(d.end_micros()), d.add_days(1));
    }

    #[test]
    fn record_roundtrip_and_crc() {
        let meta = Meta {
            time_us: 5,
            rtype: 7,
            producer: 9,
            seq: 11,
        };
        let mut out = Vec::new();
        encode_record(&mut out, &meta, b"hello");
        assert_eq!(out.len(), RECORD_HEADER + 5);
        let h = decode_record_header(&out).unwrap();
        assert_eq!(h.meta, meta);
        assert_eq!(h.crc, record_crc(&out));
        out[RECORD_HEADER] ^= 1;
        assert_ne!(h.crc, record_crc(&out));
        let e = Entry {
            file: 1,
            offset: 16,
            len: 5,
            rtype: 7,
            flags: 0,
            producer: 9,
            seq: 11,
        };
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        assert!(e.matches(&h));
    }

    #[test]
    fn senders_roundtrip_and_versions() {
        let meta = Meta::default();
        for (s, shown, len) in [
            (
                SenderAddr::ip("203.0.113.5:514".parse().unwrap()),
                "203.0.113.5:514",
                7,
            ),
            (
                SenderAddr::ip("[::ffff:10.0.0.1]:9".parse().unwrap()),
                "10.0.0.1:9",
                7,
            ),
            (
                SenderAddr::ip("[2001:db8::1]:65535".parse().unwrap()),
                "[2001:db8::1]:65535",
                19,
            ),
            (SenderAddr::Unix, "unix", 3),
        ] {
            assert_eq!(s.to_string(), shown);
            let mut out = Vec::new();
            encode_record_from(&mut out, &meta, Some(&s), b"line");
            let h = decode_record_header(&out).unwrap();
            assert_eq!(h.flags, FLAG_SENDER);
            assert_eq!(h.len as usize, len + 4);
            assert_eq!(h.crc, record_crc(&out));
            let (got, rest) = SenderAddr::split(&out[RECORD_HEADER..]).unwrap();
            assert_eq!((got, rest), (s, &b"line"[..]));
        }
        assert!(SenderAddr::split(&[4, 0, 0, 1]).is_err());
        assert!(SenderAddr::split(&[9, 0, 0]).is_err());
        assert!(SenderAddr::split(&[]).is_err());
        let e = Entry {
            file: 0,
            offset: 16,
            len: 10,
            rtype: 0,
            flags: FLAG_SENDER,
            producer: 0,
            seq: 0,
        };
        assert!(e.fits_version(2).is_ok());
        assert!(e.fits_version(1).unwrap_err().contains("version-1"));
        let mut raw = e.encode();
        raw[14] = 2;
        assert!(Entry::decode(&raw).unwrap_err().contains("unknown flags"));
        assert_eq!(check_header(&index_header_of(1), true), Ok(1));
        assert_eq!(check_header(&data_header(), false), Ok(2));
        let v3 = index_header_of(3);
        assert!(check_header(&v3, true)
            .unwrap_err()
            .contains("unsupported version 3"));
    }

    /// Found by fuzzing (fuzz/ target `format`): a short slice panicked (index out of bounds)
    /// instead of being refused.
    #[test]
    fn short_headers_and_entries_are_errors_not_panics() {
        for n in [0, 1, RECORD_HEADER - 1] {
            let e = decode_record_header(&vec![0u8; n]).unwrap_err();
            assert!(e.contains("expected 40"), "{e}");
        }
        for n in [0, 7, ENTRY - 1] {
            let e = Entry::decode(&vec![0u8; n]).unwrap_err();
            assert!(e.contains("expected 32"), "{e}");
        }
        assert!(decode_record_header(&[0u8; RECORD_HEADER]).is_ok());
        assert!(Entry::decode(&[0u8; ENTRY]).is_ok());
    }
}
