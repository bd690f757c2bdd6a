//! The spool under a uWSGI-style logger (one `logger =` line, with an encoder): what cannot be
//! delivered goes to disk as encoded records, survives a `kill -9` of the host, and is adopted
//! and delivered once, in order, by the next process. (Several outputs: tests/spool_outputs.rs.)
//!
//! With an encoder, a record on disk is the encoded copy, so `spooled_bytes`/`adopted_bytes`
//! count encoded bytes: the identity is checked in messages.

mod common;
mod spool_util;

use std::io::Write;
use std::thread;
use std::time::Duration;

use common::{refusing_port, temp_dir, Collector};
use rlog::{Config, Logged, Logger};
use spool_util::{fork_run, pair, recv_stats, send_stats, sigkill, wait_for};

fn identity(s: &rlog::rlog_stats) {
    assert_eq!(
        s.logged + s.adopted,
        s.sent + s.lost + s.spooled + s.buffered,
        "identity broken: {s:?}"
    );
}

#[test]
fn a_killed_hosts_encoded_records_are_adopted_and_delivered_once_in_order() {
    const N: u64 = 20_000;
    let dir = temp_dir("spool-routed");
    let (port, down) = refusing_port();
    let text = format!(
        "logger = tcp://127.0.0.1:{port}\nlog-encoder = json {{\"m\":\"${{msg}}\"}}\n\
         spool = {}\nmax_retry_times = 0\nretry_interval = 10\ndrop_limit = 67108864",
        dir.display()
    );

    let (mut test_end, mut child_end) = pair();
    let child_text = text.clone();
    let pid = fork_run(move || {
        let lg = Logger::start(Config::parse(&child_text).unwrap()).unwrap();
        for i in 0..N {
            let m = format!("m{i:06}");
            assert_eq!(lg.log(m.as_bytes()), Logged::Buffered(m.len()));
        }
        wait_for("everything spooled", 60, || {
            let s = lg.stats();
            s.spooled == N && s.buffered == 0
        });
        send_stats(&mut child_end, &lg.stats());
        child_end.flush().unwrap();
        // Killed here, with everything on disk.
        loop {
            thread::sleep(Duration::from_secs(1));
        }
    });
    let s = recv_stats(&mut test_end, "the child");
    sigkill(pid);
    identity(&s);
    assert_eq!((s.logged, s.sent, s.lost, s.spooled), (N, 0, 0, N), "{s:?}");
    // On disk: the encoded records, framed (a text encoder on a stream: one a line).
    let encoded = "{\"m\":\"m000000\"}\n".len() as u64;
    assert_eq!(s.spooled_bytes, N * encoded, "{s:?}");

    let c = Collector::listen_on(down);
    let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
    wait_for("every adopted record delivered", 60, || {
        lg.stats().sent == N
    });
    let s = lg.stats();
    assert_eq!(
        (s.logged, s.adopted, s.sent, s.lost, s.spooled, s.buffered),
        (0, N, N, 0, 0, 0),
        "{s:?}"
    );
    identity(&s);
    assert_eq!(s.sent_bytes, s.adopted_bytes);
    assert!(lg.close(Duration::from_secs(5)));
    assert!(c.wait(|d| d.iter().filter(|&&b| b == b'\n').count() as u64 >= N));
    let got = c.lines();
    assert_eq!(got.len() as u64, N, "every record once");
    for (i, l) in got.iter().enumerate() {
        assert_eq!(l, &format!("{{\"m\":\"m{i:06}\"}}"), "in order");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
