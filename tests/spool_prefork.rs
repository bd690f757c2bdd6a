//! The spool under a prefork server (SPEC §6: "a sibling worker of a prefork server that
//! died"): a master process starts a logger with a spool while the collector is down, then
//! forks four workers that log through the logger they inherited (each child gets a worker
//! thread and a spool instance of its own). Two workers are killed with SIGKILL; when the
//! collector comes back, every line of the four workers arrives exactly once: delivered by the
//! live processes, which adopt the dead siblings' spools, or by a next process started after
//! all of them stopped.
//!
//! The processes are this test binary, forked: the test forks the master, the master forks the
//! workers; each answers the test on a socketpair of its own (`spool_util::serve`).

mod common;
mod spool_util;

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use common::{assert_identity, refusing_port, temp_dir, Collector};
use rlog::{rlog_stats, Config, Logged, Logger};
use spool_util::*;

const WORKERS: usize = 4;
const PER_WORKER: u64 = 1000;
const KILLED: usize = 2;

fn config(port: u16, spool: &Path) -> String {
    format!(
        "host = 127.0.0.1\nport = {port}\nspool = {}\nmax_retry_times = 0\nretry_interval = 10\n\
         drop_limit = 67108864\n",
        spool.display()
    )
}

fn line(w: usize, i: u64) -> String {
    format!("w{w}-{i:04}")
}

/// Payload bytes of one worker's lines (newline included).
fn worker_bytes(w: usize) -> u64 {
    (0..PER_WORKER).map(|i| line(w, i).len() as u64 + 1).sum()
}

/// A worker: logs its lines through the inherited logger, waits until they are all on disk,
/// says so with its counters, then answers the test until told to close.
fn worker(lg: &Logger, w: usize, to_test: &mut UnixStream) {
    for i in 0..PER_WORKER {
        let m = format!("{}\n", line(w, i));
        assert_eq!(lg.log(m.as_bytes()), Logged::Buffered(m.len()));
    }
    // The collector is down: the flush fails and the batch goes to disk.
    assert_eq!(lg.flush(), -1);
    wait_for("the worker's lines spooled", 60, || {
        let s = lg.stats();
        s.spooled == PER_WORKER && s.buffered == 0
    });
    send_stats(to_test, &lg.stats());
    serve(lg, to_test);
}

/// The master, its four workers, and the test's ends of their sockets.
struct Server {
    pids: Pids,
    master: libc::pid_t,
    to_master: UnixStream,
    workers: Vec<(libc::pid_t, UnixStream)>,
}

/// Forks the master, which starts the logger and forks the workers; returns once every worker
/// has its 1 000 lines on disk.
fn start_server(text: &str) -> Server {
    let (mut to_master, master_end) = pair();
    let (to_workers, worker_ends): (Vec<_>, Vec<_>) = (0..WORKERS).map(|_| pair()).unzip();
    let test_fds: Vec<i32> = std::iter::once(&to_master)
        .chain(&to_workers)
        .map(|s| s.as_raw_fd())
        .collect();
    let text = text.to_string();
    let master = fork_run(move || {
        for fd in test_fds {
            // SAFETY: the test's ends, copied into this process; never used here.
            unsafe { libc::close(fd) };
        }
        let mut master_end = master_end;
        let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
        // The test kills workers: nobody is left a zombie (exists() is false once gone).
        // SAFETY: sets a signal disposition in this (single-threaded apart from rlog) child.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
        let mut ends: Vec<Option<UnixStream>> = worker_ends.into_iter().map(Some).collect();
        let mut worker_pids = Vec::new();
        for w in 0..WORKERS {
            let pid = fork_run(|| {
                let mut me = ends[w].take().unwrap();
                ends.clear();
                // SAFETY: the master's socket is not this worker's; the process _exits
                // without dropping the stream that owned the descriptor.
                unsafe { libc::close(master_end.as_raw_fd()) };
                worker(&lg, w, &mut me);
            });
            worker_pids.push(pid as u64);
        }
        ends.clear();
        send_u64s(&mut master_end, &worker_pids);
        serve(&lg, &mut master_end);
    });
    let mut pids = Pids::default();
    pids.0.push(master);
    let worker_pids = recv_u64s(&mut to_master, "master");
    assert_eq!(worker_pids.len(), WORKERS);
    pids.0.extend(worker_pids.iter().map(|&p| p as libc::pid_t));
    let mut workers: Vec<(libc::pid_t, UnixStream)> = worker_pids
        .into_iter()
        .map(|p| p as libc::pid_t)
        .zip(to_workers)
        .collect();
    for (w, (_, s)) in workers.iter_mut().enumerate() {
        let st = recv_stats(s, &format!("worker {w}"));
        assert_eq!(
            (
                st.logged,
                st.spooled,
                st.spooled_bytes,
                st.buffered,
                st.sent,
                st.lost
            ),
            (PER_WORKER, PER_WORKER, worker_bytes(w), 0, 0, 0),
            "worker {w}: {st:?}"
        );
        assert_identity(&st);
    }
    let st = ask(&mut to_master, ASK_STATS, "master");
    assert_eq!(
        (st.logged, st.spooled, st.sent),
        (0, 0, 0),
        "master: {st:?}"
    );
    Server {
        pids,
        master,
        to_master,
        workers,
    }
}

impl Server {
    /// SIGKILLs the first `KILLED` workers and waits until they are gone.
    fn kill_workers(&mut self) {
        for (pid, _) in self.workers.drain(..KILLED) {
            sigkill(pid);
            wait_for("a killed worker gone", 10, || !exists(pid));
            self.pids.forget(pid);
        }
    }

    /// The live processes' counters: the surviving workers', then the master's.
    fn live_stats(&mut self, cmd: u8) -> Vec<rlog_stats> {
        let mut v: Vec<_> = self
            .workers
            .iter_mut()
            .map(|(pid, s)| ask(s, cmd, &format!("worker {pid}")))
            .collect();
        v.push(ask(&mut self.to_master, cmd, "master"));
        v
    }

    /// Closes every live logger (workers first, then the master), checks that each process
    /// exited, and returns their last counters.
    /// `cmd`: [`ASK_CLOSE`], or [`ASK_CLOSE_QUICK`] while the collector is down.
    fn stop(mut self, cmd: u8) -> Vec<rlog_stats> {
        let last = self.live_stats(cmd);
        for (pid, _) in std::mem::take(&mut self.workers) {
            wait_for("a worker exited", 30, || !exists(pid));
            self.pids.forget(pid);
        }
        let status = reap(self.master, 30).expect("the master exited");
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the master's status: {status:#x}"
        );
        self.pids.forget(self.master);
        last
    }
}

/// Every worker's lines, sorted.
fn expected() -> Vec<String> {
    let mut v: Vec<String> = (0..WORKERS)
        .flat_map(|w| (0..PER_WORKER).map(move |i| line(w, i)))
        .collect();
    v.sort();
    v
}

/// The collector got every line exactly once (and nothing else).
fn assert_exactly_once(c: &Collector) {
    let mut got = c.lines();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for l in &got {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).take(5).collect();
    assert!(dups.is_empty(), "delivered more than once: {dups:?}");
    got.sort();
    assert_eq!(got.len(), expected().len(), "lines received");
    assert_eq!(got, expected());
}

#[test]
fn prefork_workers_killed_with_their_spools_are_delivered_once_by_the_survivors() {
    let dir = temp_dir("spool-prefork-live");
    let (port, down) = refusing_port();
    let text = config(port, &dir);
    let mut server = start_server(&text);
    server.kill_workers();

    // The collector comes back: the survivors deliver their own lines at their next retry, and
    // the dead workers' spools are adopted (within ADOPT_EVERY, 5 s) by a live process.
    let c = Collector::listen_on(down);
    let total = WORKERS as u64 * PER_WORKER;
    let killed_bytes: u64 = (0..KILLED).map(worker_bytes).sum();
    wait_for("every line delivered by the live processes", 60, || {
        let v = server.live_stats(ASK_STATS);
        v.iter().map(|s| s.sent).sum::<u64>() >= total
            && v.iter().all(|s| s.spooled == 0 && s.buffered == 0)
    });
    let v = server.live_stats(ASK_STATS);
    for s in &v {
        assert_identity(s);
        assert_eq!((s.lost, s.dropped), (0, 0), "{s:?}");
    }
    let sum = |f: fn(&rlog_stats) -> u64| v.iter().map(f).sum::<u64>();
    assert_eq!(sum(|s| s.sent), total, "{v:?}");
    assert_eq!(
        (sum(|s| s.adopted), sum(|s| s.adopted_bytes)),
        (KILLED as u64 * PER_WORKER, killed_bytes),
        "the killed workers' records, adopted once: {v:?}"
    );
    assert!(c.wait(|d| d.iter().filter(|&&b| b == b'\n').count() as u64 >= total));
    assert_exactly_once(&c);

    let last = server.stop(ASK_CLOSE);
    for s in &last {
        assert_identity(s);
        assert_eq!((s.spooled, s.buffered, s.lost), (0, 0, 0), "{s:?}");
    }
    // Nothing is left on disk for a next process, and nothing more arrives.
    let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let s = lg.stats();
    assert_eq!((s.adopted, s.sent), (0, 0), "{s:?}");
    assert!(lg.close(Duration::from_secs(2)));
    std::thread::sleep(Duration::from_millis(100));
    assert_exactly_once(&c);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn prefork_spools_left_by_killed_and_stopped_workers_are_delivered_once_by_the_next_process() {
    let dir = temp_dir("spool-prefork-next");
    let (port, down) = refusing_port();
    let text = config(port, &dir);
    let mut server = start_server(&text);
    server.kill_workers();

    // The server stops while the collector is still down: what the live processes hold (their
    // own lines, and whatever they adopted from the dead workers meanwhile) stays on disk.
    let last = server.stop(ASK_CLOSE_QUICK);
    let total = WORKERS as u64 * PER_WORKER;
    for s in &last {
        assert_identity(s);
        assert_eq!((s.sent, s.lost, s.buffered), (0, 0, 0), "{s:?}");
    }
    let held: u64 = last.iter().map(|s| s.spooled).sum();
    let adopted: u64 = last.iter().map(|s| s.adopted).sum();
    assert_eq!(
        held,
        (WORKERS - KILLED) as u64 * PER_WORKER + adopted,
        "{last:?}"
    );

    // The collector comes back; a next process with the same config adopts every instance.
    let c = Collector::listen_on(down);
    let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
    wait_for("every line delivered by the next process", 60, || {
        lg.stats().sent >= total
    });
    let all_bytes: u64 = (0..WORKERS).map(worker_bytes).sum();
    let s = lg.stats();
    assert_eq!(
        (
            s.logged,
            s.adopted,
            s.adopted_bytes,
            s.sent,
            s.sent_bytes,
            s.lost,
            s.spooled,
            s.buffered
        ),
        (0, total, all_bytes, total, all_bytes, 0, 0, 0),
        "{s:?}"
    );
    assert_identity(&s);
    assert!(lg.close(Duration::from_secs(5)));
    assert!(c.wait(|d| d.iter().filter(|&&b| b == b'\n').count() as u64 >= total));
    std::thread::sleep(Duration::from_millis(100));
    assert_exactly_once(&c);
    let _ = std::fs::remove_dir_all(&dir);
}

/// This thread's I/O so far (`/proc/thread-self/io`): bytes read and written by its system
/// calls (pread and pwrite included).
fn thread_io() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/thread-self/io: {text}"))
    };
    (field("rchar:"), field("wchar:"))
}

#[test]
fn a_fork_childs_first_log_does_not_read_the_spool_it_adopts() {
    // SPEC §6: `rlog_log` never touches the disk. A fork child gets a spool instance of its own
    // and adopts what dead processes left, which means reading every adopted record once (to
    // check it): that is the child's worker's job, not the job of the `log` call that notices
    // the fork (in nginx, the first request's log_by_lua in a worker forked from a master that
    // initialised rlog). The calling thread's I/O counters show which thread did it.
    const DEAD: u64 = 20_000;
    let dir = temp_dir("spool-fork-first-log");
    let (port, _down) = refusing_port();
    let text = config(port, &dir);
    // The parent's logger, started before anything is left to adopt.
    let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
    let mut pids = Pids::default();

    // A process that spools 2 MB and is killed: a dead instance to adopt.
    let (mut to_dead, mut dead_end) = pair();
    let t = text.clone();
    let dead = fork_run(move || {
        let lg = Logger::start(Config::parse(&t).unwrap()).unwrap();
        for i in 0..DEAD {
            lg.log(format!("{}-{}\n", line(9, i), "d".repeat(90)).as_bytes());
        }
        lg.flush();
        wait_for("spooled", 60, || lg.stats().spooled == DEAD);
        send_stats(&mut dead_end, &lg.stats());
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    pids.0.push(dead);
    let dead_bytes = recv_stats(&mut to_dead, "the process to kill").spooled_bytes;
    assert!(dead_bytes > 1 << 20, "{dead_bytes}");
    sigkill(dead);
    reap(dead, 10).expect("the killed process reaped");
    pids.forget(dead);

    // A child of this process logs through the inherited logger: its first `log` starts the
    // child's worker, which opens the child's spool instance and adopts the dead one.
    let (mut to_child, mut child_end) = pair();
    let child = fork_run(move || {
        let before = thread_io();
        let r = lg.log(b"from the child\n");
        let after = thread_io();
        assert_eq!(r, Logged::Buffered(15));
        wait_for("the dead instance adopted", 30, || {
            lg.stats().adopted == DEAD
        });
        send_u64s(
            &mut child_end,
            &[after.0 - before.0, after.1 - before.1, lg.stats().adopted],
        );
        lg.close(Duration::from_millis(100));
    });
    pids.0.push(child);
    let got = recv_u64s(&mut to_child, "the child");
    let status = reap(child, 30).expect("the child exited");
    pids.forget(child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child's status: {status:#x}"
    );
    let (read, written, adopted) = (got[0], got[1], got[2]);
    assert_eq!(adopted, DEAD, "the child adopted the dead instance");
    // Reading /proc/thread-self/io itself is a few hundred bytes; the adopted spool is 2 MB.
    assert!(
        read < 64 << 10 && written < 64 << 10,
        "the child's first log() read {read} B and wrote {written} B (the adopted spool: \
         {dead_bytes} B)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
