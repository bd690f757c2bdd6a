//! Small filesystem helpers for the spool: the instance lock (`flock`), directory creation and
//! fsync, instance names. Everything here is std + libc; nothing else in the crate is used.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Adds the path to an error's text, keeping its kind (callers branch on the kind, people read
/// the path).
pub(crate) fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Creates `dir` and its missing parents with mode 0700 (an existing directory is left as it is).
pub(crate) fn create_dir_0700(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| with_path(e, "cannot create spool directory", dir))
}

/// Creates one directory with mode 0700 (its parent must exist; an existing one is an error).
pub(crate) fn mkdir_0700(dir: &Path) -> io::Result<()> {
    DirBuilder::new().mode(0o700).create(dir)
}

/// fsyncs a directory, making the creation, rename and unlink of its entries durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens (creating it 0600 if missing) a lock file. std opens every file with O_CLOEXEC, so the
/// descriptor does not leak into an `exec`ed program (a fork child still inherits it: see
/// `OutputSpool::after_fork_in_child`).
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Outcome of a non-blocking `flock` attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// We now hold the lock (on this open file description).
    Taken,
    /// Another open file description holds it: its owner is alive.
    Busy,
}

/// `flock(fd, LOCK_EX|LOCK_NB)` (or `LOCK_SH` when `shared`): never blocks.
pub(crate) fn try_flock(file: &File, shared: bool) -> io::Result<Lock> {
    let op = if shared { libc::LOCK_SH } else { libc::LOCK_EX } | libc::LOCK_NB;
    loop {
        // SAFETY: flock only reads the descriptor number, which `file` keeps open for the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(Lock::Taken);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(Lock::Busy),
            _ => return Err(e),
        }
    }
}

/// Releases a lock taken with [`try_flock`] without closing the file.
pub(crate) fn unlock(file: &File) {
    // SAFETY: as in try_flock; LOCK_UN on a descriptor we own cannot affect memory safety.
    unsafe {
        libc::flock(file.as_raw_fd(), libc::LOCK_UN);
    }
}

/// Whether the process that owns instance directory `dir` is alive: its lock is held (a shared
/// try is refused). A lock the probe takes is let go at once; no lock file, or one that cannot
/// be opened, is not alive.
pub(crate) fn instance_is_live(dir: &Path) -> bool {
    open_lock_file_existing(&dir.join("lock")).is_ok_and(|lock| match try_flock(&lock, true) {
        Ok(Lock::Taken) => {
            unlock(&lock);
            false
        }
        Ok(Lock::Busy) => true,
        Err(_) => false,
    })
}

/// Whether the process that owned instance directory `dir` is gone: its lock is free (taken
/// and let go at once), or there is no lock file (its creator died before making one). A lock
/// file that cannot be opened or locked is neither: left for a later look.
pub(crate) fn instance_is_dead(dir: &Path) -> bool {
    match open_lock_file_existing(&dir.join("lock")) {
        Ok(lock) => try_flock(&lock, false).ok() == Some(Lock::Taken),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// A name for this process's instance directory: `<pid>-<16 hex digits>`, unique among the
/// processes and the spools of one process.
pub(crate) fn instance_name() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    h.write_u64(nanos);
    h.write_u32(std::process::id());
    format!("{}-{:016x}", std::process::id(), h.finish())
}

/// Is `name` an instance directory name (`<digits>-<hex>`)? Temporary and retired directories
/// start with `.` and are not.
pub(crate) fn is_instance_name(name: &str) -> bool {
    match name.split_once('-') {
        Some((pid, rnd)) => {
            !pid.is_empty()
                && !rnd.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && rnd.bytes().all(|b| b.is_ascii_hexdigit())
        }
        None => false,
    }
}

/// The segment file name of sequence number `seq`.
pub(crate) fn segment_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

/// The sequence number of a segment file name (`None` for any other file).
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Lists the segments of `dir`, sorted by sequence number.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
            segs.push((seq, entry.path()));
        }
    }
    segs.sort_unstable_by_key(|s| s.0);
    Ok(segs)
}

/// Lists the sub-directories of `dir` whose names satisfy `keep`, sorted by name.
pub(crate) fn list_dirs(dir: &Path, keep: impl Fn(&str) -> bool) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir && entry.file_name().to_str().is_some_and(&keep) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Opens an existing lock file (another instance's) without creating it.
pub(crate) fn open_lock_file_existing(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// The directories of segments under an instance directory, in delivery order: the instances
/// it adopted (in `adopted/`, by name, each preceded by its own adopted ones), then `dir`
/// itself. Iterative: nesting depth costs no stack.
pub(crate) fn delivery_order(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), false)];
    while let Some((d, expanded)) = stack.pop() {
        if expanded {
            out.push(d);
            continue;
        }
        let subs = list_dirs(&d.join("adopted"), |n| !n.starts_with('.')).unwrap_or_default();
        stack.push((d, true));
        stack.extend(subs.into_iter().rev().map(|s| (s, false)));
    }
    out
}

/// The instance name (`<pid>-<hex>`) at the end of an adopted directory's name
/// (`<n>-<m>-<pid>-<hex>`), or of an instance directory's own name.
pub(crate) fn instance_of(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parts: Vec<&str> = name.rsplitn(3, '-').collect();
    match parts.as_slice() {
        [hex, pid, ..] => format!("{pid}-{hex}"),
        _ => name,
    }
}
