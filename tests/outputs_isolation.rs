//! Each output has its own queue and driver: one that refuses connections and one that accepts
//! and never reads do not hold up a healthy one beside them, and `sink_stats` says which
//! output holds what.

mod common;

use std::thread;
use std::time::Duration;

use common::{assert_identity, refusing_port, silent_listener, Collector};
use rlog::{Config, Logged, Logger};

#[test]
fn a_dead_and_a_stalled_output_do_not_hold_up_a_healthy_one() {
    let healthy = Collector::tcp();
    let (refused, _hold) = refusing_port();
    let (stalled, _conns) = silent_listener();
    // The handle takes 2 MiB at most: if the worker were held up by the two bad outputs (a
    // stalled send waits out `timeout`, then the retries and their pauses), what the caller logs
    // meanwhile would overflow it and be dropped, and the healthy output would miss it.
    let lg = Logger::start(
        Config::parse(&format!(
            "logger = ok tcp://127.0.0.1:{}\n\
             logger = refused tcp://127.0.0.1:{refused}\n\
             logger = stalled tcp://127.0.0.1:{}\n\
             log-route = ok .\nlog-route = refused .\nlog-route = stalled .\n\
             drop_limit = 2097152\nflush_limit = 4096\ntimeout = 1000\n\
             refused.drop_limit = 65536\nstalled.drop_limit = 65536",
            healthy.port(),
            stalled.port()
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(lg.sink_count(), 3);

    // 30 000 lines of 1000 bytes, about 10 MB/s for 3 s: more than the stalled connection's
    // socket buffers take, and long enough for its sends to time out and the refused output to
    // go through its retries several times.
    let n = 30_000usize;
    for i in 0..n {
        let line = format!("{i:>0999}\n");
        assert_eq!(lg.log(line.as_bytes()), Logged::Buffered(1000), "log({i})");
        if i % 100 == 99 {
            thread::sleep(Duration::from_millis(10));
        }
    }
    assert!(
        healthy.wait(|d| d.iter().filter(|&&b| b == b'\n').count() >= n),
        "the healthy output got {} of {n} lines",
        healthy.lines().len()
    );
    let lines = healthy.lines();
    assert_eq!(lines.len(), n);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l, &format!("{i:>0999}"), "line {i}");
    }

    let (name, ok) = lg.sink_stats(0).unwrap();
    assert_eq!(name, "logger \"ok\"");
    assert_eq!((ok.sent, ok.dropped, ok.lost), (n as u64, 0, 0), "{ok:?}");

    let (name, dead) = lg.sink_stats(1).unwrap();
    assert_eq!(name, "logger \"refused\"");
    assert_eq!((dead.sent, dead.connects), (0, 0), "{dead:?}");
    assert!(dead.retries > 0, "{dead:?}");
    assert!(dead.dropped > 0, "{dead:?}");
    // Bounded by its drop_limit, past which it may hold one batch the worker took at once.
    assert!(dead.pending_bytes <= 65536 + 2097152, "{dead:?}");
    assert_eq!(
        dead.sent + dead.dropped + dead.lost + dead.pending,
        n as u64
    );

    let (name, slow) = lg.sink_stats(2).unwrap();
    assert_eq!(name, "logger \"stalled\"");
    assert!(slow.connects >= 1, "{slow:?}");
    assert!(slow.sent < n as u64, "{slow:?}");
    assert!(slow.dropped > 0, "{slow:?}");
    assert_eq!(
        slow.sent + slow.dropped + slow.lost + slow.pending,
        n as u64
    );

    // Every message that reached the bad outputs was not delivered everywhere: lost once all
    // its copies are settled; the identity holds throughout.
    let s = lg.stats();
    assert_identity(&s);
    assert_eq!((s.logged, s.dropped), (n as u64, 0), "{s:?}");
    assert!(!lg.close(Duration::from_millis(200)));
    // A send to the stalled output may still be waiting out its timeout.
    for _ in 0..1000 {
        if lg.is_closed() {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert!(lg.is_closed());
    let s = lg.stats();
    assert_identity(&s);
    assert_eq!(s.buffered, 0, "{s:?}");
    assert_eq!(
        s.sent, 0,
        "every message had a copy the bad outputs never delivered: {s:?}"
    );
}

/// Two outputs, one refusing: while a flush waits for the refusing output's driver, the batch
/// is counted once (it was counted in flight and held by the outputs at the same time).
#[test]
fn lanes_stats_during_flush_keep_identity() {
    let ok = Collector::tcp();
    let (refused, _hold) = refusing_port();
    let lg = Logger::start(
        Config::parse(&format!(
            "logger = ok tcp://127.0.0.1:{}\n\
             logger = bad tcp://127.0.0.1:{refused}\n\
             log-route = ok .\nlog-route = bad .\n\
             retry_interval = 400\nmax_retry_times = 3\ntimeout = 1000\n",
            ok.port()
        ))
        .unwrap(),
    )
    .unwrap();
    for i in 0..10 {
        assert!(matches!(
            lg.log(format!("m{i}\n").as_bytes()),
            Logged::Buffered(_)
        ));
    }
    let f = {
        let lg = lg.clone();
        thread::spawn(move || lg.flush())
    };
    thread::sleep(Duration::from_millis(300));
    let s = lg.stats();
    let r = f.join().unwrap();
    assert_eq!(r, -1, "the refusing output failed the flush");
    assert_identity(&s);
    assert_identity(&lg.stats());
}

/// A flush with several outputs waits for a dead output's retries; the worker goes on routing
/// meanwhile, so what is logged during that flush reaches the healthy output before the flush
/// returns (found by review: the worker waited for the drivers and routed nothing, for as long
/// as the dead output's retries took).
#[test]
fn a_flush_that_waits_for_a_dead_output_does_not_hold_up_a_healthy_one() {
    let ok = Collector::tcp();
    let (refused, _hold) = refusing_port();
    let lg = Logger::start(
        Config::parse(&format!(
            "logger = ok tcp://127.0.0.1:{}\n\
             logger = bad tcp://127.0.0.1:{refused}\n\
             log-route = ok .\nlog-route = bad .\n\
             retry_interval = 1000\nmax_retry_times = 2\ntimeout = 1000\nflush_limit = 100\n",
            ok.port()
        ))
        .unwrap(),
    )
    .unwrap();
    lg.log(b"first\n");
    let (tx, rx) = std::sync::mpsc::channel();
    let flusher = {
        let lg = lg.clone();
        thread::spawn(move || {
            let r = lg.flush();
            let _ = tx.send(());
            r
        })
    };
    thread::sleep(Duration::from_millis(300));
    for i in 0..20 {
        lg.log(format!("late{i:05}\n").as_bytes());
    }
    assert!(ok.wait(|d| String::from_utf8_lossy(d).contains("late00019")));
    assert!(
        rx.try_recv().is_err(),
        "the flush was over before the late lines arrived: nothing was shown"
    );
    assert_eq!(
        flusher.join().unwrap(),
        -1,
        "the dead output failed the flush"
    );
    let s = lg.stats();
    assert_identity(&s);
    lg.close(Duration::from_millis(100));
}

/// A lone logger line (no route, no encoder) is delivered as a plain config is: its drops
/// happen in `log`, at the handle's `drop_limit`, and its `sink_stats` counts them as its own,
/// as the handle's stats do.
#[test]
fn a_lone_logger_s_sink_stats_count_its_drops() {
    let (refused, _hold) = refusing_port();
    for text in [
        format!("logger = tcp://127.0.0.1:{refused}\n"),
        format!("host = 127.0.0.1\nport = {refused}\n"),
    ] {
        let lg = Logger::start(
            Config::parse(&format!(
                "{text}drop_limit = 4096\nflush_limit = 1024\nmax_retry_times = 0\n\
                 retry_interval = 1000"
            ))
            .unwrap(),
        )
        .unwrap();
        let line = [b'x'; 100];
        let dropped = (0..200)
            .filter(|_| lg.log(&line) == Logged::Dropped)
            .count() as u64;
        assert!(dropped > 0, "{text}: nothing dropped");
        let s = lg.stats();
        let (_, one) = lg.sink_stats(0).unwrap();
        assert_eq!(
            (one.dropped, one.dropped_bytes),
            (s.dropped, s.dropped_bytes),
            "{text}"
        );
        assert_eq!(s.dropped, dropped, "{text}");
        assert_identity(&s);
        let _ = lg.close(Duration::from_millis(50));
    }
}
