//! Closing a logger with several outputs while one is dead: the close waits out the dead
//! output's backoff instead of retrying it in a tight loop (found by review: ~126 % of two
//! cores for the whole close). Alone in its binary: it measures this process's CPU time.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{refusing_port, Collector};
use rlog::{Config, Logger};

/// This process's CPU time so far, in clock ticks (utime + stime of /proc/self/stat).
fn cpu_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // fields 14,15 (utime, stime) -> index 11,12 after the ')' split (state is index 0)
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Two outputs, one refusing, max_retry_times = 0: the close retries the dead output in a
/// tight loop (driver ignores retry_at while closing, worker's take_round never waits).
#[test]
fn lanes_close_with_dead_output_does_not_spin() {
    let ok = Collector::tcp();
    let (refused, _hold) = refusing_port();
    let lg = Logger::start(
        Config::parse(&format!(
            "logger = ok tcp://127.0.0.1:{}\n\
             logger = bad tcp://127.0.0.1:{refused}\n\
             log-route = ok .\nlog-route = bad .\n\
             retry_interval = 200\nmax_retry_times = 0\ntimeout = 1000\n",
            ok.port()
        ))
        .unwrap(),
    )
    .unwrap();
    for i in 0..10 {
        lg.log(format!("m{i}\n").as_bytes());
    }
    thread::sleep(Duration::from_millis(500));
    let idle0 = cpu_ticks();
    thread::sleep(Duration::from_secs(2));
    let idle = cpu_ticks() - idle0;
    let t0 = cpu_ticks();
    let start = Instant::now();
    let done = lg.close(Duration::from_secs(3));
    let wall = start.elapsed();
    let cpu = cpu_ticks() - t0;
    let (_, bad) = lg.sink_stats(1).unwrap();
    assert!(!done);
    assert_eq!(bad.sent, 0, "{bad:?}");
    assert!(idle < 20, "idle cpu {idle} ticks in 2s");
    assert!(cpu < 50, "close burnt {cpu} ticks (1/100 s) in {wall:?}");
}
