//! A close while a relp:// send waits for rsyslog's answers (rsyslogd stopped with SIGSTOP: a
//! server that hangs). The close deadline is given to an output when its send starts; a send
//! already under way when the close starts never learns it, and RELP waits for a `rsp` for at
//! least 5 s whatever `timeout` says (`Relp::connect_to`). So `close(1 s)` returns with the
//! worker still blocked, for up to 5 s (NATS: up to `nats_ack_timeout`, 5 s by default; the
//! stream outputs: up to `timeout`).

mod common;
mod rsyslog_util;

use std::time::Duration;

use common::assert_identity;
use rlog::{Config, Logged, Logger};
use rsyslog_util::{Queue, Rsyslog};

#[test]
#[ignore = "defect: a send under way when the close starts does not see the close deadline; \
            relp waits up to 5 s for a rsp (nats: nats_ack_timeout), so the worker outlives \
            close(timeout); the fix needs the deadline to reach outputs mid-send (see the \
            review report)"]
fn a_close_during_a_relp_send_to_a_hung_rsyslog_stops_the_worker_in_time() {
    let rs = Rsyslog::start("review-relp-close", Queue::Memory, None);
    let lg = Logger::start(
        Config::parse(&format!(
            "logger = relp://127.0.0.1:{}\nlog-encoder = syslog app=review\nflush_limit = 1\n\
             timeout = 1000",
            rs.relp_port
        ))
        .unwrap(),
    )
    .unwrap();
    for i in 0..100 {
        assert!(matches!(
            lg.log(format!("id={i:06}").as_bytes()),
            Logged::Buffered(_)
        ));
    }
    assert_eq!(rs.wait_lines(|l| l.len() >= 100).len(), 100);
    rs.signal(libc::SIGSTOP);
    for i in 100..110 {
        assert!(matches!(
            lg.log(format!("id={i:06}").as_bytes()),
            Logged::Buffered(_)
        ));
    }
    // The send of these is under way, waiting for rsyslog's answers.
    std::thread::sleep(Duration::from_millis(1000));
    lg.close(Duration::from_secs(1));
    let in_time = lg.is_closed();
    rs.signal(libc::SIGCONT);
    assert!(in_time, "the worker outlived the close deadline");
    assert_identity(&lg.stats());
}
