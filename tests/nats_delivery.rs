//! `logger = nats://HOST:PORT/SUBJECT` against Debian's real `nats-server` with JetStream: every
//! record stored once, across a graceful restart and a `kill -9` of the server mid-stream; a
//! subject no stream takes keeps the records and says why; a message too large for the stream
//! is given up, counted.

mod common;
mod nats_util;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::assert_identity;
use nats_util::*;
use rlog::{Config, Logger};

fn config(port: u16, subject: &str, extra: &str) -> Config {
    Config::parse(&format!(
        "logger = nats://127.0.0.1:{port}/{subject}\nflush_limit = 16384\ndrop_limit = 268435456\n\
         retry_interval = 20\nmax_retry_times = 2\ntimeout = 2000\n{extra}"
    ))
    .unwrap()
}

fn record(i: u64) -> Vec<u8> {
    // 200 bytes, unique.
    let mut m = format!("record {i:09} ").into_bytes();
    m.resize(200, b'x');
    m
}

/// Checks that the stream holds each of `logged` records exactly once and nothing else.
fn assert_stored_once(port: u16, stream: &str, logged: u64) {
    let msgs = stream_messages(port, stream);
    let mut seen: HashMap<Vec<u8>, u32> = HashMap::new();
    for m in &msgs {
        *seen.entry(m.data.clone()).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicates in the stream: {dups:?}");
    let missing: Vec<u64> = (0..logged)
        .filter(|&i| !seen.contains_key(&record(i)))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "missing from the stream: {missing:?}");
    assert_eq!(msgs.len() as u64, logged, "nothing else in the stream");
    assert_eq!(stream_state(port, stream).0, logged);
}

#[test]
fn every_record_is_acknowledged_and_stored_once() {
    let dir = TempDir::new("once");
    let port = free_port();
    let _srv = NatsServer::start(&dir.0, port, &[]);
    create_stream(port, "LOGS", &["logs.>"], "");
    let lg = Logger::start(config(port, "logs.app", "nats_window = 256")).unwrap();
    const N: u64 = 20_000;
    for i in 0..N {
        assert!(matches!(lg.log(&record(i)), rlog::Logged::Buffered(_)));
    }
    assert!(
        lg.close(Duration::from_secs(30)),
        "{:?}",
        lg.take_error().map(|e| e.as_str().to_string())
    );
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.lost), (N, N, 0), "{s:?}");
    assert_eq!(s.sent_bytes, N * 200);
    assert_identity(&s);
    assert_stored_once(port, "LOGS", N);
    // Each message names itself for the stream's deduplication: its identity, the producer
    // plus its sequence, in 16 hex digits (consecutive for consecutive records).
    let msgs = stream_messages(port, "LOGS");
    let id = |i: usize| {
        let h = String::from_utf8_lossy(&msgs[i].headers).into_owned();
        let id = h
            .lines()
            .find_map(|l| l.strip_prefix("Nats-Msg-Id: "))
            .unwrap_or_else(|| panic!("no Nats-Msg-Id in {h:?}"))
            .to_string();
        assert_eq!(id.len(), 16, "{id}");
        u64::from_str_radix(&id, 16).unwrap()
    };
    assert_eq!(id(1), id(0).wrapping_add(1));
}

#[test]
fn graceful_restart_mid_stream_loses_nothing_and_stores_nothing_twice() {
    restart_mid_stream("term", NatsServer::stop);
}

#[test]
fn kill9_mid_stream_loses_nothing_and_stores_nothing_twice() {
    restart_mid_stream("kill9", NatsServer::kill9);
}

/// Logs a sustained load, stops the server twice with `stop` while it runs (restarting it on
/// the same port and store), and checks every record is in the stream exactly once.
fn restart_mid_stream(name: &str, stop: fn(&mut NatsServer)) {
    let dir = TempDir::new(name);
    let port = free_port();
    let mut srv = NatsServer::start(&dir.0, port, &[]);
    create_stream(port, "LOGS", &["logs.>"], "");
    let lg = Arc::new(Logger::start(config(port, "logs.app", "")).unwrap());
    const N: u64 = 60_000;
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (lg, done) = (lg.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..N {
                assert!(matches!(lg.log(&record(i)), rlog::Logged::Buffered(_)));
                if i % 2_000 == 0 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            done.store(true, Ordering::Release);
        })
    };
    for round in 1..=2u64 {
        assert!(
            wait_until(Duration::from_secs(120), || lg.stats().sent
                >= round * N / 3),
            "{:?}",
            lg.stats()
        );
        stop(&mut srv);
        std::thread::sleep(Duration::from_millis(300));
        let s = lg.stats();
        assert_identity(&s);
        srv.restart();
    }
    producer.join().unwrap();
    assert!(
        lg.close(Duration::from_secs(60)),
        "{:?} {:?}",
        lg.stats(),
        lg.take_error().map(|e| e.as_str().to_string())
    );
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.lost), (N, N, 0), "{s:?}");
    assert_identity(&s);
    assert!(s.connects >= 2, "reconnected: {s:?}");
    assert_stored_once(port, "LOGS", N);
}

#[test]
fn a_subject_no_stream_takes_keeps_the_records_and_says_why() {
    let dir = TempDir::new("nostream");
    let port = free_port();
    let _srv = NatsServer::start(&dir.0, port, &[]);
    let lg = Logger::start(config(port, "nobody.here", "")).unwrap();
    for i in 0..10 {
        lg.log(&record(i));
    }
    assert_eq!(lg.flush(), -1, "no stream: nothing acknowledged");
    let e = lg.take_error().expect("an error is pending");
    assert!(
        e.as_str()
            .contains("no responders on subject \"nobody.here\""),
        "{}",
        e.as_str()
    );
    let s = lg.stats();
    assert_eq!((s.sent, s.lost, s.buffered), (0, 0, 10), "{s:?}");
    assert_identity(&s);
    // Kept: once a stream takes the subject, they go out.
    create_stream(port, "LATE", &["nobody.>"], "");
    assert!(lg.close(Duration::from_secs(30)));
    let s = lg.stats();
    assert_eq!((s.sent, s.lost), (10, 0), "{s:?}");
    assert_identity(&s);
    assert_stored_once(port, "LATE", 10);
}

#[test]
fn a_message_larger_than_the_stream_takes_is_given_up_counted() {
    let dir = TempDir::new("toolarge");
    let port = free_port();
    let _srv = NatsServer::start(&dir.0, port, &[]);
    create_stream(port, "SMALL", &["small"], ",\"max_msg_size\":300");
    let dead = dir.0.join("dead.jsonl");
    let lg = Logger::start(config(
        port,
        "small",
        &format!("dead_letter = {}", dead.display()),
    ))
    .unwrap();
    lg.log(&record(0));
    lg.log(&vec![b'b'; 1000]);
    lg.log(&record(1));
    lg.log(&record(2));
    lg.flush();
    let e = lg.take_error().expect("the refusal is reported");
    assert!(
        e.as_str().contains("JetStream refused the message")
            && e.as_str().contains("10054")
            && e.as_str().ends_with("not sent (kept in the dead letters)"),
        "{}",
        e.as_str()
    );
    // One record lost: close reports that not everything was delivered.
    assert!(!lg.close(Duration::from_secs(30)));
    let s = lg.stats();
    assert_eq!(
        (s.logged, s.sent, s.lost, s.rejected),
        (4, 3, 1, 1),
        "{s:?}"
    );
    assert_eq!((s.lost_bytes, s.rejected_bytes), (1000, 1000));
    let letters = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(letters.lines().count(), 1, "{letters}");
    assert!(
        letters.contains(&format!("\"record\":\"{}\"", "b".repeat(1000))),
        "{letters}"
    );
    assert_identity(&s);
    assert_stored_once(port, "SMALL", 3);
}

#[test]
fn credentials_are_sent_and_a_refusal_is_reported() {
    let dir = TempDir::new("auth");
    let port = free_port();
    let _srv = NatsServer::start(&dir.0, port, &["--user", "rl", "--pass", "s3cret"]);
    let mut c = Client::connect(port, ",\"user\":\"rl\",\"pass\":\"s3cret\"").unwrap();
    let r = c
        .request(
            "$JS.API.STREAM.CREATE.AUTH",
            "{\"name\":\"AUTH\",\"subjects\":[\"auth\"],\"storage\":\"file\"}",
        )
        .unwrap();
    assert!(r.contains("\"config\""), "{r}");

    let lg = Logger::start(config(
        port,
        "auth",
        "nats_user = rl\nnats_password = wrong",
    ))
    .unwrap();
    lg.log(b"m");
    assert_eq!(lg.flush(), -1);
    let e = lg.take_error().unwrap();
    assert!(
        e.as_str().contains("Authorization Violation"),
        "{}",
        e.as_str()
    );
    assert!(!lg.close(Duration::from_millis(500)));
    assert_identity(&lg.stats());

    let lg = Logger::start(config(
        port,
        "auth",
        "nats_user = rl\nnats_password = s3cret",
    ))
    .unwrap();
    lg.log(b"m");
    assert!(lg.close(Duration::from_secs(30)));
    let s = lg.stats();
    assert_eq!((s.sent, s.lost), (1, 0), "{s:?}");
    let r = c.request("$JS.API.STREAM.INFO.AUTH", "").unwrap();
    assert!(r.contains("\"messages\":1,"), "{r}");
}

/// A TCP proxy in front of the real server that, on its first connection, forwards the
/// client's publishes but cuts the connection as soon as the server's first acknowledgement
/// comes back: the stream stored messages whose acknowledgements rlog never saw. Later
/// connections pass through; the proxy counts the acknowledgements that say `duplicate`.
struct AckCutter {
    port: u16,
    duplicates: Arc<std::sync::atomic::AtomicU64>,
}

impl AckCutter {
    fn start(upstream: u16) -> AckCutter {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let duplicates = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let dups = duplicates.clone();
        std::thread::spawn(move || {
            for (n, c) in l.incoming().enumerate() {
                let Ok(c) = c else { return };
                let up = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                let (mut c2, mut up2) = (c.try_clone().unwrap(), up.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut b = vec![0u8; 65536];
                    while let Ok(k) = c2.read(&mut b) {
                        if k == 0 || up2.write_all(&b[..k]).is_err() {
                            break;
                        }
                    }
                    let _ = up2.shutdown(std::net::Shutdown::Both);
                });
                let (mut up, mut c, dups) = (up, c, dups.clone());
                std::thread::spawn(move || {
                    let mut b = vec![0u8; 65536];
                    while let Ok(k) = up.read(&mut b) {
                        if k == 0 {
                            break;
                        }
                        if n == 0 && b[..k].windows(11).any(|w| w == b"MSG _INBOX.") {
                            // The first acknowledgement: never delivered.
                            break;
                        }
                        let found = b[..k].windows(11).filter(|w| w == b"\"duplicate\"").count();
                        dups.fetch_add(found as u64, Ordering::Relaxed);
                        if c.write_all(&b[..k]).is_err() {
                            break;
                        }
                    }
                    let _ = c.shutdown(std::net::Shutdown::Both);
                    let _ = up.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        AckCutter { port, duplicates }
    }
}

#[test]
fn publishes_stored_whose_acknowledgements_were_lost_are_deduplicated() {
    let dir = TempDir::new("lostacks");
    let port = free_port();
    let _srv = NatsServer::start(&dir.0, port, &[]);
    create_stream(port, "LOGS", &["logs.>"], "");
    let proxy = AckCutter::start(port);
    let lg = Logger::start(config(proxy.port, "logs.app", "")).unwrap();
    const N: u64 = 500;
    for i in 0..N {
        lg.log(&record(i));
    }
    assert!(lg.close(Duration::from_secs(30)));
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.lost), (N, N, 0), "{s:?}");
    assert_identity(&s);
    assert!(s.connects >= 2, "{s:?}");
    // Resent, the publishes stored the first time were dropped by the stream as duplicates.
    assert!(
        wait_until(Duration::from_secs(10), || proxy
            .duplicates
            .load(Ordering::Relaxed)
            > 0),
        "no duplicate acknowledgement: the resend was not deduplicated by Nats-Msg-Id"
    );
    assert_stored_once(port, "LOGS", N);
}

#[test]
fn a_full_stream_keeps_the_rest_and_says_it_has_no_room() {
    let dir = TempDir::new("full");
    let port = free_port();
    let _srv = NatsServer::start(&dir.0, port, &[]);
    create_stream(
        port,
        "FULL",
        &["full"],
        ",\"max_msgs\":5,\"discard\":\"new\"",
    );
    let lg = Logger::start(config(port, "full", "")).unwrap();
    for i in 0..10 {
        lg.log(&record(i));
    }
    assert_eq!(lg.flush(), -1);
    let e = lg.take_error().unwrap();
    assert!(
        e.as_str().contains("the stream has no room"),
        "{}",
        e.as_str()
    );
    let s = lg.stats();
    assert_eq!((s.sent, s.lost, s.buffered), (5, 0, 5), "{s:?}");
    assert_identity(&s);
    assert_stored_once(port, "FULL", 5);
    let _ = lg.close(Duration::from_millis(100));
}
