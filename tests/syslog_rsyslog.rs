//! The syslog encoder against Debian's rsyslogd: rsyslog parses every header field rlog writes
//! (hostname, app-name, procid, msgid, structured data, pri, the reported time with its offset)
//! for RFC 5424 and RFC 3164 over imtcp (octet counting), and for 5424 over imrelp; a fork
//! child's records carry the child's pid.
//!
//! One test in this file: it sets `TZ` (a half-hour offset, +05:30) for the whole process.

mod common;
mod rsyslog_util;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::assert_identity;
use rlog::{Config, Logged, Logger};
use rsyslog_util::{fields, have_rsyslogd, Queue, Rsyslog};

extern "C" {
    fn tzset();
}

const TZ: &str = "Asia/Kolkata";

/// Seconds since the epoch of an RFC 3339 time (`2026-12-07T10:00:00.123456+05:30`).
fn rfc3339_secs(t: &str) -> f64 {
    let re = regex::Regex::new(
        r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|([+-])(\d\d):(\d\d))$",
    )
    .unwrap();
    let c = re
        .captures(t)
        .unwrap_or_else(|| panic!("not RFC 3339: {t}"));
    let n = |i: usize| c[i].parse::<i64>().unwrap();
    let (y, m, d) = (n(1), n(2), n(3));
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let mut secs = days * 86400 + n(4) * 3600 + n(5) * 60 + n(6);
    if c.get(9).is_some() {
        let off = n(10) * 3600 + n(11) * 60;
        secs -= if &c[9] == "+" { off } else { -off };
    }
    let frac = c.get(7).map_or(0.0, |f| f.as_str().parse::<f64>().unwrap());
    secs as f64 + frac
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its length.
    assert_eq!(
        unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) },
        0
    );
    let n = buf.iter().position(|&c| c == 0).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn by_msg(lines: &[String]) -> HashMap<String, HashMap<String, String>> {
    lines
        .iter()
        .map(|l| {
            let f = fields(l);
            (f["msg"].trim_start().to_string(), f)
        })
        .collect()
}

#[test]
fn rsyslog_parses_every_header_field_of_5424_and_3164() {
    if !have_rsyslogd() {
        panic!("rsyslogd and rsyslog-relp are needed (.ci/deps installs them)");
    }
    std::env::set_var("TZ", TZ);
    // SAFETY: tzset only re-reads TZ; no other thread of this test binary reads the time zone.
    unsafe { tzset() };
    let rs = Rsyslog::start("fields", Queue::Memory, Some(TZ));
    let cfg = format!(
        "logger = l5424 tcp://127.0.0.1:{tcp}\n\
         logger = l3164 tcp://127.0.0.1:{tcp}\n\
         logger = lrelp relp://127.0.0.1:{relp}\n\
         log-route = l5424 ^a5424\n\
         log-route = l3164 ^b3164\n\
         log-route = lrelp ^c-relp\n\
         log-encoder = syslog:l5424 facility=local0,severity=err,hostname=web1,app=nginx,msgid=access,sd=[req@32473 id=\"42\" path=\"/a\\]b\"][x@1 k=\"v\\,w\"]\n\
         log-encoder = syslog:l3164 rfc3164,facility=daemon,severity=warning,hostname=web-1.example,app=legacy\n\
         log-encoder = syslog:lrelp facility=local7,severity=notice,msgid=relpmsg\n",
        tcp = rs.tcp_port,
        relp = rs.relp_port
    );
    let lg = Logger::start(Config::parse(&cfg).unwrap()).unwrap();
    let t0 = now();
    for m in [
        "a5424 héllo 5424\n",
        "b3164 hello 3164",
        "c-relp hello relp",
    ] {
        assert!(matches!(lg.log(m.as_bytes()), Logged::Buffered(_)));
    }
    assert!(lg.flush() > 0, "{:?}", lg.take_error());
    let t1 = now();
    // A fork child logs through the same logger: its records carry its own pid.
    // SAFETY: the child only logs, flushes and _exits; rlog's fork handlers make the logger
    // usable in it.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let ok = matches!(lg.log(b"a5424 from the child"), Logged::Buffered(_))
            && lg.flush() > 0
            && matches!(lg.log(b"c-relp from the child"), Logged::Buffered(_))
            && lg.flush() > 0;
        // SAFETY: ends the child without running the parent's atexit handlers twice.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed"
    );
    let lines = rs.wait_lines(|l| l.len() >= 5);
    let got = by_msg(&lines);
    assert_eq!(got.len(), 5, "{lines:#?}");
    let pid = std::process::id().to_string();
    let iso = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+05:30$").unwrap();

    let f = &got["a5424 héllo 5424"];
    assert_eq!(f["host"], "web1", "{f:?}");
    assert_eq!(f["app"], "nginx");
    assert_eq!(f["procid"], pid);
    assert_eq!(f["msgid"], "access");
    assert_eq!(f["sd"], r#"[req@32473 id="42" path="/a\]b"][x@1 k="v,w"]"#);
    assert_eq!(f["pri"], "131", "local0 (16) * 8 + err (3)");
    assert!(iso.is_match(&f["time"]), "{}", f["time"]);
    let t = rfc3339_secs(&f["time"]);
    assert!(t >= t0 - 0.01 && t <= t1 + 0.01, "{t} not in [{t0}, {t1}]");

    let f = &got["b3164 hello 3164"];
    assert_eq!(f["host"], "web-1.example", "{f:?}");
    assert_eq!(f["app"], "legacy");
    assert_eq!(f["procid"], pid);
    assert_eq!((f["msgid"].as_str(), f["sd"].as_str()), ("-", "-"));
    assert_eq!(f["pri"], "28", "daemon (3) * 8 + warning (4)");
    // rsyslog reads a 3164 time as its own local time (the same TZ) in the current year.
    assert!(f["time"].ends_with("+05:30"), "{}", f["time"]);
    let t = rfc3339_secs(&f["time"]);
    assert!(
        t >= t0.floor() - 1.0 && t <= t1 + 1.0,
        "{t} not in [{t0}, {t1}]"
    );
    // RFC 3164 puts one space after "TAG[PID]:", which rsyslog keeps in %msg%.
    assert!(f["msg"].starts_with(" b3164"), "{:?}", f["msg"]);

    let f = &got["c-relp hello relp"];
    assert_eq!(f["host"], hostname(), "{f:?}");
    let exe = std::env::current_exe().unwrap();
    let exe = exe.file_name().unwrap().to_str().unwrap();
    assert_eq!(f["app"], &exe[..exe.len().min(48)]);
    assert_eq!(f["procid"], pid);
    assert_eq!(f["msgid"], "relpmsg");
    assert_eq!(f["sd"], "-");
    assert_eq!(f["pri"], "189", "local7 (23) * 8 + notice (5)");
    assert!(iso.is_match(&f["time"]), "{}", f["time"]);

    for m in ["a5424 from the child", "c-relp from the child"] {
        assert_eq!(got[m]["procid"], child.to_string(), "{m}: {:?}", got[m]);
    }

    assert!(lg.close(Duration::from_secs(10)));
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.lost), (3, 3, 0), "{s:?}");
    assert_identity(&s);
}
