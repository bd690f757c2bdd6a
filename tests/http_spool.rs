//! The http output with a spool: the endpoint is down, what the host logs goes to disk, the
//! host is killed with SIGKILL; the endpoint (nginx, with its Lua module, storing each request
//! body) comes back and the next process adopts the spool and delivers every line once.

mod common;
mod http_util;
mod spool_util;

use std::collections::HashSet;
use std::io::Write;
use std::thread;
use std::time::Duration;

use common::{assert_identity, temp_dir};
use http_util::{free_port, Nginx};
use rlog::{Config, Logged, Logger};
use spool_util::{fork_run, pair, recv_stats, send_stats, sigkill, wait_for};

#[test]
fn endpoint_down_then_kill9_the_next_process_delivers_every_line_once() {
    const N: u64 = 20_000;
    let dir = temp_dir("http-spool");
    let spool = dir.join("spool");
    let port = free_port();
    let text = format!(
        "logger = http://127.0.0.1:{port}/ok\nspool = {}\nmax_retry_times = 0\n\
         retry_interval = 10\ndrop_limit = 67108864\nmax_batch_size = 5000",
        spool.display()
    );
    let (mut test_end, mut child_end) = pair();
    let child_text = text.clone();
    let pid = fork_run(move || {
        let lg = Logger::start(Config::parse(&child_text).unwrap()).unwrap();
        for i in 0..N {
            let m = format!("{{\"i\":{i}}}");
            assert_eq!(lg.log(m.as_bytes()), Logged::Buffered(m.len()));
        }
        wait_for("everything spooled", 60, || {
            let s = lg.stats();
            s.spooled == N && s.buffered == 0
        });
        send_stats(&mut child_end, &lg.stats());
        child_end.flush().unwrap();
        loop {
            thread::sleep(Duration::from_secs(1));
        }
    });
    let s = recv_stats(&mut test_end, "the child");
    sigkill(pid);
    assert_identity(&s);
    assert_eq!((s.logged, s.spooled, s.sent, s.lost), (N, N, 0, 0), "{s:?}");

    let ng = Nginx::start_on(&dir.join("nginx"), None, port);
    let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
    wait_for("every adopted line delivered", 60, || lg.stats().sent == N);
    let s = lg.stats();
    assert_eq!(
        (s.logged, s.adopted, s.sent, s.lost, s.spooled, s.buffered),
        (0, N, N, 0, 0, 0),
        "{s:?}"
    );
    assert_identity(&s);
    assert!(lg.close(Duration::from_secs(5)));
    let lines = ng.lines();
    let mut seen = HashSet::new();
    for (k, l) in lines.iter().enumerate() {
        let i: u64 = l
            .strip_prefix("{\"i\":")
            .and_then(|r| r.strip_suffix('}'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a logged line: {l}"));
        assert!(seen.insert(i), "line {i} stored twice");
        assert_eq!(i, k as u64, "in order");
    }
    assert_eq!(seen.len() as u64, N, "every line once");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_batch_replayed_by_the_next_process_carries_the_id_it_was_first_tried_with() {
    const N: u64 = 1_000;
    let dir = temp_dir("http-spool-ids");
    let ng = Nginx::start(&dir.join("nginx"), None);
    // `/gate` answers 503 until the test opens it.
    let text = format!(
        "logger = http://127.0.0.1:{}/gate\nspool = {}\nmax_retry_times = 0\n\
         retry_interval = 10\ndrop_limit = 67108864\nmax_batch_size = 1000",
        ng.port,
        dir.join("spool").display()
    );
    let (mut test_end, mut child_end) = pair();
    let child_text = text.clone();
    let pid = fork_run(move || {
        let lg = Logger::start(Config::parse(&child_text).unwrap()).unwrap();
        for i in 0..N {
            let m = format!("{{\"i\":{i}}}");
            assert_eq!(lg.log(m.as_bytes()), Logged::Buffered(m.len()));
        }
        lg.flush();
        wait_for("everything spooled", 60, || {
            let s = lg.stats();
            s.spooled == N && s.buffered == 0
        });
        send_stats(&mut child_end, &lg.stats());
        child_end.flush().unwrap();
        loop {
            thread::sleep(Duration::from_secs(1));
        }
    });
    let s = recv_stats(&mut test_end, "the child");
    sigkill(pid);
    assert_identity(&s);
    let refused: HashSet<String> = ng
        .requests()
        .into_iter()
        .filter(|r| r.0 == 503)
        .map(|r| r.1)
        .collect();
    assert!(!refused.is_empty());

    ng.get("/gate_open");
    let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
    wait_for("the replay", 60, || lg.stats().sent == N);
    assert_identity(&lg.stats());
    assert!(lg.close(Duration::from_secs(5)));
    let delivered: Vec<(u16, String, usize)> =
        ng.requests().into_iter().filter(|r| r.0 == 204).collect();
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    // The next process (another producer id) sent the records under the id the first one
    // tried them with: a receiver that deduplicates by X-Rlog-Batch (or by record id) keeps
    // them once.
    assert!(
        refused.contains(&delivered[0].1),
        "{} not among {refused:?}",
        delivered[0].1
    );
    assert_eq!(ng.lines().len() as u64, N);
    let _ = std::fs::remove_dir_all(&dir);
}
