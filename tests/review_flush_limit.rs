//! Probe: with two outputs, after a flush() that one of them failed, do messages past
//! flush_limit still reach the healthy output without another flush()?

mod common;
mod http_util;

use std::time::{Duration, Instant};

use common::{refusing_port, Collector};
use rlog::{Config, Logged, Logger};

fn probe(extra: &str) {
    probe_b(extra, None);
}

fn probe_b(extra: &str, b: Option<&str>) {
    let a = Collector::tcp();
    let (down, _keep) = refusing_port();
    let b = b.map_or(format!("tcp://127.0.0.1:{down}"), str::to_string);
    let lg = Logger::start(
        Config::parse(&format!(
            "logger = tcp://127.0.0.1:{}\nlogger = {b}\n\
             max_retry_times = 0\nretry_interval = 5\nflush_limit = 1\n{extra}",
            a.port()
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
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && a.lines().len() < 20 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let n = a.lines().len();
    let s = lg.stats();
    lg.close(Duration::from_millis(200));
    assert_eq!(n, 20, "{s:?}");
}

#[test]
fn after_a_failed_flush_flush_limit_still_sends_to_the_healthy_output() {
    probe("");
}

#[test]
fn the_same_with_a_spool() {
    let dir = common::temp_dir("review-flush-limit-spool");
    probe(&format!("spool = {}", dir.display()));
}

#[test]
fn the_same_with_an_http_output_asking_for_10_minutes() {
    let dir = common::temp_dir("review-flush-limit-busy");
    let ng = http_util::Nginx::start(&dir, None);
    probe_b("", Some(&format!("http://127.0.0.1:{}/busy", ng.port)));
}
