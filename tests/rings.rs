//! The per-thread rings behind `log` (src/ring.rs, src/producer.rs): what reaches the collector
//! when threads come and go, share a logger, use several loggers, log past `flush_limit` on
//! credit and then stop, or log while the logger closes. Each test waits on the collector — not
//! on `stats()`, which itself moves ring records into the buffer and could hide a record the
//! worker never picked up.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{assert_identity, black_hole, tcp_config, Collector, UdpCollector};
use rlog::{Config, Logged, Logger};

/// Waits for `n` lines, then stops the collector and returns its lines.
fn lines_when(c: Collector, n: usize) -> Vec<String> {
    assert!(
        c.wait(|d| d.iter().filter(|&&b| b == b'\n').count() >= n),
        "{} of {n} lines arrived",
        c.lines().len()
    );
    c.stop_lines()
}

fn logger(text: &str) -> Logger {
    Logger::start(Config::parse(text).unwrap()).unwrap()
}

/// A logger sending to collector `c` over TCP, with extra config lines.
fn tcp_logger(c: &Collector, extra: &str) -> Logger {
    logger(&tcp_config(c.port(), extra))
}

/// A logger whose collector never accepts (nothing is ever sent), with these limits; keep the
/// returned sockets alive for as long as the collector must stay unreachable.
fn unreachable_logger(flush_limit: usize, drop_limit: usize) -> (Logger, Vec<socket2::Socket>) {
    let (addr, hole) = black_hole();
    let lg = logger(&format!(
        "host = 127.0.0.1\nport = {}\nflush_limit = {flush_limit}\ndrop_limit = {drop_limit}\n\
         timeout = 100\nmax_retry_times = 0",
        addr.port()
    ));
    (lg, hole)
}

/// Lines `prefix-0` .. `prefix-(n-1)` each appear exactly once, in order.
fn assert_in_order(lines: &[String], prefix: &str, n: usize) {
    let mine: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with(&format!("{prefix}-")))
        .collect();
    assert_eq!(mine.len(), n, "{prefix}: {} of {n} lines", mine.len());
    for (i, l) in mine.iter().enumerate() {
        assert_eq!(**l, format!("{prefix}-{i}"), "{prefix}: out of order");
    }
}

#[test]
fn each_message_past_flush_limit_is_sent_without_a_flush_call() {
    // flush_limit 1: every message must go out by itself, even when the thread logs again
    // only after the worker has gone back to sleep (it holds credit granted past the limit).
    let rx = UdpCollector::new();
    let lg = logger(&format!(
        "host = 127.0.0.1\nport = {}\nsock_type = udp\nflush_limit = 1",
        rx.addr.port()
    ));
    for i in 0..30 {
        assert_eq!(
            lg.log(format!("m{i}\n").as_bytes()),
            Logged::Buffered(3 + (i >= 10) as usize)
        );
        if i % 3 == 0 {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(rx.wait_count(i + 1), "message {i} was not sent on its own");
    }
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.buffered), (30, 30, 0));
    assert_identity(&s);
    assert!(lg.close(Duration::from_secs(1)));
}

#[test]
fn tcp_messages_past_flush_limit_after_idle_periods_arrive() {
    let c = Collector::tcp();
    let lg = tcp_logger(&c, "flush_limit = 100");
    let mut n = 0;
    for burst in 0..20 {
        for _ in 0..(burst % 7 + 1) {
            lg.log(format!("line-{n}\n").as_bytes());
            n += 1;
        }
        // Long enough for the worker to flush and go back to sleep.
        thread::sleep(Duration::from_millis(15));
    }
    // What crossed flush_limit must arrive without flush(); the tail below it may wait.
    let held_back = 100 / "line-nn\n".len() + 1;
    assert!(
        c.wait(|d| d.iter().filter(|&&b| b == b'\n').count() + held_back >= n),
        "lines stuck in a ring: got {} of {n}",
        c.lines().len()
    );
    assert!(lg.close(Duration::from_secs(1)));
    assert_in_order(&lines_when(c, n), "line", n);
}

#[test]
fn a_thread_that_exits_leaves_nothing_behind() {
    let c = Collector::tcp();
    let lg = tcp_logger(&c, "flush_limit = 1000000\ndrop_limit = 2000000");
    // 64 short-lived threads, each logging a few lines below flush_limit and exiting.
    let threads: Vec<_> = (0..64)
        .map(|t| {
            let lg = lg.clone();
            thread::spawn(move || {
                for i in 0..5 {
                    assert_eq!(
                        lg.log(format!("t{t}-{i}\n").as_bytes()),
                        Logged::Buffered(format!("t{t}-{i}\n").len())
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Nothing was sent (below flush_limit); all 320 are held and counted.
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.buffered, s.dropped), (320, 0, 320, 0));
    assert_identity(&s);
    assert!(lg.flush() > 0);
    assert!(lg.close(Duration::from_secs(2)));
    let lines = lines_when(c, 320);
    for t in 0..64 {
        assert_in_order(&lines, &format!("t{t}"), 5);
    }
    assert_eq!(lines.len(), 320);
}

#[test]
fn credit_held_by_quiet_threads_does_not_starve_a_busy_one() {
    // drop_limit 64 KiB; 100 threads log once and go quiet (keeping whatever credit they were
    // granted). A later thread must still be able to buffer up to nearly the whole limit.
    let (lg, _hole) = unreachable_logger(65535, 65536);
    let quiet = Arc::new(Barrier::new(101));
    let done = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let (lg, quiet, done) = (lg.clone(), quiet.clone(), done.clone());
            thread::spawn(move || {
                assert_eq!(lg.log(b"x"), Logged::Buffered(1));
                quiet.wait();
                while !done.load(Ordering::Acquire) {
                    thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();
    quiet.wait();
    let msg = [b'y'; 100];
    let mut accepted = 0usize;
    while lg.log(&msg) == Logged::Buffered(100) {
        accepted += 100;
    }
    done.store(true, Ordering::Release);
    for t in threads {
        t.join().unwrap();
    }
    // The credit the quiet threads held was taken back: the busy thread filled the rest.
    assert!(
        accepted > 65536 - 100 - 100,
        "only {accepted} bytes accepted"
    );
    let s = lg.stats();
    assert!(s.logged_bytes <= 65536, "drop_limit exceeded: {s:?}");
    assert_eq!(s.dropped, 1);
    assert_identity(&s);
    lg.close(Duration::from_millis(200));
}

#[test]
fn held_bytes_never_exceed_drop_limit_across_threads() {
    let (lg, _hole) = unreachable_logger(1000, 20000);
    let accepted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (lg, accepted) = (lg.clone(), accepted.clone());
            thread::spawn(move || {
                for _ in 0..2000 {
                    if let Logged::Buffered(n) = lg.log(&[b'z'; 37]) {
                        accepted.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = lg.stats();
    assert_eq!(s.logged_bytes, accepted.load(Ordering::Relaxed));
    // Exact for one thread; with several, a thread that appends on credit at the moment
    // another takes that credit back can pass the limit by its one message (see
    // `Rings::revoke`, src/credit.rs): at most one 37-byte message for each of the 3 other
    // threads.
    assert!(
        s.logged_bytes <= 20000 + 3 * 37,
        "drop_limit exceeded: {s:?}"
    );
    assert!(s.dropped > 0);
    assert_eq!(s.logged + s.dropped, 8000);
    assert_identity(&s);
    lg.close(Duration::from_millis(200));
}

#[test]
fn one_thread_two_loggers_interleaved() {
    let (a, b) = (Collector::tcp(), Collector::tcp());
    let la = tcp_logger(&a, "flush_limit = 500");
    let lb = tcp_logger(&b, "flush_limit = 700");
    for i in 0..2000 {
        la.log(format!("a-{i}\n").as_bytes());
        lb.log(format!("b-{i}\n").as_bytes());
    }
    assert!(la.close(Duration::from_secs(2)));
    assert!(lb.close(Duration::from_secs(2)));
    assert_in_order(&lines_when(a, 2000), "a", 2000);
    assert_in_order(&lines_when(b, 2000), "b", 2000);
}

#[test]
fn messages_larger_than_the_ring_keep_their_place() {
    let c = Collector::tcp();
    let lg = tcp_logger(&c, "flush_limit = 4096\ndrop_limit = 8388608");
    // The ring is 256 KiB here: 200 KB messages go through the logger's buffer, between
    // small ones that go through the ring; the thread's order must hold.
    let mut expect = Vec::new();
    for i in 0..40 {
        let m = if i % 5 == 4 {
            let mut m = format!("big-{i}-").into_bytes();
            m.resize(200_000, b'B');
            m.push(b'\n');
            m
        } else {
            format!("small-{i}\n").into_bytes()
        };
        assert_eq!(lg.log(&m), Logged::Buffered(m.len()));
        expect.extend_from_slice(&m);
    }
    assert!(lg.close(Duration::from_secs(5)));
    assert!(c.wait_bytes(expect.len()));
    assert_eq!(c.stop(), expect);
}

#[test]
fn logging_while_the_logger_closes_loses_nothing_uncounted() {
    for round in 0..20 {
        let c = Collector::tcp();
        let lg = tcp_logger(&c, "flush_limit = 300");
        let accepted = Arc::new(AtomicU64::new(0));
        let go = Arc::new(Barrier::new(5));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (lg, accepted, go) = (lg.clone(), accepted.clone(), go.clone());
                thread::spawn(move || {
                    go.wait();
                    for i in 0.. {
                        match lg.log(format!("r{round}t{t}-{i}\n").as_bytes()) {
                            Logged::Buffered(_) => {
                                accepted.fetch_add(1, Ordering::Relaxed);
                            }
                            Logged::Closed => return,
                            Logged::Dropped => {}
                        }
                    }
                })
            })
            .collect();
        go.wait();
        thread::sleep(Duration::from_micros(200 * round));
        let all = lg.close(Duration::from_secs(2));
        for t in threads {
            t.join().unwrap();
        }
        let s = lg.stats();
        // Every call that returned "buffered" was delivered or counted lost.
        assert_eq!(s.logged, accepted.load(Ordering::Relaxed), "round {round}");
        assert_eq!(s.buffered, 0);
        assert_identity(&s);
        assert!(all, "round {round}: {s:?}");
        let lines = lines_when(c, s.sent as usize);
        assert_eq!(lines.len() as u64, s.sent, "round {round}");
        for t in 0..4 {
            let p = format!("r{round}t{t}");
            let n = lines
                .iter()
                .filter(|l| l.starts_with(&format!("{p}-")))
                .count();
            assert_in_order(&lines, &p, n);
        }
    }
}

#[test]
fn logging_from_a_thread_local_destructor_after_the_rings_are_gone() {
    // Destructors run in reverse order of registration: `LATE` is registered before rlog's own
    // thread-local, so it is dropped after it — as an `atexit` handler on the main thread runs
    // after glibc has run the thread-local destructors. It must still log safely.
    struct LogOnDrop(Option<Logger>);
    impl Drop for LogOnDrop {
        fn drop(&mut self) {
            if let Some(lg) = self.0.take() {
                // The logger notices the thread's ring is orphaned and forgets it.
                assert_eq!(lg.stats().logged, 3);
                for i in 0..3 {
                    let m = format!("late-{i}\n");
                    assert_eq!(lg.log(m.as_bytes()), Logged::Buffered(m.len()));
                }
            }
        }
    }
    thread_local! {
        static LATE: std::cell::RefCell<LogOnDrop> = const { std::cell::RefCell::new(LogOnDrop(None)) };
    }
    let c = Collector::tcp();
    let lg = tcp_logger(&c, "flush_limit = 1000000\ndrop_limit = 2000000");
    let lg2 = lg.clone();
    thread::spawn(move || {
        LATE.with(|l| l.borrow_mut().0 = Some(lg2.clone()));
        for i in 0..3 {
            lg2.log(format!("early-{i}\n").as_bytes());
        }
    })
    .join()
    .unwrap();
    let s = lg.stats();
    assert_eq!((s.logged, s.dropped, s.buffered), (6, 0, 6));
    assert!(lg.close(Duration::from_secs(1)));
    let lines = lines_when(c, 6);
    assert_in_order(&lines, "early", 3);
    assert_in_order(&lines, "late", 3);
}
