//! rlogd's disk filling up while librlog sends over `rlogd://`: the write that fails is not
//! acknowledged, rlogd stops (its files' state is unknown after a failed write), librlog keeps
//! everything unacknowledged and counts none of it lost, and once rlogd is back with room every
//! message is stored exactly once. A full disk is made with `RLIMIT_FSIZE` on the rlogd process
//! (its writes then fail with EFBIG, on the same path as ENOSPC), which needs neither root nor a
//! small filesystem.

mod rlogd_util;

use std::collections::HashSet;
use std::time::Duration;

use rlog::{Config, Logger};
use rlogd_util::*;

#[test]
fn a_full_disk_stops_rlogd_without_losing_or_doubling_a_message() {
    let dir = TempDir::new("diskfull");
    let data = dir.join("data");
    let mut d = Proc::serve_with_file_limit(
        &data,
        &["--listen", "rlogd://127.0.0.1:0"],
        dir.join("log"),
        128 << 10,
    );
    let addr = d.bound("rlogd");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let lg = Logger::start(
        Config::parse(&format!(
            "host = {host}\nport = {port}\nsock_type = rlogd\nflush_limit = 16384\n\
             drop_limit = 67108864\nretry_interval = 20\nmax_retry_times = 1\ntimeout = 2000"
        ))
        .unwrap(),
    )
    .unwrap();
    const N: usize = 5000;
    let msg = |i: usize| format!("message {i:06} {}", "x".repeat(90));
    for i in 0..N {
        assert!(matches!(
            lg.log(msg(i).as_bytes()),
            rlog::Logged::Buffered(_)
        ));
    }
    lg.flush();
    // 500 KB do not fit in 128 KiB files: rlogd fails a write, says why, and stops.
    assert_eq!(d.wait_exit(), Some(3), "{}", d.log_text());
    assert!(
        d.log_text()
            .contains("store failure, stopping: File too large"),
        "{}",
        d.log_text()
    );
    let s = lg.stats();
    assert!(s.sent < N as u64, "{s:?}");
    assert_eq!(s.lost, 0, "nothing unacknowledged is given up: {s:?}");
    assert_identity(&s);

    // Room again: rlogd recovers its files, and librlog delivers the rest.
    let mut d = Proc::serve(
        &data,
        &["--listen", &format!("rlogd://{addr}")],
        dir.join("log"),
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            lg.flush();
            lg.stats().sent == N as u64
        }),
        "{:?}\n{}",
        lg.stats(),
        d.log_text()
    );
    let s = lg.stats();
    assert_eq!((s.sent, s.lost, s.buffered), (N as u64, 0, 0), "{s:?}");
    assert_identity(&s);
    assert!(lg.close(Duration::from_secs(5)));
    assert_eq!(d.term(), Some(0));
    let (code, out) = verify(&data);
    assert_eq!(code, 0, "{out}");
    let got = payloads(&data);
    let unique: HashSet<&Vec<u8>> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "a message was stored twice");
    assert_eq!(got.len(), N, "messages missing");
    for i in [0, N / 2, N - 1] {
        assert!(unique.contains(&msg(i).into_bytes()));
    }
}
