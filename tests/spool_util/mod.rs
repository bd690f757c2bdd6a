//! Helpers for the spool tests that run hosts as forked processes: forking a child that never
//! returns into the test harness, a little protocol on a socketpair to ask a child for its
//! counters or to close its logger, and killing by pid (also when the test fails).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use rlog::{rlog_stats, Logger};

/// Polls `ok` every 10 ms; panics after `secs` seconds.
pub fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Forks; the child runs `child` and then `_exit`s (0, or 101 when it panicked): it never
/// returns into the test harness. Returns the child's pid.
pub fn fork_run(child: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the child only runs `child` (rlog, std I/O on its own sockets, fork) and then
    // _exit; it never returns into the harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // The harness captures a test's output in memory, which nobody reads in a child: say
        // why the child failed on the real stderr.
        std::panic::set_hook(Box::new(|info| {
            let m = format!("forked child {}: {info}\n", std::process::id());
            // SAFETY: writes our own buffer to descriptor 2.
            unsafe { libc::write(2, m.as_ptr().cast(), m.len()) };
        }));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child));
        // SAFETY: _exit ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(if r.is_ok() { 0 } else { 101 }) };
    }
    pid
}

/// A socketpair: (the test's end, the child's end); the test's end times out after 120 s so a
/// child that hangs fails the test instead of hanging it.
pub fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    (a, b)
}

const STATS_WORDS: usize = std::mem::size_of::<rlog_stats>() / 8;

/// Writes the counters, field by field (the struct is `repr(C)`, all `u64`).
pub fn send_stats(to: &mut UnixStream, s: &rlog_stats) {
    assert_eq!(std::mem::size_of::<rlog_stats>() % 8, 0);
    // SAFETY: rlog_stats is repr(C) and made of u64 fields only: no padding, every bit
    // pattern valid; the slice covers exactly the struct.
    let words: &[u64] =
        unsafe { std::slice::from_raw_parts((s as *const rlog_stats).cast(), STATS_WORDS) };
    let mut b = Vec::with_capacity(STATS_WORDS * 8);
    for w in words {
        b.extend_from_slice(&w.to_le_bytes());
    }
    to.write_all(&b).unwrap();
}

/// Reads what [`send_stats`] wrote; panics (with `who`) on EOF or timeout.
pub fn recv_stats(from: &mut UnixStream, who: &str) -> rlog_stats {
    let mut b = vec![0u8; STATS_WORDS * 8];
    from.read_exact(&mut b)
        .unwrap_or_else(|e| panic!("{who}: no counters: {e}"));
    let mut s = rlog_stats::default();
    // SAFETY: as in send_stats.
    let words: &mut [u64] =
        unsafe { std::slice::from_raw_parts_mut((&mut s as *mut rlog_stats).cast(), STATS_WORDS) };
    for (w, c) in words.iter_mut().zip(b.chunks_exact(8)) {
        *w = u64::from_le_bytes(c.try_into().unwrap());
    }
    s
}

pub fn send_u64s(to: &mut UnixStream, v: &[u64]) {
    let mut b = Vec::with_capacity(8 + v.len() * 8);
    b.extend_from_slice(&(v.len() as u64).to_le_bytes());
    for x in v {
        b.extend_from_slice(&x.to_le_bytes());
    }
    to.write_all(&b).unwrap();
}

pub fn recv_u64s(from: &mut UnixStream, who: &str) -> Vec<u64> {
    let one = |from: &mut UnixStream| {
        let mut b = [0u8; 8];
        from.read_exact(&mut b)
            .unwrap_or_else(|e| panic!("{who}: no answer: {e}"));
        u64::from_le_bytes(b)
    };
    let n = one(from);
    (0..n).map(|_| one(from)).collect()
}

/// Asks: the child answers `b'S'` with its counters.
pub const ASK_STATS: u8 = b'S';
/// Asks: the child closes its logger (10 s), answers with its counters and exits.
pub const ASK_CLOSE: u8 = b'C';
/// Asks: as [`ASK_CLOSE`], with 1 s to deliver (the collector is known to be down).
pub const ASK_CLOSE_QUICK: u8 = b'c';

/// A child's side: answers the test's questions about `lg` until told to close (or the test's
/// end goes away).
pub fn serve(lg: &Logger, s: &mut UnixStream) {
    let mut cmd = [0u8; 1];
    loop {
        if s.read_exact(&mut cmd).is_err() {
            return;
        }
        match cmd[0] {
            ASK_STATS => send_stats(s, &lg.stats()),
            ASK_CLOSE | ASK_CLOSE_QUICK => {
                lg.close(Duration::from_secs(if cmd[0] == ASK_CLOSE {
                    10
                } else {
                    1
                }));
                send_stats(s, &lg.stats());
                return;
            }
            c => panic!("unknown command {c}"),
        }
    }
}

/// The test's side of [`serve`].
pub fn ask(s: &mut UnixStream, cmd: u8, who: &str) -> rlog_stats {
    s.write_all(&[cmd])
        .unwrap_or_else(|e| panic!("{who}: cannot ask: {e}"));
    recv_stats(s, who)
}

/// Whether `pid` still exists (a zombie counts).
pub fn exists(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

pub fn sigkill(pid: libc::pid_t) {
    // SAFETY: a plain system call on a process this test started.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Waits for our child `pid` to exit (`secs` at most); returns its wait status.
pub fn reap(pid: libc::pid_t, secs: u64) -> Option<i32> {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut status = 0;
        // SAFETY: waitpid on a child of this process.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(status);
        }
        if r < 0 || Instant::now() >= until {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Kills the processes it holds (by pid, SIGKILL) when dropped: a failing test leaves no host
/// behind. `forget` takes a pid off the list once it is known to be gone.
#[derive(Default)]
pub struct Pids(pub Vec<libc::pid_t>);

impl Pids {
    pub fn forget(&mut self, pid: libc::pid_t) {
        self.0.retain(|&p| p != pid);
    }
}

impl Drop for Pids {
    fn drop(&mut self) {
        for &p in &self.0 {
            sigkill(p);
        }
        for &p in &self.0 {
            reap(p, 1);
        }
    }
}
