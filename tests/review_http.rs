//! Review of the http output under hostile or odd endpoints (nginx with its Lua module as the
//! real endpoint, tests/http_util).

mod common;
mod http_util;

use std::time::{Duration, Instant};

use common::*;
use http_util::Nginx;
use rlog::{Config, Logger};

fn logger(cfg: &str) -> Logger {
    Logger::start(Config::parse(cfg).unwrap_or_else(|e| panic!("{e}\n{cfg}"))).unwrap()
}

fn line(i: usize) -> String {
    format!("{{\"i\":{i},\"msg\":\"request {i}\"}}")
}

/// Polls `pred` (60 s at most); returns whether it held.
fn wait_for(mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// An endpoint answers 200 and then a body that never ends (a byte every 100 ms, each read well
/// within `timeout`). Before: the output read it for ever (up to 64 MiB, days at that pace): no
/// record after it was ever sent, and a close could not stop the worker, which outlived the
/// close deadline by as long as the body went on. Now the whole response must arrive within
/// `timeout` of the request: the batch is retried, and the close stops the worker in time.
#[test]
fn a_200_whose_body_never_ends_holds_neither_the_output_nor_the_close() {
    let dir = temp_dir("review-http-trickle");
    let ng = Nginx::start(&dir, None);
    let lg = logger(&format!(
        "logger = web http://127.0.0.1:{}/trickle\nlog-route = web .\ntimeout = 500\n\
         flush_limit = 1\nretry_interval = 5\nmax_retry_delay = 0.05\nmax_retry_times = 1",
        ng.port
    ));
    for i in 0..10 {
        assert!(matches!(
            lg.log(line(i).as_bytes()),
            rlog::Logged::Buffered(_)
        ));
    }
    // The batch reached nginx, which is answering it, slowly and for ever.
    assert!(wait_for(|| !ng.requests().is_empty()), "no request arrived");
    // More than `timeout`: with a bounded response, the output has given up on that answer.
    std::thread::sleep(Duration::from_millis(1500));
    let closed_in_time = {
        // A close of 2 s: longer than any one read or response can take (500 ms).
        lg.close(Duration::from_secs(2));
        lg.is_closed()
    };
    assert!(
        closed_in_time,
        "the worker outlived the close deadline, reading a body that never ends"
    );
    let s = lg.stats();
    assert_identity(&s);
    assert_eq!(s.logged, 10);
    assert_eq!(s.buffered, 0, "{s:?}");
}

/// 20 records in a row that the endpoint refuses (400), then 100 it accepts. The output
/// dead-letters 16 (`REFUSED_IN_A_ROW`), then decides that "the endpoint refuses everything"
/// and retries the 17th alone every 30 s, for ever: it is refused alone each time and the
/// counter of refusals in a row is reset only by a delivery, which can never come, since the
/// records the endpoint would take wait behind it. A burst of bad records (an application
/// bug writing broken JSON to a validating endpoint, a ClickHouse schema change) stalls the
/// output until the process restarts.
#[test]
fn a_burst_of_bad_records_longer_than_refused_in_a_row_does_not_stall_the_output() {
    let dir = temp_dir("review-http-burst");
    let ng = Nginx::start(&dir, None);
    let dead = dir.join("dead.jsonl");
    let lg = logger(&format!(
        "logger = web http://127.0.0.1:{}/refuse?bad=POISON\nlog-route = web .\n\
         dead_letter = {}\nretry_interval = 5\nmax_retry_delay = 0.05\nmax_retry_times = 3\n\
         drop_limit = 67108864\nflush_limit = 65536\ntimeout = 5000",
        ng.port,
        dead.display()
    ));
    let bad = rlog::output::http::REFUSED_IN_A_ROW as usize + 4;
    for i in 0..bad + 100 {
        let l = if i < bad {
            format!("{{\"i\":{i},\"msg\":\"POISON\"}}")
        } else {
            line(i)
        };
        assert!(matches!(lg.log(l.as_bytes()), rlog::Logged::Buffered(_)));
    }
    lg.flush();
    // Past three of the output's 30 s pauses: the good records must have arrived by then.
    let deadline = Instant::now() + Duration::from_secs(100);
    let mut stored = 0;
    while Instant::now() < deadline {
        stored = ng.lines().len();
        if stored >= 100 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let s = lg.stats();
    assert_eq!(
        stored,
        100,
        "good records stored; {s:?} {:?}",
        lg.take_error()
    );
    assert_identity(&s);
    lg.close(Duration::from_secs(1));
}
