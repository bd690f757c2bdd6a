//! A read-only look at a spool root, for `rlogd spool DIR`: per output key and instance, whether
//! its process is alive, what it holds, and a verify pass over every record's CRC. Nothing is
//! changed on disk (no truncation, no rename, no lock kept).

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::format::{self, ScanError};
use super::fsutil;
use super::ledger::{self, LedgerState};

/// What the ledger of an instance holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerStatus {
    /// A valid position.
    Ok,
    /// Never written (nothing delivered yet).
    Empty,
    /// No ledger file: everything on disk would be delivered.
    Missing,
    /// Unreadable or no valid slot: everything on disk would be delivered.
    Corrupt,
}

/// One instance directory (with the dead instances it adopted, counted in its figures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceReport {
    /// The directory's name, `<pid>-<random>`.
    pub name: String,
    /// The directory.
    pub path: PathBuf,
    /// Its lock is held: a live process owns it. A dead one is adopted by the next `open` or
    /// `adopt` under the same key.
    pub live: bool,
    /// From its pid file.
    pub pid: Option<u32>,
    /// Its ledger (adopted directories inside have their own, not shown here).
    pub ledger: LedgerStatus,
    /// Segment files (readable or not), `*.bad` files not included.
    pub segments: u64,
    /// Valid records not yet delivered (per the ledgers), adopted directories included.
    pub records: u64,
    /// Payload bytes of `records`.
    pub bytes: u64,
    /// Bytes of the segment files.
    pub disk_bytes: u64,
    /// Oldest `log` time (µs since the epoch) among those records that carry one.
    pub oldest_us: Option<i64>,
    /// Newest `log` time among them.
    pub newest_us: Option<i64>,
    /// Corrupt spans (bad CRC, impossible length) found by the verify pass.
    pub corrupt_records: u64,
    /// Bytes after the last complete batch (a torn tail; for a live instance, possibly a batch
    /// being written right now).
    pub torn_bytes: u64,
    /// Segments that cannot be read or have a foreign header, plus `*.bad` files.
    pub bad_segments: u64,
    /// Header-less (empty) segments.
    pub empty_segments: u64,
    /// Adopted instance directories inside it.
    pub adopted_dirs: u64,
}

impl InstanceReport {
    /// The verify pass found no corrupt record, no bad segment and no torn tail (a live
    /// instance's tail may be a batch being written while it was read: not held against it).
    pub fn verified(&self) -> bool {
        self.corrupt_records == 0 && self.bad_segments == 0 && (self.torn_bytes == 0 || self.live)
    }
}

/// One output key's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    /// The output key (the directory's name).
    pub key: String,
    /// Its instance directories, by name.
    pub instances: Vec<InstanceReport>,
}

/// The whole spool root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The spool root given to `inspect`.
    pub root: PathBuf,
    /// Its output keys, by name.
    pub keys: Vec<KeyReport>,
}

/// Inspects a spool root (the directory given as `spool = ...`), reading every segment once.
///
/// Errors: `Io` when `root` cannot be listed (the message names it). Damage inside is reported,
/// not returned as an error.
pub fn inspect(root: &Path) -> io::Result<Report> {
    let mut keys = Vec::new();
    let key_dirs = fs::read_dir(root)
        .map_err(|e| fsutil::with_path(e, "cannot list spool directory", root))?;
    let mut key_paths: Vec<PathBuf> = key_dirs
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    key_paths.sort();
    for kp in key_paths {
        let key = kp.file_name().unwrap().to_string_lossy().into_owned();
        let mut instances = Vec::new();
        for d in fsutil::list_dirs(&kp, fsutil::is_instance_name).unwrap_or_default() {
            instances.push(inspect_instance(&d));
        }
        keys.push(KeyReport { key, instances });
    }
    Ok(Report {
        root: root.to_path_buf(),
        keys,
    })
}

fn inspect_instance(dir: &Path) -> InstanceReport {
    let live = fsutil::instance_is_live(dir);
    let pid = fs::read_to_string(dir.join("pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let ledger = match ledger::read_state(&dir.join("ledger")) {
        LedgerState::Ok(_) => LedgerStatus::Ok,
        LedgerState::Empty => LedgerStatus::Empty,
        LedgerState::Missing => LedgerStatus::Missing,
        LedgerState::Corrupt => LedgerStatus::Corrupt,
    };
    let mut r = InstanceReport {
        name: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: dir.to_path_buf(),
        live,
        pid,
        ledger,
        segments: 0,
        records: 0,
        bytes: 0,
        disk_bytes: 0,
        oldest_us: None,
        newest_us: None,
        corrupt_records: 0,
        torn_bytes: 0,
        bad_segments: 0,
        empty_segments: 0,
        adopted_dirs: 0,
    };
    add_tree(dir, &mut r);
    r
}

/// Adds one instance directory's segments, and those of the instances it adopted, to `r`.
fn add_tree(dir: &Path, r: &mut InstanceReport) {
    for d in fsutil::delivery_order(dir) {
        if d != dir {
            r.adopted_dirs += 1;
        }
        add_dir(&d, r);
    }
}

/// Adds one directory's segments to `r`.
fn add_dir(dir: &Path, r: &mut InstanceReport) {
    let start = match ledger::read_state(&dir.join("ledger")) {
        LedgerState::Ok(p) => p,
        _ => ledger::Pos::default(),
    };
    if let Ok(rd) = fs::read_dir(dir) {
        r.bad_segments += rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".bad"))
            .count() as u64;
    }
    for (seq, path) in fsutil::list_segments(dir).unwrap_or_default() {
        let file = match File::open(&path) {
            Ok(f) => f,
            // Delivered and unlinked by its live owner since the listing.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(_) => {
                r.segments += 1;
                r.bad_segments += 1;
                continue;
            }
        };
        r.segments += 1;
        r.disk_bytes += file.metadata().map(|m| m.len()).unwrap_or(0);
        if seq < start.seg {
            continue; // delivered, not yet unlinked
        }
        let from = if seq == start.seg { start.off } else { 0 };
        let scan = match format::scan(&file, from) {
            Ok(s) => s,
            Err(ScanError::Headerless) => {
                r.empty_segments += 1;
                continue;
            }
            Err(_) => {
                r.bad_segments += 1;
                continue;
            }
        };
        r.records += scan.records;
        r.bytes += scan.payload_bytes;
        r.corrupt_records += scan.corrupt;
        r.torn_bytes += scan.file_len - scan.valid_end;
        r.oldest_us = min_opt(r.oldest_us, scan.min_time);
        r.newest_us = max_opt(r.newest_us, scan.max_time);
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl fmt::Display for LedgerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LedgerStatus::Ok => "ok",
            LedgerStatus::Empty => "empty",
            LedgerStatus::Missing => "missing (all on disk would be resent)",
            LedgerStatus::Corrupt => "corrupt (all on disk would be resent)",
        })
    }
}

impl fmt::Display for Report {
    /// One block per output key, one paragraph per instance.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "spool {}", self.root.display())?;
        if self.keys.is_empty() {
            writeln!(f, "  (no outputs)")?;
        }
        for k in &self.keys {
            writeln!(f, "output {}", k.key)?;
            if k.instances.is_empty() {
                writeln!(f, "  (no instances)")?;
            }
            for i in &k.instances {
                write!(f, "{i}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for InstanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pid = self.pid.map_or_else(|| "?".to_string(), |p| p.to_string());
        writeln!(
            f,
            "  instance {} ({}, pid {pid}){}",
            self.name,
            if self.live {
                "live"
            } else {
                "dead: will be adopted"
            },
            if self.adopted_dirs > 0 {
                format!(", {} adopted instance(s) inside", self.adopted_dirs)
            } else {
                String::new()
            }
        )?;
        writeln!(
            f,
            "    records {}  payload {} B  on disk {} B in {} segment(s)  ledger {}",
            self.records, self.bytes, self.disk_bytes, self.segments, self.ledger
        )?;
        match (self.oldest_us, self.newest_us) {
            (Some(o), Some(n)) => writeln!(
                f,
                "    oldest {}  newest {}",
                crate::civil::rfc3339_us(o),
                crate::civil::rfc3339_us(n)
            )?,
            _ => writeln!(f, "    oldest -  newest -")?,
        }
        writeln!(
            f,
            "    verify {}: corrupt {}  torn tail {} B  bad segments {}  empty segments {}",
            if self.verified() { "ok" } else { "FAILED" },
            self.corrupt_records,
            self.torn_bytes,
            self.bad_segments,
            self.empty_segments
        )
    }
}
