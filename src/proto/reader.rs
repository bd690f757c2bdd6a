//! The reading side of a store: its date folders, and the index entries and records of a date,
//! by record id. Used by
//! `rlogd cat`/`tail`, by the master to stream a date to its followers, and by tests.
//!
//! Every record read is checked against its index entry and its CRC; damage is an error, never
//! a panic or a wrong record.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::format::{
    self, Date, Entry, Meta, SenderAddr, ENTRY, FILE_HEADER, FLAG_SENDER, RECORD_HEADER,
};

/// The date folders under `root`, oldest first. Entries whose name is not a date are skipped.
pub fn list_dates(root: &Path) -> io::Result<Vec<Date>> {
    let mut out = Vec::new();
    for e in fs::read_dir(root)? {
        let e = e?;
        if let Some(d) = e.file_name().to_str().and_then(|s| Date::parse(s).ok()) {
            if e.file_type()?.is_dir() {
                out.push(d);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a date folder has been sealed.
pub fn is_sealed(root: &Path, date: Date) -> bool {
    root.join(date.to_string()).join("finish").exists()
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// An open date folder.
pub struct DateReader {
    pub date: Date,
    /// The format version of its files (1 or 2).
    pub version: u32,
    dir: std::path::PathBuf,
    index: File,
    data: Option<(u32, File)>,
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: u64,
    pub meta: Meta,
    /// Where a plain sender's record came from (version 2); `None` for librlog producers'
    /// records and every record of a version-1 date.
    pub sender: Option<SenderAddr>,
    /// The payload as received (without the sender prefix).
    pub payload: Vec<u8>,
}

impl DateReader {
    /// Opens the date folder `date` under `root`. Errors: missing folder or index, bad header.
    pub fn open(root: &Path, date: Date) -> io::Result<DateReader> {
        let dir = root.join(date.to_string());
        let index = File::open(dir.join("index"))?;
        let mut h = [0u8; FILE_HEADER];
        index.read_exact_at(&mut h, 0)?;
        let version = format::check_header(&h, true)
            .map_err(|e| bad(format!("{}/index: {e}", dir.display())))?;
        Ok(DateReader {
            date,
            version,
            dir,
            index,
            data: None,
        })
    }

    /// Whole entries in the index file now (a writer may be appending; for the open date of a
    /// running collector only the committed count it publishes is safe to read up to).
    pub fn count_on_disk(&self) -> io::Result<u64> {
        let len = self.index.metadata()?.len();
        Ok(len.saturating_sub(FILE_HEADER as u64) / ENTRY as u64)
    }

    /// Reads the raw bytes of entries `from..from+n` into `out`. Errors: I/O, entries past the
    /// end of the index (any `from`, a follower's position included, is an error, not an
    /// overflow).
    pub fn raw_entries(&self, from: u64, n: usize, out: &mut Vec<u8>) -> io::Result<()> {
        let at = from
            .checked_mul(ENTRY as u64)
            .and_then(|o| o.checked_add(FILE_HEADER as u64))
            .filter(|o| o.checked_add((n * ENTRY) as u64).is_some())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("record {from} is past the end of any index"),
                )
            })?;
        let start = out.len();
        out.resize(start + n * ENTRY, 0);
        let r = self.index.read_exact_at(&mut out[start..], at);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    /// Entry `id`.
    pub fn entry(&self, id: u64) -> io::Result<Entry> {
        let mut raw = Vec::with_capacity(ENTRY);
        self.raw_entries(id, 1, &mut raw)?;
        Entry::decode(&raw)
            .and_then(|e| e.fits_version(self.version).map(|()| e))
            .map_err(|e| bad(format!("{}/index: record {id}: {e}", self.dir.display())))
    }

    /// Appends the raw record (header and payload) `e` points to onto `out`, checked against the
    /// entry and its CRC. Errors: I/O, damage (a data file of another version than the index
    /// included).
    pub fn raw_record(&mut self, id: u64, e: &Entry, out: &mut Vec<u8>) -> io::Result<()> {
        e.fits_version(self.version)
            .map_err(|m| self.damage(id, m))?;
        if self.data.as_ref().is_none_or(|(n, _)| *n != e.file) {
            let name = format::data_name(e.file);
            let f = File::open(self.dir.join(&name))?;
            let mut h = [0u8; FILE_HEADER];
            f.read_exact_at(&mut h, 0)?;
            match format::check_header(&h, false) {
                Ok(v) if v == self.version => {}
                Ok(v) => {
                    return Err(self.damage(
                        id,
                        format!("{name} is version {v}, its index version {}", self.version),
                    ))
                }
                Err(m) => return Err(self.damage(id, format!("{name}: {m}"))),
            }
            self.data = Some((e.file, f));
        }
        let (_, f) = self.data.as_ref().expect("opened above");
        let start = out.len();
        out.resize(start + RECORD_HEADER + e.len as usize, 0);
        f.read_exact_at(&mut out[start..], e.offset as u64)?;
        let rec = &out[start..];
        let h = format::decode_record_header(rec).map_err(|m| self.damage(id, m))?;
        if !e.matches(&h) {
            return Err(self.damage(id, "record header does not match its index entry".into()));
        }
        if h.crc != format::record_crc(rec) {
            return Err(self.damage(id, "CRC mismatch".into()));
        }
        Ok(())
    }

    fn damage(&self, id: u64, msg: String) -> io::Error {
        bad(format!("{}: record {id}: {msg}", self.dir.display()))
    }

    /// Record `id`, checked.
    pub fn record(&mut self, id: u64) -> io::Result<Record> {
        let e = self.entry(id)?;
        let mut raw = Vec::with_capacity(RECORD_HEADER + e.len as usize);
        self.raw_record(id, &e, &mut raw)?;
        let h = format::decode_record_header(&raw).map_err(bad)?;
        let mut sender = None;
        let mut skip = RECORD_HEADER;
        if h.flags & FLAG_SENDER != 0 {
            let (s, rest) =
                SenderAddr::split(&raw[RECORD_HEADER..]).map_err(|m| self.damage(id, m))?;
            skip = raw.len() - rest.len();
            sender = Some(s);
        }
        raw.drain(..skip);
        Ok(Record {
            id,
            meta: h.meta,
            sender,
            payload: raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (fuzz/ target `store`): the offset of entry `id` was computed with
    /// wrapping arithmetic in release builds (a panic with overflow checks), so entry 2^59 read
    /// entry 0 and was returned as if it existed.
    #[test]
    fn ids_past_any_index_are_errors_not_wrapped_offsets() {
        let root = std::env::temp_dir().join(format!("rlog-reader-test-{}", std::process::id()));
        let date = Date::parse("20260101").unwrap();
        let dir = root.join(date.to_string());
        fs::create_dir_all(&dir).unwrap();
        let mut meta = Meta::default();
        let mut data = format::data_header().to_vec();
        let mut index = format::index_header().to_vec();
        for seq in 0..2u64 {
            meta.seq = seq;
            let offset = data.len() as u32;
            format::encode_record(&mut data, &meta, b"payload");
            let e = Entry {
                file: 0,
                offset,
                len: 7,
                rtype: 0,
                flags: 0,
                producer: 0,
                seq,
            };
            index.extend_from_slice(&e.encode());
        }
        fs::write(dir.join("index"), &index).unwrap();
        fs::write(dir.join(format::data_name(0)), &data).unwrap();

        let mut r = DateReader::open(&root, date).unwrap();
        assert_eq!(r.count_on_disk().unwrap(), 2);
        assert_eq!(r.record(1).unwrap().meta.seq, 1);
        for id in [2, 1 << 59, (1 << 59) + 1, u64::MAX / 32, u64::MAX] {
            assert!(r.entry(id).is_err(), "entry {id}");
            assert!(r.record(id).is_err(), "record {id}");
        }
        let mut out = vec![9u8];
        assert!(r.raw_entries(u64::MAX, 1, &mut out).is_err());
        assert_eq!(out, [9]);
        fs::remove_dir_all(&root).unwrap();
    }
}
