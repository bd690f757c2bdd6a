//! The `rlogd://` wire protocol: length-prefixed frames, shared by the librlog transport, the
//! collector, and replication.
//!
//! A frame is `u32 len` (little-endian, bytes that follow), `u8 kind`, then the body. Every
//! length is checked against a limit before anything is allocated for it. The message layouts
//! are in docs/STORAGE.md ("Protocol").

use std::io::{self, Read, Write};

use super::format::Date;

/// Protocol version librlog's producers speak (version 2 changes nothing for them, and an
/// older rlogd refuses it).
pub const PROTOCOL: u16 = 1;
/// The newest protocol version: 2 adds BEGIN, which tells a follower the store format version
/// of each date it creates. A server accepts 1 and 2 and answers WELCOME with the version of
/// the HELLO.
pub const PROTOCOL_MAX: u16 = 2;
/// Default and hard upper bound of a frame (kind and body): 16 MiB plus room for headers.
pub const DEFAULT_MAX_FRAME: usize = (16 << 20) + 4096;
/// The largest token accepted in a HELLO.
pub const MAX_TOKEN: usize = 4096;

pub const HELLO: u8 = 1;
pub const WELCOME: u8 = 2;
pub const BATCH: u8 = 3;
pub const ACK: u8 = 4;
pub const ERROR: u8 = 5;
pub const RECORDS: u8 = 6;
pub const FINISH: u8 = 7;
pub const HEARTBEAT: u8 = 8;
/// Protocol 2, master → follower: `u32 date`, `u32 store format version`, sent before the first
/// RECORDS (or FINISH) of a date the follower does not have.
pub const BEGIN: u8 = 9;

/// Batch payload codecs.
pub const CODEC_NONE: u8 = 0;
pub const CODEC_ZLIB: u8 = 1;

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    /// The header announced more than the limit (the announced length).
    TooLarge(u64),
    /// A zero length.
    Empty,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "{e}"),
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds the limit"),
            FrameError::Empty => write!(f, "empty frame"),
        }
    }
}

/// Reads one frame into `body` (its kind is returned). A header over `max` is refused before
/// anything is allocated, and the body grows only as its bytes arrive (see [`read_body`]), so a
/// header that merely claims a large frame costs nothing.
pub fn read_frame(r: &mut impl Read, max: usize, body: &mut Vec<u8>) -> Result<u8, FrameError> {
    let (kind, len) = read_head(r, max)?;
    read_body(r, len, body, |_| Ok(())).map_err(FrameError::Io)?;
    Ok(kind)
}

/// Reads a frame's header: its kind and the length of its body. Errors: a zero length, a length
/// over `max`, I/O.
pub fn read_head(r: &mut impl Read, max: usize) -> Result<(u8, usize), FrameError> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head[..4]).map_err(FrameError::Io)?;
    let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as u64;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max as u64 {
        return Err(FrameError::TooLarge(len));
    }
    r.read_exact(&mut head[4..5]).map_err(FrameError::Io)?;
    Ok((head[4], len as usize - 1))
}

/// The first step of [`read_body`]'s growth: a body is read in steps of at least this, each at
/// most as large as what already arrived.
pub const BODY_STEP: usize = 64 << 10;

/// Reads a body of `len` bytes into `body` (cleared first), growing it as the bytes arrive: by
/// [`BODY_STEP`] at first, then by at most what already arrived, so the memory a frame takes is
/// at most twice what its sender actually sent (plus one step). `grow(n)` is called before each
/// step of `n` bytes is allocated; an error from it ends the read (the caller's memory budget).
/// Errors: I/O (`UnexpectedEof` when the peer closes inside the body), or `grow`'s.
pub fn read_body(
    r: &mut impl Read,
    len: usize,
    body: &mut Vec<u8>,
    mut grow: impl FnMut(usize) -> io::Result<()>,
) -> io::Result<()> {
    body.clear();
    while body.len() < len {
        let have = body.len();
        let step = (len - have).min(have.max(BODY_STEP));
        grow(step)?;
        body.resize(have + step, 0);
        if let Err(e) = r.read_exact(&mut body[have..]) {
            body.truncate(have);
            return Err(e);
        }
    }
    Ok(())
}

/// Starts a frame of `kind` in `out` (the length is filled in by [`end_frame`]); returns
/// where it starts.
pub fn begin_frame(out: &mut Vec<u8>, kind: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, kind]);
    at
}

/// Fills in the length of the frame started at `at`.
pub fn end_frame(out: &mut [u8], at: usize) {
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Writes a whole frame.
pub fn write_frame(w: &mut impl Write, kind: u8, body: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(body.len() + 5);
    let at = begin_frame(&mut out, kind);
    out.extend_from_slice(body);
    end_frame(&mut out, at);
    w.write_all(&out)
}

/// A bounds-checked reader over a frame body.
pub struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(b: &'a [u8]) -> Cursor<'a> {
        Cursor { b, i: 0 }
    }
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() - self.i < n {
            return Err(format!(
                "truncated frame: {n} more bytes announced, {} left",
                self.b.len() - self.i
            ));
        }
        let s = &self.b[self.i..self.i + n];
        self.i += n;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.bytes(2)?.try_into().unwrap()))
    }
    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().unwrap()))
    }
    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().unwrap()))
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.b[self.i..];
        self.i = self.b.len();
        s
    }
    pub fn remaining(&self) -> usize {
        self.b.len() - self.i
    }
    /// Errors unless the body was consumed exactly.
    pub fn done(&self) -> Result<(), String> {
        if self.remaining() != 0 {
            return Err(format!(
                "{} unexpected trailing bytes in a frame",
                self.remaining()
            ));
        }
        Ok(())
    }
}

/// Where a follower's store ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Nothing stored yet: start from the master's oldest date.
    Empty,
    /// `count` records of the unsealed `date` are stored.
    Open { date: Date, count: u64 },
    /// `date` is complete (sealed): continue with the next date.
    Sealed { date: Date },
}

/// Who is connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Producer,
    Follower(Position),
}

/// The first frame of every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    pub token: Vec<u8>,
    pub role: Role,
}

impl Hello {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&self.version.to_le_bytes());
        b.extend_from_slice(&(self.token.len() as u16).to_le_bytes());
        b.extend_from_slice(&self.token);
        match &self.role {
            Role::Producer => b.push(1),
            Role::Follower(p) => {
                b.push(2);
                let (state, date, count) = match *p {
                    Position::Empty => (0u8, 0u32, 0u64),
                    Position::Open { date, count } => (1, date.as_u32(), count),
                    Position::Sealed { date } => (2, date.as_u32(), 0),
                };
                b.push(state);
                b.extend_from_slice(&date.to_le_bytes());
                b.extend_from_slice(&count.to_le_bytes());
            }
        }
        b
    }

    /// Errors: truncated, oversized token, unknown role, invalid date.
    pub fn decode(body: &[u8]) -> Result<Hello, String> {
        let mut c = Cursor::new(body);
        let version = c.u16()?;
        let tlen = c.u16()? as usize;
        if tlen > MAX_TOKEN {
            return Err(format!("token of {tlen} bytes is too long"));
        }
        let token = c.bytes(tlen)?.to_vec();
        let role = match c.u8()? {
            1 => Role::Producer,
            2 => {
                let state = c.u8()?;
                let date = c.u32()?;
                let count = c.u64()?;
                Role::Follower(match state {
                    0 => Position::Empty,
                    1 => Position::Open {
                        date: Date::from_u32(date)?,
                        count,
                    },
                    2 => Position::Sealed {
                        date: Date::from_u32(date)?,
                    },
                    s => return Err(format!("unknown follower state {s}")),
                })
            }
            r => return Err(format!("unknown role {r}")),
        };
        c.done()?;
        Ok(Hello {
            version,
            token,
            role,
        })
    }
}

/// One record of a BATCH, as the producer sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRecord {
    pub time_us: i64,
    pub rtype: u16,
    /// Range of its bytes within the batch payload.
    pub start: usize,
    pub len: usize,
}

/// A decoded BATCH: the records' metadata and the payload they point into.
#[derive(Debug)]
pub struct Batch {
    pub producer: u64,
    pub first_seq: u64,
    pub records: Vec<BatchRecord>,
    pub data: Vec<u8>,
}

/// Size of the fixed part of a BATCH body.
pub const BATCH_HEAD: usize = 8 + 8 + 4 + 1 + 4;
/// Size of each record's header inside a batch.
pub const BATCH_RECORD_HEAD: usize = 8 + 2 + 4;

/// Encodes the fixed part of a BATCH body; the caller appends the (raw) records.
pub fn batch_head(
    out: &mut Vec<u8>,
    producer: u64,
    first_seq: u64,
    count: u32,
    codec: u8,
    raw_len: u32,
) {
    out.extend_from_slice(&producer.to_le_bytes());
    out.extend_from_slice(&first_seq.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.push(codec);
    out.extend_from_slice(&raw_len.to_le_bytes());
}

/// Encodes one record of a batch.
pub fn batch_record(out: &mut Vec<u8>, time_us: i64, rtype: u16, bytes: &[u8]) {
    out.extend_from_slice(&time_us.to_le_bytes());
    out.extend_from_slice(&rtype.to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Why a BATCH was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchError {
    /// Malformed.
    Garbage(String),
    /// Decompresses to more than allowed (or than announced).
    Bomb(String),
}

/// Decodes a BATCH body. Decompression (zlib) is bounded by `max_raw` bytes; every record
/// length is checked against what is left.
pub fn decode_batch(body: &[u8], max_raw: usize, max_records: usize) -> Result<Batch, BatchError> {
    let g = BatchError::Garbage;
    let mut c = Cursor::new(body);
    let producer = c.u64().map_err(g)?;
    let first_seq = c.u64().map_err(g)?;
    let count = c.u32().map_err(g)? as usize;
    let codec = c.u8().map_err(g)?;
    let raw_len = c.u32().map_err(g)? as usize;
    if count > max_records {
        return Err(g(format!("batch of {count} records exceeds {max_records}")));
    }
    if first_seq.checked_add(count as u64).is_none() {
        return Err(g("sequence number overflow".into()));
    }
    let data = match codec {
        CODEC_NONE => {
            if raw_len != c.remaining() {
                return Err(g("batch length does not match its frame".into()));
            }
            c.rest().to_vec()
        }
        CODEC_ZLIB => {
            if raw_len > max_raw {
                return Err(BatchError::Bomb(format!(
                    "batch announces {raw_len} bytes uncompressed, over {max_raw}"
                )));
            }
            let mut out = Vec::with_capacity(raw_len.min(1 << 20));
            let dec = flate2::read::ZlibDecoder::new(c.rest());
            dec.take(raw_len as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| g(format!("bad zlib data: {e}")))?;
            if out.len() != raw_len {
                return Err(BatchError::Bomb(format!(
                    "batch decompresses to {}{} bytes, announced {raw_len}",
                    if out.len() > raw_len {
                        "more than "
                    } else {
                        ""
                    },
                    out.len().min(raw_len)
                )));
            }
            out
        }
        other => return Err(g(format!("unknown codec {other}"))),
    };
    let mut records = Vec::with_capacity(count);
    let mut c = Cursor::new(&data);
    for _ in 0..count {
        let time_us = c.u64().map_err(g)? as i64;
        let rtype = c.u16().map_err(g)?;
        let len = c.u32().map_err(g)? as usize;
        if len > super::format::MAX_PAYLOAD {
            return Err(g(format!(
                "record of {len} bytes exceeds {}",
                super::format::MAX_PAYLOAD
            )));
        }
        let start = c.b.len() - c.remaining();
        c.bytes(len).map_err(g)?;
        records.push(BatchRecord {
            time_us,
            rtype,
            start,
            len,
        });
    }
    c.done().map_err(g)?;
    Ok(Batch {
        producer,
        first_seq,
        records,
        data,
    })
}

/// ACK body: producer and the sequence after the batch (`first_seq + count`).
pub fn encode_ack(producer: u64, next_seq: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&producer.to_le_bytes());
    b[8..].copy_from_slice(&next_seq.to_le_bytes());
    b
}

pub fn decode_ack(body: &[u8]) -> Result<(u64, u64), String> {
    let mut c = Cursor::new(body);
    let r = (c.u64()?, c.u64()?);
    c.done()?;
    Ok(r)
}

/// WELCOME body for protocol version 1: the version and the largest frame the server accepts.
pub fn encode_welcome(max_frame: u32) -> Vec<u8> {
    encode_welcome_version(PROTOCOL, max_frame)
}

/// WELCOME body: the protocol version the server speaks on this connection and the largest
/// frame it accepts.
pub fn encode_welcome_version(version: u16, max_frame: u32) -> Vec<u8> {
    let mut b = version.to_le_bytes().to_vec();
    b.extend_from_slice(&max_frame.to_le_bytes());
    b
}

pub fn decode_welcome(body: &[u8]) -> Result<(u16, u32), String> {
    let mut c = Cursor::new(body);
    let r = (c.u16()?, c.u32()?);
    c.done()?;
    Ok(r)
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | ((a.len() ^ b.len()) >> 8) as u8;
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0 && a.len() == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_roundtrip_and_bad_dates() {
        let h = Hello {
            version: PROTOCOL,
            token: b"t".to_vec(),
            role: Role::Follower(Position::Open {
                date: Date::parse("20260101").unwrap(),
                count: 5,
            }),
        };
        assert_eq!(Hello::decode(&h.encode()).unwrap(), h);
        let mut b = h.encode();
        let n = b.len();
        b[n - 12..n - 8].copy_from_slice(&9999_9999u32.to_le_bytes());
        assert!(Hello::decode(&b).is_err());
    }

    #[test]
    fn batches_and_bombs() {
        let mut raw = Vec::new();
        batch_record(&mut raw, 1, 2, b"abc");
        batch_record(&mut raw, 3, 4, b"");
        let mut body = Vec::new();
        batch_head(&mut body, 7, 100, 2, CODEC_NONE, raw.len() as u32);
        body.extend_from_slice(&raw);
        let b = decode_batch(&body, 1 << 20, 10).unwrap();
        assert_eq!(b.records.len(), 2);
        assert_eq!(&b.data[b.records[0].start..][..3], b"abc");
        assert!(decode_batch(&body[..body.len() - 1], 1 << 20, 10).is_err());
        assert!(decode_batch(&body, 1 << 20, 1).is_err());
        // A bomb: 64 MiB of zeros announced as 100 bytes, and announced as too big.
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&vec![0u8; 64 << 20]).unwrap();
        let z = z.finish().unwrap();
        for announced in [100u32, u32::MAX] {
            let mut body = Vec::new();
            batch_head(&mut body, 7, 0, 1, CODEC_ZLIB, announced);
            body.extend_from_slice(&z);
            assert!(matches!(
                decode_batch(&body, 1 << 20, 10),
                Err(BatchError::Bomb(_))
            ));
        }
    }

    #[test]
    fn frames_are_bounded() {
        let mut big = Vec::new();
        big.extend_from_slice(&u32::MAX.to_le_bytes());
        let mut body = Vec::new();
        assert!(matches!(
            read_frame(&mut &big[..], 1024, &mut body),
            Err(FrameError::TooLarge(_))
        ));
        // A header that claims 16 MiB, followed by 10 bytes: the buffer grows only by a step.
        let mut claim = ((16u32 << 20) + 1).to_le_bytes().to_vec();
        claim.push(BATCH);
        claim.extend_from_slice(&[7; 10]);
        let mut body = Vec::new();
        assert!(matches!(
            read_frame(&mut &claim[..], DEFAULT_MAX_FRAME, &mut body),
            Err(FrameError::Io(_))
        ));
        assert!(body.capacity() <= 2 * BODY_STEP, "{}", body.capacity());
        // Bodies larger than a step arrive whole.
        let mut out = Vec::new();
        let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        write_frame(&mut out, BATCH, &big).unwrap();
        assert_eq!(
            read_frame(&mut &out[..], 1 << 20, &mut body).unwrap(),
            BATCH
        );
        assert_eq!(body, big);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
