//! Each output's disk queue is `spool/<index>-<target>/`. A config that gains a logger line
//! above an output (or loses one), restarted while that output's records wait on disk, looks
//! for them under another index: they are never adopted, never delivered, and no counter of
//! the new process shows them (the process that spooled them is gone with its counters).

mod common;

use std::time::{Duration, Instant};

use common::{refusing_port, temp_dir, Collector};
use rlog::{Config, Logged, Logger};

fn poll(secs: u64, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Spools 100 records for an output that is down, closes, and starts the next config with the
/// output up: second when `reordered` (a logger line added above it), else alone as before.
fn restart(reordered: bool) {
    let dir = temp_dir(if reordered {
        "review-spool-reorder"
    } else {
        "review-spool-same"
    });
    let (port_a, down_a) = refusing_port();
    let first = format!(
        "logger = tcp://127.0.0.1:{port_a}\nspool = {}\nmax_retry_times = 0\nretry_interval = 10",
        dir.display()
    );
    let lg = Logger::start(Config::parse(&first).unwrap()).unwrap();
    for i in 0..100 {
        assert!(matches!(
            lg.log(format!("m{i:03}\n").as_bytes()),
            Logged::Buffered(_)
        ));
    }
    assert!(poll(30, || {
        lg.flush();
        lg.stats().spooled == 100
    }));
    lg.close(Duration::from_millis(200));

    // The next version of the config: a new logger line first, the same output second.
    let a = Collector::listen_on(down_a);
    let b = Collector::tcp();
    let second = if reordered {
        format!(
            "logger = tcp://127.0.0.1:{}\nlogger = tcp://127.0.0.1:{port_a}\nspool = {}\n\
             max_retry_times = 0\nretry_interval = 10",
            b.port(),
            dir.display()
        )
    } else {
        first.clone()
    };
    let lg = Logger::start(Config::parse(&second).unwrap()).unwrap();
    let all = poll(30, || a.lines().len() >= 100);
    let s = lg.stats();
    lg.close(Duration::from_secs(1));
    assert!(
        all,
        "the 100 spooled records reached their collector: {} did; {s:?}",
        a.lines().len()
    );
}

#[test]
fn records_spooled_for_an_output_are_delivered_by_the_same_config_restarted() {
    restart(false);
}

#[test]
#[ignore = "defect: spool keys carry the output's index, so a config reordered around an \
            output orphans its spooled records (see the review report)"]
fn records_spooled_for_an_output_are_delivered_after_a_logger_line_is_added_above_it() {
    restart(true);
}
