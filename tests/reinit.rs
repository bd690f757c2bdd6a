//! Re-initialising the process-wide default logger (`rlog_init` twice), against real loopback
//! collectors. The default logger is process state, so this file holds one test that runs its
//! cases in order.

mod common;

use std::ffi::CString;
use std::time::Duration;

use common::*;
use rlog::ffi::{rlog_flush, rlog_init, rlog_last_error, rlog_log, rlog_shutdown, rlog_stats};
use rlog::rlog_stats;

fn init(text: &str) {
    let c = CString::new(text).unwrap();
    let mut err = [0u8; 256];
    // SAFETY: a NUL-terminated config and an error buffer of its stated size.
    let r = unsafe { rlog_init(c.as_ptr(), err.as_mut_ptr().cast(), err.len()) };
    assert_eq!(r, 0, "{}", String::from_utf8_lossy(&err));
}

fn log(msg: &str) {
    // SAFETY: a valid pointer and length.
    assert_eq!(
        unsafe { rlog_log(msg.as_ptr().cast(), msg.len()) },
        msg.len() as i32
    );
}

fn stats() -> rlog_stats {
    let mut s = rlog_stats::default();
    // SAFETY: `s` is a whole rlog_stats.
    assert_eq!(
        unsafe { rlog_stats(&mut s, std::mem::size_of::<rlog_stats>()) },
        0
    );
    s
}

fn last_error() -> Option<String> {
    let mut buf = [0u8; 512];
    // SAFETY: a buffer of its stated size.
    let n = unsafe { rlog_last_error(buf.as_mut_ptr().cast(), buf.len()) };
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n.min(buf.len() - 1)]).into_owned())
}

#[test]
fn reinit_keeps_or_retires_the_default_and_counts_what_the_old_one_could_not_deliver() {
    // 1. The same config again (resty's init on every request) keeps the running logger:
    //    one connection, nothing restarted, every line once.
    let c = Collector::tcp();
    let text = tcp_config(c.port(), "flush_limit = 100000");
    init(&text);
    for i in 0..100 {
        log(&format!("same {i}\n"));
        if i % 10 == 0 {
            init(&text);
        }
    }
    assert_eq!(rlog_flush(), 10 * 7 + 90 * 8);
    let s = stats();
    assert_eq!((s.logged, s.sent, s.connects), (100, 100, 1), "{s:?}");
    assert_identity(&s);

    // 2. Another config retires the old logger. Its collector is down: within its timeout it
    //    cannot deliver, and that is counted in the default's stats and reported as the new
    //    logger's pending error.
    let (down, held) = refusing_port();
    init(&tcp_config(
        down,
        "flush_limit = 100000\ntimeout = 200\nretry_interval = 10",
    ));
    for i in 0..5 {
        log(&format!("doomed {i}\n"));
    }
    let live = Collector::tcp();
    init(&tcp_config(live.port(), "flush_limit = 100000"));
    log("after\n");
    assert_eq!(rlog_flush(), 6);
    // The retired logger gives up after its timeout (200 ms) and a grace period.
    let mut err = None;
    for _ in 0..200 {
        err = last_error();
        if err.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let err = err.expect("the retired logger's loss is reported");
    assert!(
        err.starts_with(&format!(
            "the logger to tcp://127.0.0.1:{down} replaced by rlog_init could not deliver 5 \
             messages within its timeout: "
        )),
        "{err}"
    );
    let s = stats();
    assert_eq!(
        (s.logged, s.sent, s.lost, s.buffered),
        (106, 101, 5, 0),
        "the first two loggers' counts stay in the default's stats: {s:?}"
    );
    assert_identity(&s);
    assert!(live.wait_bytes(6));
    drop(held);

    // 3. shutdown answers for what it retired too (5 were lost: "not everything delivered"),
    //    and a later init starts counting afresh.
    assert_eq!(rlog_shutdown(1000), 1);
    init(&tcp_config(live.port(), "flush_limit = 100000"));
    log("fresh\n");
    assert_eq!(rlog_flush(), 6);
    let s = stats();
    assert_eq!((s.logged, s.sent), (1, 1), "{s:?}");
    assert_eq!(rlog_shutdown(1000), 0);
    assert_eq!(
        c.stop_lines().len(),
        100,
        "the kept logger sent every line once"
    );
}
