//! lua-resty-logger-socket's own test suite, ported: the same configs and messages, asserting
//! what reached a real collector on 127.0.0.1 and what `log`/`flush` returned.

mod common;

use std::thread;
use std::time::Duration;

use common::*;
use rlog::{Config, Logged, Logger};

fn logger(text: &str) -> Logger {
    Logger::start(Config::parse(text).unwrap()).unwrap()
}

#[test]
fn small_flush_limit_flushes_at_once() {
    let c = Collector::tcp();
    let lg = logger(&tcp_config(c.port(), "flush_limit = 1"));
    assert_eq!(lg.log(b"hello"), Logged::Buffered(5));
    assert!(c.wait_bytes(5));
    assert_eq!(c.data(), b"hello");
    let s = wait_drained(&lg);
    assert_eq!((s.logged, s.sent, s.connects), (1, 1, 1));
    assert_identity(&s);
}

#[test]
fn below_flush_limit_sends_nothing_and_does_not_connect() {
    let c = Collector::tcp();
    let lg = logger(&tcp_config(c.port(), "flush_limit = 100\ndrop_limit = 200"));
    assert_eq!(lg.log(b"abc"), Logged::Buffered(3));
    thread::sleep(Duration::from_millis(200));
    assert_eq!(c.connections(), 0);
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.buffered, s.connects), (1, 0, 1, 0));
    assert_identity(&s);
}

#[test]
fn a_number_and_binary_bytes_arrive_as_they_are() {
    let c = Collector::tcp();
    let lg = logger(&tcp_config(c.port(), "flush_limit = 1"));
    // Lua's tostring(10) is "10": the bindings do that; the library carries bytes as they are.
    assert_eq!(lg.log(b"10"), Logged::Buffered(2));
    let bin = [0u8, 0xff, b'\n', 0x80, 0];
    assert_eq!(lg.log(&bin), Logged::Buffered(5));
    assert!(c.wait_bytes(7));
    assert_eq!(c.data(), [b"10".as_slice(), &bin].concat());
}

#[test]
fn flush_4_drop_6_delivers_000bbb() {
    let dir = temp_dir("drop");
    let c = Collector::unix(&dir);
    let path = c.path.clone().unwrap();
    let lg = logger(&format!(
        "path = {}\nflush_limit = 4\ndrop_limit = 6",
        path.display()
    ));
    assert_eq!(lg.log(b"000"), Logged::Buffered(3));
    assert_eq!(lg.log(b"aaaaa"), Logged::Dropped);
    assert_eq!(
        lg.take_error().unwrap().as_str(),
        "logger buffer is full, this log message will be dropped"
    );
    assert!(lg.take_error().is_none(), "an error is returned once");
    assert_eq!(lg.log(b"bbb"), Logged::Buffered(3));
    // resty's timer flush still counts "000" when "bbb" comes, so "bbb" starts a flush there;
    // rlog's worker may already have sent "000", leaving "bbb" below flush_limit: flush it.
    assert!(lg.flush() >= 0);
    assert!(c.wait_bytes(6));
    thread::sleep(Duration::from_millis(50));
    assert_eq!(c.data(), b"000bbb");
    let s = wait_drained(&lg);
    assert_eq!(
        (s.logged, s.dropped, s.dropped_bytes, s.sent, s.sent_bytes),
        (2, 1, 5, 2, 6)
    );
    assert_identity(&s);
}

#[test]
fn flush_returns_the_bytes_sent() {
    let c = Collector::tcp();
    let lg = logger(&tcp_config(c.port(), ""));
    assert_eq!(lg.log(b"abc"), Logged::Buffered(3));
    assert_eq!(lg.log(b"efg"), Logged::Buffered(3));
    assert_eq!(lg.flush(), 6);
    assert_eq!(lg.flush(), 0, "nothing left to send");
    assert!(c.wait_bytes(6));
    assert_eq!(c.data(), b"abcefg");
}

#[test]
fn periodic_flush_delivers_without_reaching_flush_limit() {
    let c = Collector::tcp();
    let lg = logger(&tcp_config(c.port(), "periodic_flush = 0.05"));
    lg.log(b"foo");
    lg.log(b"bar");
    assert!(c.wait_bytes(6));
    assert_eq!(c.data(), b"foobar");
    let s = wait_drained(&lg);
    assert_eq!(s.sent, 2);
    assert_identity(&s);
}

#[test]
fn udp_sends_one_datagram_per_message() {
    let c = UdpCollector::new();
    let lg = logger(&format!(
        "host = 127.0.0.1\nport = {}\nsock_type = udp\nflush_limit = 1",
        c.addr.port()
    ));
    for m in ["first", "second", "", "fourth"] {
        lg.log(m.as_bytes());
    }
    assert!(c.wait_count(4));
    assert_eq!(
        c.datagrams(),
        vec![
            b"first".to_vec(),
            b"second".to_vec(),
            vec![],
            b"fourth".to_vec()
        ]
    );
    let s = wait_drained(&lg);
    assert_eq!(s.sent, 4);
    assert_identity(&s);
}

#[test]
fn udp_message_too_large_is_lost_and_counted_never_truncated() {
    let c = UdpCollector::new();
    let lg = logger(&format!(
        "host = 127.0.0.1\nport = {}\nsock_type = udp\nflush_limit = 100000\ndrop_limit = 200000",
        c.addr.port()
    ));
    lg.log(b"before");
    lg.log(&vec![b'x'; 65_508]);
    lg.log(b"after");
    assert_eq!(lg.flush(), 11);
    assert!(c.wait_count(2));
    thread::sleep(Duration::from_millis(50));
    assert_eq!(c.datagrams(), vec![b"before".to_vec(), b"after".to_vec()]);
    let s = wait_drained(&lg);
    assert_eq!((s.sent, s.lost, s.lost_bytes), (2, 1, 65_508));
    assert_identity(&s);
    assert!(lg
        .take_error()
        .unwrap()
        .as_str()
        .contains("larger than the largest UDP datagram"));
}

/// With nothing listening on a UDP port, the kernel learns (ICMP port unreachable) that a
/// datagram already counted sent went nowhere, and says so on the next send, which sends
/// nothing. That datagram is sent again at once (no pause, no retry counted: it was not the one
/// refused), and the refusal is not kept quiet: the next `log()` or `flush()` error says so.
#[test]
fn a_udp_datagram_refused_after_it_was_sent_is_reported() {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let lg = logger(&format!(
        "host = 127.0.0.1\nport = {port}\nsock_type = udp\nflush_limit = 100000\nretry_interval = 1"
    ));
    lg.log(b"first");
    assert_eq!(lg.flush(), 5);
    assert!(lg.take_error().is_none());
    // Loopback answers at once; give the ICMP error a moment to be queued on the socket.
    thread::sleep(Duration::from_millis(50));
    lg.log(b"second");
    assert_eq!(lg.flush(), 6);
    let err = lg.take_error().expect("the refusal is reported");
    assert_eq!(
        err.as_str(),
        format!(
            "1 UDP datagram counted sent was refused by 127.0.0.1:{port}: connection refused \
             (is anything receiving there?)"
        )
    );
    let s = lg.stats();
    assert_eq!((s.sent, s.retries), (2, 0), "{s:?}");
    assert_identity(&s);
}

/// A whole batch to a UDP port with no receiver: each refusal makes the next datagram go again
/// at once instead of failing the flush, so the batch is not held back (it was: 4 of 50 went
/// per flush, the rest waited for retries), and the refusals are reported together.
#[test]
fn a_udp_batch_to_a_port_with_no_receiver_goes_out_and_the_refusals_are_reported() {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let lg = logger(&format!(
        "host = 127.0.0.1\nport = {port}\nsock_type = udp\nflush_limit = 100000\nretry_interval = 1000"
    ));
    for i in 0..50 {
        lg.log(format!("line {i:02}").as_bytes());
    }
    assert_eq!(lg.flush(), 50 * 7);
    let s = lg.stats();
    assert_eq!((s.sent, s.buffered, s.retries), (50, 0, 0), "{s:?}");
    assert_identity(&s);
    let err = lg.take_error().expect("the refusals are reported");
    assert!(
        err.as_str()
            .contains(" UDP datagrams counted sent were refused by 127.0.0.1:")
            || err
                .as_str()
                .starts_with("1 UDP datagram counted sent was refused"),
        "{}",
        err.as_str()
    );
}

#[test]
fn unix_socket() {
    let dir = temp_dir("unix");
    let c = Collector::unix(&dir);
    let lg = logger(&format!(
        "path = {}\nflush_limit = 1",
        c.path.as_ref().unwrap().display()
    ));
    lg.log(b"over unix\n");
    assert!(c.wait_bytes(10));
    assert_eq!(c.data(), b"over unix\n");
}

#[test]
fn flush_limit_zero_with_an_empty_message() {
    let c = Collector::tcp();
    let lg = logger(&tcp_config(c.port(), "flush_limit = 0"));
    assert_eq!(lg.log(b""), Logged::Buffered(0));
    assert_eq!(lg.log(b"x"), Logged::Buffered(1));
    assert!(c.wait_bytes(1));
    let s = wait_drained(&lg);
    assert_eq!((s.logged, s.sent, s.sent_bytes), (2, 2, 1));
    assert!(lg.take_error().is_none());
}

#[test]
fn connect_timeout_against_a_black_hole() {
    let (addr, _hold) = black_hole();
    let lg = logger(&tcp_config(
        addr.port(),
        "timeout = 100\nmax_retry_times = 0\nflush_limit = 1",
    ));
    lg.log(b"into the void");
    assert_eq!(lg.flush(), -1);
    let err = lg.take_error().unwrap();
    assert_eq!(
        err.as_str(),
        format!(
            "try to send log messages to the log server failed after 0 retries: \
             try to connect to the log server failed after 0 retries: connect tcp://{addr}: timeout"
        )
    );
    // Kept, not lost: it is retried later.
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.lost, s.buffered), (1, 0, 0, 1));
    assert_identity(&s);
}

#[test]
fn send_timeout_against_a_collector_that_never_reads() {
    let (addr, _held) = silent_listener();
    let lg = logger(&tcp_config(
        addr.port(),
        "timeout = 100\nmax_retry_times = 1\nretry_interval = 10\nflush_limit = 4000000\ndrop_limit = 64000000",
    ));
    let chunk = vec![b'y'; 1 << 20];
    for _ in 0..32 {
        assert_eq!(lg.log(&chunk), Logged::Buffered(chunk.len()));
    }
    assert_eq!(lg.flush(), -1);
    let err = lg.take_error().unwrap();
    assert!(
        err.as_str().starts_with(
            "try to send log messages to the log server failed after 1 retries: timeout"
        ),
        "{}",
        err.as_str()
    );
    let s = lg.stats();
    assert!(s.sent < 32, "{s:?}");
    assert_eq!(s.lost, 0);
    assert_identity(&s);
}

#[test]
fn the_previous_error_is_returned_by_the_next_call_once() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let lg = logger(&tcp_config(
        port,
        "max_retry_times = 1\nretry_interval = 1\nflush_limit = 1",
    ));
    lg.log(b"nobody listens");
    let s = lg.stats();
    assert_identity(&s);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let err = loop {
        if let Some(e) = lg.take_error() {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "no error reported");
        thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(
        err.as_str(),
        format!(
            "try to send log messages to the log server failed after 1 retries: \
             try to connect to the log server failed after 1 retries: \
             connect tcp://127.0.0.1:{port}: connection refused"
        )
    );
}

#[test]
fn not_initialized_default_logger() {
    // The process-wide logger is only touched by this test in this binary.
    assert!(rlog::global::current().is_none());
    assert_eq!(rlog::global::log(b"x"), None);
    assert_eq!(rlog::global::shutdown(None), None);
}

#[test]
fn pool_size_zero_closes_the_connection_after_every_flush() {
    let c = Collector::tcp();
    let lg = logger(&tcp_config(c.port(), "pool_size = 0"));
    for i in 0..3 {
        lg.log(format!("flush {i}\n").as_bytes());
        assert_eq!(lg.flush(), 8);
    }
    assert!(c.wait_bytes(24));
    assert_eq!(c.connections(), 3);
    assert_eq!(lg.stats().connects, 3);

    let kept = Collector::tcp();
    let lg = logger(&tcp_config(kept.port(), "pool_size = 1"));
    for i in 0..3 {
        lg.log(format!("flush {i}\n").as_bytes());
        assert_eq!(lg.flush(), 8);
    }
    assert!(kept.wait_bytes(24));
    assert_eq!(kept.connections(), 1);
}

#[test]
fn max_buffer_reuse_zero_reallocates_every_flush_and_loses_nothing() {
    let c = Collector::tcp();
    let lg = logger(&tcp_config(
        c.port(),
        "max_buffer_reuse = 0\nflush_limit = 64",
    ));
    for i in 0..5000 {
        lg.log(format!("r {i:05}\n").as_bytes());
    }
    lg.flush();
    let s = wait_drained(&lg);
    assert!(c.wait(|d| d.ends_with(b"r 04999\n")));
    assert_eq!(c.lines().len(), 5000);
    assert_eq!(s.sent, 5000);
    assert_identity(&s);
}
