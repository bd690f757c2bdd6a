//! The spool with several outputs (SPEC §6: "Each output has its own queue on disk"): one
//! output down for a minute does not hold up the healthy one, and replays from its own disk
//! queue once back; a host killed with SIGKILL leaves both outputs' queues, which the next
//! process adopts and delivers, each record once, in order.
//!
//! A message routed to two outputs is one message in the handle's counters: its primary copy
//! (the first output's) carries it. When that copy is on disk the message counts `spooled`,
//! then `sent` once replayed; the other output's copies on disk show in that output's own
//! counters (`rlog_sink_stats.spooled`) only. The identity holds throughout.

mod common;
mod spool_util;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use common::{assert_identity, refusing_port, temp_dir, Collector};
use rlog::{Config, Logged, Logger};
use spool_util::{fork_run, pair, recv_stats, send_stats, sigkill, wait_for};

fn line_count(c: &Collector) -> usize {
    c.data().iter().filter(|&&b| b == b'\n').count()
}

fn assert_lines(c: &Collector, n: usize, who: &str) {
    let got = c.lines();
    assert_eq!(got.len(), n, "{who}: every line once");
    for (i, l) in got.iter().enumerate() {
        assert_eq!(l, &format!("m{i:06}"), "{who}: in order");
    }
}

#[test]
fn one_output_down_for_a_minute_leaves_the_other_alone_then_replays_from_disk() {
    const BURSTS: usize = 120;
    const PER_BURST: usize = 250;
    const N: usize = BURSTS * PER_BURST;
    let dir = temp_dir("spool-outputs-minute");
    let (down_port, down) = refusing_port();
    let healthy = Collector::tcp();
    // The down output is the first: the primary copies are its, so the handle's counters
    // follow its disk queue.
    let lg = Logger::start(
        Config::parse(&format!(
            "logger = tcp://127.0.0.1:{down_port}\nlogger = tcp://127.0.0.1:{}\n\
             spool = {}\nmax_retry_times = 0\nretry_interval = 10\ndrop_limit = 1048576",
            healthy.addr.unwrap().port(),
            dir.display()
        ))
        .unwrap(),
    )
    .unwrap();
    // A minute of traffic while the first output's collector is down.
    let start = Instant::now();
    for b in 0..BURSTS {
        for j in 0..PER_BURST {
            let m = format!("m{:06}\n", b * PER_BURST + j);
            assert_eq!(
                lg.log(m.as_bytes()),
                Logged::Buffered(m.len()),
                "never refused"
            );
        }
        let next = start + Duration::from_millis(500 * (b as u64 + 1));
        thread::sleep(next.saturating_duration_since(Instant::now()));
        // The healthy output keeps up all along (it is never more than a few bursts behind).
        if b % 20 == 19 {
            let want = (b + 1 - 4) * PER_BURST;
            wait_for("the healthy output keeping up", 30, || {
                line_count(&healthy) >= want
            });
        }
    }
    // The last burst is below flush_limit: a flush hands it over (resty's semantics otherwise
    // keep it until the next message or the close).
    lg.flush();
    wait_for("the healthy output has every line", 30, || {
        line_count(&healthy) >= N
    });
    wait_for("every copy for the down output on disk", 30, || {
        let s = lg.stats();
        s.spooled == N as u64 && s.buffered == 0
    });
    let s = lg.stats();
    assert_identity(&s);
    assert_eq!(
        (s.logged, s.sent, s.lost, s.dropped),
        (N as u64, 0, 0, 0),
        "{s:?}"
    );
    let (_, down_stats) = lg.sink_stats(0).unwrap();
    let (_, up_stats) = lg.sink_stats(1).unwrap();
    assert_eq!(down_stats.spooled, N as u64, "{down_stats:?}");
    assert_eq!(
        (up_stats.sent, up_stats.spooled),
        (N as u64, 0),
        "{up_stats:?}"
    );
    assert_lines(&healthy, N, "the healthy output");

    // The collector comes back: the first output replays its disk queue.
    let back = Collector::listen_on(down);
    wait_for("the replay", 60, || lg.stats().sent == N as u64);
    let s = lg.stats();
    assert_eq!(
        (s.sent, s.spooled, s.lost, s.buffered),
        (N as u64, 0, 0, 0),
        "{s:?}"
    );
    assert_identity(&s);
    assert!(lg.close(Duration::from_secs(5)));
    wait_for("the replayed lines", 30, || line_count(&back) >= N);
    assert_lines(&back, N, "the output that was down");
    assert_lines(&healthy, N, "the healthy output");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_hosts_queues_of_both_outputs_are_adopted_and_each_record_delivered_once() {
    const N: u64 = 20_000;
    let dir = temp_dir("spool-outputs-kill9");
    let (port_a, down_a) = refusing_port();
    let (port_b, down_b) = refusing_port();
    let text = format!(
        "logger = a tcp://127.0.0.1:{port_a}\nlogger = b tcp://127.0.0.1:{port_b}\n\
         log-route = a .\nlog-route = b ^m00\nspool = {}\n\
         max_retry_times = 0\nretry_interval = 10\ndrop_limit = 67108864",
        dir.display()
    );
    // Every message goes to a; those below m010000 to b as well. No encoder: records are the
    // messages, so the identity holds in bytes too.
    let to_b = 10_000u64;

    let (mut test_end, mut child_end) = pair();
    let child_text = text.clone();
    let pid = fork_run(move || {
        let lg = Logger::start(Config::parse(&child_text).unwrap()).unwrap();
        for i in 0..N {
            let m = format!("m{i:06}\n");
            assert_eq!(lg.log(m.as_bytes()), Logged::Buffered(m.len()));
        }
        wait_for("everything spooled", 60, || {
            let s = lg.stats();
            s.spooled == N && s.buffered == 0 && lg.sink_stats(1).unwrap().1.spooled == to_b
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

    let a = Collector::listen_on(down_a);
    let b = Collector::listen_on(down_b);
    let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
    wait_for("every adopted record delivered", 60, || {
        lg.stats().sent == N && lg.sink_stats(1).unwrap().1.sent == to_b
    });
    let s = lg.stats();
    // The handle adopted N messages (a's records); b's copies are its own counters' business.
    assert_eq!(
        (s.logged, s.adopted, s.sent, s.lost, s.spooled, s.buffered),
        (0, N, N, 0, 0, 0),
        "{s:?}"
    );
    assert_identity(&s);
    assert!(lg.close(Duration::from_secs(5)));
    wait_for("the lines", 30, || {
        line_count(&a) as u64 >= N && line_count(&b) as u64 >= to_b
    });
    assert_lines(&a, N as usize, "a");
    assert_lines(&b, to_b as usize, "b");
    let _ = std::fs::remove_dir_all(&dir);
}
