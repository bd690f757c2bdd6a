//! A spool whose disk fails (SPEC §6: "A full disk or an I/O error never stops the host: the
//! logger falls back to memory, counts, and reports"). The failing disk is a file size limit:
//! a forked child sets `RLIMIT_FSIZE` to 64 KiB (with SIGXFSZ ignored, so a write past it fails
//! with EFBIG instead of killing the process) and logs while the collector is down. The child
//! keeps running, reports the spool's error, holds the messages in memory within `drop_limit`,
//! keeps the identity; once the limit is raised the held messages go to disk, and once the
//! collector is up every message `log` accepted arrives exactly once.

mod common;
mod spool_util;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use common::{assert_identity, refusing_port, temp_dir, Collector};
use rlog::{Config, Logged, Logger};
use spool_util::*;

const FSIZE_LIMIT: u64 = 64 << 10;
const DROP_LIMIT: u64 = 256 << 10;
/// Phase 1: 100 KB of messages, more than the file size limit, less than `drop_limit`.
const FIRST: u64 = 1000;
/// Phase 2: 500 KB more, well past `drop_limit`.
const SECOND: u64 = 5000;

/// A 100-byte line (newline included).
fn msg(i: u64) -> String {
    format!("m{i:06}-{}\n", "x".repeat(91))
}

fn set_fsize(cur: libc::rlim_t) -> libc::rlim_t {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on this process with a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut l), 0);
        let hard = l.rlim_max;
        let new = libc::rlimit {
            rlim_cur: cur.min(hard),
            rlim_max: hard,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &new), 0);
        hard
    }
}

/// The forked host. Tells the parent (u64 lists on `to`): the indexes `log` dropped once
/// everything it accepted is on disk; its counters once everything is delivered.
fn child(to: &mut UnixStream, port: u16, dir: &Path) {
    // SAFETY: sets a signal disposition in this child.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    set_fsize(FSIZE_LIMIT);
    let text = format!(
        "host = 127.0.0.1\nport = {port}\nspool = {}\nmax_retry_times = 0\nretry_interval = 10\n\
         drop_limit = {DROP_LIMIT}\n",
        dir.display()
    );
    let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();

    // 1. More than the disk takes: what does not fit stays in memory, and the error says so.
    for i in 0..FIRST {
        let m = msg(i);
        assert_eq!(lg.log(m.as_bytes()), Logged::Buffered(m.len()));
    }
    lg.flush();
    let mut error = String::new();
    wait_for("the spool's I/O error", 20, || {
        if let Some(e) = lg.take_error() {
            let e = e.as_str().to_string();
            if e.contains("held in memory") {
                error = e;
            }
        }
        !error.is_empty()
    });
    let prefix = format!("spool {}: ", dir.display());
    assert!(error.starts_with(&prefix), "{error}");
    assert!(
        error.contains("File too large"),
        "the EFBIG past RLIMIT_FSIZE: {error}"
    );
    let s = lg.stats();
    assert_identity(&s);
    assert_eq!(
        (s.logged, s.sent, s.lost, s.dropped),
        (FIRST, 0, 0, 0),
        "{s:?}"
    );
    assert!(s.spooled_bytes < FSIZE_LIMIT, "{s:?}");
    assert!(
        s.buffered > 0 && s.buffered + s.spooled == FIRST,
        "held in memory: {s:?}"
    );

    // 2. Memory is bounded by drop_limit: past it, `log` drops (counted, not in `logged`).
    let mut dropped = Vec::new();
    for i in FIRST..FIRST + SECOND {
        let m = msg(i);
        match lg.log(m.as_bytes()) {
            Logged::Buffered(n) => assert_eq!(n, m.len()),
            Logged::Dropped => dropped.push(i),
            other => panic!("log: {other:?}"),
        }
    }
    let s = lg.stats();
    assert_identity(&s);
    assert!(!dropped.is_empty(), "nothing dropped: {s:?}");
    assert_eq!(s.dropped, dropped.len() as u64, "{s:?}");
    assert_eq!(s.logged, FIRST + SECOND - s.dropped, "{s:?}");
    assert!(s.buffered_bytes <= DROP_LIMIT, "{s:?}");
    assert!(s.spooled_bytes < FSIZE_LIMIT, "{s:?}");
    assert_eq!(s.lost, 0, "{s:?}");

    // 3. The disk takes writes again: within a few seconds everything is on disk.
    set_fsize(libc::RLIM_INFINITY);
    let accepted = FIRST + SECOND - dropped.len() as u64;
    wait_for("everything held in memory spooled", 20, || {
        let s = lg.stats();
        s.buffered == 0 && s.spooled == accepted
    });
    let s = lg.stats();
    assert_identity(&s);
    assert_eq!((s.sent, s.lost), (0, 0), "{s:?}");
    send_u64s(to, &dropped);

    // 4. The collector comes up (the parent says so): everything is delivered.
    let mut go = [0u8; 1];
    to.read_exact(&mut go).unwrap();
    wait_for("everything delivered", 30, || lg.stats().sent == accepted);
    assert!(lg.close(Duration::from_secs(5)));
    let s = lg.stats();
    assert_identity(&s);
    assert_eq!(
        (s.logged, s.sent, s.lost, s.spooled, s.buffered),
        (accepted, accepted, 0, 0, 0),
        "{s:?}"
    );
    send_stats(to, &s);
}

#[test]
fn a_failing_disk_holds_messages_in_memory_and_spools_them_once_it_works_again() {
    let dir = temp_dir("spool-disk-full");
    let (port, down) = refusing_port();
    let (mut to_child, mut child_end) = pair();
    let d = dir.clone();
    let pid = fork_run(move || child(&mut child_end, port, &d));
    let mut pids = Pids::default();
    pids.0.push(pid);

    let dropped: BTreeSet<u64> = recv_u64s(&mut to_child, "the child (everything on disk)")
        .into_iter()
        .collect();
    let c = Collector::listen_on(down);
    to_child.write_all(b"g").unwrap();
    let s = recv_stats(&mut to_child, "the child (everything delivered)");
    let status = reap(pid, 30).expect("the child exited");
    pids.forget(pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child's status: {status:#x}"
    );
    assert_eq!(s.dropped, dropped.len() as u64);

    // Every accepted message exactly once, in the order logged; no dropped one.
    let want: Vec<String> = (0..FIRST + SECOND)
        .filter(|i| !dropped.contains(i))
        .map(|i| msg(i).trim_end().to_string())
        .collect();
    assert!(c.wait(|d| d.iter().filter(|&&b| b == b'\n').count() >= want.len()));
    std::thread::sleep(Duration::from_millis(100));
    let got = c.lines();
    assert_eq!(got.len(), want.len(), "lines received");
    assert!(got == want, "not every accepted message once, in order");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_close_tries_a_disk_that_failed_a_moment_ago() {
    // The disk failed less than a second ago (the driver waits a second before trying it
    // again), then works again, and the host exits: the close is the last chance to keep what
    // is held in memory, so it tries the disk instead of counting the messages lost.
    let dir = temp_dir("spool-disk-close");
    let (port, _down) = refusing_port();
    let (mut to_child, mut child_end) = pair();
    let d = dir.clone();
    let pid = fork_run(move || {
        // SAFETY: sets a signal disposition in this child.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        set_fsize(FSIZE_LIMIT);
        let text = format!(
            "host = 127.0.0.1\nport = {port}\nspool = {}\nmax_retry_times = 0\n\
             retry_interval = 10\ndrop_limit = {DROP_LIMIT}\n",
            d.display()
        );
        let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
        for i in 0..FIRST {
            assert!(matches!(lg.log(msg(i).as_bytes()), Logged::Buffered(_)));
        }
        lg.flush();
        // Wait for a failure, then for the next one: the disk was tried just now.
        for _ in 0..2 {
            let mut seen = false;
            wait_for("a spool I/O error", 20, || {
                seen |= lg
                    .take_error()
                    .is_some_and(|e| e.as_str().contains("held in memory"));
                seen
            });
        }
        set_fsize(libc::RLIM_INFINITY);
        lg.close(Duration::from_millis(200));
        send_stats(&mut child_end, &lg.stats());
    });
    let mut pids = Pids::default();
    pids.0.push(pid);
    let s = recv_stats(&mut to_child, "the child");
    let status = reap(pid, 30).expect("the child exited");
    pids.forget(pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child's status: {status:#x}"
    );
    assert_identity(&s);
    assert_eq!(
        (s.logged, s.lost, s.spooled, s.buffered),
        (FIRST, 0, FIRST, 0),
        "everything on disk at the close: {s:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
