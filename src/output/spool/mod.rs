//! The disk spool of one output: a crash-safe, append-only queue on disk for the records an
//! output cannot deliver now (SPEC §6 "Spool"). It uses std, libc (`flock`), crc32c and, of the
//! crate, only `sync::ChildCloses` (a fork child closes the lock it inherited) and `civil` (the
//! times `inspect` shows).
//!
//! # Layout
//!
//! ```text
//! <root>/<output_key>/<instance>/          one per OutputSpool (per process, per logger): <pid>-<random>
//!     lock                                 flock(LOCK_EX) held for the life of the spool
//!     pid                                  the owner's pid (for people and `inspect`)
//!     ledger                               how far delivery got (two checksummed slots)
//!     00000000000000000001.seg ...         segments: a header, then CRC'd records (see format.rs)
//!     adopted/<k>-<m>-<instance>/          dead instances taken over, read in place, in name order
//! ```
//!
//! An instance directory is created under a temporary name (`.tmp-...`) and renamed into place
//! only once its lock is held, so another process never mistakes a directory being created for a
//! dead one. **Adoption** takes a dead instance (its lock is free: the process was killed, crashed,
//! exited, or was a prefork worker that died) by renaming its whole directory into this instance's
//! `adopted/`. The rename is the claim: two live processes never both deliver one file, and a
//! directory whose lock is held (its owner is alive, in this process or another) is left alone.
//! Adopted directories keep their own ledger and are read in place, before this instance's own
//! segments. What a dead instance had itself adopted is moved up beside it (before it, in
//! order), so a crash loop does not nest directories one level per restart.
//!
//! # Delivery
//!
//! [`OutputSpool::read`] hands out the next records, oldest first; [`OutputSpool::commit`] says
//! the first `n` of them were delivered (the ledger advances; a segment whose records are all
//! delivered is unlinked, after the ledger is fsynced); [`OutputSpool::rewind`] says they were
//! not (they are read again). Delivery is at least once: a record read but not committed when
//! the process dies, or committed while the ledger could not be made durable (see `SyncMode`),
//! is delivered again by whoever adopts the spool. Record ids are stable across resends, so a
//! collector can drop the duplicates (NATS `Nats-Msg-Id`).
//!
//! # Use from the output driver (one worker thread owns the spool)
//!
//! ```text
//! init:          OutputSpool::open(spool_dir, output_key, opts)   adopts what dead processes left
//!                (or open_without_adopting at rlog_init, then adopt() first thing on the worker)
//! cannot send:   append(&batch)      Full -> count lost; Io -> keep in memory, count, report
//! output is up:  read(n, bytes, &mut v) -> send v -> commit(v.len())  |  rewind() on failure
//! every loop:    maybe_sync()        (SyncMode::Interval)
//! now and then:  adopt()             (a prefork sibling may have died)
//! counters:      stats(): records/bytes = spooled; adopted_*; lost_* -> lost
//! fork child:    spool.after_fork_in_child(); then OutputSpool::open(...) for the child
//! ```
//!
//! `append`, `read` and `commit` do blocking file I/O: call them from the worker, never from
//! `rlog_log`. `open` and `adopt` read every adopted record once (to check its CRC), so their
//! cost grows with what is adopted (one sequential read of it).
//!
//! # What each [`SyncMode`] promises
//!
//! A `kill -9` (or a crash, or `_exit`) of the process never loses a record that `append` returned
//! `Ok` for, in any mode: the bytes are in the kernel's page cache when `append` returns, and the
//! next process adopts them. A record whose `append` was interrupted by the kill is either wholly
//! there or wholly absent with the rest of its batch (a torn batch is cut off at recovery).
//! Records committed just before the kill may be delivered again only if the ledger write itself
//! was cut (the previous slot is used).
//!
//! A power loss (or a kernel crash) is where the modes differ:
//!
//! - [`SyncMode::Batch`]: `append` returns only after `fdatasync` of the segment (and an fsync
//!   of the directory when it created the segment); `commit` returns after `fdatasync` of the
//!   ledger. Nothing acknowledged is lost; nothing committed is delivered again. Costs two
//!   fdatasyncs per batch in `spool_mode = always`.
//! - [`SyncMode::Interval`]`(d)`: data and ledger are fsynced when at least `d` has passed since
//!   the last sync, checked at each `append`/`commit` and at [`OutputSpool::maybe_sync`], which
//!   the driver calls from its loop. A power loss loses at most what was appended since the last
//!   sync (about `d`, plus the time until the next call), and may deliver again what was committed
//!   in that window.
//! - [`SyncMode::None`]: nothing is fsynced (except the ledger before a segment is unlinked); the
//!   kernel writes back when it likes (Linux: typically within 30 s). A power loss can lose what
//!   was not yet written back, whole segments included, and may revert the ledger (duplicates).
//!   Torn or zeroed tails are detected by the CRCs and cut off, never delivered as garbage.
//!
//! # Recovery never wedges
//!
//! Adoption checks every record of every adopted segment: a torn tail (an incomplete last batch)
//! is truncated; a corrupt record (bad CRC, impossible length) is skipped by scanning forward for
//! the next valid record and counted; a zero-length or header-less segment is removed; a segment
//! that cannot be read or has a foreign header is renamed `*.bad`, counted, and left for people
//! (`inspect` lists it); a missing or corrupt ledger means "deliver everything still on disk"
//! (duplicates possible). None of these is an error, a panic or a hang.
//!
//! # Limits
//!
//! - `max_bytes` caps one instance; live sibling processes sharing the directory each have
//!   their own cap, and splitting a logger's `spool_max_bytes` among its outputs is the driver's.
//! - Adopted records are read before this instance's unread ones, even when adopted later than
//!   those were appended: order is kept within each process's records, not across processes.
//! - `corrupt_records` counts damaged spans: one span may hide several records.
//! - `flock` is unreliable on network filesystems: the spool belongs on a local one.
//! - A fork child that does not call `after_fork_in_child` (and does not `exec`) keeps the
//!   parent's instance locked, so nobody adopts it, until the child exits.
//! - On a copy-on-write filesystem even a ledger overwrite needs free space, so a full disk can
//!   block commits there.
//! - `*.bad` files stay, keeping their directory, until someone removes them (`inspect` lists
//!   them).
//! - A host running under `RLIMIT_FSIZE` gets `SIGXFSZ` (fatal by default) when a segment
//!   grows past it: keep `segment_bytes` below the limit there.

mod format;
mod fsutil;
mod inspect;
mod ledger;
#[cfg(test)]
mod tests;

pub use inspect::{inspect, InstanceReport, KeyReport, LedgerStatus, Report};

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use format::{ScanError, SegReader, Step, HEADER_LEN};
use fsutil::{with_path, Lock};
use ledger::{Ledger, LedgerState, Pos};

/// When the spool makes its writes durable (see the module doc for what each mode promises
/// against a `kill -9` and against a power loss).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// fdatasync before `append` and `commit` return.
    Batch,
    /// fdatasync at most this often (and at least this often while there is something to sync
    /// and the driver calls `append`, `commit` or `maybe_sync`).
    Interval(Duration),
    /// Leave write-back to the kernel.
    None,
}

/// How an [`OutputSpool`] stores its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolOptions {
    /// Cap on the bytes of segment files held by this spool (its own and adopted ones, framing
    /// and delivered-but-not-yet-unlinked bytes included), measured from the files at open and
    /// kept up to date after. An `append` that would exceed it fails with [`SpoolError::Full`].
    /// Adoption is never refused by the cap (a dead process's records are taken over anyway);
    /// the spool then refuses appends until delivery brings it under the cap. The cap is this
    /// instance's: live sibling processes (prefork workers) sharing the directory each have
    /// their own.
    pub max_bytes: u64,
    /// Durability of appends and commits.
    pub sync: SyncMode,
    /// A segment is closed and a new one started when a batch would take it past this size
    /// (a batch is never split, so one larger than this gets a segment of its own).
    pub segment_bytes: u64,
}

impl Default for SpoolOptions {
    /// 1 GiB cap (SPEC's `spool_max_bytes`), `Batch` sync, 8 MiB segments.
    fn default() -> Self {
        SpoolOptions {
            max_bytes: 1 << 30,
            sync: SyncMode::Batch,
            segment_bytes: 8 << 20,
        }
    }
}

/// Why the spool refused an operation.
#[derive(Debug)]
pub enum SpoolError {
    /// The batch does not fit under `max_bytes`; nothing was written. Delivering (commit)
    /// makes room; a batch larger than `max_bytes` never fits.
    Full,
    /// A record's payload is larger than the spool's record limit (64 MiB); nothing was written.
    TooLarge,
    /// The filesystem failed (ENOSPC, EFBIG, EIO, permissions, ...). For `append`, what was
    /// written was truncated away (or, if even that failed, fenced off: a later reader never
    /// sees it) and the spool stays usable: the same batch may be retried later.
    Io(io::Error),
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Full => f.write_str("spool is full (spool_max_bytes)"),
            SpoolError::TooLarge => f.write_str("record too large for the spool"),
            SpoolError::Io(e) => write!(f, "spool I/O error: {e}"),
        }
    }
}

impl std::error::Error for SpoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpoolError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for SpoolError {
    fn from(e: io::Error) -> Self {
        SpoolError::Io(e)
    }
}

/// One record to append: borrowed bytes plus the fields that travel with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolRecord<'a> {
    /// A stable id chosen by the caller (e.g. producer id ⊕ sequence), the same on every resend.
    pub id: u64,
    /// The time of the `log` call, µs since the Unix epoch, if known.
    pub time_us: Option<i64>,
    /// The record's bytes, as they will be sent.
    pub bytes: &'a [u8],
    /// Whether the record carries its message in the logger's counters. A logger with several
    /// outputs spools a copy of a message per output; one of them is its message's record (in
    /// `spooled`, then `sent` or `lost`), the others are uncounted copies (only their output's
    /// counters show them).
    pub counted: bool,
}

/// A record read back from the spool: the fields given to `append`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    /// The caller's stable id.
    pub id: u64,
    /// The `log` time, µs since the Unix epoch, if it was given.
    pub time_us: Option<i64>,
    /// The record's bytes.
    pub bytes: Vec<u8>,
    /// See [`SpoolRecord::counted`].
    pub counted: bool,
}

/// Counters of one spool. `records`/`bytes` pair with rlog's `spooled`/`spooled_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Records on disk not yet committed as delivered (read-but-uncommitted ones included).
    pub records: u64,
    /// Their payload bytes (the bytes given to `append`, without framing).
    pub bytes: u64,
    /// Bytes of the segment files (headers, framing, delivered records not yet unlinked): what
    /// `max_bytes` caps.
    pub disk_bytes: u64,
    /// Corrupt spans skipped since open (each hides at least one record; when a span covers
    /// several records their number is unknown, so a span counts one).
    pub corrupt_records: u64,
    /// Segments renamed `*.bad` since open (unreadable or foreign header).
    pub bad_segments: u64,
    /// Records counted in `records` that left the spool undelivered since open (corrupt records
    /// found when reading this instance's own segments, segments quarantined while reading),
    /// and their payload bytes: the driver counts them `lost`. Damage found when adopting is
    /// not here: such records never entered `records` (see `corrupt_records`).
    pub lost_records: u64,
    /// Payload bytes of `lost_records`.
    pub lost_bytes: u64,
    /// Bytes cut off as torn tails (incomplete batches) since open.
    pub torn_bytes: u64,
    /// Records and payload bytes taken over from dead instances since open.
    pub adopted_records: u64,
    /// Payload bytes of `adopted_records`.
    pub adopted_bytes: u64,
    /// Of `records`, `lost_records` and `adopted_records`: the uncounted copies
    /// ([`SpoolRecord::counted`]), with their payload bytes.
    pub uncounted: Uncounted,
}

/// The uncounted copies among a spool's records (see [`SpoolStats::uncounted`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uncounted {
    pub records: u64,
    pub bytes: u64,
    pub lost_records: u64,
    pub lost_bytes: u64,
    pub adopted_records: u64,
    pub adopted_bytes: u64,
}

/// What one [`OutputSpool::adopt`] took over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdoptReport {
    /// Dead instance directories taken over.
    pub instances: u64,
    /// Valid, undelivered records in them.
    pub records: u64,
    /// Payload bytes of `records`.
    pub bytes: u64,
    /// Of `records`: uncounted copies, and their payload bytes.
    pub uncounted: u64,
    pub uncounted_bytes: u64,
    /// Corrupt spans skipped in them.
    pub corrupt: u64,
    /// Segments renamed `*.bad`.
    pub bad_segments: u64,
    /// Bytes cut off as torn tails.
    pub torn_bytes: u64,
}

/// One segment of a source.
#[derive(Debug)]
struct Seg {
    seq: u64,
    path: PathBuf,
    /// End of the valid data: readers stop here.
    len: u64,
    /// Size of the file on disk (`len` unless a failed write could not be truncated away).
    disk_len: u64,
    /// Valid records appended or found by the adoption scan, and their payload bytes.
    records: u64,
    payload: u64,
    /// Of those, committed since (the difference at unlink is records lost to corruption).
    delivered: u64,
    delivered_payload: u64,
    /// Of `records` and of `delivered` (with their payload): the uncounted copies.
    uncounted: (u64, u64),
    delivered_uncounted: (u64, u64),
    /// Corrupt spans before this offset were counted already (adoption scan or an earlier read).
    corrupt_seen: u64,
    /// Reads of it that failed in a row.
    failures: u32,
}

/// A directory of segments with its own ledger: this instance, or an adopted one.
struct Source {
    id: u64,
    dir: PathBuf,
    own: bool,
    ledger: Ledger,
    segs: VecDeque<Seg>,
    /// First undelivered position (what the ledger holds once written).
    done: Pos,
    /// Next position to read.
    read: Pos,
    /// What the ledger file holds (written, maybe not yet synced).
    ledger_pos: Pos,
    /// The ledger was written but not fdatasynced.
    ledger_unsynced: bool,
}

/// A record handed out by `read` (or, with `record == false`, a corrupt span skipped after the
/// records before it: it is passed over as soon as they are committed).
struct InFlight {
    source: u64,
    seq: u64,
    end: u64,
    payload: u64,
    record: bool,
    counted: bool,
}

struct ActiveReader {
    source: u64,
    seq: u64,
    rd: SegReader,
}

/// The segment being appended to.
struct Head {
    seq: u64,
    file: File,
}

/// Which other key directories under the same root an [`OutputSpool`] also adopts from (see
/// [`OutputSpool::also_adopt_from`]): given a directory's name, whether it is this output's.
pub type StrayKeys = Box<dyn Fn(&str) -> bool + Send>;

/// One output's spool in this process: see the module doc.
pub struct OutputSpool {
    key_dir: PathBuf,
    /// Other keys this output adopts from (the same output under an earlier config's key).
    strays: Option<StrayKeys>,
    dir: PathBuf,
    name: String,
    opts: SpoolOptions,
    /// The lock's descriptor, registered for a fork child to close (`crate::sync::ChildCloses`):
    /// a child that kept it would keep this instance locked after this process dies. Before
    /// `lock`, so that it is unregistered before the descriptor closes.
    lock_in_child: Option<crate::sync::ChildCloses>,
    lock: Option<File>,
    /// Adopted sources in adoption order, then this instance's own (always last).
    sources: Vec<Source>,
    next_source_id: u64,
    next_adopt: u64,
    head: Option<Head>,
    next_seq: u64,
    buf: Vec<u8>,
    reader: Option<ActiveReader>,
    inflight: VecDeque<InFlight>,
    inflight_records: usize,
    stats: SpoolStats,
    last_sync: Instant,
    /// Interval mode: appended data or a created segment not yet fsynced.
    data_dirty: bool,
    dir_dirty: bool,
    /// Set by `after_fork_in_child`: Drop touches no file.
    forked: bool,
    /// The process that opened it: a fork child must not use the parent's spool.
    owner_pid: u32,
}

/// The `m` of an adopted instance's own directory name: after every instance it had adopted.
const LAST: &str = "99999999999999999999";

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key != "."
        && key != ".."
        && !key.starts_with('.')
        && key.len() <= 200
        && !key.bytes().any(|b| b == b'/' || b == 0)
}

impl OutputSpool {
    /// Opens this process's spool for one output: creates `<root>/<output_key>/` (mode 0700)
    /// and a fresh instance directory in it, takes its lock, and adopts every dead instance
    /// under the same key (what an earlier process left). Another `open` of the same root and
    /// key in this process (a second logger) gets its own instance and never takes this one.
    ///
    /// Errors: `Io` when the root cannot be created or written (the message names the path), or
    /// `Io(InvalidInput)` for an `output_key` that is empty, longer than 200 bytes, starts with
    /// `.`, or holds `/` or NUL.
    /// Damage in what is adopted is never an error (see the module doc), and adoption problems
    /// other than an unreadable key directory leave the dead instance for a later `adopt`.
    pub fn open(root: &Path, output_key: &str, opts: SpoolOptions) -> Result<Self, SpoolError> {
        let mut spool = Self::open_without_adopting(root, output_key, opts)?;
        // A failure to list the key directory leaves adoption to a later call: never refuse to
        // start because of what an earlier process left.
        let _ = spool.adopt();
        Ok(spool)
    }

    /// [`open`](Self::open) without the adoption: creates and locks this process's instance
    /// only, which costs a few small file operations whatever an earlier process left. For a
    /// caller that validates the spool at `rlog_init` and lets its worker thread call
    /// [`adopt`](Self::adopt) (which reads every adopted record). Errors: as `open`.
    pub fn open_without_adopting(
        root: &Path,
        output_key: &str,
        opts: SpoolOptions,
    ) -> Result<Self, SpoolError> {
        if !valid_key(output_key) {
            return Err(SpoolError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid spool output key {output_key:?}"),
            )));
        }
        fsutil::create_dir_0700(root)?;
        // An absolute path: the host may chdir later (a daemon, a prefork master).
        let root = &fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let key_dir = root.join(output_key);
        fsutil::create_dir_0700(&key_dir)?;
        // Make the two directories' names durable (they may have just been created); best
        // effort: a filesystem that cannot fsync a directory still holds a working spool.
        let _ = fsutil::sync_dir(root);
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = fsutil::sync_dir(parent);
        }
        let name = fsutil::instance_name();
        let tmp = key_dir.join(format!(".tmp-{name}"));
        let dir = key_dir.join(&name);
        let created = (|| -> io::Result<(File, Ledger)> {
            fsutil::mkdir_0700(&tmp)
                .map_err(|e| with_path(e, "cannot create spool directory", &tmp))?;
            let lock = fsutil::open_lock_file(&tmp.join("lock"))
                .map_err(|e| with_path(e, "cannot create spool lock", &tmp))?;
            if fsutil::try_flock(&lock, false)? != Lock::Taken {
                return Err(io::Error::other("fresh spool lock is busy"));
            }
            fs::write(tmp.join("pid"), format!("{}\n", std::process::id()))
                .map_err(|e| with_path(e, "cannot write spool pid file", &tmp))?;
            let (ledger, _) = Ledger::open(&tmp.join("ledger"))
                .map_err(|e| with_path(e, "cannot create spool ledger", &tmp))?;
            fs::rename(&tmp, &dir).map_err(|e| with_path(e, "cannot rename", &tmp))?;
            fsutil::sync_dir(&key_dir).map_err(|e| with_path(e, "cannot sync", &key_dir))?;
            Ok((lock, ledger))
        })();
        let (lock, ledger) = match created {
            Ok(x) => x,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(SpoolError::Io(e));
            }
        };
        let own = Source {
            id: 0,
            dir: dir.clone(),
            own: true,
            ledger,
            segs: VecDeque::new(),
            done: Pos {
                seg: 1,
                off: HEADER_LEN,
            },
            read: Pos {
                seg: 1,
                off: HEADER_LEN,
            },
            // The fresh ledger is empty, which means the same: nothing delivered yet.
            ledger_pos: Pos {
                seg: 1,
                off: HEADER_LEN,
            },
            ledger_unsynced: false,
        };
        Ok(OutputSpool {
            key_dir,
            strays: None,
            dir,
            name,
            opts,
            lock_in_child: Some(crate::sync::ChildCloses::new(lock.as_raw_fd())),
            lock: Some(lock),
            sources: vec![own],
            next_source_id: 1,
            next_adopt: 1,
            head: None,
            next_seq: 1,
            buf: Vec::new(),
            reader: None,
            inflight: VecDeque::new(),
            inflight_records: 0,
            stats: SpoolStats::default(),
            last_sync: Instant::now(),
            data_dirty: false,
            dir_dirty: false,
            forked: false,
            owner_pid: std::process::id(),
        })
    }

    /// Makes [`adopt`](Self::adopt) also take the dead instances under the other key
    /// directories of the same root for which `is_mine` says yes: the same output under the
    /// key an earlier config gave it (its place in the config changed, or an nginx reload's old
    /// workers still run with the old config). Their records are the same output's, so they
    /// are delivered as if they were under this key. The key directories themselves are left
    /// (a live process may still be creating its instance in one).
    pub fn also_adopt_from(&mut self, is_mine: StrayKeys) {
        self.strays = Some(is_mine);
    }

    /// This instance's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fork child that did not call `after_fork_in_child` must not write the parent's files.
    fn check_owner(&self) -> io::Result<()> {
        if std::process::id() == self.owner_pid {
            Ok(())
        } else {
            Err(io::Error::other(
                "spool opened by the parent process: after fork(), call after_fork_in_child \
                 and open a new spool",
            ))
        }
    }

    /// Appends a batch. A later reader sees all of it or none of it (a batch torn by a crash is
    /// cut off at recovery). With `SyncMode::Batch`, returns only after the data is fdatasynced.
    ///
    /// Errors: `Full` when the batch would take the spool past `max_bytes` (nothing written);
    /// `TooLarge` for a record over 64 MiB; `Io` when writing or syncing failed (ENOSPC, EFBIG,
    /// EIO): the partial write is truncated away (or fenced off if truncating fails too), and the
    /// spool stays usable, so the batch can be retried later.
    pub fn append(&mut self, recs: &[SpoolRecord<'_>]) -> Result<(), SpoolError> {
        self.check_owner()?;
        if recs.is_empty() {
            return Ok(());
        }
        let mut framed = 0u64;
        let mut payload = 0u64;
        let mut uncounted = (0u64, 0u64);
        for r in recs {
            if r.bytes.len() > format::MAX_PAYLOAD {
                return Err(SpoolError::TooLarge);
            }
            framed += format::framed_len(r.bytes.len());
            payload += r.bytes.len() as u64;
            if !r.counted {
                uncounted.0 += 1;
                uncounted.1 += r.bytes.len() as u64;
            }
        }
        let head_len = self.head_seg().map(|s| s.len);
        let mut roll = match head_len {
            None => true,
            Some(len) => len > HEADER_LEN && len + framed > self.opts.segment_bytes,
        };
        let over_cap = self.stats.disk_bytes.saturating_add(framed) > self.opts.max_bytes;
        if (roll || over_cap) && self.retire_drained_head() {
            roll = true;
        }
        let need = framed + if roll { HEADER_LEN } else { 0 };
        if self.stats.disk_bytes.saturating_add(need) > self.opts.max_bytes {
            return Err(SpoolError::Full);
        }
        if roll {
            self.roll()?;
        }
        self.buf.clear();
        for (i, r) in recs.iter().enumerate() {
            format::encode_record(
                &mut self.buf,
                r.id,
                r.time_us,
                i + 1 == recs.len(),
                r.counted,
                r.bytes,
            );
        }
        let sync_now = match self.opts.sync {
            SyncMode::Batch => true,
            SyncMode::Interval(d) => self.last_sync.elapsed() >= d,
            SyncMode::None => false,
        };
        let head = self.head.as_ref().expect("rolled");
        let seq = head.seq;
        let at = self.head_seg().expect("rolled").len;
        let written = head.file.write_all_at(&self.buf, at).and_then(|()| {
            if sync_now {
                head.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            self.undo_write(seq, at);
            return Err(SpoolError::Io(e));
        }
        let end = at + self.buf.len() as u64;
        if self.buf.capacity() > 4 << 20 {
            self.buf = Vec::new(); // one huge batch does not pin its memory
        }
        let seg = self.own_mut().segs.back_mut().expect("head segment");
        seg.len = end;
        seg.disk_len = end;
        seg.records += recs.len() as u64;
        seg.payload += payload;
        seg.uncounted.0 += uncounted.0;
        seg.uncounted.1 += uncounted.1;
        self.stats.records += recs.len() as u64;
        self.stats.bytes += payload;
        self.stats.uncounted.records += uncounted.0;
        self.stats.uncounted.bytes += uncounted.1;
        self.stats.disk_bytes += framed;
        if sync_now {
            self.data_dirty = false;
            if let SyncMode::Interval(_) = self.opts.sync {
                // The batch is durable; the rest of the interval sync is best effort here (a
                // failure is retried at the next sync and does not undo this append).
                if self.dir_dirty && fsutil::sync_dir(&self.dir).is_ok() {
                    self.dir_dirty = false;
                }
                let _ = self.sync_ledgers();
                self.last_sync = Instant::now();
            }
        } else {
            self.data_dirty = true;
        }
        Ok(())
    }

    /// After a failed write at `at` of segment `seq`: truncate back, or fence the bytes off.
    fn undo_write(&mut self, seq: u64, at: u64) {
        let truncated = self
            .head
            .as_ref()
            .map(|h| h.file.set_len(at).is_ok())
            .unwrap_or(false);
        if !truncated {
            // Readers stop at `len` (= at); new appends go to a new segment. The garbage after
            // `at` has no batch-end record, so an adopter cuts it off as a torn tail.
            let disk = fs::metadata(self.dir.join(fsutil::segment_name(seq)))
                .map(|m| m.len())
                .unwrap_or(at);
            let stats = &mut self.stats;
            if let Some(seg) = self.sources.last_mut().and_then(|s| s.segs.back_mut()) {
                stats.disk_bytes += disk.saturating_sub(seg.disk_len);
                seg.disk_len = disk;
            }
            self.head = None;
        }
    }

    fn own(&self) -> &Source {
        self.sources.last().expect("own source")
    }

    fn own_mut(&mut self) -> &mut Source {
        self.sources.last_mut().expect("own source")
    }

    /// The segment being appended to, if there is one.
    fn head_seg(&self) -> Option<&Seg> {
        let head = self.head.as_ref()?;
        self.own().segs.back().filter(|s| s.seq == head.seq)
    }

    /// If every record of the segment being appended to is delivered, stops appending to it
    /// and unlinks it (a drained spool does not keep a segment of delivered records that would
    /// count against `max_bytes`). Returns whether it did.
    fn retire_drained_head(&mut self) -> bool {
        let Some(seg) = self.head_seg() else {
            return false;
        };
        let end = Pos {
            seg: seg.seq,
            off: seg.len,
        };
        if seg.len <= HEADER_LEN || self.own().done < end {
            return false;
        }
        self.head = None;
        self.data_dirty = false;
        let own = self.own().id;
        let _ = self.settle(own);
        true
    }

    /// Starts a new own segment (a header-only file; with `SyncMode::Batch` its directory entry
    /// is made durable before any record goes in).
    fn roll(&mut self) -> Result<(), SpoolError> {
        if self.data_dirty && matches!(self.opts.sync, SyncMode::Interval(_)) {
            // The segment being closed may hold unsynced batches: they get their sync now,
            // since later syncs only cover the new segment.
            if let Some(h) = &self.head {
                if h.file.sync_data().is_ok() {
                    self.data_dirty = false;
                }
            }
        }
        let seq = self.next_seq;
        let path = self.dir.join(fsutil::segment_name(seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let ready = file
            .write_all_at(&format::header_bytes(), 0)
            .and_then(|()| {
                if self.opts.sync == SyncMode::Batch {
                    fsutil::sync_dir(&self.dir)
                } else {
                    Ok(())
                }
            });
        if let Err(e) = ready {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(SpoolError::Io(e));
        }
        self.next_seq = seq + 1;
        self.head = Some(Head { seq, file });
        self.stats.disk_bytes += HEADER_LEN;
        self.dir_dirty = matches!(self.opts.sync, SyncMode::Interval(_));
        let own = self.own_mut();
        if own.segs.is_empty() && own.done.seg < seq {
            // Nothing of ours is on disk: start the positions at the new segment.
            own.done = Pos {
                seg: seq,
                off: HEADER_LEN,
            };
            own.read = own.done;
        }
        own.segs.push_back(Seg {
            seq,
            path,
            len: HEADER_LEN,
            disk_len: HEADER_LEN,
            records: 0,
            payload: 0,
            delivered: 0,
            delivered_payload: 0,
            uncounted: (0, 0),
            delivered_uncounted: (0, 0),
            corrupt_seen: 0,
            failures: 0,
        });
        Ok(())
    }

    /// Reads the next records not yet read, oldest first (adopted instances first, in the order
    /// they were adopted, then this instance's own), appending them to `out`. Stops after
    /// `max_records` records or once `max_bytes` payload bytes are reached, but returns at least
    /// one record if there is one (a record larger than `max_bytes` does not wedge the queue).
    /// Memory is bounded: segments are read through a 64 KiB buffer, one record at a time.
    ///
    /// Returns the number of records added (0: nothing unread). Corrupt records are skipped and
    /// counted in `stats().corrupt_records`. A segment that has vanished, or that failed to open
    /// or read three times in a row, is renamed `*.bad`, counted in `stats().bad_segments`, and
    /// skipped: its unread records leave `stats().records`. Errors: a failure to open or read a
    /// segment before that (it may pass: EMFILE, ENOMEM), when no record was read in this call
    /// (otherwise the records read so far are returned); an error for a spool opened by the
    /// parent of a fork child. Damage on disk never makes `read` fail for good.
    pub fn read(
        &mut self,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<OwnedRecord>,
    ) -> io::Result<usize> {
        self.check_owner()?;
        let mut n = 0usize;
        let mut bytes = 0usize;
        'sources: while n < max_records && (n == 0 || bytes < max_bytes) {
            let Some(si) = self.sources.iter().position(has_unread) else {
                break;
            };
            let (sid, rpos) = (self.sources[si].id, self.sources[si].read);
            let Some(gi) = self.sources[si].segs.iter().position(|g| g.seq >= rpos.seg) else {
                break;
            };
            let (seq, len, path) = {
                let g = &self.sources[si].segs[gi];
                (g.seq, g.len, g.path.clone())
            };
            let off = if seq == rpos.seg {
                rpos.off.max(HEADER_LEN)
            } else {
                HEADER_LEN
            };
            if off >= len {
                // Read to its end: go on with the next segment (has_unread says there is one).
                let src = &mut self.sources[si];
                src.read = match src.segs.get(gi + 1) {
                    Some(next) => Pos {
                        seg: next.seq,
                        off: HEADER_LEN,
                    },
                    None => Pos { seg: seq, off: len },
                };
                continue 'sources;
            }
            let reuse = matches!(&self.reader,
                Some(r) if r.source == sid && r.seq == seq && r.rd.pos() == off);
            if !reuse {
                self.reader = None;
                match File::open(&path).and_then(|f| SegReader::new(f, off, len)) {
                    Ok(rd) => {
                        self.reader = Some(ActiveReader {
                            source: sid,
                            seq,
                            rd,
                        })
                    }
                    Err(e) => match self.read_failed(si, gi, e, n) {
                        Some(ret) => return ret,
                        None => continue 'sources,
                    },
                }
            }
            let reader = self.reader.as_mut().expect("reader");
            reader.rd.set_end(len);
            while n < max_records && (n == 0 || bytes < max_bytes) {
                let mut payload = Vec::new();
                let step = match reader.rd.step(&mut payload) {
                    Ok(s) => s,
                    Err(e) => {
                        self.reader = None;
                        match self.read_failed(si, gi, e, n) {
                            Some(ret) => return ret,
                            None => continue 'sources,
                        }
                    }
                };
                self.sources[si].segs[gi].failures = 0;
                let src = &mut self.sources[si];
                let (skip_from, skip_to) = match step {
                    Step::Record { head, end } => {
                        bytes += payload.len();
                        n += 1;
                        self.inflight_records += 1;
                        self.inflight.push_back(InFlight {
                            source: sid,
                            seq,
                            end,
                            payload: payload.len() as u64,
                            record: true,
                            counted: head.counted(),
                        });
                        out.push(OwnedRecord {
                            id: head.id,
                            time_us: head.time_us(),
                            bytes: payload,
                            counted: head.counted(),
                        });
                        src.read = Pos { seg: seq, off: end };
                        continue;
                    }
                    Step::Corrupt { from, to } => (from, to),
                    Step::Tail { from } => (from, len),
                    Step::End => {
                        src.read = Pos { seg: seq, off: len };
                        continue 'sources;
                    }
                };
                let g = &mut src.segs[gi];
                if skip_from >= g.corrupt_seen {
                    g.corrupt_seen = skip_to;
                    self.stats.corrupt_records += 1;
                }
                src.read = Pos {
                    seg: seq,
                    off: skip_to,
                };
                self.inflight.push_back(InFlight {
                    source: sid,
                    seq,
                    end: skip_to,
                    payload: 0,
                    record: false,
                    counted: true,
                });
            }
        }
        if self.inflight.front().is_some_and(|f| !f.record) {
            // Corrupt bytes before every handed-out record: pass over them now, so a spool
            // whose only undelivered bytes are damaged drains without waiting for a commit.
            // (A failure to write the ledger here is retried by the next commit.)
            let _ = self.commit(0);
        }
        Ok(n)
    }

    /// Opening or reading segment `gi` of source `si` failed with `e`, after `n` records of this
    /// `read`. A vanished segment, or one that failed three reads in a row, is quarantined
    /// (`None`: reading goes on). Otherwise the error may be passing (EMFILE, ENOMEM): `read`
    /// returns the records it has, or the error if it has none.
    fn read_failed(
        &mut self,
        si: usize,
        gi: usize,
        e: io::Error,
        n: usize,
    ) -> Option<io::Result<usize>> {
        let g = &mut self.sources[si].segs[gi];
        g.failures += 1;
        if e.kind() == io::ErrorKind::NotFound || g.failures >= 3 {
            self.quarantine(si, gi);
            return None;
        }
        Some(if n > 0 { Ok(n) } else { Err(e) })
    }

    /// A segment that cannot be opened or read: rename it `*.bad`, count it, drop it from the
    /// queue (its undelivered records are gone: they leave `records`/`bytes`).
    fn quarantine(&mut self, si: usize, gi: usize) {
        let is_head = {
            let src = &self.sources[si];
            src.own
                && self
                    .head
                    .as_ref()
                    .is_some_and(|h| h.seq == src.segs[gi].seq)
        };
        if is_head {
            self.head = None;
        }
        let g = self.sources[si].segs.remove(gi).expect("segment");
        mark_bad(&g.path);
        self.stats.bad_segments += 1;
        let sid = self.sources[si].id;
        let handed: Vec<(u64, bool)> = self
            .inflight
            .iter()
            .filter(|f| f.record && f.source == sid && f.seq == g.seq)
            .map(|f| (f.payload, f.counted))
            .collect();
        self.forget_seg(&g, &handed);
        let src = &mut self.sources[si];
        if src.read.seg == g.seq {
            src.read = Pos {
                seg: src.segs.get(gi).map_or(g.seq + 1, |n| n.seq),
                off: HEADER_LEN,
            };
        }
    }

    /// Takes a segment leaving the queue out of the counters: its records neither delivered
    /// nor handed out by `read` (`handed`: each one's payload bytes and whether it is counted)
    /// are lost.
    fn forget_seg(&mut self, g: &Seg, handed: &[(u64, bool)]) {
        let n = handed.len() as u64;
        let b: u64 = handed.iter().map(|h| h.0).sum();
        let un = handed.iter().filter(|h| !h.1).count() as u64;
        let ub: u64 = handed.iter().filter(|h| !h.1).map(|h| h.0).sum();
        let lost = g.records.saturating_sub(g.delivered + n);
        let lost_bytes = g.payload.saturating_sub(g.delivered_payload + b);
        let lost_un = g.uncounted.0.saturating_sub(g.delivered_uncounted.0 + un);
        let lost_ub = g.uncounted.1.saturating_sub(g.delivered_uncounted.1 + ub);
        let s = &mut self.stats;
        s.records = s.records.saturating_sub(lost);
        s.bytes = s.bytes.saturating_sub(lost_bytes);
        s.lost_records += lost;
        s.lost_bytes += lost_bytes;
        let u = &mut s.uncounted;
        u.records = u.records.saturating_sub(lost_un);
        u.bytes = u.bytes.saturating_sub(lost_ub);
        u.lost_records += lost_un;
        u.lost_bytes += lost_ub;
        s.disk_bytes = s.disk_bytes.saturating_sub(g.disk_len);
    }

    /// The first `n` records handed out by `read` since the last `commit` or `rewind` were
    /// delivered (`n` larger than that count commits them all). Advances the ledgers (fdatasynced
    /// with `SyncMode::Batch`, per the interval with `Interval`), then unlinks segments whose
    /// records are all delivered (always after an fdatasync of the ledger) and removes adopted
    /// directories left empty.
    ///
    /// Errors: `Io` when a ledger could not be written or synced. The records still count as
    /// delivered in this process (they are not read again); the segments holding them are kept
    /// until a later commit writes the ledger, and a crash before that delivers them again.
    pub fn commit(&mut self, n: usize) -> io::Result<()> {
        self.check_owner()?;
        let mut left = n.min(self.inflight_records);
        while let Some(f) = self.inflight.front() {
            if f.record {
                if left == 0 {
                    break;
                }
                left -= 1;
                self.inflight_records -= 1;
            }
            let f = self.inflight.pop_front().expect("front");
            if f.record {
                let s = &mut self.stats;
                s.records = s.records.saturating_sub(1);
                s.bytes = s.bytes.saturating_sub(f.payload);
                if !f.counted {
                    let u = &mut s.uncounted;
                    u.records = u.records.saturating_sub(1);
                    u.bytes = u.bytes.saturating_sub(f.payload);
                }
            }
            let Some(src) = self.sources.iter_mut().find(|s| s.id == f.source) else {
                continue;
            };
            if f.record {
                if let Some(g) = src.segs.iter_mut().find(|g| g.seq == f.seq) {
                    g.delivered += 1;
                    g.delivered_payload += f.payload;
                    if !f.counted {
                        g.delivered_uncounted.0 += 1;
                        g.delivered_uncounted.1 += f.payload;
                    }
                }
            }
            let p = Pos {
                seg: f.seq,
                off: f.end,
            };
            if p > src.done {
                src.done = p;
            }
        }
        let mut first_err = None;
        let ids: Vec<u64> = self.sources.iter().map(|s| s.id).collect();
        for sid in ids {
            if let Err(e) = self.settle(sid) {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = self.maybe_sync() {
            first_err.get_or_insert(e);
        }
        match first_err {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Persists a source's `done` position and unlinks its fully delivered segments.
    fn settle(&mut self, sid: u64) -> io::Result<()> {
        let head_seq = self.head.as_ref().map(|h| h.seq);
        let batch = self.opts.sync == SyncMode::Batch;
        let Some(si) = self.sources.iter().position(|s| s.id == sid) else {
            return Ok(());
        };
        let src = &mut self.sources[si];
        // Fully delivered segments at the front (the own head is kept: it is appended to).
        let mut unlink = 0;
        let mut pos = src.done;
        // Records of segments read to their end but never handed out (damaged) are lost.
        for g in src.segs.iter_mut() {
            let passed = g.seq < pos.seg || (g.seq == pos.seg && pos.off >= g.len);
            if !passed {
                break;
            }
            let lost = g.records.saturating_sub(g.delivered);
            let lost_bytes = g.payload.saturating_sub(g.delivered_payload);
            if lost > 0 || lost_bytes > 0 {
                let st = &mut self.stats;
                st.records = st.records.saturating_sub(lost);
                st.bytes = st.bytes.saturating_sub(lost_bytes);
                st.lost_records += lost;
                st.lost_bytes += lost_bytes;
                g.records = g.delivered;
                g.payload = g.delivered_payload;
                let un = g.uncounted.0.saturating_sub(g.delivered_uncounted.0);
                let ub = g.uncounted.1.saturating_sub(g.delivered_uncounted.1);
                let u = &mut st.uncounted;
                u.records = u.records.saturating_sub(un);
                u.bytes = u.bytes.saturating_sub(ub);
                u.lost_records += un;
                u.lost_bytes += ub;
                g.uncounted = g.delivered_uncounted;
            }
        }
        for g in src.segs.iter() {
            let is_head = src.own && Some(g.seq) == head_seq;
            let delivered = g.seq < pos.seg || (g.seq == pos.seg && pos.off >= g.len);
            if !delivered || is_head {
                break;
            }
            unlink += 1;
            pos = pos.max(Pos {
                seg: g.seq + 1,
                off: HEADER_LEN,
            });
        }
        if pos != src.ledger_pos || unlink > 0 {
            // Before an unlink the ledger must be durable, whatever the mode.
            let sync = batch || unlink > 0;
            src.ledger.write(pos, sync)?;
            src.ledger_pos = pos;
            src.ledger_unsynced = !sync;
            src.done = pos;
            if src.read < pos {
                src.read = pos;
            }
        }
        let gone: Vec<Seg> = src.segs.drain(..unlink).collect();
        let (own, empty, dir) = (src.own, src.segs.is_empty(), src.dir.clone());
        for g in &gone {
            let _ = fs::remove_file(&g.path);
            if self
                .reader
                .as_ref()
                .is_some_and(|r| r.source == sid && r.seq == g.seq)
            {
                self.reader = None;
            }
            self.forget_seg(g, &[]);
        }
        // An adopted directory with nothing left (delivered, or its last segments quarantined).
        if !own && empty && !self.inflight.iter().any(|f| f.source == sid) {
            self.sources.remove(si);
            remove_instance_dir(&dir);
        }
        Ok(())
    }

    /// What was read but not committed will be read again (its delivery failed).
    pub fn rewind(&mut self) {
        // Handed-out records of a segment quarantined since cannot be read again: lost.
        for f in self.inflight.iter().filter(|f| f.record) {
            let there = self
                .sources
                .iter()
                .find(|s| s.id == f.source)
                .is_some_and(|s| s.segs.iter().any(|g| g.seq == f.seq));
            if !there {
                let st = &mut self.stats;
                st.records = st.records.saturating_sub(1);
                st.bytes = st.bytes.saturating_sub(f.payload);
                st.lost_records += 1;
                st.lost_bytes += f.payload;
                if !f.counted {
                    let u = &mut st.uncounted;
                    u.records = u.records.saturating_sub(1);
                    u.bytes = u.bytes.saturating_sub(f.payload);
                    u.lost_records += 1;
                    u.lost_bytes += f.payload;
                }
            }
        }
        self.inflight.clear();
        self.inflight_records = 0;
        self.reader = None;
        for s in &mut self.sources {
            s.read = s.done;
        }
    }

    /// Number of records handed out by `read` and not yet committed or rewound.
    pub fn in_flight(&self) -> usize {
        self.inflight_records
    }

    /// With `SyncMode::Interval(d)`: if at least `d` passed since the last sync, fdatasyncs what
    /// is pending (the segment being written, the ledgers, the directory). The driver calls this
    /// from its loop. A no-op in the other modes.
    pub fn maybe_sync(&mut self) -> io::Result<()> {
        match self.opts.sync {
            SyncMode::Interval(d) if self.last_sync.elapsed() >= d => self.sync(),
            _ => Ok(()),
        }
    }

    /// fdatasyncs everything written so far (the segment being written, the ledgers, the
    /// directory), in any mode.
    pub fn sync(&mut self) -> io::Result<()> {
        self.check_owner()?;
        if self.data_dirty {
            if let Some(h) = &self.head {
                h.file.sync_data()?;
            }
            self.data_dirty = false;
        }
        if self.dir_dirty {
            fsutil::sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        self.sync_ledgers()?;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn sync_ledgers(&mut self) -> io::Result<()> {
        for s in &mut self.sources {
            if s.ledger_unsynced {
                s.ledger.sync()?;
                s.ledger_unsynced = false;
            }
        }
        Ok(())
    }

    /// Counters: see [`SpoolStats`].
    pub fn stats(&self) -> SpoolStats {
        self.stats
    }

    /// No undelivered record is left (read-but-uncommitted records count as undelivered;
    /// damaged records count until `read` has passed over them).
    pub fn is_empty(&self) -> bool {
        self.stats.records == 0
    }

    /// Takes over the instance directories under this output key (and under the keys given to
    /// [`also_adopt_from`](Self::also_adopt_from)) whose lock is free (their process died),
    /// renaming each into this instance's `adopted/` and checking every record in it (see
    /// "Recovery never wedges" in the module doc). Directories whose lock is held are left
    /// alone. Their records are read before this instance's own, after those adopted earlier.
    /// Called by `open`, and periodically by the driver (a prefork sibling may die at any
    /// time). Also removes leftovers of instances that died while being created.
    ///
    /// Errors: only when the output key's directory cannot be listed; a dead instance that
    /// cannot be taken now (or a stray key directory that cannot be listed) is left for a later
    /// call.
    pub fn adopt(&mut self) -> io::Result<AdoptReport> {
        self.check_owner()?;
        let mut report = AdoptReport::default();
        let own_name = self.name.clone();
        let mut dirs = fsutil::list_dirs(&self.key_dir, |n| {
            fsutil::is_instance_name(n) && n != own_name
        })?;
        if let (Some(is_mine), Some(root)) = (&self.strays, self.key_dir.parent()) {
            let own_key = self.key_dir.file_name();
            let strays = fsutil::list_dirs(root, |n| {
                valid_key(n) && Some(std::ffi::OsStr::new(n)) != own_key && is_mine(n)
            })
            .unwrap_or_default();
            for key_dir in strays {
                dirs.extend(
                    fsutil::list_dirs(&key_dir, fsutil::is_instance_name).unwrap_or_default(),
                );
            }
        }
        for d in dirs {
            let key_dir = d.parent().unwrap_or(&self.key_dir).to_path_buf();
            let lock_path = d.join("lock");
            let lock = match fsutil::open_lock_file_existing(&lock_path) {
                Ok(f) => Some(f),
                // No lock file: nobody can hold it (an instance is only named once locked).
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(_) => continue,
            };
            if let Some(l) = &lock {
                match fsutil::try_flock(l, false) {
                    Ok(Lock::Taken) => {}
                    _ => continue,
                }
            }
            let adopted_dir = self.dir.join("adopted");
            if fsutil::create_dir_0700(&adopted_dir).is_err() {
                continue;
            }
            // `<k>-<m>-<instance>`: the adopted instance itself sorts after the instances it
            // had adopted (m = 0, 1, ...), which are moved up next to it below.
            let k = self.next_adopt;
            let target = adopted_dir.join(format!("{k:020}-{LAST}-{}", fsutil::instance_of(&d)));
            if fs::rename(&d, &target).is_err() {
                // Taken by another process first (or not movable now): try again later.
                continue;
            }
            self.next_adopt += 1;
            let _ = fsutil::sync_dir(&adopted_dir);
            let _ = fsutil::sync_dir(&key_dir);
            drop(lock);
            report.instances += 1;
            // Flatten: the instances it had adopted (a crash loop nests one level per restart)
            // become siblings, in delivery order. Each rename keeps the order whole: what is
            // not moved yet is still found nested, after what was moved.
            let mut order = fsutil::delivery_order(&target);
            order.pop(); // the target itself
            let mut dirs = Vec::new();
            for (m, e) in order.iter().enumerate() {
                let flat = adopted_dir.join(format!("{k:020}-{m:020}-{}", fsutil::instance_of(e)));
                if fs::rename(e, &flat).is_err() {
                    break;
                }
                dirs.push(flat);
            }
            if !dirs.is_empty() {
                let _ = fsutil::sync_dir(&adopted_dir);
            }
            dirs.push(target);
            let mut loaded = Vec::new();
            for dir in &dirs {
                self.load_tree(dir, &mut loaded, &mut report);
            }
            let at = self.sources.len() - 1;
            self.sources.splice(at..at, loaded);
        }
        self.clean_stale_tmp();
        self.stats.adopted_records += report.records;
        self.stats.adopted_bytes += report.bytes;
        self.stats.records += report.records;
        self.stats.bytes += report.bytes;
        let u = &mut self.stats.uncounted;
        u.records += report.uncounted;
        u.bytes += report.uncounted_bytes;
        u.adopted_records += report.uncounted;
        u.adopted_bytes += report.uncounted_bytes;
        self.stats.corrupt_records += report.corrupt;
        self.stats.bad_segments += report.bad_segments;
        self.stats.torn_bytes += report.torn_bytes;
        Ok(report)
    }

    /// Loads an adopted directory: its own adopted ones first (older), then its segments.
    fn load_tree(&mut self, dir: &Path, out: &mut Vec<Source>, rep: &mut AdoptReport) {
        for d in fsutil::delivery_order(dir) {
            match self.load_source(&d, rep) {
                Some(src) => out.push(src),
                // Nothing left in it: remove it (kept if nested sources or `*.bad` files remain).
                None => remove_instance_dir(&d),
            }
        }
    }

    /// Recovers one directory's segments against its ledger; `None` if nothing is left in it.
    fn load_source(&mut self, dir: &Path, rep: &mut AdoptReport) -> Option<Source> {
        let (ledger, state) = Ledger::open(&dir.join("ledger")).ok()?;
        let start = match state {
            LedgerState::Ok(p) => p,
            LedgerState::Empty | LedgerState::Missing | LedgerState::Corrupt => Pos::default(),
        };
        let segs = fsutil::list_segments(dir).unwrap_or_default();
        if segs.iter().any(|(seq, _)| *seq < start.seg) {
            // The ledger says these are delivered: make sure it is durable before unlinking.
            let _ = ledger.sync();
        }
        let mut out = VecDeque::new();
        for (seq, path) in segs {
            if seq < start.seg {
                let _ = fs::remove_file(&path);
                continue;
            }
            let from = if seq == start.seg { start.off } else { 0 };
            let file = match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => f,
                Err(_) => {
                    mark_bad(&path);
                    rep.bad_segments += 1;
                    continue;
                }
            };
            let scan = match format::scan(&file, from) {
                Ok(s) => s,
                Err(ScanError::Headerless) => {
                    let _ = fs::remove_file(&path);
                    continue;
                }
                Err(ScanError::BadHeader) | Err(ScanError::Io) => {
                    mark_bad(&path);
                    rep.bad_segments += 1;
                    continue;
                }
            };
            rep.corrupt += scan.corrupt;
            let mut disk_len = scan.file_len;
            if scan.valid_end < scan.file_len {
                rep.torn_bytes += scan.file_len - scan.valid_end;
                if file.set_len(scan.valid_end).is_ok() {
                    disk_len = scan.valid_end;
                }
            }
            if scan.records == 0 {
                // Nothing left to deliver in it.
                let _ = fs::remove_file(&path);
                continue;
            }
            rep.records += scan.records;
            rep.bytes += scan.payload_bytes;
            rep.uncounted += scan.uncounted;
            rep.uncounted_bytes += scan.uncounted_bytes;
            self.stats.disk_bytes += disk_len;
            out.push_back(Seg {
                seq,
                path,
                len: scan.valid_end,
                disk_len,
                records: scan.records,
                payload: scan.payload_bytes,
                delivered: 0,
                delivered_payload: 0,
                uncounted: (scan.uncounted, scan.uncounted_bytes),
                delivered_uncounted: (0, 0),
                corrupt_seen: scan.valid_end,
                failures: 0,
            });
        }
        let first = out.front()?;
        let done = Pos {
            seg: first.seq,
            off: if first.seq == start.seg {
                start.off.max(HEADER_LEN)
            } else {
                HEADER_LEN
            },
        };
        let id = self.next_source_id;
        self.next_source_id += 1;
        Some(Source {
            id,
            dir: dir.to_path_buf(),
            own: false,
            ledger,
            segs: out,
            done,
            read: done,
            ledger_pos: start,
            ledger_unsynced: false,
        })
    }

    /// Removes `.tmp-*` directories left by processes that died while creating their instance
    /// (lock free, older than ten minutes).
    fn clean_stale_tmp(&self) {
        let Ok(dirs) = fsutil::list_dirs(&self.key_dir, |n| n.starts_with(".tmp-")) else {
            return;
        };
        for d in dirs {
            let old = fs::metadata(&d)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(600));
            if !old {
                continue;
            }
            // Free lock, or none at all (the creator died between mkdir and creating it).
            // remove_instance_dir keeps a directory that holds segments.
            if fsutil::instance_is_dead(&d) {
                remove_instance_dir(&d);
            }
        }
    }

    /// In a child process after `fork()`: lets go of the parent's spool without touching its
    /// files, closing every inherited descriptor, above all the lock's (a `flock` lock belongs to
    /// the open file description, which the child shares: kept open, it would keep the parent's
    /// instance locked after the parent dies, and nobody would adopt it). The child then opens
    /// its own spool with [`OutputSpool::open`].
    ///
    /// The fork must not have happened in the middle of a method of this spool on another
    /// thread (the driver's `pthread_atfork` prepare handler keeps the worker out of the spool):
    /// the child drops the spool's memory, which must be consistent.
    pub fn after_fork_in_child(mut self) {
        self.forked = true;
        // The lock first; Drop then closes the other descriptors and writes nothing.
        self.lock_in_child = None;
        self.lock = None;
    }
}

impl Drop for OutputSpool {
    /// Releases the lock. With `Interval`, syncs what is pending (best effort). If
    /// nothing undelivered is left, removes the instance directory; otherwise leaves it for the
    /// next process to adopt. In a fork child (`after_fork_in_child`) only closes descriptors.
    fn drop(&mut self) {
        if self.forked || std::process::id() != self.owner_pid {
            return;
        }
        if self.opts.sync != SyncMode::None {
            let _ = self.sync();
        }
        let nothing_left = self.sources.len() == 1 && self.stats.records == 0;
        if nothing_left {
            self.reader = None;
            self.head = None;
            for g in &self.sources[0].segs {
                let _ = fs::remove_file(&g.path);
            }
            remove_instance_dir(&self.dir);
        }
        self.lock_in_child = None;
        self.lock = None;
    }
}

/// The key directories under `root` for which `claimed` says no that hold records of a dead
/// process (an instance whose lock is free with, in it or in what it adopted, a segment that
/// goes past its ledger's delivered position): records nobody will adopt while the keys that
/// would are not in use. Read-only (a free lock is taken and let go at once; segments are not
/// read, only their lengths looked at, so a torn tail alone counts as records); unreadable
/// directories are passed over.
pub fn unclaimed_keys(root: &Path, claimed: impl Fn(&str) -> bool) -> Vec<String> {
    keys_with_instance(
        root,
        |k| !claimed(k),
        |d| {
            fsutil::instance_is_dead(d)
                && fsutil::delivery_order(d)
                    .iter()
                    .any(|s| holds_undelivered(s))
        },
    )
}

/// The keys under `root` with a live instance (its lock is held): a process that uses the key
/// now. It adopts the dead instances under its key and under the other keys of its target.
pub fn live_keys(root: &Path) -> Vec<String> {
    keys_with_instance(root, |_| true, fsutil::instance_is_live)
}

/// The names of the key directories under `root` for which `keep` says yes with an instance
/// directory for which `has` says yes (unreadable directories are passed over).
fn keys_with_instance(
    root: &Path,
    keep: impl Fn(&str) -> bool,
    has: impl Fn(&Path) -> bool,
) -> Vec<String> {
    let keys = fsutil::list_dirs(root, |n| valid_key(n) && keep(n)).unwrap_or_default();
    keys.into_iter()
        .filter(|key_dir| {
            fsutil::list_dirs(key_dir, fsutil::is_instance_name)
                .unwrap_or_default()
                .iter()
                .any(|d| has(d))
        })
        .filter_map(|d| d.file_name().and_then(|n| n.to_str()).map(String::from))
        .collect()
}

/// Whether a directory of segments holds bytes past its ledger's delivered position (what a
/// process that adopted it would read and deliver).
fn holds_undelivered(dir: &Path) -> bool {
    let start = match ledger::read_state(&dir.join("ledger")) {
        LedgerState::Ok(p) => p,
        _ => Pos::default(),
    };
    fsutil::list_segments(dir).is_ok_and(|segs| {
        segs.iter().any(|(seq, path)| {
            let len = fs::metadata(path).map_or(0, |m| m.len());
            *seq > start.seg && len > HEADER_LEN
                || *seq == start.seg && len > start.off.max(HEADER_LEN)
        })
    })
}

/// Is there something not yet read in this source?
fn has_unread(s: &Source) -> bool {
    s.segs
        .iter()
        .any(|g| g.seq > s.read.seg || (g.seq == s.read.seg && s.read.off.max(HEADER_LEN) < g.len))
}

fn mark_bad(path: &Path) {
    let mut bad = path.as_os_str().to_owned();
    bad.push(".bad");
    let _ = fs::rename(path, bad);
}

/// Removes an instance directory's own files (lock last) and the directory, if nothing else is
/// in it (`*.bad` files are left for people, and keep the directory).
fn remove_instance_dir(dir: &Path) {
    if !fsutil::list_segments(dir).is_ok_and(|s| s.is_empty()) {
        return;
    }
    for f in ["pid", "ledger"] {
        let _ = fs::remove_file(dir.join(f));
    }
    let _ = fs::remove_dir(dir.join("adopted"));
    let _ = fs::remove_file(dir.join("lock"));
    let _ = fs::remove_dir(dir);
}
