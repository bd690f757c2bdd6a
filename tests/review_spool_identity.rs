//! The stats identity with two outputs and a spool, when the outputs fail at different times.
//! Output a (TCP, down) retries every few ms; output b (http) is told to come back in 10
//! minutes (503, Retry-After: 600). Messages logged meanwhile: a's driver wakes, spools their
//! primary copies (counted `spooled`), while b's copies wait in b's inbox until b's retry time:
//! their messages were unsettled, so counted `buffered` as well: `stats()` showed
//! `logged < sent + lost + spooled + buffered` for as long as b waited (a flush ended it). A
//! message leaves the unsettled ones when its primary copy goes to disk.

mod common;
mod http_util;

use std::time::{Duration, Instant};

use common::{assert_identity, refusing_port, temp_dir};
use http_util::Nginx;
use rlog::{Config, Logged, Logger};

#[test]
fn a_message_spooled_by_one_output_and_waiting_for_another_counts_once() {
    let dir = temp_dir("review-spool-identity");
    let ng = Nginx::start(&dir, None);
    let (port_a, _down) = refusing_port();
    let lg = Logger::start(
        Config::parse(&format!(
            "logger = tcp://127.0.0.1:{port_a}\nlogger = http://127.0.0.1:{}/busy\n\
             spool = {}\nmax_retry_times = 0\nretry_interval = 5\nmax_retry_delay = 0.05\n\
             flush_limit = 1\nperiodic_flush = 0.1",
            ng.port,
            dir.join("spool").display()
        ))
        .unwrap(),
    )
    .unwrap();
    let log = |from: usize| {
        for i in from..from + 10 {
            assert!(matches!(
                lg.log(format!("m{i}\n").as_bytes()),
                Logged::Buffered(_)
            ));
        }
    };
    log(0);
    lg.flush();
    // Both outputs failed on these: both spooled them; b waits 10 minutes now.
    let s = lg.stats();
    assert_eq!((s.logged, s.spooled, s.buffered), (10, 10, 0), "{s:?}");
    log(10);
    // No flush: a's next try (within ms) spools the new primary copies.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut s = lg.stats();
    while Instant::now() < deadline && s.spooled < 20 {
        std::thread::sleep(Duration::from_millis(20));
        s = lg.stats();
    }
    assert_eq!(
        s.spooled,
        20,
        "a spooled them: {s:?} a: {:?} b: {:?} {:?}",
        lg.sink_stats(0),
        lg.sink_stats(1),
        lg.take_error()
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_identity(&lg.stats());
    lg.close(Duration::from_millis(200));
}

/// The same outage without `periodic_flush` (its default): the 10 messages logged after the
/// flush, each past `flush_limit = 1`, stayed in the caller's buffer (not routed, not spooled)
/// for as long as the test waited: the test's own `stats()` calls moved them from the logging
/// thread's ring into the buffer, where the sleeping worker's look at the rings no longer
/// found them, and nothing asked it to flush. `stats()` now wakes the worker when what it
/// moved makes a flush due.
#[test]
fn messages_past_flush_limit_reach_the_spool_while_every_output_fails() {
    let dir = temp_dir("review-spool-idle");
    let ng = Nginx::start(&dir, None);
    let (port_a, _down) = refusing_port();
    let lg = Logger::start(
        Config::parse(&format!(
            "logger = tcp://127.0.0.1:{port_a}\nlogger = http://127.0.0.1:{}/busy\n\
             spool = {}\nmax_retry_times = 0\nretry_interval = 5\nmax_retry_delay = 0.05\n\
             flush_limit = 1",
            ng.port,
            dir.join("spool").display()
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
    lg.flush();
    for i in 10..20 {
        assert!(matches!(
            lg.log(format!("m{i}\n").as_bytes()),
            Logged::Buffered(_)
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut s = lg.stats();
    while Instant::now() < deadline && s.spooled < 20 {
        std::thread::sleep(Duration::from_millis(50));
        s = lg.stats();
    }
    lg.close(Duration::from_millis(200));
    assert_eq!(s.spooled, 20, "{s:?}");
}
