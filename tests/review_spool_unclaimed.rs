//! The "records a dead process left for a target no logger of this config names" report
//! (`pipeline::unclaimed_report`) must only fire when such records exist and nobody will adopt
//! them: not for a dead instance whose records were all delivered (its ledger says so), and
//! not for a dead instance under a key whose target a live process sharing the spool uses (that
//! process adopts it).
//!
//! The other host processes are this test binary, forked (as in `tests/spool.rs`).

mod common;
mod spool_util;

use std::io::{Read, Write};
use std::path::Path;
use std::thread;
use std::time::Duration;

use common::{refusing_port, temp_dir, Collector};
use rlog::{Config, Logged, Logger};
use spool_util::{fork_run, pair, wait_for};

fn signal_and_reap(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: plain system calls on a child we forked.
    unsafe {
        libc::kill(pid, sig);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
}

fn rlogd_spool(dir: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rlogd"))
        .arg("spool")
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts a logger for `target` on the spool, logs one message to its (live) collector and
/// waits until it is sent: the unclaimed report is made when the worker starts, before it
/// delivers anything. Returns the pending error, if any.
fn error_of_a_logger_for(collector: &Collector, spool: &Path) -> Option<String> {
    let text = format!(
        "logger = tcp://127.0.0.1:{}\nspool = {}\nmax_retry_times = 0\nretry_interval = 10\n",
        collector.port(),
        spool.display()
    );
    let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
    assert_eq!(lg.log(b"hello\n"), Logged::Buffered(6));
    wait_for("the message sent", 30, || lg.stats().sent == 1);
    let e = lg.take_error().map(|e| e.as_str().to_string());
    assert!(lg.close(Duration::from_secs(5)));
    e
}

/// A host with `spool_mode = always` delivered everything, then was killed: its instance
/// keeps its segment (every record in it delivered, per its ledger). No record is left, so a
/// process with another config must not say that records were left.
#[test]
fn a_dead_instance_with_everything_delivered_is_not_reported() {
    let dir = temp_dir("review-unclaimed-delivered");
    let spool = dir.join("spool");
    let first = Collector::tcp();
    let n = 100u64;
    let text = format!(
        "logger = tcp://127.0.0.1:{}\nspool = {}\nspool_mode = always\n",
        first.port(),
        spool.display()
    );
    let (mut from_child, mut to_parent) = pair();
    let pid = fork_run(|| {
        let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
        for i in 0..n {
            let m = format!("m{i:03}\n");
            assert_eq!(lg.log(m.as_bytes()), Logged::Buffered(m.len()));
        }
        wait_for("everything sent", 60, || {
            let s = lg.stats();
            s.sent == n && s.spooled == 0 && s.buffered == 0
        });
        to_parent.write_all(b"k").unwrap();
        loop {
            thread::sleep(Duration::from_secs(1));
        }
    });
    drop(to_parent);
    let mut b = [0u8; 1];
    from_child.read_exact(&mut b).expect("the child sent all");
    signal_and_reap(pid, libc::SIGKILL);
    assert!(first.wait(|d| d.iter().filter(|&&c| c == b'\n').count() as u64 >= n));

    // What `rlogd spool` says: a dead instance that holds nothing.
    let report = rlogd_spool(&spool);
    assert!(report.contains("dead: will be adopted"), "{report}");
    assert!(report.contains("records 0 "), "{report}");

    let second = Collector::tcp();
    let e = error_of_a_logger_for(&second, &spool);
    assert!(
        e.is_none(),
        "nothing is left in the spool, yet: {e:?}\n(rlogd spool says:\n{report})"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two processes with different configs share a spool. Process A (target T, its collector
/// down) is alive; a sibling of it with the same config died and left records under T's key.
/// A then adopts them (its periodic adoption). A process B whose config names another target
/// starts meanwhile: the records are not left for nobody, and B must not say they are.
///
/// A is stopped (SIGSTOP) while B starts so that its periodic adoption cannot run first: the
/// outcome does not depend on timing.
#[test]
fn a_dead_instance_a_live_process_will_adopt_is_not_reported() {
    let dir = temp_dir("review-unclaimed-live");
    let spool = dir.join("spool");
    let (port, _down) = refusing_port();
    let text = format!(
        "logger = tcp://127.0.0.1:{port}\nspool = {}\nmax_retry_times = 0\nretry_interval = 10\n",
        spool.display()
    );
    // The live process A.
    let t = text.clone();
    let (mut from_a, mut to_parent) = pair();
    let a = fork_run(move || {
        let _lg = Logger::start(Config::parse(&t).unwrap()).unwrap();
        to_parent.write_all(b"a").unwrap();
        loop {
            thread::sleep(Duration::from_secs(1));
        }
    });
    let mut b = [0u8; 1];
    from_a.read_exact(&mut b).expect("A started");
    // SAFETY: a plain system call on a child we forked.
    unsafe { libc::kill(a, libc::SIGSTOP) };

    // Its sibling, with the same config: spools what it cannot deliver and goes away.
    let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
    for i in 0..10 {
        let m = format!("m{i}\n");
        assert_eq!(lg.log(m.as_bytes()), Logged::Buffered(m.len()));
    }
    wait_for("everything spooled", 30, || lg.stats().spooled == 10);
    lg.close(Duration::from_millis(100));
    let report = rlogd_spool(&spool);
    assert!(report.contains("(live, pid"), "{report}");
    assert!(report.contains("dead: will be adopted"), "{report}");

    let other = Collector::tcp();
    let e = error_of_a_logger_for(&other, &spool);
    // SAFETY: as above.
    unsafe { libc::kill(a, libc::SIGCONT) };
    signal_and_reap(a, libc::SIGKILL);
    assert!(
        e.is_none(),
        "a live process with that target uses this spool, yet: {e:?}\n(rlogd spool said:\n{report})"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
