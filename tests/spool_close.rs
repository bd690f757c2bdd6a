//! Closing a logger that has a spool: once everything is delivered, the close returns at once,
//! as without a spool; it does not sleep until the spool's next look for dead processes' spools
//! (`ADOPT_EVERY`, 5 s) or until the close's deadline.

mod common;

use std::time::{Duration, Instant};

use common::{assert_identity, temp_dir, Collector};
use rlog::{Config, Logged, Logger};

#[test]
fn a_logger_with_a_spool_closes_as_soon_as_everything_is_delivered() {
    let dir = temp_dir("spool-close");
    let c = Collector::tcp();
    let text = format!(
        "host = 127.0.0.1\nport = {}\nspool = {}\n",
        c.port(),
        dir.display()
    );
    let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
    assert_eq!(lg.log(b"one\n"), Logged::Buffered(4));
    assert_eq!(lg.flush(), 4);
    let started = Instant::now();
    assert!(lg.close(Duration::from_secs(30)));
    let took = started.elapsed();
    // Without a spool this takes milliseconds; the bound is generous.
    assert!(took < Duration::from_secs(2), "the close took {took:?}");
    let s = lg.stats();
    assert_eq!(
        (s.logged, s.sent, s.spooled, s.buffered),
        (1, 1, 0, 0),
        "{s:?}"
    );
    assert_identity(&s);
    assert!(c.wait_bytes(4));
    assert_eq!(c.lines(), ["one"]);
    let _ = std::fs::remove_dir_all(&dir);
}
