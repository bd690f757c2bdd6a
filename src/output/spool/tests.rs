//! Tests on real files in temporary directories. Tests that `fork()` take the write side of
//! `FORK`, every other test the read side: a fork child inherits every descriptor of the test
//! process, and must not hold another test's spool lock while that test expects adoption.

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static FORK: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    FORK.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    FORK.write().unwrap_or_else(|e| e.into_inner())
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "rlog-spool-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const KEY: &str = "0-tcp_127.0.0.1_5140";

fn opts(segment_bytes: u64) -> SpoolOptions {
    SpoolOptions {
        max_bytes: 1 << 30,
        sync: SyncMode::Batch,
        segment_bytes,
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("record number {i} {}", "x".repeat((i % 7) as usize)).into_bytes()
}

fn time_of(i: u64) -> Option<i64> {
    (i % 5 != 0).then_some(1_700_000_000_000_000 + i as i64)
}

/// Appends records `ids` as one batch.
fn append_ids(sp: &mut OutputSpool, ids: std::ops::Range<u64>) {
    let bodies: Vec<Vec<u8>> = ids.clone().map(payload).collect();
    let recs: Vec<SpoolRecord<'_>> = ids
        .clone()
        .zip(&bodies)
        .map(|(i, b)| SpoolRecord {
            counted: true,
            id: i,
            time_us: time_of(i),
            bytes: b,
        })
        .collect();
    sp.append(&recs).unwrap();
}

/// Reads everything unread, in chunks of `chunk` records.
fn read_all(sp: &mut OutputSpool, chunk: usize) -> Vec<OwnedRecord> {
    let mut out = Vec::new();
    while sp.read(chunk, usize::MAX, &mut out).unwrap() > 0 {}
    out
}

fn ids(recs: &[OwnedRecord]) -> Vec<u64> {
    recs.iter().map(|r| r.id).collect()
}

/// Every record is the one `append_ids` wrote for its id.
fn check_contents(recs: &[OwnedRecord]) {
    for r in recs {
        assert_eq!(r.bytes, payload(r.id), "payload of record {}", r.id);
        assert_eq!(r.time_us, time_of(r.id), "time of record {}", r.id);
    }
}

fn segs_in(dir: &Path) -> Vec<PathBuf> {
    fsutil::list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|s| s.1)
        .collect()
}

/// Instance directories directly under the key directory.
fn instances(root: &Path) -> Vec<PathBuf> {
    fsutil::list_dirs(&root.join(KEY), fsutil::is_instance_name).unwrap()
}

/// A spool left by a process that is gone: open, append `ids` in batches of `batch`, drop
/// without delivering (the lock is released, the directory stays). Returns its directory.
fn dead_instance(root: &Path, ids: std::ops::Range<u64>, batch: u64, seg: u64) -> PathBuf {
    let mut sp = OutputSpool::open(root, KEY, opts(seg)).unwrap();
    let mut i = ids.start;
    while i < ids.end {
        let j = (i + batch).min(ids.end);
        append_ids(&mut sp, i..j);
        i = j;
    }
    let dir = sp.dir().to_path_buf();
    drop(sp);
    assert!(dir.is_dir(), "an undelivered spool survives its owner");
    dir
}

#[test]
fn append_read_commit_in_order_across_segments() {
    let _g = shared();
    let t = TempDir::new("order");
    let mut sp = OutputSpool::open(&t.0, KEY, opts(300)).unwrap();
    for b in 0..20 {
        append_ids(&mut sp, b * 3..b * 3 + 3);
    }
    let nsegs = segs_in(sp.dir()).len();
    assert!(nsegs >= 10, "small segments roll: {nsegs}");
    assert_eq!(sp.stats().records, 60);
    let want_bytes: u64 = (0..60).map(|i| payload(i).len() as u64).sum();
    assert_eq!(sp.stats().bytes, want_bytes);
    let mut got = Vec::new();
    loop {
        let mut chunk = Vec::new();
        if sp.read(7, usize::MAX, &mut chunk).unwrap() == 0 {
            break;
        }
        assert_eq!(sp.in_flight(), chunk.len());
        sp.commit(chunk.len()).unwrap();
        got.extend(chunk);
    }
    assert_eq!(ids(&got), (0..60).collect::<Vec<_>>());
    check_contents(&got);
    assert!(sp.is_empty());
    assert_eq!(sp.stats().records, 0);
    assert_eq!(sp.stats().bytes, 0);
    // Only the segment being appended to is left; its bytes are all that is counted.
    let left = segs_in(sp.dir());
    assert_eq!(left.len(), 1, "delivered segments are unlinked: {left:?}");
    assert_eq!(sp.stats().disk_bytes, fs::metadata(&left[0]).unwrap().len());
    // Appending after a full drain goes on in order.
    append_ids(&mut sp, 60..65);
    let more = read_all(&mut sp, 100);
    assert_eq!(ids(&more), (60..65).collect::<Vec<_>>());
    sp.commit(5).unwrap();
    let dir = sp.dir().to_path_buf();
    drop(sp);
    assert!(
        !dir.exists(),
        "an empty spool removes its directory on drop"
    );
}

#[test]
fn read_limits_and_rewind() {
    let _g = shared();
    let t = TempDir::new("rewind");
    let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    append_ids(&mut sp, 0..10);
    let mut out = Vec::new();
    assert_eq!(sp.read(3, usize::MAX, &mut out).unwrap(), 3);
    // max_bytes smaller than one record still yields one record.
    assert_eq!(sp.read(100, 1, &mut out).unwrap(), 1);
    assert_eq!(ids(&out), vec![0, 1, 2, 3]);
    sp.rewind();
    assert_eq!(sp.in_flight(), 0);
    out.clear();
    assert_eq!(sp.read(5, usize::MAX, &mut out).unwrap(), 5);
    assert_eq!(ids(&out), vec![0, 1, 2, 3, 4]);
    sp.commit(2).unwrap();
    assert_eq!(sp.in_flight(), 3);
    assert_eq!(sp.stats().records, 8);
    sp.rewind();
    out.clear();
    let all = read_all(&mut sp, 4);
    assert_eq!(ids(&all), (2..10).collect::<Vec<_>>());
    // max_bytes stops a read once reached.
    sp.rewind();
    let one = payload(2).len() + payload(3).len();
    assert_eq!(sp.read(100, one, &mut out).unwrap(), 2);
}

#[test]
fn restart_delivers_what_was_not_committed_in_order() {
    let _g = shared();
    let t = TempDir::new("restart");
    let mut sp = OutputSpool::open(&t.0, KEY, opts(400)).unwrap();
    for b in 0..10 {
        append_ids(&mut sp, b * 4..b * 4 + 4);
    }
    let mut out = Vec::new();
    sp.read(13, usize::MAX, &mut out).unwrap();
    sp.commit(13).unwrap();
    out.clear();
    sp.read(6, usize::MAX, &mut out).unwrap(); // read, never committed: delivery failed
    let old = sp.dir().to_path_buf();
    drop(sp);

    let mut sp = OutputSpool::open(&t.0, KEY, opts(400)).unwrap();
    assert!(
        !old.exists(),
        "the dead instance was moved into the new one"
    );
    assert_eq!(instances(&t.0), vec![sp.dir().to_path_buf()]);
    let st = sp.stats();
    assert_eq!(st.adopted_records, 27);
    assert_eq!(st.records, 27);
    assert_eq!(
        st.adopted_bytes,
        (13..40).map(|i| payload(i).len() as u64).sum::<u64>()
    );
    append_ids(&mut sp, 100..103); // new records come after the adopted ones
    let got = read_all(&mut sp, 5);
    let mut want: Vec<u64> = (13..40).collect();
    want.extend(100..103);
    assert_eq!(ids(&got), want);
    check_contents(&got);
    sp.commit(got.len()).unwrap();
    assert!(sp.is_empty());
    assert!(
        !sp.dir().join("adopted").exists()
            || fs::read_dir(sp.dir().join("adopted")).unwrap().count() == 0,
        "a delivered adopted instance is removed"
    );
}

#[test]
fn restart_twice_keeps_order_through_nested_adoption() {
    let _g = shared();
    let t = TempDir::new("nested");
    dead_instance(&t.0, 0..20, 5, 300);
    // B adopts A, delivers part of it, appends its own, dies.
    let mut b = OutputSpool::open(&t.0, KEY, opts(300)).unwrap();
    let mut out = Vec::new();
    b.read(7, usize::MAX, &mut out).unwrap();
    b.commit(7).unwrap();
    append_ids(&mut b, 50..60);
    drop(b);
    // C adopts B (with A inside): A's rest, then B's own.
    let mut c = OutputSpool::open(&t.0, KEY, opts(300)).unwrap();
    assert_eq!(c.stats().adopted_records, 13 + 10);
    let got = read_all(&mut c, 3);
    let mut want: Vec<u64> = (7..20).collect();
    want.extend(50..60);
    assert_eq!(ids(&got), want);
    c.commit(got.len()).unwrap();
    assert_eq!(c.stats().disk_bytes, 0, "every adopted segment unlinked");
}

#[test]
fn live_instance_is_not_adopted_dead_one_is() {
    let _g = shared();
    let t = TempDir::new("live");
    let mut a = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    append_ids(&mut a, 0..5);
    // A second logger in the same process: its own instance, does not take A's.
    let mut b = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    assert_ne!(a.dir(), b.dir());
    assert_eq!(b.stats().adopted_records, 0);
    assert_eq!(b.adopt().unwrap(), AdoptReport::default());
    assert_eq!(read_all(&mut b, 10).len(), 0);
    append_ids(&mut b, 100..102);
    // A still works, untouched.
    assert_eq!(ids(&read_all(&mut a, 10)), (0..5).collect::<Vec<_>>());
    a.rewind();
    let a_dir = a.dir().to_path_buf();
    drop(a);
    // A's lock held by another open file description (another process, as far as flock goes).
    let holder = fsutil::open_lock_file(&a_dir.join("lock")).unwrap();
    assert_eq!(fsutil::try_flock(&holder, false).unwrap(), Lock::Taken);
    assert_eq!(b.adopt().unwrap().instances, 0);
    assert!(a_dir.is_dir());
    drop(holder);
    let rep = b.adopt().unwrap();
    assert_eq!((rep.instances, rep.records), (1, 5));
    assert!(!a_dir.exists());
    // Adopted records come before B's own unread ones.
    assert_eq!(ids(&read_all(&mut b, 10)), vec![0, 1, 2, 3, 4, 100, 101]);
}

#[test]
fn stray_keys_are_adopted_from_and_unclaimed_ones_are_found() {
    let _g = shared();
    let t = TempDir::new("strays");
    const OLD: &str = "3-tcp_127.0.0.1_5140";
    const OTHER: &str = "1-tcp_127.0.0.1_9999";
    // A dead instance under the key an earlier config gave the output, one under another
    // target's, and a live one under the earlier key.
    // (The live one is opened first: an `open` adopts the dead instances under its key.)
    let mut live = OutputSpool::open(&t.0, OLD, opts(1 << 20)).unwrap();
    append_ids(&mut live, 10..12);
    let mut old = OutputSpool::open(&t.0, OLD, opts(1 << 20)).unwrap();
    append_ids(&mut old, 0..3);
    drop(old);
    let mut other = OutputSpool::open(&t.0, OTHER, opts(1 << 20)).unwrap();
    append_ids(&mut other, 50..52);
    drop(other);
    let claimed = |k: &str| k == KEY || k == OLD;
    assert_eq!(unclaimed_keys(&t.0, claimed), vec![OTHER.to_string()]);
    assert_eq!(
        unclaimed_keys(&t.0, |k| k == KEY),
        vec![OTHER.to_string(), OLD.to_string()]
    );

    let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    assert_eq!(
        sp.stats().adopted_records,
        0,
        "no strays without also_adopt_from"
    );
    sp.also_adopt_from(Box::new(|k| k == OLD));
    let rep = sp.adopt().unwrap();
    assert_eq!((rep.instances, rep.records), (1, 3), "the dead one only");
    assert_eq!(ids(&read_all(&mut sp, 10)), vec![0, 1, 2]);
    assert!(t.0.join(OLD).is_dir(), "the key directory stays");
    drop(live);
    let rep = sp.adopt().unwrap();
    assert_eq!(
        (rep.instances, rep.records),
        (1, 2),
        "once its process is gone"
    );
    assert_eq!(ids(&read_all(&mut sp, 10)), vec![10, 11]);
    assert_eq!(unclaimed_keys(&t.0, |k| k == KEY), vec![OTHER.to_string()]);
}

#[test]
fn instance_without_lock_file_is_adopted() {
    let _g = shared();
    let t = TempDir::new("nolock");
    let dir = dead_instance(&t.0, 0..4, 4, 1 << 20);
    fs::remove_file(dir.join("lock")).unwrap();
    fs::remove_file(dir.join("pid")).unwrap();
    let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    assert_eq!(ids(&read_all(&mut sp, 10)), vec![0, 1, 2, 3]);
}

/// Forks; the child runs `f` and `_exit`s with its return value. Returns the child's pid.
fn fork_child(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: fork has no memory-safety preconditions; the child only runs `f` (file I/O and
    // allocation, which glibc makes safe after fork) and then _exit, never returning here.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(99);
        // SAFETY: _exit ends the child without running the parent's atexit handlers or
        // destructors, which belong to the parent.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Waits for `pid`; returns (exit code, or -signal).
fn wait_child(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid writes only to `status`, which lives for the call.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid);
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    }
}

fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`, which we then own.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0);
    use std::os::unix::io::FromRawFd;
    // SAFETY: both descriptors were just created and are owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

#[test]
fn fork_child_that_exits_is_adopted() {
    let _g = exclusive();
    let t = TempDir::new("forkexit");
    let root = t.0.clone();
    let pid = fork_child(move || {
        let Ok(mut sp) = OutputSpool::open(&root, KEY, opts(500)) else {
            return 2;
        };
        for b in 0..6 {
            append_ids(&mut sp, b * 5..b * 5 + 5);
        }
        // _exit without dropping: as a process that dies holding its spool.
        std::mem::forget(sp);
        0
    });
    assert_eq!(wait_child(pid), 0);
    let mut sp = OutputSpool::open(&t.0, KEY, opts(500)).unwrap();
    assert_eq!(sp.stats().adopted_records, 30);
    let got = read_all(&mut sp, 8);
    assert_eq!(ids(&got), (0..30).collect::<Vec<_>>());
    check_contents(&got);
}

#[test]
fn fork_child_killed_is_adopted_only_once_dead() {
    let _g = exclusive();
    let t = TempDir::new("forkkill");
    let root = t.0.clone();
    let (mut rx, tx) = pipe();
    let pid = fork_child(move || {
        let Ok(mut sp) = OutputSpool::open(&root, KEY, opts(1 << 20)) else {
            return 2;
        };
        append_ids(&mut sp, 0..7);
        let _ = (&tx).write_all(b"k");
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let mut b = [0u8; 1];
    use std::io::{Read, Write};
    rx.read_exact(&mut b).unwrap();
    // Alive: its spool is not taken.
    let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    assert_eq!(sp.stats().adopted_records, 0);
    assert_eq!(instances(&t.0).len(), 2);
    // SAFETY: kill sends a signal to our own child; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert_eq!(wait_child(pid), -libc::SIGKILL);
    let rep = sp.adopt().unwrap();
    assert_eq!((rep.instances, rep.records), (1, 7));
    assert_eq!(ids(&read_all(&mut sp, 10)), (0..7).collect::<Vec<_>>());
}

#[test]
fn fork_child_drops_parent_spool_and_lock() {
    let _g = exclusive();
    let t = TempDir::new("afterfork");
    let mut parent = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    append_ids(&mut parent, 0..4);
    let parent_dir = parent.dir().to_path_buf();
    let parent_seg = segs_in(&parent_dir)[0].clone();
    let seg_len = fs::metadata(&parent_seg).unwrap().len();
    let (mut rx, tx) = pipe();
    let root = t.0.clone();
    // The child gets a copy of `parent` (and of its lock's open file description).
    let mut parent = Some(parent);
    let pid = fork_child(|| {
        let parent_dir = parent.as_ref().unwrap().dir().to_path_buf();
        let open_in = |dir: &Path| {
            fs::read_dir("/proc/self/fd")
                .map(|rd| {
                    rd.filter_map(|e| fs::read_link(e.ok()?.path()).ok())
                        .filter(|l| l.starts_with(dir))
                        .count()
                })
                .unwrap_or(0)
        };
        if open_in(&parent_dir) < 3 {
            return 4; // lock, ledger, segment: inherited (else this check proves nothing)
        }
        parent.take().unwrap().after_fork_in_child();
        if open_in(&parent_dir) != 0 {
            return 5; // a descriptor of the parent's spool is still open
        }
        let Ok(mut own) = OutputSpool::open(&root, KEY, opts(1 << 20)) else {
            return 2;
        };
        if own.stats().adopted_records != 0 {
            return 3; // the parent is alive: its spool must not be taken
        }
        append_ids(&mut own, 100..103);
        use std::io::Write;
        let _ = (&tx).write_all(b"k");
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    drop(tx); // so that a child that fails early closes the pipe's last writer
    use std::io::Read;
    let mut b = [0u8; 1];
    if rx.read(&mut b).unwrap() != 1 {
        panic!("child failed before spooling: {}", wait_child(pid));
    }
    // The child touched none of the parent's files.
    assert_eq!(fs::metadata(&parent_seg).unwrap().len(), seg_len);
    assert!(parent_dir.join("lock").exists());
    // The parent "dies" (its descriptors close) while the child lives on: the parent's
    // instance must be adoptable, which it is not if the child kept the lock's descriptor.
    drop(parent.take());
    let mut third = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    let adopted = third.stats().adopted_records;
    // SAFETY: signal to our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(wait_child(pid), -libc::SIGKILL);
    assert_eq!(
        adopted, 4,
        "the parent's spool was adopted while the child lived"
    );
    assert_eq!(ids(&read_all(&mut third, 10)), vec![0, 1, 2, 3]);
    // The child's own spool is adopted once it is dead.
    assert_eq!(third.adopt().unwrap().records, 3);
    assert_eq!(ids(&read_all(&mut third, 10)), vec![100, 101, 102]);
}

/// Offsets of the records in a segment written by `append_ids` (header, then records).
fn record_offsets(seg: &Path) -> Vec<u64> {
    let data = fs::read(seg).unwrap();
    let mut offs = Vec::new();
    let mut p = HEADER_LEN as usize;
    while p + 4 <= data.len() {
        offs.push(p as u64);
        let len = u32::from_le_bytes(data[p..p + 4].try_into().unwrap()) as usize;
        p += 8 + len;
    }
    offs
}

#[test]
fn torn_tail_cuts_the_whole_last_batch() {
    let _g = shared();
    let t = TempDir::new("torn");
    let dir = dead_instance(&t.0, 0..9, 3, 1 << 20); // batches 0..3, 3..6, 6..9
    let seg = segs_in(&dir)[0].clone();
    let offs = record_offsets(&seg);
    assert_eq!(offs.len(), 9);
    // A crash in the middle of the last record of the last batch.
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(offs[8] + 10).unwrap();
    drop(f);
    let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    let st = sp.stats();
    assert_eq!(
        st.adopted_records, 6,
        "records 6 and 7 are whole but their batch is not"
    );
    assert_eq!(st.torn_bytes, offs[8] + 10 - offs[6]);
    assert_eq!(st.corrupt_records, 0);
    assert_eq!(ids(&read_all(&mut sp, 10)), (0..6).collect::<Vec<_>>());
    // The torn bytes were truncated away.
    let adopted_seg =
        segs_in(&fsutil::list_dirs(&sp.dir().join("adopted"), |_| true).unwrap()[0])[0].clone();
    assert_eq!(fs::metadata(adopted_seg).unwrap().len(), offs[6]);
}

#[test]
fn torn_tail_at_a_record_boundary_inside_a_batch() {
    let _g = shared();
    let t = TempDir::new("torn2");
    let dir = dead_instance(&t.0, 0..8, 4, 1 << 20);
    let seg = segs_in(&dir)[0].clone();
    let offs = record_offsets(&seg);
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(offs[6]).unwrap(); // records 4 and 5 whole, 6 and 7 missing
    drop(f);
    let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    assert_eq!(ids(&read_all(&mut sp, 10)), vec![0, 1, 2, 3]);
}

fn flip_byte(path: &Path, at: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x5a;
    f.write_all_at(&b, at).unwrap();
}

#[test]
fn flipped_payload_byte_skips_one_record() {
    let _g = shared();
    let t = TempDir::new("flip");
    let dir = dead_instance(&t.0, 0..10, 10, 1 << 20);
    let seg = segs_in(&dir)[0].clone();
    let offs = record_offsets(&seg);
    flip_byte(&seg, offs[5] + 30);
    let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    let st = sp.stats();
    assert_eq!(st.corrupt_records, 1);
    assert_eq!(st.adopted_records, 9);
    let got = read_all(&mut sp, 3);
    assert_eq!(ids(&got), vec![0, 1, 2, 3, 4, 6, 7, 8, 9]);
    check_contents(&got);
    // Counted once, not again when read.
    assert_eq!(sp.stats().corrupt_records, 1);
    sp.commit(9).unwrap();
    assert!(sp.is_empty());
    assert_eq!(
        sp.stats().disk_bytes,
        0,
        "the segment is unlinked past the corrupt record"
    );
}

#[test]
fn flipped_length_byte_resyncs_to_the_next_record() {
    let _g = shared();
    let t = TempDir::new("fliplen");
    let dir = dead_instance(&t.0, 0..10, 2, 1 << 20);
    let seg = segs_in(&dir)[0].clone();
    let offs = record_offsets(&seg);
    flip_byte(&seg, offs[3] + 1); // the length now points far away
    flip_byte(&seg, offs[7] + 9); // and record 7's flags have a reserved bit set
    let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    assert_eq!(sp.stats().corrupt_records, 2);
    assert_eq!(ids(&read_all(&mut sp, 10)), vec![0, 1, 2, 4, 5, 6, 8, 9]);
}

#[test]
fn corruption_in_own_segment_is_skipped_when_read() {
    let _g = shared();
    let t = TempDir::new("ownflip");
    let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    append_ids(&mut sp, 0..6);
    let seg = segs_in(sp.dir())[0].clone();
    flip_byte(&seg, record_offsets(&seg)[2] + 29);
    let got = read_all(&mut sp, 10);
    assert_eq!(ids(&got), vec![0, 1, 3, 4, 5]);
    assert_eq!(sp.stats().corrupt_records, 1);
    sp.rewind();
    assert_eq!(read_all(&mut sp, 10).len(), 5);
    assert_eq!(
        sp.stats().corrupt_records,
        1,
        "a re-read does not count it again"
    );
    sp.commit(5).unwrap();
    assert_eq!(sp.in_flight(), 0);
    // The damaged record is counted lost once every record after it is delivered.
    assert_eq!(sp.stats().records, 0);
    assert!(sp.is_empty());
    assert_eq!(sp.stats().lost_records, 1);
    assert_eq!(sp.stats().lost_bytes, payload(2).len() as u64);
    assert!(
        sp.retire_drained_head(),
        "everything readable in it is delivered"
    );
    assert_eq!(sp.stats().lost_records, 1, "counted once");
    assert!(segs_in(sp.dir()).is_empty());
    append_ids(&mut sp, 6..7);
    drop(sp);
    let sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    assert_eq!(
        sp.stats().adopted_records,
        1,
        "only record 6 was not delivered"
    );
    assert_eq!(sp.stats().corrupt_records, 0, "the damaged segment is gone");
}

#[test]
fn empty_headerless_and_foreign_segments() {
    let _g = shared();
    let t = TempDir::new("emptyseg");
    let dir = dead_instance(&t.0, 0..3, 3, 1 << 20);
    fs::write(dir.join(fsutil::segment_name(7)), b"").unwrap();
    fs::write(dir.join(fsutil::segment_name(8)), b"RLSP").unwrap();
    fs::write(
        dir.join(fsutil::segment_name(9)),
        b"this is not a spool segment at all",
    )
    .unwrap();
    let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    let st = sp.stats();
    assert_eq!(st.bad_segments, 1);
    assert_eq!(st.adopted_records, 3);
    assert_eq!(ids(&read_all(&mut sp, 10)), vec![0, 1, 2]);
    let mut found = Vec::new();
    for d in fsutil::list_dirs(&sp.dir().join("adopted"), |_| true).unwrap() {
        for e in fs::read_dir(&d).unwrap() {
            found.push(e.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    assert!(
        found.contains(&format!("{}.bad", fsutil::segment_name(9))),
        "{found:?}"
    );
    assert!(
        !found.contains(&fsutil::segment_name(7)),
        "zero-length segment removed"
    );
    assert!(
        !found.contains(&fsutil::segment_name(8)),
        "header-less segment removed"
    );
}

#[test]
fn ledger_missing_corrupt_or_torn() {
    let _g = shared();
    // cases: (what is done to the ledger, records delivered after restart)
    for (case, want) in [
        ("intact", 4u64),
        ("missing", 10),
        ("corrupt", 10),
        ("torn newest slot", 6),
    ] {
        let t = TempDir::new("ledger");
        let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
        append_ids(&mut sp, 0..10);
        let mut out = Vec::new();
        sp.read(4, usize::MAX, &mut out).unwrap();
        sp.commit(4).unwrap(); // generation 1 (slot 64): 4 delivered
        out.clear();
        sp.read(2, usize::MAX, &mut out).unwrap();
        sp.commit(2).unwrap(); // generation 2 (slot 0): 6 delivered
        let dir = sp.dir().to_path_buf();
        drop(sp);
        let ledger = dir.join("ledger");
        match case {
            "missing" => fs::remove_file(&ledger).unwrap(),
            "corrupt" => fs::write(&ledger, vec![0xa5u8; 128]).unwrap(),
            "torn newest slot" => flip_byte(&ledger, 20),
            _ => {}
        }
        let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
        let got = ids(&read_all(&mut sp, 20));
        assert_eq!(got, (10 - want..10).collect::<Vec<_>>(), "ledger {case}");
    }
}

#[test]
fn cap_refuses_whole_batch_and_recovers() {
    let _g = shared();
    let t = TempDir::new("cap");
    let o = SpoolOptions {
        max_bytes: 1000,
        sync: SyncMode::Batch,
        segment_bytes: 400,
    };
    let mut sp = OutputSpool::open(&t.0, KEY, o).unwrap();
    let mut next = 0;
    loop {
        let before = (sp.stats(), segs_in(sp.dir()));
        let big: Vec<u8> = vec![b'a'; 60];
        let recs: Vec<SpoolRecord<'_>> = (0..3)
            .map(|i| SpoolRecord {
                counted: true,
                id: next + i,
                time_us: None,
                bytes: &big,
            })
            .collect();
        match sp.append(&recs) {
            Ok(()) => next += 3,
            Err(SpoolError::Full) => {
                assert_eq!(sp.stats(), before.0, "nothing counted");
                let segs = segs_in(sp.dir());
                assert_eq!(segs, before.1, "no segment created");
                let on_disk: u64 = segs.iter().map(|s| fs::metadata(s).unwrap().len()).sum();
                assert_eq!(on_disk, sp.stats().disk_bytes, "nothing written");
                assert!(on_disk + 3 * 88 > 1000);
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(sp.stats().disk_bytes <= 1000);
    }
    assert!(next >= 9);
    // Delivering frees room.
    let got = read_all(&mut sp, 100);
    assert_eq!(got.len() as u64, next);
    sp.commit(got.len()).unwrap();
    let one = [SpoolRecord {
        counted: true,
        id: 999,
        time_us: None,
        bytes: &[b'b'; 60],
    }; 3];
    sp.append(&one).unwrap();
    // The cap counts adopted files: reopening with a smaller cap refuses at once.
    let dir_before = sp.dir().to_path_buf();
    drop(sp);
    let small = SpoolOptions {
        max_bytes: 100,
        ..o
    };
    let mut sp = OutputSpool::open(&t.0, KEY, small).unwrap();
    assert!(!dir_before.exists());
    assert_eq!(sp.stats().adopted_records, 3);
    assert!(sp.stats().disk_bytes > 100);
    assert!(matches!(
        sp.append(&[SpoolRecord {
            counted: true,
            id: 1,
            time_us: None,
            bytes: b"x"
        }]),
        Err(SpoolError::Full)
    ));
}

#[test]
fn disk_full_is_an_io_error_and_the_spool_stays_usable() {
    let _g = exclusive();
    let t = TempDir::new("efbig");
    let root = t.0.clone();
    let pid = fork_child(move || {
        // SAFETY: setting a signal disposition and a resource limit of this (child) process.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write only `lim`.
        unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim) };
        let saved = lim.rlim_cur;
        lim.rlim_cur = 4096;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) } != 0 {
            return 10;
        }
        let Ok(mut sp) = OutputSpool::open(&root, KEY, opts(1 << 20)) else {
            return 11;
        };
        let mut ok = 0u64;
        let err = loop {
            let body = vec![b'z'; 300];
            let recs = [SpoolRecord {
                counted: true,
                id: ok,
                time_us: Some(ok as i64),
                bytes: &body,
            }; 2];
            match sp.append(&recs) {
                Ok(()) => ok += 1,
                Err(e) => break e,
            }
            if ok > 100 {
                return 12; // the limit did not bite
            }
        };
        match &err {
            SpoolError::Io(e) if e.raw_os_error() == Some(libc::EFBIG) => {}
            _ => return 13,
        }
        if sp.stats().records != ok * 2 {
            return 14;
        }
        let seg = segs_in(sp.dir())[0].clone();
        let want_len = HEADER_LEN + ok * 2 * format::framed_len(300);
        if fs::metadata(&seg).map(|m| m.len()).ok() != Some(want_len) {
            return 15; // the partial write was not truncated away
        }
        // Room again: the same spool goes on.
        lim.rlim_cur = saved;
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) };
        let body = vec![b'y'; 300];
        if sp
            .append(&[SpoolRecord {
                counted: true,
                id: 7777,
                time_us: None,
                bytes: &body,
            }])
            .is_err()
        {
            return 16;
        }
        let mut out = Vec::new();
        while sp.read(100, usize::MAX, &mut out).unwrap_or(0) > 0 {}
        if out.len() as u64 != ok * 2 + 1 || out.last().map(|r| r.id) != Some(7777) {
            return 17;
        }
        if out[..out.len() - 1]
            .iter()
            .any(|r| r.bytes != vec![b'z'; 300])
        {
            return 18;
        }
        0
    });
    assert_eq!(wait_child(pid), 0, "see the return codes in the child");
}

#[test]
fn inspect_reports_live_dead_corrupt_and_times() {
    let _g = shared();
    let t = TempDir::new("inspect");
    let dead = dead_instance(&t.0, 0..10, 5, 1 << 20);
    let seg = segs_in(&dead)[0].clone();
    flip_byte(&seg, record_offsets(&seg)[3] + 30);
    fs::write(
        dead.join(format!("{}.bad", fsutil::segment_name(42))),
        b"junk",
    )
    .unwrap();
    // A live one, with a delivered part.
    let mut live = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    // (The live spool adopted the dead one: make a new dead one for the report.)
    let adopted_into_live = live.stats().adopted_records;
    assert_eq!(adopted_into_live, 9);
    let mut out = Vec::new();
    live.read(9, usize::MAX, &mut out).unwrap();
    live.commit(9).unwrap();
    append_ids(&mut live, 20..26);
    let mut out = Vec::new();
    live.read(2, usize::MAX, &mut out).unwrap();
    live.commit(2).unwrap();
    let dead2 = {
        // A dead instance that nobody adopted yet (dropped with records: its lock is free).
        let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
        append_ids(&mut sp, 30..34);
        let d = sp.dir().to_path_buf();
        drop(sp);
        d
    };
    let seg2 = segs_in(&dead2)[0].clone();
    flip_byte(&seg2, record_offsets(&seg2)[1] + 29);
    let size2 = fs::metadata(&seg2).unwrap().len();
    let rep = inspect(&t.0).unwrap();
    assert_eq!(rep.keys.len(), 1);
    assert_eq!(rep.keys[0].key, KEY);
    let by_dir = |d: &Path| {
        rep.keys[0]
            .instances
            .iter()
            .find(|i| i.path == d)
            .unwrap_or_else(|| panic!("{d:?} not in {rep:?}"))
    };
    let l = by_dir(live.dir());
    assert!(l.live);
    assert_eq!(l.pid, Some(std::process::id()));
    assert_eq!((l.records, l.corrupt_records), (4, 0));
    assert_eq!(l.oldest_us, time_of(22));
    assert_eq!(l.newest_us, time_of(24), "id 25's time is absent");
    assert_eq!(l.ledger, LedgerStatus::Ok);
    assert_eq!(
        l.bad_segments, 1,
        "the adopted instance's .bad file is listed"
    );
    let d = by_dir(&dead2);
    assert!(!d.live);
    assert_eq!((d.records, d.corrupt_records), (3, 1));
    assert!(!d.verified());
    assert_eq!(d.ledger, LedgerStatus::Empty);
    assert_eq!(
        d.bytes,
        [30, 32, 33]
            .iter()
            .map(|&i| payload(i).len() as u64)
            .sum::<u64>()
    );
    let text = rep.to_string();
    assert!(text.contains(KEY), "{text}");
    assert!(text.contains("(live, pid"), "{text}");
    assert!(text.contains("dead: will be adopted"), "{text}");
    assert!(text.contains("verify FAILED: corrupt 1"), "{text}");
    assert!(
        text.contains(&crate::civil::rfc3339_us(time_of(22).unwrap())),
        "{text}"
    );
    // inspect changed nothing.
    assert_eq!(fs::metadata(&seg2).unwrap().len(), size2);
    assert!(dead2.is_dir());
    // And the dead one can still be adopted afterwards (inspect let its lock go).
    assert_eq!(live.adopt().unwrap().records, 3);
}

#[test]
fn unusable_root_is_an_error_naming_the_path() {
    let _g = shared();
    let t = TempDir::new("badroot");
    let file = t.0.join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let err = OutputSpool::open(&file.join("spool"), KEY, opts(1 << 20))
        .err()
        .expect("error");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    let ro = t.0.join("ro");
    fs::create_dir(&ro).unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
    // (root ignores permissions; only check when they apply)
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let err = OutputSpool::open(&ro, KEY, opts(1 << 20))
            .err()
            .expect("error");
        assert!(err.to_string().contains("ro"), "{err}");
    }
    assert!(matches!(
        OutputSpool::open(&t.0, "../x", opts(1 << 20)),
        Err(SpoolError::Io(e)) if e.kind() == io::ErrorKind::InvalidInput
    ));
    // Directories are created 0700.
    let sp = OutputSpool::open(&t.0.join("new"), KEY, opts(1 << 20)).unwrap();
    let mode = fs::metadata(t.0.join("new").join(KEY))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(
        fs::metadata(sp.dir()).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn interval_and_none_modes_deliver_after_restart() {
    let _g = shared();
    for sync in [SyncMode::Interval(Duration::from_millis(1)), SyncMode::None] {
        let t = TempDir::new("modes");
        let o = SpoolOptions { sync, ..opts(300) };
        let mut sp = OutputSpool::open(&t.0, KEY, o).unwrap();
        for b in 0..6 {
            append_ids(&mut sp, b * 4..b * 4 + 4);
            std::thread::sleep(Duration::from_millis(2));
            sp.maybe_sync().unwrap();
        }
        let mut out = Vec::new();
        sp.read(10, usize::MAX, &mut out).unwrap();
        sp.commit(10).unwrap();
        sp.sync().unwrap();
        drop(sp);
        let mut sp = OutputSpool::open(&t.0, KEY, o).unwrap();
        assert_eq!(
            ids(&read_all(&mut sp, 7)),
            (10..24).collect::<Vec<_>>(),
            "{sync:?}"
        );
    }
}

#[test]
fn empty_batch_and_too_large_record() {
    let _g = shared();
    let t = TempDir::new("misc");
    let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    sp.append(&[]).unwrap();
    assert!(segs_in(sp.dir()).is_empty(), "no segment for nothing");
    let huge = vec![0u8; format::MAX_PAYLOAD + 1];
    assert!(matches!(
        sp.append(&[SpoolRecord {
            counted: true,
            id: 1,
            time_us: None,
            bytes: &huge
        }]),
        Err(SpoolError::TooLarge)
    ));
    assert!(sp.is_empty());
    let empty = [SpoolRecord {
        counted: true,
        id: 5,
        time_us: Some(-3),
        bytes: b"",
    }];
    sp.append(&empty).unwrap();
    let got = read_all(&mut sp, 10);
    assert_eq!(
        got,
        vec![OwnedRecord {
            counted: true,
            id: 5,
            time_us: Some(-3),
            bytes: vec![]
        }]
    );
}

/// A random walk of appends, reads, commits, rewinds and restarts against a model queue.
#[test]
fn random_walk_matches_a_model() {
    let _g = shared();
    let t = TempDir::new("walk");
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut model: VecDeque<u64> = VecDeque::new(); // undelivered, in order
    let mut inflight = 0usize; // first `inflight` of model were read
    let mut id = 0u64;
    let mut sp = OutputSpool::open(&t.0, KEY, opts(700)).unwrap();
    for step in 0..1500 {
        match next() % 10 {
            0..=3 => {
                let n = 1 + next() % 6;
                append_ids(&mut sp, id..id + n);
                model.extend(id..id + n);
                id += n;
            }
            4..=6 => {
                let want = 1 + (next() % 9) as usize;
                let mut out = Vec::new();
                let got = sp.read(want, usize::MAX, &mut out).unwrap();
                let expect: Vec<u64> = model.iter().skip(inflight).take(want).copied().collect();
                assert_eq!(ids(&out), expect, "step {step}");
                assert_eq!(got, expect.len());
                inflight += got;
            }
            7 | 8 => {
                let n = (next() as usize) % (inflight + 1);
                sp.commit(n).unwrap();
                model.drain(..n);
                inflight -= n;
            }
            _ => {
                if next() % 3 == 0 {
                    drop(sp);
                    sp = OutputSpool::open(&t.0, KEY, opts(700)).unwrap();
                    assert_eq!(
                        sp.stats().adopted_records,
                        model.len() as u64,
                        "step {step}"
                    );
                } else {
                    sp.rewind();
                }
                inflight = 0;
            }
        }
        assert_eq!(sp.stats().records, model.len() as u64, "step {step}");
        assert_eq!(sp.stats().lost_records, 0, "step {step}");
        assert_eq!(sp.in_flight(), inflight, "step {step}");
        let on_disk: u64 = walk_segments(sp.dir())
            .iter()
            .map(|s| fs::metadata(s).unwrap().len())
            .sum();
        assert_eq!(sp.stats().disk_bytes, on_disk, "step {step}");
    }
    // Everything that is left comes out in order.
    sp.rewind();
    let rest = read_all(&mut sp, 50);
    assert_eq!(ids(&rest), model.iter().copied().collect::<Vec<_>>());
}

/// Every segment file under `dir`, adopted ones included.
fn walk_segments(dir: &Path) -> Vec<PathBuf> {
    let mut out = segs_in(dir);
    for d in fsutil::list_dirs(&dir.join("adopted"), |_| true).unwrap() {
        out.extend(walk_segments(&d));
    }
    out
}

#[test]
fn spool_is_send() {
    fn send<T: Send>() {}
    send::<OutputSpool>();
}

#[test]
fn long_garbage_span_across_resync_windows() {
    let _g = shared();
    let t = TempDir::new("garbage");
    let dir = dead_instance(&t.0, 0..6000, 500, 16 << 20);
    let seg = segs_in(&dir)[0].clone();
    let offs = record_offsets(&seg);
    assert_eq!(offs.len(), 6000);
    // Random bytes from inside record 100 to inside record 2000: far more than one 64 KiB
    // resync window.
    let (from, to) = (offs[100] + 5, offs[5000] + 3);
    assert!(to - from > 3 * 65536);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let junk: Vec<u8> = (from..to)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .write_all_at(&junk, from)
        .unwrap();
    let mut sp = OutputSpool::open(&t.0, KEY, opts(16 << 20)).unwrap();
    assert_eq!(sp.stats().corrupt_records, 1);
    let got = read_all(&mut sp, 500);
    let mut want: Vec<u64> = (0..100).collect();
    want.extend(5001..6000);
    assert_eq!(ids(&got), want);
    check_contents(&got);
}

#[test]
fn a_drained_spool_never_fills_up() {
    let _g = shared();
    let t = TempDir::new("drained");
    // spool_mode = always: every batch is written, then sent and committed. The cap is far
    // below the segment size, so only retiring the drained segment keeps room.
    let o = SpoolOptions {
        max_bytes: 2000,
        sync: SyncMode::None,
        segment_bytes: 1 << 20,
    };
    let mut sp = OutputSpool::open(&t.0, KEY, o).unwrap();
    for b in 0..200 {
        append_ids(&mut sp, b * 3..b * 3 + 3);
        let got = read_all(&mut sp, 10);
        assert_eq!(ids(&got), (b * 3..b * 3 + 3).collect::<Vec<_>>());
        sp.commit(3).unwrap();
    }
    assert!(sp.stats().disk_bytes <= 2000);
}

#[test]
fn fork_child_cannot_use_or_remove_the_parents_spool() {
    let _g = exclusive();
    let t = TempDir::new("forkmisuse");
    let parent = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    let dir = parent.dir().to_path_buf();
    let mut parent = Some(parent);
    let pid = fork_child(|| {
        let mut sp = parent.take().unwrap();
        let appended = sp.append(&[SpoolRecord {
            counted: true,
            id: 1,
            time_us: None,
            bytes: b"from the child",
        }]);
        if !matches!(appended, Err(SpoolError::Io(_))) {
            return 3;
        }
        drop(sp); // empty: in the parent this would remove the directory
        0
    });
    assert_eq!(wait_child(pid), 0);
    assert!(
        dir.join("lock").exists(),
        "the child's drop removed nothing"
    );
    let mut parent = parent.take().unwrap();
    assert!(parent.is_empty());
    append_ids(&mut parent, 0..2);
    assert_eq!(ids(&read_all(&mut parent, 10)), vec![0, 1]);
}

#[test]
fn corrupt_tail_of_the_head_segment_then_more_appends() {
    let _g = shared();
    let t = TempDir::new("headtail");
    let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    append_ids(&mut sp, 0..3);
    let seg = segs_in(sp.dir())[0].clone();
    // The last record's flags get a reserved bit: its header is refused before its payload is
    // read, and nothing valid follows it.
    flip_byte(&seg, record_offsets(&seg)[2] + 9);
    assert_eq!(ids(&read_all(&mut sp, 10)), vec![0, 1]);
    assert_eq!(sp.stats().corrupt_records, 1);
    append_ids(&mut sp, 3..6);
    assert_eq!(ids(&read_all(&mut sp, 10)), vec![3, 4, 5]);
    assert_eq!(
        sp.stats().corrupt_records,
        1,
        "reading went on where the new batch starts"
    );
    sp.commit(5).unwrap();
    assert_eq!(sp.in_flight(), 0);
}

#[test]
fn a_vanished_segment_is_skipped_and_counted() {
    let _g = shared();
    let t = TempDir::new("vanished");
    let mut sp = OutputSpool::open(&t.0, KEY, opts(300)).unwrap();
    for b in 0..4 {
        append_ids(&mut sp, b * 4..b * 4 + 4); // one segment per batch
    }
    let segs = segs_in(sp.dir());
    assert_eq!(segs.len(), 4);
    fs::remove_file(&segs[1]).unwrap();
    let got = read_all(&mut sp, 3);
    assert_eq!(ids(&got), vec![0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15]);
    let st = sp.stats();
    assert_eq!(st.bad_segments, 1);
    assert_eq!(st.records, 12, "the vanished records left the count");
    assert_eq!(st.lost_records, 4, "and are counted lost");
    assert_eq!(
        st.lost_bytes,
        (4..8).map(|i| payload(i).len() as u64).sum::<u64>()
    );
    sp.commit(12).unwrap();
    assert!(sp.is_empty());
}

#[test]
fn adopted_instance_whose_segment_vanishes_is_dropped() {
    let _g = shared();
    let t = TempDir::new("adoptvanish");
    {
        // A process that delivered part of its spool (its ledger is written), then died.
        let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
        append_ids(&mut sp, 0..2);
        append_ids(&mut sp, 2..6);
        let mut out = Vec::new();
        sp.read(2, usize::MAX, &mut out).unwrap();
        sp.commit(2).unwrap();
    }
    let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    assert_eq!(sp.stats().adopted_records, 4);
    let adopted = fsutil::list_dirs(&sp.dir().join("adopted"), |_| true).unwrap();
    assert_eq!(adopted.len(), 1);
    fs::remove_file(&segs_in(&adopted[0])[0]).unwrap();
    append_ids(&mut sp, 10..12);
    let got = read_all(&mut sp, 10);
    assert_eq!(ids(&got), vec![10, 11]);
    assert_eq!(sp.stats().lost_records, 4);
    sp.commit(2).unwrap();
    assert!(sp.is_empty());
    assert!(
        !adopted[0].exists(),
        "the emptied adopted directory is removed"
    );
    let dir = sp.dir().to_path_buf();
    drop(sp);
    assert!(!dir.exists(), "and the drained spool removes itself");
}

#[test]
fn a_spool_holding_only_damaged_bytes_drains_without_a_commit() {
    let _g = shared();
    let t = TempDir::new("onlydamage");
    let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    append_ids(&mut sp, 0..1);
    let seg = segs_in(sp.dir())[0].clone();
    flip_byte(&seg, record_offsets(&seg)[0] + 30);
    assert!(!sp.is_empty());
    let mut out = Vec::new();
    assert_eq!(sp.read(10, usize::MAX, &mut out).unwrap(), 0);
    assert!(sp.is_empty(), "nothing readable is left");
    assert_eq!(sp.stats().lost_records, 1);
    assert_eq!(sp.in_flight(), 0);
    let dir = sp.dir().to_path_buf();
    drop(sp);
    assert!(!dir.exists());
}

#[test]
fn racing_opens_adopt_a_dead_instance_exactly_once() {
    let _g = shared();
    let t = TempDir::new("race");
    for round in 0..5 {
        dead_instance(&t.0, 0..40, 8, 200);
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let spools: Vec<OutputSpool> = (0..4)
            .map(|_| {
                let (root, b) = (t.0.clone(), barrier.clone());
                std::thread::spawn(move || {
                    b.wait();
                    OutputSpool::open(&root, KEY, opts(200)).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let adopted: Vec<u64> = spools.iter().map(|s| s.stats().adopted_records).collect();
        assert_eq!(
            adopted.iter().sum::<u64>(),
            40,
            "round {round}: {adopted:?}"
        );
        assert_eq!(
            adopted.iter().filter(|&&a| a > 0).count(),
            1,
            "round {round}"
        );
        for mut sp in spools {
            let got = read_all(&mut sp, 16);
            if !got.is_empty() {
                assert_eq!(ids(&got), (0..40).collect::<Vec<_>>());
            }
            sp.commit(got.len()).unwrap();
        }
        assert!(
            instances(&t.0).is_empty(),
            "round {round}: all drained and removed"
        );
    }
}

#[test]
fn kill_9_during_appends_loses_no_acknowledged_batch_and_tears_none() {
    let _g = exclusive();
    let modes = [
        SyncMode::None,
        SyncMode::Interval(Duration::from_millis(5)),
        SyncMode::Batch,
    ];
    for sync in modes {
        let t = TempDir::new("kill9");
        let root = t.0.clone();
        let (mut rx, tx) = pipe();
        let o = SpoolOptions { sync, ..opts(4096) };
        let pid = fork_child(move || {
            let Ok(mut sp) = OutputSpool::open(&root, KEY, o) else {
                return 2;
            };
            use std::io::Write;
            for b in 0u64.. {
                append_ids(&mut sp, b * 5..b * 5 + 5);
                if (&tx).write_all(&b.to_le_bytes()).is_err() {
                    return 3;
                }
            }
            0
        });
        use std::io::Read;
        let mut acked = None;
        let start = Instant::now();
        let mut buf = [0u8; 8];
        while start.elapsed() < Duration::from_millis(150) {
            rx.read_exact(&mut buf).unwrap();
            acked = Some(u64::from_le_bytes(buf));
        }
        // SAFETY: signal to our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(wait_child(pid), -libc::SIGKILL);
        // Acknowledgements still in the pipe.
        let mut rest = Vec::new();
        rx.read_to_end(&mut rest).unwrap();
        for c in rest.chunks_exact(8) {
            acked = Some(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let acked = acked.expect("the child appended");
        let mut sp = OutputSpool::open(&t.0, KEY, opts(4096)).unwrap();
        let got = read_all(&mut sp, 1000);
        let n = got.len() as u64;
        assert_eq!(n % 5, 0, "{sync:?}: whole batches only, got {n}");
        assert!(
            n / 5 > acked,
            "{sync:?}: batch {acked} was acknowledged, {n} records adopted"
        );
        assert!(
            n / 5 <= acked + 2,
            "{sync:?}: at most the batch being written on top"
        );
        assert_eq!(ids(&got), (0..n).collect::<Vec<_>>(), "{sync:?}");
        check_contents(&got);
        assert_eq!(sp.stats().corrupt_records, 0);
    }
}

#[test]
fn stale_temporary_directories_are_cleaned_fresh_ones_kept() {
    let _g = shared();
    let t = TempDir::new("stale");
    let key = t.0.join(KEY);
    fs::create_dir_all(&key).unwrap();
    let make = |name: &str, age: Duration| {
        let d = key.join(name);
        fs::create_dir(&d).unwrap();
        fs::write(d.join("pid"), b"1\n").unwrap();
        drop(fsutil::open_lock_file(&d.join("lock")).unwrap());
        let old = std::time::SystemTime::now() - age;
        File::open(&d).unwrap().set_modified(old).unwrap();
        d
    };
    let stale = make(".tmp-1-aa", Duration::from_secs(3600));
    let lockless = make(".tmp-3-cc", Duration::from_secs(3600));
    fs::remove_file(lockless.join("lock")).unwrap();
    File::open(&lockless)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let fresh = make(".tmp-2-bb", Duration::from_secs(5));
    let _sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    assert!(!stale.exists(), "a stale creation leftover is removed");
    assert!(!lockless.exists(), "even without its lock file");
    assert!(
        fresh.exists(),
        "one that may be in the middle of its creation is kept"
    );
}

/// A dead instance whose ledger points inside its second segment (of three, 4 records each):
/// records 0..6 delivered.
fn dead_with_ledger_in_second_segment(root: &Path) -> PathBuf {
    let mut sp = OutputSpool::open(root, KEY, opts(300)).unwrap();
    for b in 0..3 {
        append_ids(&mut sp, b * 4..b * 4 + 4);
    }
    assert_eq!(segs_in(sp.dir()).len(), 3);
    let mut out = Vec::new();
    sp.read(6, usize::MAX, &mut out).unwrap();
    sp.commit(6).unwrap();
    let dir = sp.dir().to_path_buf();
    drop(sp);
    assert_eq!(
        segs_in(&dir).len(),
        2,
        "the first segment was delivered and unlinked"
    );
    dir
}

#[test]
fn ledger_pointing_at_missing_or_shortened_data_never_wedges() {
    let _g = shared();
    // The segment the ledger names is gone (Vector PR #25570's crash loop): go on with the next.
    let t = TempDir::new("ledgermissing");
    let dir = dead_with_ledger_in_second_segment(&t.0);
    fs::remove_file(&segs_in(&dir)[0]).unwrap();
    let mut sp = OutputSpool::open(&t.0, KEY, opts(300)).unwrap();
    assert_eq!(ids(&read_all(&mut sp, 10)), (8..12).collect::<Vec<_>>());

    // The segment is shorter than the ledger's offset (its tail was lost, the ledger was not).
    let t = TempDir::new("ledgershort");
    let dir = dead_with_ledger_in_second_segment(&t.0);
    let seg2 = segs_in(&dir)[0].clone();
    OpenOptions::new()
        .write(true)
        .open(&seg2)
        .unwrap()
        .set_len(HEADER_LEN + 10)
        .unwrap();
    let mut sp = OutputSpool::open(&t.0, KEY, opts(300)).unwrap();
    assert_eq!(ids(&read_all(&mut sp, 10)), (8..12).collect::<Vec<_>>());
    assert!(!seg2.exists());

    // The ledger is past every segment: nothing to deliver, the directory goes away.
    let t = TempDir::new("ledgerpast");
    let dir = dead_with_ledger_in_second_segment(&t.0);
    let (mut l, _) = Ledger::open(&dir.join("ledger")).unwrap();
    l.write(Pos { seg: 99, off: 0 }, true).unwrap();
    drop(l);
    let mut sp = OutputSpool::open(&t.0, KEY, opts(300)).unwrap();
    assert!(sp.is_empty());
    assert_eq!(read_all(&mut sp, 10).len(), 0);
    assert!(
        !sp.dir().join("adopted").exists()
            || fs::read_dir(sp.dir().join("adopted")).unwrap().count() == 0
    );
    assert!(!dir.exists());
}

/// A random walk with periodic adoption of other (dead) instances, against a model of the
/// order the spool promises: adopted sources first (in adoption order), then the own records;
/// each source from its first undelivered record after a rewind.
#[test]
fn random_walk_with_adoptions_matches_a_model() {
    let _g = shared();
    let t = TempDir::new("walk2");
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // (source id, undelivered ids in order, how many of them were read); the last is the own.
    let mut model: Vec<(u64, VecDeque<u64>, usize)> = vec![(0, VecDeque::new(), 0)];
    let mut inflight: VecDeque<(u64, u64)> = VecDeque::new();
    let mut next_source = 1u64;
    let mut id = 0u64;
    let mut sp = OutputSpool::open(&t.0, KEY, opts(500)).unwrap();
    for step in 0..1200 {
        match next() % 12 {
            0..=3 => {
                let n = 1 + next() % 5;
                append_ids(&mut sp, id..id + n);
                model.last_mut().unwrap().1.extend(id..id + n);
                id += n;
            }
            4..=6 => {
                let want = 1 + (next() % 8) as usize;
                let mut out = Vec::new();
                sp.read(want, usize::MAX, &mut out).unwrap();
                let mut expect = Vec::new();
                for (sid, q, read) in model.iter_mut() {
                    while expect.len() < want && *read < q.len() {
                        expect.push(q[*read]);
                        inflight.push_back((*sid, q[*read]));
                        *read += 1;
                    }
                }
                assert_eq!(ids(&out), expect, "step {step}");
            }
            7 | 8 => {
                let n = (next() as usize) % (inflight.len() + 1);
                sp.commit(n).unwrap();
                for (sid, rid) in inflight.drain(..n) {
                    let src = model.iter_mut().find(|s| s.0 == sid).unwrap();
                    assert_eq!(src.1.pop_front(), Some(rid));
                    src.2 -= 1;
                }
                let own = model.len() - 1;
                let mut i = 0;
                model.retain(|s| {
                    i += 1;
                    i - 1 == own || !s.1.is_empty() || s.2 > 0
                });
            }
            9 => {
                // Another process spools and dies; this one adopts it.
                let n = 1 + next() % 9;
                {
                    let mut other = OutputSpool::open(&t.0, KEY, opts(500)).unwrap();
                    assert_eq!(
                        other.stats().adopted_records,
                        0,
                        "step {step}: ours is live"
                    );
                    append_ids(&mut other, id..id + n);
                }
                let rep = sp.adopt().unwrap();
                assert_eq!(rep.records, n, "step {step}");
                let at = model.len() - 1;
                model.insert(at, (next_source, (id..id + n).collect(), 0));
                next_source += 1;
                id += n;
            }
            _ => {
                if next() % 2 == 0 {
                    drop(sp);
                    sp = OutputSpool::open(&t.0, KEY, opts(500)).unwrap();
                    let all: VecDeque<u64> = model.drain(..).flat_map(|s| s.1).collect();
                    model.push((next_source, all, 0));
                    model.push((0, VecDeque::new(), 0));
                    next_source += 1;
                } else {
                    sp.rewind();
                    for s in model.iter_mut() {
                        s.2 = 0;
                    }
                }
                inflight.clear();
            }
        }
        let undelivered: usize = model.iter().map(|s| s.1.len()).sum();
        assert_eq!(sp.stats().records, undelivered as u64, "step {step}");
        assert_eq!(sp.in_flight(), inflight.len(), "step {step}");
    }
    sp.rewind();
    let rest = read_all(&mut sp, 50);
    let want: Vec<u64> = model.iter().flat_map(|s| s.1.iter().copied()).collect();
    assert_eq!(ids(&rest), want);
    sp.commit(rest.len()).unwrap();
    assert_eq!(
        sp.stats().disk_bytes,
        walk_segments(sp.dir())
            .iter()
            .map(|s| fs::metadata(s).unwrap().len())
            .sum::<u64>()
    );
}

#[test]
fn a_crash_loop_does_not_nest_adopted_directories() {
    let _g = shared();
    let t = TempDir::new("crashloop");
    // 80 restarts with the collector down: each process adopts the last one's spool, appends
    // one record and dies. (An earlier version nested one directory level per restart and
    // stopped looking below 64.)
    for i in 0..80 {
        let mut sp = OutputSpool::open(&t.0, KEY, fast()).unwrap();
        assert_eq!(sp.stats().adopted_records, i);
        append_ids(&mut sp, i..i + 1);
    }
    let mut sp = OutputSpool::open(&t.0, KEY, fast()).unwrap();
    let adopted = sp.dir().join("adopted");
    for d in fsutil::list_dirs(&adopted, |_| true).unwrap() {
        assert!(
            fsutil::list_dirs(&d.join("adopted"), |_| true)
                .unwrap()
                .is_empty(),
            "flat: {d:?} has nested adopted directories"
        );
    }
    let got = read_all(&mut sp, 64);
    assert_eq!(ids(&got), (0..80).collect::<Vec<_>>());
    sp.commit(80).unwrap();
    assert!(fsutil::list_dirs(&adopted, |_| true).unwrap().is_empty());
}

#[test]
fn nested_leftovers_are_delivered_before_their_parent() {
    let _g = shared();
    // A flattening cut short (a crash between renames) leaves adopted directories nested:
    // they are still delivered, children first.
    let t = TempDir::new("nestedleft");
    dead_instance(&t.0, 0..3, 3, 1 << 20);
    let b = {
        let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap(); // adopts a
        append_ids(&mut sp, 3..5);
        sp.dir().to_path_buf()
    };
    // Nest b's (flat) adopted entry one level deeper, as an older layout would have it.
    let inner = fsutil::list_dirs(&b.join("adopted"), |_| true)
        .unwrap()
        .remove(0);
    let holder = b.join("adopted").join("00000000000000000000-1-aa");
    fs::create_dir_all(holder.join("adopted")).unwrap();
    fs::rename(
        &inner,
        holder.join("adopted").join(inner.file_name().unwrap()),
    )
    .unwrap();
    let mut sp = OutputSpool::open(&t.0, KEY, opts(1 << 20)).unwrap();
    assert_eq!(ids(&read_all(&mut sp, 10)), vec![0, 1, 2, 3, 4]);
}

fn fast() -> SpoolOptions {
    SpoolOptions {
        sync: SyncMode::None,
        ..opts(1 << 20)
    }
}

#[test]
fn a_batch_larger_than_a_segment_gets_one_of_its_own() {
    let _g = shared();
    let t = TempDir::new("bigbatch");
    let mut sp = OutputSpool::open(&t.0, KEY, opts(200)).unwrap();
    append_ids(&mut sp, 0..2);
    append_ids(&mut sp, 2..14); // about 600 bytes: never split
    append_ids(&mut sp, 14..15);
    let segs = segs_in(sp.dir());
    assert_eq!(segs.len(), 3);
    assert_eq!(record_offsets(&segs[1]).len(), 12);
    assert!(fs::metadata(&segs[1]).unwrap().len() > 200);
    assert_eq!(ids(&read_all(&mut sp, 5)), (0..15).collect::<Vec<_>>());
}

/// A real ENOSPC: a 64 KiB tmpfs mounted in a private mount namespace of a forked child (the
/// mount goes away with the child). Skipped (with a note) where mounting is not permitted.
#[test]
fn disk_full_on_a_tiny_tmpfs() {
    let _g = exclusive();
    let t = TempDir::new("tmpfs");
    let mnt = t.0.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let pid = fork_child(move || {
        use std::ffi::CString;
        // SAFETY: unshare affects only this (child) process's namespaces.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return 77;
        }
        let root = CString::new("/").unwrap();
        // SAFETY: the strings outlive the call; NULL source/type/data are allowed for a
        // propagation change.
        let private = unsafe {
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        };
        if private != 0 {
            return 77;
        }
        let (src, target) = (
            CString::new("tmpfs").unwrap(),
            CString::new(mnt.as_os_str().as_encoded_bytes()).unwrap(),
        );
        let data = CString::new("size=64k,mode=0700").unwrap();
        // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
        let mounted = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                src.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if mounted != 0 {
            return 77;
        }
        let Ok(mut sp) = OutputSpool::open(&mnt.join("spool"), KEY, opts(8192)) else {
            return 10;
        };
        let body = vec![b'n'; 500];
        let mut ok = 0u64;
        let err = loop {
            let recs: Vec<SpoolRecord<'_>> = (0..4)
                .map(|i| SpoolRecord {
                    counted: true,
                    id: ok * 4 + i,
                    time_us: None,
                    bytes: &body,
                })
                .collect();
            match sp.append(&recs) {
                Ok(()) => ok += 1,
                Err(e) => break e,
            }
            if ok > 1000 {
                return 11;
            }
        };
        match &err {
            SpoolError::Io(e) if e.raw_os_error() == Some(libc::ENOSPC) => {}
            _ => return 12,
        }
        if ok < 4 || sp.stats().records != ok * 4 {
            return 13;
        }
        let on_disk: u64 = segs_in(sp.dir())
            .iter()
            .map(|s| fs::metadata(s).unwrap().len())
            .sum();
        if on_disk != sp.stats().disk_bytes {
            return 14; // something partial was left
        }
        // Deliver everything: the segments go, and there is room again.
        let got = read_all(&mut sp, 100);
        if got.len() as u64 != ok * 4 || ids(&got) != (0..ok * 4).collect::<Vec<_>>() {
            return 15;
        }
        if sp.commit(got.len()).is_err() {
            return 16;
        }
        if sp
            .append(&[SpoolRecord {
                counted: true,
                id: 9999,
                time_us: None,
                bytes: &body,
            }])
            .is_err()
        {
            return 17;
        }
        if ids(&read_all(&mut sp, 10)) != vec![9999] {
            return 18;
        }
        0
    });
    match wait_child(pid) {
        77 => eprintln!("disk_full_on_a_tiny_tmpfs: skipped (cannot mount a tmpfs here)"),
        code => assert_eq!(code, 0, "see the return codes in the child"),
    }
}

#[test]
fn a_relative_root_is_made_absolute() {
    let _g = shared();
    let t = TempDir::new("relative");
    let cwd = std::env::current_dir().unwrap();
    let rel = pathdiff(&t.0, &cwd);
    let sp = OutputSpool::open(&rel, KEY, opts(1 << 20)).unwrap();
    assert!(sp.dir().is_absolute(), "{:?}", sp.dir());
    assert!(sp.dir().starts_with(fs::canonicalize(&t.0).unwrap()));
}

/// `target` relative to `base` (both absolute), with `..` components.
fn pathdiff(target: &Path, base: &Path) -> PathBuf {
    let mut up = PathBuf::new();
    let mut b = base.to_path_buf();
    loop {
        if let Ok(rest) = target.strip_prefix(&b) {
            return up.join(rest);
        }
        up.push("..");
        if !b.pop() {
            return target.to_path_buf();
        }
    }
}

#[test]
fn open_without_adopting_leaves_adoption_to_the_worker() {
    let _g = shared();
    let t = TempDir::new("lazy");
    let dead = dead_instance(&t.0, 0..5, 5, 1 << 20);
    let mut sp = OutputSpool::open_without_adopting(&t.0, KEY, opts(1 << 20)).unwrap();
    assert_eq!(sp.stats().adopted_records, 0);
    assert!(dead.is_dir(), "not taken yet");
    assert_eq!(read_all(&mut sp, 10).len(), 0);
    assert_eq!(sp.adopt().unwrap().records, 5);
    assert!(!dead.exists());
    assert_eq!(ids(&read_all(&mut sp, 10)), (0..5).collect::<Vec<_>>());
}

#[test]
fn uncounted_copies_are_kept_apart_in_the_counters_across_commit_and_adoption() {
    let _g = shared();
    let t = TempDir::new("uncounted");
    let mut sp = OutputSpool::open(&t.0, KEY, opts(400)).unwrap();
    let bodies: Vec<Vec<u8>> = (0..10).map(payload).collect();
    // Records 0..10: the odd ones are uncounted copies.
    for chunk in [0..4u64, 4..10] {
        let recs: Vec<SpoolRecord<'_>> = chunk
            .map(|i| SpoolRecord {
                id: i,
                time_us: time_of(i),
                bytes: &bodies[i as usize],
                counted: i % 2 == 0,
            })
            .collect();
        sp.append(&recs).unwrap();
    }
    let odd_bytes = |r: std::ops::Range<u64>| {
        r.filter(|i| i % 2 == 1)
            .map(|i| payload(i).len() as u64)
            .sum::<u64>()
    };
    let st = sp.stats();
    assert_eq!((st.records, st.uncounted.records), (10, 5));
    assert_eq!(st.uncounted.bytes, odd_bytes(0..10));
    let mut out = Vec::new();
    sp.read(3, usize::MAX, &mut out).unwrap();
    assert_eq!(
        out.iter().map(|r| r.counted).collect::<Vec<_>>(),
        [true, false, true]
    );
    sp.commit(3).unwrap();
    let st = sp.stats();
    assert_eq!((st.records, st.uncounted.records), (7, 4));
    assert_eq!(st.uncounted.bytes, odd_bytes(3..10));
    drop(sp);

    // The next process adopts records 3..10, three of them counted.
    let mut sp = OutputSpool::open(&t.0, KEY, opts(400)).unwrap();
    let st = sp.stats();
    assert_eq!((st.adopted_records, st.uncounted.adopted_records), (7, 4));
    assert_eq!((st.records, st.uncounted.records), (7, 4));
    assert_eq!(st.uncounted.adopted_bytes, odd_bytes(3..10));
    let got = read_all(&mut sp, 100);
    assert_eq!(ids(&got), (3..10).collect::<Vec<_>>());
    assert!(got.iter().all(|r| r.counted == (r.id % 2 == 0)));
    check_contents(&got);
    sp.commit(got.len()).unwrap();
    let st = sp.stats();
    assert_eq!(
        (st.records, st.uncounted.records, st.uncounted.bytes),
        (0, 0, 0)
    );
}
