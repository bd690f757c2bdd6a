//! log-route matches bytes, as uWSGI's PCRE does: a message that is not valid UTF-8 is routed by
//! its bytes, not sent to the default logger because `.` could not cross an invalid byte.

mod common;

use std::time::Duration;

use common::*;
use rlog::{Config, Logged, Logger};

#[test]
fn a_message_with_a_byte_that_is_not_utf8_reaches_the_routed_logger() {
    let (def, errors) = (Collector::tcp(), Collector::tcp());
    let lg = Logger::start(
        Config::parse(&format!(
            "logger = tcp://127.0.0.1:{}\n\
             logger = errors tcp://127.0.0.1:{}\n\
             log-route = errors ERROR.*end\n\
             framing = newline",
            def.port(),
            errors.port()
        ))
        .unwrap(),
    )
    .unwrap();
    let msgs: [&[u8]; 3] = [b"ERROR \xff end", b"ERROR \xc3\xa9 end", b"fine \xfe"];
    for m in msgs {
        assert_eq!(lg.log(m), Logged::Buffered(m.len()));
    }
    assert!(lg.flush() > 0);
    assert!(errors.wait(|d| d == b"ERROR \xff end\nERROR \xc3\xa9 end\n"));
    assert!(def.wait(|d| d == b"fine \xfe\n"));
    let s = wait_drained(&lg);
    assert_eq!((s.logged, s.sent, s.lost, s.buffered), (3, 3, 0, 0));
    assert_identity(&s);
    assert!(lg.close(Duration::from_secs(5)));
    assert_eq!(errors.stop(), b"ERROR \xff end\nERROR \xc3\xa9 end\n");
    assert_eq!(def.stop(), b"fine \xfe\n");
}
