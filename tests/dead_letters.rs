//! Dead letters (SPEC §6): a record an output can never carry is written to `dead_letter` as a
//! JSON line and counted lost and rejected; the rest is delivered. Here the refusal is a UDP
//! datagram over 65 507 bytes (a real UDP socket on 127.0.0.1), through a plain config and
//! through a uWSGI-style logger whose encoder makes the record too large.

mod common;

use std::time::Duration;

use common::{assert_identity, temp_dir, UdpCollector};
use rlog::{Config, Logged, Logger};

fn dead_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn an_oversized_datagram_goes_to_the_dead_letters_and_the_rest_is_sent() {
    let dir = temp_dir("dead-plain");
    let dead = dir.join("dead.jsonl");
    let c = UdpCollector::new();
    let lg = Logger::start(
        Config::parse(&format!(
            "host = 127.0.0.1\nport = {}\nsock_type = udp\ndead_letter = {}",
            c.addr.port(),
            dead.display()
        ))
        .unwrap(),
    )
    .unwrap();
    let big = vec![b'x'; 70_000];
    assert_eq!(lg.log(b"before"), Logged::Buffered(6));
    assert_eq!(lg.log(&big), Logged::Buffered(70_000));
    assert_eq!(lg.log(b"after\xff"), Logged::Buffered(6));
    // Not everything was delivered: close says so.
    assert!(!lg.close(Duration::from_secs(5)));
    assert!(c.wait_count(2));
    assert_eq!(
        c.datagrams(),
        vec![b"before".to_vec(), b"after\xff".to_vec()]
    );
    let s = lg.stats();
    assert_eq!((s.sent, s.lost, s.rejected), (2, 1, 1), "{s:?}");
    assert_eq!((s.lost_bytes, s.rejected_bytes), (70_000, 70_000));
    assert_identity(&s);
    let lines = dead_lines(&dead);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert!(l.starts_with("{\"time\":\"20"), "{l}");
    assert!(
        l.contains(&format!(
            "\"output\":\"logger udp://127.0.0.1:{}\",\"reason\":\"log message of 70000 bytes is larger than the largest UDP datagram (65507 bytes)\",\"record\":\"xxx",
            c.addr.port()
        )),
        "{l}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_routed_record_too_large_for_its_logger_is_dead_lettered_as_bytes_when_not_utf8() {
    let dir = temp_dir("dead-routed");
    let dead = dir.join("dead.jsonl");
    let big = UdpCollector::new();
    let small = UdpCollector::new();
    // `gzip` on the big logger: its records are not UTF-8 (record_b64); the prefix makes the
    // copy larger than a datagram although the message is not.
    let lg = Logger::start(
        Config::parse(&format!(
            "logger = big udp://127.0.0.1:{}\nlogger = small udp://127.0.0.1:{}\n\
             log-route = big .\nlog-route = small .\n\
             log-encoder = prefix:big {}\nlog-encoder = gzip:big\ndead_letter = {}",
            big.addr.port(),
            small.addr.port(),
            "p".repeat(10),
            dead.display()
        ))
        .unwrap(),
    )
    .unwrap();
    // Random bytes do not compress: 65 500 of them gzip to more than 65 507.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..65_500)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    assert!(matches!(lg.log(&noise), Logged::Buffered(_)));
    assert!(matches!(lg.log(b"short"), Logged::Buffered(_)));
    assert!(!lg.close(Duration::from_secs(5)));
    assert!(small.wait_count(2));
    assert!(big.wait_count(1));
    let s = lg.stats();
    // The first message lost one copy for good: lost and rejected; the second reached both.
    assert_eq!(
        (s.logged, s.sent, s.lost, s.rejected),
        (2, 1, 1, 1),
        "{s:?}"
    );
    assert_identity(&s);
    let lines = dead_lines(&dead);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("\"output\":\"logger \\\"big\\\"\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("\"record_b64\":\"H4sI"),
        "gzip's magic, in base64"
    );
    let e = lg
        .take_error()
        .map(|e| e.as_str().to_string())
        .unwrap_or_default();
    assert!(e.contains("(kept in the dead letters)"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unusable_dead_letter_file_is_an_init_error() {
    let e = Logger::start(
        Config::parse("host = 127.0.0.1\nport = 9\ndead_letter = /nonexistent/dir/dead.jsonl")
            .unwrap(),
    )
    .unwrap_err();
    assert!(
        e.starts_with("cannot open \"dead_letter\" file /nonexistent/dir/dead.jsonl"),
        "{e}"
    );
    assert!(Config::parse("host = 127.0.0.1\nport = 9\ndead_letter = ")
        .unwrap_err()
        .contains("\"dead_letter\" must be a file name"));
}
