//! Closing against a slow collector: no write outlasts the close deadline, so what the close
//! reports as undelivered is exactly what the collector never gets (issue 18, defect 5: each
//! write took its own full `timeout` past the deadline, and the exit message over-reported).

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use rlog::{Config, Logged, Logger};

#[test]
fn a_close_against_a_slow_collector_stops_at_its_deadline_and_counts_exactly() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    let fast = Arc::new(AtomicBool::new(false));
    let drain = fast.clone();
    thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        // About 100 KB/s, far slower than what is logged, until the close is over.
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if !drain.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = tx.send(got);
    });
    let lg = Logger::start(
        Config::parse(&format!(
            "host = 127.0.0.1\nport = {port}\ntimeout = 2000\ndrop_limit = 67108864\n\
             flush_limit = 62914560"
        ))
        .unwrap(),
    )
    .unwrap();
    let line = format!("{}\n", "s".repeat(199));
    // 40 MB, below flush_limit: the first write starts once the close has (a write already
    // under way when a close starts still takes up to its `timeout`).
    for _ in 0..200_000 {
        assert_eq!(lg.log(line.as_bytes()), Logged::Buffered(200));
    }
    assert!(!lg.close(Duration::from_millis(300)));
    // close waits the deadline plus a grace of 100 ms: the worker, whose writes are capped by
    // the time left, has stopped by then (before: it sat in a 2 s write).
    assert!(lg.is_closed(), "the worker outlived the close deadline");
    let s = lg.stats();
    assert_eq!(s.logged, 200_000);
    assert_eq!(s.sent + s.lost, 200_000, "{s:?}");
    fast.store(true, Ordering::Relaxed);
    assert!(s.lost > 0, "{s:?}");
    let got = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    let whole = got.iter().filter(|&&b| b == b'\n').count() as u64;
    assert_eq!(
        whole, s.sent,
        "the collector got {whole} whole messages; {} were counted sent",
        s.sent
    );
}
