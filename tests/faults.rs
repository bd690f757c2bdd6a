//! Fault and load tests against real loopback collectors: collector down then up, restarted
//! mid-stream, closing every connection, many threads, long ordered streams. Each checks what
//! arrived against what was logged and the accounting identity.

mod common;

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use rlog::{Config, Logged, Logger};

fn logger(text: &str) -> Logger {
    Logger::start(Config::parse(text).unwrap()).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Parses "tag seq" lines.
fn parse(lines: &[String]) -> Vec<(String, u64)> {
    lines
        .iter()
        .map(|l| {
            let (t, n) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            (t.to_string(), n.parse().unwrap())
        })
        .collect()
}

#[test]
fn collector_down_then_up_loses_nothing() {
    let port = free_port();
    let lg = logger(&tcp_config(
        port,
        "flush_limit = 64\nmax_retry_times = 1\nretry_interval = 5\ntimeout = 200",
    ));
    for i in 0..100 {
        assert!(matches!(
            lg.log(format!("line {i}\n").as_bytes()),
            Logged::Buffered(_)
        ));
    }
    assert_eq!(lg.flush(), -1, "nobody listens yet");
    let err = lg.take_error().unwrap();
    assert!(
        err.as_str().ends_with("connection refused"),
        "{}",
        err.as_str()
    );
    let s = lg.stats();
    assert_eq!((s.sent, s.lost, s.buffered), (0, 0, 100));
    assert_identity(&s);

    let c = Collector::tcp_at(format!("127.0.0.1:{port}").parse().unwrap());
    for i in 100..200 {
        lg.log(format!("line {i}\n").as_bytes());
    }
    lg.flush();
    let s = wait_drained(&lg);
    assert!(c.wait(|d| d.iter().filter(|&&b| b == b'\n').count() >= 200));
    let lines = c.lines();
    assert_eq!(lines.len() as u64, s.sent, "collector's line count == sent");
    let expected: Vec<String> = (0..200).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected);
    assert_eq!((s.logged, s.sent, s.lost, s.dropped), (200, 200, 0, 0));
    assert!(s.retries > 0);
    assert_identity(&s);
}

#[test]
fn collector_restarted_mid_stream_recovers_in_order_without_duplicates() {
    let a = Collector::tcp();
    let addr = a.addr.unwrap();
    let lg = logger(&tcp_config(
        addr.port(),
        "flush_limit = 256\nmax_retry_times = 2\nretry_interval = 5\ntimeout = 500",
    ));
    for i in 0..2000 {
        lg.log(format!("m {i}\n").as_bytes());
        if i % 100 == 0 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    lg.flush();
    let first = a.stop();
    let b = Collector::tcp_at(addr);
    for i in 2000..4000 {
        lg.log(format!("m {i}\n").as_bytes());
    }
    assert!(lg.flush() >= 0);
    let s = wait_drained(&lg);
    assert_identity(&s);
    assert!(b.wait(|d| d.ends_with(b"m 3999\n")));
    let mut all = String::from_utf8(first).unwrap();
    all.push_str(&String::from_utf8(b.data()).unwrap());
    let got = parse(&all.lines().map(str::to_string).collect::<Vec<_>>());
    let seqs: Vec<u64> = got.iter().map(|(_, n)| *n).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "order kept, no duplicates"
    );
    assert_eq!(seqs.last(), Some(&3999));
    assert!(s.connects >= 2, "reconnected: {s:?}");
    assert_eq!(s.lost, 0);
}

/// Plain TCP cannot tell a write the peer discarded from one it read: a collector that closes
/// each connection makes rlog reconnect for every batch (it checks a kept connection before
/// reusing it), never hang, and keep its counts straight. Acknowledged delivery is what the
/// `rlogd://` transport is for.
#[test]
fn a_collector_that_closes_every_connection_makes_rlog_reconnect_not_hang() {
    let (addr, stop) = closing_listener();
    let lg = logger(&tcp_config(addr.port(), "flush_limit = 1000000\ndrop_limit = 2000000\nmax_retry_times = 1\nretry_interval = 1\ntimeout = 200"));
    for i in 0..20 {
        lg.log(format!("doomed {i}\n").as_bytes());
        let r = lg.flush();
        if r == -1 {
            let e = lg.take_error().unwrap();
            assert!(
                e.as_str().starts_with(
                    "try to send log messages to the log server failed after 1 retries: "
                ),
                "{}",
                e.as_str()
            );
        } else {
            assert_eq!(r, format!("doomed {i}\n").len() as i64);
        }
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    let s = lg.stats();
    assert!(s.connects >= 10, "a closed connection is not reused: {s:?}");
    assert_eq!(s.logged, 20);
    assert_identity(&s);
}

#[test]
fn four_threads_fifty_thousand_each_keep_per_thread_order() {
    let c = Collector::tcp();
    let lg = logger(&tcp_config(c.port(), "drop_limit = 67108864"));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let lg = lg.clone();
            thread::spawn(move || {
                for i in 0..50_000u64 {
                    let line = format!("t{t} {i}\n");
                    assert_eq!(lg.log(line.as_bytes()), Logged::Buffered(line.len()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    lg.flush();
    let s = wait_drained(&lg);
    assert!(c.wait(|d| d.iter().filter(|&&b| b == b'\n').count() >= 200_000));
    let got = parse(&c.lines());
    assert_eq!(got.len(), 200_000);
    for t in 0..4 {
        let tag = format!("t{t}");
        let seq: Vec<u64> = got
            .iter()
            .filter(|(g, _)| *g == tag)
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(seq, (0..50_000).collect::<Vec<_>>(), "thread {t} order");
    }
    assert_eq!(
        (s.logged, s.sent, s.dropped, s.lost),
        (200_000, 200_000, 0, 0)
    );
    assert_identity(&s);
}

#[test]
fn two_hundred_thousand_in_order_through_one_connection() {
    let c = Collector::tcp();
    let lg = logger(&tcp_config(c.port(), "drop_limit = 67108864"));
    for i in 0..200_000u64 {
        lg.log(format!("n {i}\n").as_bytes());
    }
    lg.flush();
    let s = wait_drained(&lg);
    assert!(c.wait(|d| d.ends_with(b"n 199999\n")));
    let seqs: Vec<u64> = parse(&c.lines()).into_iter().map(|(_, n)| n).collect();
    assert_eq!(seqs, (0..200_000).collect::<Vec<_>>());
    assert_eq!(c.connections(), 1);
    assert_eq!((s.sent, s.connects), (200_000, 1));
    assert_identity(&s);
}

#[test]
fn drop_limit_bounds_memory_while_the_collector_is_down_and_counts_drops() {
    let (port, held) = refusing_port();
    let lg = logger(&tcp_config(
        port,
        "flush_limit = 100\ndrop_limit = 1000\nmax_retry_times = 0\nretry_interval = 1000",
    ));
    let mut accepted = 0;
    for i in 0..500 {
        match lg.log(format!("{i:09}\n").as_bytes()) {
            Logged::Buffered(_) => accepted += 1,
            Logged::Dropped => {}
            Logged::Closed => unreachable!(),
        }
    }
    let s = lg.stats();
    assert!(s.buffered_bytes <= 1000, "{s:?}");
    assert_eq!(s.logged, accepted);
    assert_eq!(s.logged + s.dropped, 500);
    assert!(s.dropped > 0);
    assert_identity(&s);
    // Everything accepted is still delivered once the collector comes.
    drop(held);
    let c = Collector::tcp_at(format!("127.0.0.1:{port}").parse().unwrap());
    // The worker's own retry (after its backoff) may have delivered everything already, in
    // which case flush finds nothing to send.
    let r = lg.flush();
    assert!(
        r >= 0,
        "flush returned {r}: {:?} {:?}",
        lg.take_error(),
        lg.stats()
    );
    let s = wait_drained(&lg);
    assert!(c.wait(|d| d.len() as u64 >= s.sent_bytes));
    assert_eq!(c.lines().len() as u64, accepted);
    assert_eq!((s.sent, s.lost), (accepted, 0));
    let uniq: HashSet<_> = c.lines().into_iter().collect();
    assert_eq!(uniq.len() as u64, accepted);
}

#[test]
fn close_delivers_what_is_held_and_later_logs_are_refused() {
    let c = Collector::tcp();
    let lg = logger(&tcp_config(
        c.port(),
        "flush_limit = 100000\ndrop_limit = 200000",
    ));
    for i in 0..1000 {
        lg.log(format!("bye {i}\n").as_bytes());
    }
    assert!(lg.close(Duration::from_secs(5)), "all delivered");
    assert!(c.wait(|d| d.ends_with(b"bye 999\n")));
    assert_eq!(c.lines().len(), 1000);
    assert_eq!(lg.log(b"late"), Logged::Closed);
    assert_eq!(lg.flush(), -1);
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.buffered), (1000, 1000, 0));
}

#[test]
fn close_with_the_collector_down_counts_the_loss() {
    let (port, _held) = refusing_port();
    let lg = logger(&tcp_config(
        port,
        "flush_limit = 100000\ndrop_limit = 200000\nretry_interval = 10",
    ));
    for i in 0..10 {
        lg.log(format!("x {i}\n").as_bytes());
    }
    assert!(!lg.close(Duration::from_millis(300)));
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.lost, s.buffered), (10, 0, 10, 0));
    assert_identity(&s);
}

/// A unix datagram receiver that stops reading fills its queue (`net.unix.max_dgram_qlen`, a few
/// datagrams): each send then waits at most `timeout`, so flush and close return instead of
/// blocking the worker forever, and every message is still counted.
#[test]
fn a_unix_datagram_receiver_that_never_reads_makes_flush_and_close_return() {
    let dir = temp_dir("dgram-full");
    let path = dir.join("never-reads.sock");
    let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let lg = logger(&format!(
        "logger = socket:{}\ntimeout = 100\nmax_retry_times = 1\nretry_interval = 5\n\
         flush_limit = 1000000\ndrop_limit = 2000000",
        path.display()
    ));
    for i in 0..2000 {
        let m = format!("queued {i}");
        assert_eq!(lg.log(m.as_bytes()), Logged::Buffered(m.len()));
    }
    // Bounded waits done by a helper thread: the point is that the calls return at all.
    let in_thread = |f: Box<dyn FnOnce() -> i64 + Send>| {
        let (tx, done) = std::sync::mpsc::channel();
        thread::spawn(move || tx.send(f()).unwrap());
        done.recv_timeout(Duration::from_secs(10))
    };
    let l = lg.clone();
    let flushed = in_thread(Box::new(move || l.flush())).expect("flush() returned");
    assert_eq!(flushed, -1, "the receiver's queue is full");
    let err = lg.take_error().expect("an error is pending");
    assert!(
        err.as_str().contains("failed after 1 retries: timeout"),
        "{}",
        err.as_str()
    );
    let s = lg.stats();
    assert!(s.sent < 2000, "{s:?}");
    assert_identity(&s);
    let l = lg.clone();
    let closed = in_thread(Box::new(move || l.close(Duration::from_millis(300)) as i64))
        .expect("close() returned");
    assert_eq!(closed, 0, "not everything was delivered");
    assert_identity(&lg.stats());
    // The worker settles what it still held as lost once its last send times out.
    let s = wait_drained(&lg);
    assert_eq!((s.logged, s.buffered), (2000, 0), "{s:?}");
    assert!(s.lost > 0, "{s:?}");
    assert_identity(&s);
    drop(rx);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A collector that stalls makes a send time out part-way through a record. The connection is
/// kept and the next send goes on from that byte, so the collector reads every record whole and
/// once, on one connection. (Dropping it left the record's first part on the old connection and
/// sent it whole on a new one: a fragment, then the record.)
#[test]
fn a_send_that_times_out_mid_record_resumes_on_the_same_connection() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        let mut conns = 0;
        l.set_nonblocking(true).unwrap();
        let mut streams = Vec::new();
        // Accept for as long as the test runs; read nothing until told to.
        while rx.try_recv().is_err() {
            if let Ok((s, _)) = l.accept() {
                conns += 1;
                streams.push(s);
            }
            thread::sleep(Duration::from_millis(5));
        }
        for mut s in streams {
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut part = Vec::new();
            let _ = std::io::Read::read_to_end(&mut s, &mut part);
            got.extend_from_slice(&part);
        }
        (conns, got)
    });
    let lg = logger(&format!(
        "host = 127.0.0.1\nport = {port}\nframing = newline\ntimeout = 1000\nmax_retry_times = 0\n\
         retry_interval = 20\ndrop_limit = 30000000\nflush_limit = 20000000"
    ));
    stall_then_resume(&lg, tx, reader);
}

/// A collector that stops reading one connection (a wedged thread) but serves new ones: a send
/// that times out without moving a byte gives that connection up, so delivery goes on over a
/// new one instead of waiting on the dead one for good. Lines the kernel had already taken on
/// the wedged connection count as sent (as for any stream); everything after them arrives whole
/// and once on the new connection.
#[test]
fn a_connection_the_collector_stopped_reading_is_given_up_for_a_new_one() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<u8>>> = Arc::default();
    let conns = Arc::new(AtomicUsize::new(0));
    {
        let (got, conns) = (got.clone(), conns.clone());
        thread::spawn(move || {
            let mut wedged = Vec::new();
            for s in l.incoming().flatten() {
                if conns.fetch_add(1, Ordering::SeqCst) == 0 {
                    let _ = socket2::SockRef::from(&s).set_recv_buffer_size(4096);
                    wedged.push(s); // never read
                    continue;
                }
                let got = got.clone();
                thread::spawn(move || {
                    let mut s = s;
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = std::io::Read::read(&mut s, &mut buf) {
                        if n == 0 {
                            break;
                        }
                        got.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
    }
    let lg = logger(&format!(
        "host = 127.0.0.1\nport = {port}\ntimeout = 200\nmax_retry_times = 2\nretry_interval = 10\n\
         drop_limit = 30000000\nflush_limit = 20000000"
    ));
    const N: usize = 8000;
    let msg = |i: usize| format!("{i:05}:{}\n", "x".repeat(993));
    for i in 0..N {
        assert!(matches!(lg.log(msg(i).as_bytes()), Logged::Buffered(_)));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lg.stats().sent < N as u64 && std::time::Instant::now() < deadline {
        lg.flush();
    }
    let s = lg.stats();
    assert_eq!((s.sent, s.lost, s.buffered), (N as u64, 0, 0), "{s:?}");
    assert_identity(&s);
    assert!(s.connects >= 2, "{s:?}");
    assert!(lg.close(Duration::from_secs(5)));
    let last = msg(N - 1);
    assert!(
        wait_until_true(|| got.lock().unwrap().ends_with(last.as_bytes())),
        "the last line came over a new connection"
    );
    let data = got.lock().unwrap().clone();
    let mut seen = HashSet::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        let i: usize = std::str::from_utf8(&line[..5]).unwrap().parse().unwrap();
        assert_eq!(line, msg(i).as_bytes(), "a whole line");
        assert!(seen.insert(i), "line {i} twice");
    }
}

fn wait_until_true(mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    false
}
