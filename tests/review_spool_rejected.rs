//! A message with two copies: one refused for good (a UDP datagram over 65 507 bytes, dead-
//! lettered), the other spooled because its output is down. SPEC §6: `rejected` counts what an
//! output refused for good, and is part of `lost`. Without a spool the message counts lost and
//! rejected; with one, the spooled copy was its *primary* copy, which carries the message
//! "whatever the other copies do", so it counts spooled (and sent once replayed), and the
//! refusal shows in no handle counter, although the dead-letter file holds the record.

mod common;

use std::time::{Duration, Instant};

use common::{assert_identity, refusing_port, temp_dir, UdpCollector};
use rlog::{Config, Logged, Logger};

fn run(spool: bool) -> rlog::rlog_stats {
    let dir = temp_dir(if spool {
        "review-rej-spool"
    } else {
        "review-rej-nospool"
    });
    let udp = UdpCollector::new();
    let (down, _keep) = refusing_port();
    let mut cfg = format!(
        "logger = udp://127.0.0.1:{}\nlogger = tcp://127.0.0.1:{down}\n\
         dead_letter = {}\nretry_interval = 5\nmax_retry_delay = 0.05\nmax_retry_times = 1",
        udp.addr.port(),
        dir.join("dead.jsonl").display()
    );
    if spool {
        cfg += &format!("\nspool = {}", dir.join("spool").display());
    }
    let lg = Logger::start(Config::parse(&cfg).unwrap()).unwrap();
    assert!(matches!(lg.log(&vec![b'x'; 70_000]), Logged::Buffered(_)));
    if !spool {
        // Its output down and no spool: the copy waits in memory until the close gives it up.
        lg.close(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let s = loop {
        if spool {
            lg.flush();
        }
        let s = lg.stats();
        if (s.buffered == 0 && s.lost + s.spooled > 0) || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_identity(&s);
    let letters = std::fs::read_to_string(dir.join("dead.jsonl")).unwrap();
    assert_eq!(
        letters.lines().count(),
        1,
        "the refused copy is dead-lettered"
    );
    lg.close(Duration::from_millis(200));
    s
}

#[test]
fn without_a_spool_a_message_with_a_refused_copy_counts_rejected() {
    let s = run(false);
    assert_eq!((s.lost, s.rejected), (1, 1), "{s:?}");
}

#[test]
fn with_a_spool_a_message_with_a_refused_copy_still_counts_rejected() {
    let s = run(true);
    assert_eq!((s.lost, s.rejected, s.spooled), (1, 1, 0), "{s:?}");
}
