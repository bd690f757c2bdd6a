//! The writing side of an rlogd store: one folder per date, an append-only index and rotated
//! data files, group commit (write, then `fsync`, then acknowledge), sealing, and recovery of a
//! torn tail after a crash.
//!
//! A [`Store`] has at most one *open* date, always the newest folder; every older folder is
//! sealed (`finish` written). Both the collector and the follower write through it: the
//! collector with [`Store::append`], the follower with [`Store::append_replica`], which places
//! each record exactly where the master placed it so the files are byte-identical.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rlog::proto::format::{
    self, Date, Entry, Meta, SenderAddr, ENTRY, FILE_HEADER, FLAG_SENDER, RECORD_HEADER,
};
pub use rlog::proto::reader::{is_sealed, list_dates};

/// Tuning of a store.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// A data file is rotated before it would grow past this many bytes.
    pub file_size: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            file_size: 64 << 20,
        }
    }
}

/// The smallest and largest `file_size` accepted: a record of [`format::MAX_PAYLOAD`] must
/// fit, and offsets are 32-bit.
pub const MIN_FILE_SIZE: u64 = (format::MAX_PAYLOAD + RECORD_HEADER + FILE_HEADER) as u64;
pub const MAX_FILE_SIZE: u64 = u32::MAX as u64;

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What a scan of one date folder found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The date's format version (from its index header; from `data000000`'s when the index is
    /// missing or torn; the current version when neither says).
    pub version: u32,
    /// Leading index entries that are sound.
    pub entries: u64,
    /// Data file and offset where the next record goes (just past the last sound one).
    pub file: u32,
    pub end: u64,
    /// Damage found, in words; empty when the folder is sound.
    pub problems: Vec<String>,
    /// Highest sequence number per producer among the sound entries.
    pub producers: HashMap<u64, u64>,
}

/// Reads the data files of a date sequentially to check each record against its entry.
struct DataCursor {
    file: u32,
    reader: BufReader<File>,
    pos: u64,
}

/// Scans a date folder: index header and entries, the chain of record positions, data file
/// sizes, and the CRC of every record in data files numbered `crc_from` or above.
/// Errors: I/O errors, and damage that recovery must not repair by itself (a bad index header,
/// an index missing while data exists).
pub fn scan_date(dir: &Path, crc_from: u32) -> io::Result<Scan> {
    let mut scan = Scan {
        version: first_data_version(dir).unwrap_or(format::VERSION),
        file: 0,
        end: FILE_HEADER as u64,
        ..Scan::default()
    };
    let index_path = dir.join("index");
    let mut index = match File::open(&index_path) {
        Ok(f) => BufReader::with_capacity(1 << 20, f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let d0 = dir.join(format::data_name(0));
            let d0_len = fs::metadata(&d0).map(|m| m.len()).unwrap_or(0);
            if d0_len > FILE_HEADER as u64 {
                return Err(bad(format!(
                    "{}: missing while data exists",
                    index_path.display()
                )));
            }
            scan.problems
                .push(format!("{}: missing", index_path.display()));
            return Ok(scan);
        }
        Err(e) => return Err(e),
    };
    let index_len = index.get_ref().metadata()?.len();
    let mut head = [0u8; FILE_HEADER];
    if index_len < FILE_HEADER as u64 {
        if index_len > 0 {
            index.read_exact(&mut head[..index_len as usize])?;
            let n = index_len as usize;
            if head[..n] != format::index_header_of(scan.version)[..n] {
                return Err(bad(format!("{}: bad header", index_path.display())));
            }
        }
        scan.problems.push(format!(
            "{}: torn header ({index_len} bytes)",
            index_path.display()
        ));
        return Ok(scan);
    }
    index.read_exact(&mut head)?;
    scan.version = format::check_header(&head, true)
        .map_err(|e| bad(format!("{}: {e}", index_path.display())))?;
    let body = index_len - FILE_HEADER as u64;
    let whole = body / ENTRY as u64;
    let mut sizes: HashMap<u32, u64> = HashMap::new();
    let mut size_of = |n: u32| -> io::Result<Option<u64>> {
        if let Some(s) = sizes.get(&n) {
            return Ok(Some(*s));
        }
        match fs::metadata(dir.join(format::data_name(n))) {
            Ok(m) => {
                sizes.insert(n, m.len());
                Ok(Some(m.len()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    };
    let mut cursor: Option<DataCursor> = None;
    let mut raw = [0u8; ENTRY];
    let mut rec = Vec::new();
    for id in 0..whole {
        index.read_exact(&mut raw)?;
        let at = |msg: String| format!("{}: record {id}: {msg}", dir.display());
        let e = match Entry::decode(&raw).and_then(|e| e.fits_version(scan.version).map(|()| e)) {
            Ok(e) => e,
            Err(msg) => {
                scan.problems.push(at(msg));
                break;
            }
        };
        let placed = (e.file == scan.file && e.offset as u64 == scan.end)
            || (e.file == scan.file + 1 && e.offset as usize == FILE_HEADER);
        if !placed {
            scan.problems.push(at(format!(
                "index entry points to {}@{}, expected {}@{} or the start of the next file",
                format::data_name(e.file),
                e.offset,
                format::data_name(scan.file),
                scan.end
            )));
            break;
        }
        match size_of(e.file)? {
            None => {
                scan.problems
                    .push(at(format!("{} is missing", format::data_name(e.file))));
                break;
            }
            Some(size) if size < e.end() => {
                scan.problems.push(at(format!(
                    "index entry points past the end of {} ({} > {size} bytes)",
                    format::data_name(e.file),
                    e.end()
                )));
                break;
            }
            Some(_) => {}
        }
        if e.file >= crc_from {
            if cursor.as_ref().is_none_or(|c| c.file != e.file) {
                let mut f = BufReader::with_capacity(
                    1 << 20,
                    File::open(dir.join(format::data_name(e.file)))?,
                );
                let mut h = [0u8; FILE_HEADER];
                f.read_exact(&mut h)?;
                let problem = match format::check_header(&h, false) {
                    Ok(v) if v == scan.version => None,
                    Ok(v) => Some(format!("version {v}, the index version {}", scan.version)),
                    Err(msg) => Some(msg),
                };
                if let Some(msg) = problem {
                    scan.problems
                        .push(at(format!("{}: {msg}", format::data_name(e.file))));
                    break;
                }
                if e.offset as usize != FILE_HEADER {
                    f.seek(SeekFrom::Start(e.offset as u64))?;
                }
                cursor = Some(DataCursor {
                    file: e.file,
                    reader: f,
                    pos: e.offset as u64,
                });
            }
            let c = cursor.as_mut().expect("opened above");
            debug_assert_eq!(c.pos, e.offset as u64);
            rec.resize(RECORD_HEADER + e.len as usize, 0);
            c.reader.read_exact(&mut rec)?;
            c.pos = e.end();
            let problem = match format::decode_record_header(&rec) {
                Err(msg) => Some(msg),
                Ok(h) if !e.matches(&h) => {
                    Some("record header does not match its index entry".into())
                }
                Ok(h) if h.crc != format::record_crc(&rec) => Some("CRC mismatch".into()),
                Ok(h) if h.flags & FLAG_SENDER != 0 => {
                    SenderAddr::split(&rec[RECORD_HEADER..]).err()
                }
                Ok(_) => None,
            };
            if let Some(msg) = problem {
                scan.problems.push(at(msg));
                break;
            }
        }
        scan.entries += 1;
        scan.file = e.file;
        scan.end = e.end();
        if e.producer != 0 {
            let s = scan.producers.entry(e.producer).or_insert(e.seq);
            *s = (*s).max(e.seq);
        }
    }
    if scan.problems.is_empty() && body % ENTRY as u64 != 0 {
        scan.problems.push(format!(
            "{}: {} trailing bytes (a torn entry)",
            index_path.display(),
            body % ENTRY as u64
        ));
    }
    // Data past the last sound record, and data files nothing points to.
    match size_of(scan.file)? {
        Some(size) if size > scan.end => scan.problems.push(format!(
            "{}: {} bytes after the last indexed record",
            dir.join(format::data_name(scan.file)).display(),
            size - scan.end
        )),
        Some(size) if size < FILE_HEADER as u64 => scan.problems.push(format!(
            "{}: torn header",
            dir.join(format::data_name(scan.file)).display()
        )),
        None => scan.problems.push(format!(
            "{}: missing",
            dir.join(format::data_name(scan.file)).display()
        )),
        Some(_) => {}
    }
    for n in data_files(dir)? {
        if n > scan.file {
            scan.problems.push(format!(
                "{}: not referenced by the index",
                dir.join(format::data_name(n)).display()
            ));
        }
    }
    Ok(scan)
}

/// The version in `data000000`'s header, if it has a sound one.
fn first_data_version(dir: &Path) -> Option<u32> {
    let mut h = [0u8; FILE_HEADER];
    File::open(dir.join(format::data_name(0)))
        .and_then(|mut f| f.read_exact(&mut h))
        .ok()?;
    format::check_header(&h, false).ok()
}

/// Numbers of the data files in a date folder.
fn data_files(dir: &Path) -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        let Some(s) = name.to_str() else { continue };
        if let Some(n) = s.strip_prefix("data") {
            if n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()) {
                out.push(n.parse().unwrap());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The open date: files positioned at their ends, with writes pending until [`commit`].
///
/// [`commit`]: DateWriter::commit
pub struct DateWriter {
    pub date: Date,
    /// Format version of this date's files: senders are stored only in version 2.
    version: u32,
    dir: PathBuf,
    index: File,
    data: File,
    /// Data file being written, its length (written + pending).
    file: u32,
    end: u64,
    /// Records in the index (written + pending).
    count: u64,
    dbuf: Vec<u8>,
    ibuf: Vec<u8>,
    /// A data file was created since the last commit: the folder must be synced.
    dir_dirty: bool,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).open(path)
}

fn create_with(path: &Path, header: &[u8]) -> io::Result<File> {
    let mut f = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path)?;
    f.write_all(header)?;
    Ok(f)
}

impl DateWriter {
    /// Creates a new date folder with an empty index and `data000000`, synced. The folder is
    /// built under a temporary name and renamed into place, so a reader never sees a date
    /// folder without its files.
    fn create(root: &Path, date: Date, version: u32) -> io::Result<DateWriter> {
        let dir = root.join(date.to_string());
        let tmp = root.join(format!(".{date}.new"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?; // left by a crash during a previous attempt
        }
        fs::create_dir(&tmp)?;
        create_with(&tmp.join("index"), &format::index_header_of(version))?.sync_all()?;
        create_with(
            &tmp.join(format::data_name(0)),
            &format::data_header_of(version),
        )?
        .sync_all()?;
        sync_dir(&tmp)?;
        fs::rename(&tmp, &dir)?;
        sync_dir(root)?;
        let index = open_append(&dir.join("index"))?;
        let data = open_append(&dir.join(format::data_name(0)))?;
        Ok(DateWriter {
            date,
            version,
            dir,
            index,
            data,
            file: 0,
            end: FILE_HEADER as u64,
            count: 0,
            dbuf: Vec::new(),
            ibuf: Vec::new(),
            dir_dirty: false,
        })
    }

    /// Opens an unsealed date folder, cutting off a torn tail (entries that do not check out,
    /// data after the last indexed record, unreferenced data files). Returns what was repaired.
    /// Errors: I/O, or damage that must not be repaired silently (see [`scan_date`]).
    fn recover(root: &Path, date: Date) -> io::Result<(DateWriter, Scan)> {
        let dir = root.join(date.to_string());
        let last = data_files(&dir)?.last().copied().unwrap_or(0);
        let scan = scan_date(&dir, last.saturating_sub(1))?;
        let index_path = dir.join("index");
        if !index_path.exists() || fs::metadata(&index_path)?.len() < FILE_HEADER as u64 {
            let mut f = File::create(&index_path)?;
            f.write_all(&format::index_header_of(scan.version))?;
        }
        let index = open_append(&index_path)?;
        index.set_len(FILE_HEADER as u64 + scan.entries * ENTRY as u64)?;
        for n in data_files(&dir)? {
            if n > scan.file {
                fs::remove_file(dir.join(format::data_name(n)))?;
            }
        }
        let data_path = dir.join(format::data_name(scan.file));
        let data_len = fs::metadata(&data_path).map(|m| m.len()).unwrap_or(0);
        if data_len < FILE_HEADER as u64 {
            let mut f = File::create(&data_path)?;
            f.write_all(&format::data_header_of(scan.version))?;
        }
        let data = open_append(&data_path)?;
        data.set_len(scan.end)?;
        index.sync_all()?;
        data.sync_all()?;
        sync_dir(&dir)?;
        let w = DateWriter {
            date,
            version: scan.version,
            dir,
            index,
            data,
            file: scan.file,
            end: scan.end,
            count: scan.entries,
            dbuf: Vec::new(),
            ibuf: Vec::new(),
            dir_dirty: false,
        };
        Ok((w, scan))
    }

    fn write_pending_data(&mut self) -> io::Result<()> {
        if !self.dbuf.is_empty() {
            self.data.write_all(&self.dbuf)?;
            self.dbuf.clear();
        }
        Ok(())
    }

    /// Starts data file `file + 1`, after syncing the current one.
    fn rotate(&mut self) -> io::Result<()> {
        self.write_pending_data()?;
        self.data.sync_data()?;
        let next = self.file + 1;
        self.data = create_with(
            &self.dir.join(format::data_name(next)),
            &format::data_header_of(self.version),
        )?;
        self.file = next;
        self.end = FILE_HEADER as u64;
        self.dir_dirty = true;
        Ok(())
    }

    fn push(&mut self, entry: &Entry, record: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        record(&mut self.dbuf);
        self.ibuf.extend_from_slice(&entry.encode());
        self.end = entry.end();
        self.count += 1;
        if self.dbuf.len() >= 4 << 20 {
            self.write_pending_data()?;
        }
        Ok(())
    }

    /// Appends one record (not yet durable: see [`commit`](DateWriter::commit)). The sender
    /// is stored in a version-2 date, and left out of a version-1 one (a date an older rlogd
    /// opened, until it is sealed). Errors: I/O, or the record with its sender prefix over
    /// [`format::MAX_PAYLOAD`].
    fn append(
        &mut self,
        meta: &Meta,
        sender: Option<&SenderAddr>,
        payload: &[u8],
        opts: &Options,
    ) -> io::Result<Entry> {
        let sender = sender.filter(|_| self.version >= 2);
        let len = sender.map_or(0, |s| s.encoded_len()) + payload.len();
        if len > format::MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a record of {len} bytes exceeds {}", format::MAX_PAYLOAD),
            ));
        }
        let size = (RECORD_HEADER + len) as u64;
        if self.end + size > opts.file_size && self.end > FILE_HEADER as u64 {
            self.rotate()?;
        }
        let entry = Entry {
            file: self.file,
            offset: self.end as u32,
            len: len as u32,
            rtype: meta.rtype,
            flags: if sender.is_some() { FLAG_SENDER } else { 0 },
            producer: meta.producer,
            seq: meta.seq,
        };
        self.push(&entry, |buf| {
            format::encode_record_from(buf, meta, sender, payload)
        })?;
        Ok(entry)
    }

    /// Appends a record exactly as the master stored it. Errors (the master sent something
    /// inconsistent): the entry is not at this store's next position (same file, or the start of
    /// the next one), or the record does not match the entry or its CRC.
    fn append_replica(&mut self, entry: &Entry, record: &[u8]) -> Result<(), String> {
        entry.fits_version(self.version)?;
        let h = format::decode_record_header(record)?;
        if record.len() != RECORD_HEADER + h.len as usize || !entry.matches(&h) {
            return Err("record does not match its index entry".into());
        }
        if h.crc != format::record_crc(record) {
            return Err("record CRC mismatch".into());
        }
        let same = entry.file == self.file && entry.offset as u64 == self.end;
        let next = entry.file == self.file + 1 && entry.offset as usize == FILE_HEADER;
        if !same && !next {
            return Err(format!(
                "record placed at {}@{}, expected {}@{}",
                format::data_name(entry.file),
                entry.offset,
                format::data_name(self.file),
                self.end
            ));
        }
        if next {
            self.rotate().map_err(|e| e.to_string())?;
        }
        self.push(entry, |buf| buf.extend_from_slice(record))
            .map_err(|e| e.to_string())
    }

    /// Makes everything appended so far durable: writes the pending bytes, `fsync`s the data
    /// file, then the index (and the folder if a data file was created).
    fn commit(&mut self) -> io::Result<()> {
        self.write_pending_data()?;
        if !self.ibuf.is_empty() {
            self.index.write_all(&self.ibuf)?;
            self.ibuf.clear();
            self.data.sync_data()?;
            self.index.sync_data()?;
        }
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Commits, then writes `finish` and syncs the folder: nothing more goes into this date.
    fn seal(mut self) -> io::Result<()> {
        self.commit()?;
        File::create(self.dir.join("finish"))?.sync_all()?;
        sync_dir(&self.dir)
    }
}

/// The producers whose last sequence numbers are remembered, for dropping resent records.
/// Kept for the open date and the one before it (see docs/STORAGE.md).
#[derive(Debug, Default)]
pub struct Producers {
    current: HashMap<u64, u64>,
    previous: HashMap<u64, u64>,
}

impl Producers {
    /// The highest stored sequence of `producer`, if it is remembered.
    pub fn last(&self, producer: u64) -> Option<u64> {
        match (self.current.get(&producer), self.previous.get(&producer)) {
            (Some(a), Some(b)) => Some(*a.max(b)),
            (a, b) => a.or(b).copied(),
        }
    }

    pub fn record(&mut self, producer: u64, seq: u64) {
        let s = self.current.entry(producer).or_insert(seq);
        *s = (*s).max(seq);
    }

    /// A new date begins: forget producers not seen in the last two dates.
    fn roll(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }
}

/// What opening a store repaired or noticed.
#[derive(Debug, Default)]
pub struct OpenReport {
    pub repairs: Vec<String>,
}

/// A store rooted at a folder, with at most one open date.
pub struct Store {
    root: PathBuf,
    opts: Options,
    open: Option<DateWriter>,
    /// The newest date folder (open or sealed).
    newest: Option<Date>,
    pub producers: Producers,
}

impl Store {
    /// Opens (creating `root` if needed) and recovers a store: the newest unsealed date has its
    /// torn tail cut off; an older unsealed date (a crash while sealing) is recovered and sealed.
    /// Errors: I/O, or damage recovery must not repair alone.
    pub fn open(root: &Path, opts: Options) -> io::Result<(Store, OpenReport)> {
        if !(MIN_FILE_SIZE..=MAX_FILE_SIZE).contains(&opts.file_size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("data file size must be between {MIN_FILE_SIZE} and {MAX_FILE_SIZE} bytes"),
            ));
        }
        fs::create_dir_all(root)?;
        let mut report = OpenReport::default();
        let dates = list_dates(root)?;
        let mut store = Store {
            root: root.to_path_buf(),
            opts,
            open: None,
            newest: dates.last().copied(),
            producers: Producers::default(),
        };
        // The recovery scan of the open date already read its index: keep its producers.
        let mut open_producers = None;
        for (i, &d) in dates.iter().enumerate() {
            let newest = i + 1 == dates.len();
            if is_sealed(root, d) {
                continue;
            }
            let (w, scan) = DateWriter::recover(root, d)?;
            for p in &scan.problems {
                report.repairs.push(format!("repaired: {p}"));
            }
            if newest {
                store.open = Some(w);
                open_producers = Some(scan.producers);
            } else {
                report.repairs.push(format!(
                    "sealed {d}, an unsealed date older than {}",
                    dates[dates.len() - 1]
                ));
                w.seal()?;
            }
        }
        // Remember producers from the last two dates.
        let tail = &dates[dates.len().saturating_sub(2)..];
        for (i, &d) in tail.iter().enumerate() {
            if i + 1 == tail.len() && tail.len() == 2 {
                store.producers.roll();
            }
            let producers = match open_producers.take() {
                Some(p) if i + 1 == tail.len() => p,
                other => {
                    open_producers = other;
                    scan_date(&root.join(d.to_string()), u32::MAX)?.producers
                }
            };
            for (p, s) in producers {
                store.producers.record(p, s);
            }
        }
        Ok((store, report))
    }

    /// The open date and its record count (pending included).
    pub fn open_date(&self) -> Option<(Date, u64)> {
        self.open.as_ref().map(|w| (w.date, w.count))
    }

    /// The format version of the open date.
    pub fn open_version(&self) -> Option<u32> {
        self.open.as_ref().map(|w| w.version)
    }

    /// The newest date folder, open or sealed.
    pub fn newest(&self) -> Option<Date> {
        self.newest
    }

    /// Seals the open date, if any.
    pub fn seal(&mut self) -> io::Result<()> {
        if let Some(w) = self.open.take() {
            w.seal()?;
        }
        Ok(())
    }

    /// Makes `date` the open date, in format `version`: seals the open one and creates the
    /// folder. `date` must be newer than every existing date. Errors: I/O, `date` not newer, a
    /// version this build cannot write.
    pub fn begin(&mut self, date: Date, version: u32) -> io::Result<()> {
        if !format::VERSIONS.contains(&version) {
            return Err(bad(format!("cannot write format version {version}")));
        }
        if self.newest.is_some_and(|n| date <= n) {
            return Err(bad(format!(
                "date {date} is not newer than the newest date in the store"
            )));
        }
        self.seal()?;
        self.open = Some(DateWriter::create(&self.root, date, version)?);
        self.newest = Some(date);
        self.producers.roll();
        Ok(())
    }

    /// The date a record of time `time_us` is stored under, given the server's `today`: its own
    /// date if that is the open date, or a newer one (up to `today`); otherwise (a late record)
    /// the open date, or the day after the newest sealed date.
    pub fn date_for(&self, time_us: i64, today: Date) -> Date {
        let own = Date::of_micros(time_us).min(today);
        match (&self.open, self.newest) {
            (Some(w), _) => own.max(w.date),
            (None, Some(sealed)) => own.max(sealed.add_days(1)),
            (None, None) => own,
        }
    }

    /// Appends a record under `date` (opening it, sealing the previous one, when it is newer
    /// than the open date, in the current format version). Not durable until
    /// [`commit`](Store::commit).
    pub fn append(
        &mut self,
        date: Date,
        meta: &Meta,
        sender: Option<&SenderAddr>,
        payload: &[u8],
    ) -> io::Result<Entry> {
        if self.open.as_ref().is_none_or(|w| w.date != date) {
            self.begin(date, format::VERSION)?;
        }
        let opts = self.opts;
        let w = self.open.as_mut().expect("opened above");
        let e = w.append(meta, sender, payload, &opts)?;
        if meta.producer != 0 {
            self.producers.record(meta.producer, meta.seq);
        }
        Ok(e)
    }

    /// Appends a replicated record to the open date. Errors: see
    /// [`DateWriter::append_replica`]; no open date.
    pub fn append_replica(&mut self, entry: &Entry, record: &[u8]) -> Result<(), String> {
        let w = self.open.as_mut().ok_or("no open date to append to")?;
        w.append_replica(entry, record)
    }

    /// Makes every appended record durable.
    pub fn commit(&mut self) -> io::Result<()> {
        match self.open.as_mut() {
            Some(w) => w.commit(),
            None => Ok(()),
        }
    }

    /// Deletes sealed date folders older than `keep_from`. Returns the dates deleted.
    pub fn retain(&mut self, keep_from: Date) -> io::Result<Vec<Date>> {
        let mut gone = Vec::new();
        for d in list_dates(&self.root)? {
            if d >= keep_from
                || self.open.as_ref().is_some_and(|w| w.date == d)
                || Some(d) == self.newest
            {
                continue;
            }
            if is_sealed(&self.root, d) {
                fs::remove_dir_all(self.root.join(d.to_string()))?;
                gone.push(d);
            }
        }
        if !gone.is_empty() {
            sync_dir(&self.root)?;
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("rlogd-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    fn meta(t: i64, seq: u64) -> Meta {
        Meta {
            time_us: t,
            rtype: 3,
            producer: 42,
            seq,
        }
    }

    #[test]
    fn append_commit_rotate_recover() {
        let root = tmp("rot");
        let opts = Options {
            file_size: MIN_FILE_SIZE,
        };
        let (mut s, rep) = Store::open(&root, opts).unwrap();
        assert!(rep.repairs.is_empty());
        let d = Date::parse("20260101").unwrap();
        let big = vec![7u8; format::MAX_PAYLOAD / 2];
        for i in 0..5 {
            s.append(d, &meta(0, i), None, &big).unwrap();
        }
        s.commit().unwrap();
        drop(s);
        let dir = root.join("20260101");
        // One 8 MiB record per file at this size.
        assert!(dir.join("data000004").exists());
        let scan = scan_date(&dir, 0).unwrap();
        assert_eq!(scan.entries, 5);
        assert!(scan.problems.is_empty(), "{:?}", scan.problems);
        // Tear the tail: garbage after the data, a half entry in the index.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join("data000004"))
            .unwrap();
        f.write_all(b"garbage").unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join("index"))
            .unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
        let (s, rep) = Store::open(&root, opts).unwrap();
        assert_eq!(rep.repairs.len(), 2, "{:?}", rep.repairs);
        assert_eq!(s.open_date(), Some((d, 5)));
        assert_eq!(s.producers.last(42), Some(4));
        drop(s);
        // Corrupt the last record's payload: it is cut off.
        let data = dir.join("data000004");
        let len = fs::metadata(&data).unwrap().len();
        let f = OpenOptions::new().write(true).open(&data).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"X", len - 1).unwrap();
        let (s, rep) = Store::open(&root, opts).unwrap();
        assert_eq!(s.open_date(), Some((d, 4)), "{:?}", rep.repairs);
        assert!(scan_date(&dir, 0).unwrap().problems.is_empty());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn senders_in_version_2_only_and_versions_survive_recovery() {
        let root = tmp("versions");
        let (mut s, _) = Store::open(&root, Options::default()).unwrap();
        let (d1, d2) = (
            Date::parse("20260101").unwrap(),
            Date::parse("20260102").unwrap(),
        );
        let from = SenderAddr::ip("192.0.2.7:514".parse().unwrap());
        // A version-1 open date (as an older rlogd left it): the sender is left out.
        s.begin(d1, 1).unwrap();
        let e = s.append(d1, &meta(0, 1), Some(&from), b"old").unwrap();
        assert_eq!((e.flags, e.len), (0, 3));
        s.commit().unwrap();
        drop(s);
        let (mut s, rep) = Store::open(&root, Options::default()).unwrap();
        assert!(rep.repairs.is_empty(), "{:?}", rep.repairs);
        assert_eq!(s.open_version(), Some(1));
        s.append(d1, &meta(0, 2), Some(&from), b"still old")
            .unwrap();
        // A newer date is version 2 and keeps the sender.
        let e = s.append(d2, &meta(0, 3), Some(&from), b"new").unwrap();
        assert_eq!((e.flags, e.len), (FLAG_SENDER, 3 + 7));
        s.commit().unwrap();
        drop(s);
        let r1 = rlog::proto::reader::DateReader::open(&root, d1).unwrap();
        assert_eq!((r1.version, r1.count_on_disk().unwrap()), (1, 2));
        let mut r2 = rlog::proto::reader::DateReader::open(&root, d2).unwrap();
        let rec = r2.record(0).unwrap();
        assert_eq!((rec.sender, rec.payload), (Some(from), b"new".to_vec()));
        assert!(scan_date(&root.join("20260102"), 0)
            .unwrap()
            .problems
            .is_empty());
        // A SENDER flag in a version-1 date is damage, cut off by recovery.
        let dir = root.join("20260101");
        let mut idx = fs::read(dir.join("index")).unwrap();
        let last = idx.len() - ENTRY;
        idx[last + 14] = FLAG_SENDER as u8;
        fs::write(dir.join("index"), &idx).unwrap();
        let scan = scan_date(&dir, 0).unwrap();
        assert_eq!(scan.entries, 1);
        assert!(
            scan.problems[0].contains("flags 0x1 in a version-1 date"),
            "{:?}",
            scan.problems
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn dates_seal_and_late_records() {
        let root = tmp("dates");
        let (mut s, _) = Store::open(&root, Options::default()).unwrap();
        let today = Date::parse("20260105").unwrap();
        let t = |d: &str| Date::parse(d).unwrap().end_micros() - 1;
        let d1 = s.date_for(t("20260102"), today);
        assert_eq!(d1.to_string(), "20260102");
        s.append(d1, &meta(t("20260102"), 1), None, b"a").unwrap();
        let d2 = s.date_for(t("20260103"), today);
        s.append(d2, &meta(t("20260103"), 2), None, b"b").unwrap();
        assert!(is_sealed(&root, d1));
        // Late: goes to the open date. Future: clamped to today.
        assert_eq!(s.date_for(t("20260101"), today), d2);
        assert_eq!(s.date_for(t("20270101"), today), today);
        s.seal().unwrap();
        assert_eq!(s.date_for(t("20260101"), today).to_string(), "20260104");
        s.commit().unwrap();
        assert_eq!(
            s.retain(Date::parse("20260103").unwrap()).unwrap(),
            vec![d1]
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
