//! `logger = rlogd://HOST:PORT` (and `rlogds://`): rlogd as a sink of the uWSGI-style path,
//! against the real `rlogd` binary on 127.0.0.1. Encoders run before rlogd stores the record,
//! each logger stores its own `type`, a resend after `kill -9` is deduplicated per sink, the
//! `host`/`port` logger with `sock_type = rlogd` is an rlogd sink like the others, and each
//! logger sends its own token.

mod pki;
mod rlogd_util;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rlog::{Config, Logger};
use rlogd_util::*;

/// One line of `rlogd cat --json`: (type, time_us, msg). The messages of these tests have no
/// characters JSON escapes.
fn cat_json(data: &std::path::Path) -> Vec<(u16, i64, String)> {
    let (code, out, err) = run(&["cat", "--data", data.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| {
            let field = |name: &str| {
                let at = l
                    .find(&format!("\"{name}\":"))
                    .unwrap_or_else(|| panic!("{l}"));
                let rest = &l[at + name.len() + 3..];
                rest[..rest.find([',', '}']).unwrap()].to_string()
            };
            let msg = l.split_once(",\"msg\":\"").unwrap().1;
            let msg = msg.strip_suffix("\"}").unwrap().to_string();
            (
                field("type").parse().unwrap(),
                field("time_us").parse().unwrap(),
                msg,
            )
        })
        .collect()
}

#[test]
fn encoders_routes_and_types_per_logger_reach_the_store() {
    let dir = TempDir::new("rl-enc");
    let data = dir.join("data");
    let mut d = Proc::serve(&data, &["--listen", "rlogd://127.0.0.1:0"], dir.join("log"));
    let addr = d.bound("rlogd");
    let cfg = Config::parse(&format!(
        "logger = rlogd://{addr}\nlogger = errors rlogd://{addr}\ntype = 3\nerrors.type = 7\n\
         errors.compression = zlib\nlog-encoder = \"prefix [x] \"\nlog-encoder = suffix:errors !\n\
         log-route = errors ERROR\nframing = octet\nmax_buffer_reuse = 1"
    ))
    .unwrap();
    let lg = Logger::start(cfg).unwrap();
    let t0 = rlog::encode::clock::now_micros();
    const N: u64 = 200;
    for i in 0..N {
        let m = if i % 10 == 0 {
            format!("ERROR {i}")
        } else {
            format!("info {i}")
        };
        assert!(matches!(lg.log(m.as_bytes()), rlog::Logged::Buffered(_)));
        // Several rounds: with max_buffer_reuse = 1 the sinks' buffers are reallocated between
        // them, and their sequence numbers must go on (rlogd drops reused ones).
        if i % 50 == 49 {
            assert!(lg.flush() > 0);
        }
    }
    let t1 = rlog::encode::clock::now_micros();
    let st = lg.stats();
    assert_eq!(
        (st.logged, st.sent, st.lost, st.buffered),
        (N, N, 0, 0),
        "{st:?}"
    );
    assert_identity(&st);
    let (l0, s0) = lg.sink_stats(0).unwrap();
    let (l1, s1) = lg.sink_stats(1).unwrap();
    assert_eq!(l0, format!("logger rlogd://{addr}"));
    assert_eq!(l1, "logger \"errors\"");
    assert_eq!((s0.sent, s0.lost, s0.pending), (N - N / 10, 0, 0));
    assert_eq!((s1.sent, s1.lost, s1.pending), (N / 10, 0, 0));
    assert!(lg.take_error().is_none());

    let got = cat_json(&data);
    assert_eq!(got.len() as u64, N, "{got:?}");
    let mut want: HashMap<String, u16> = HashMap::new();
    for i in 0..N {
        if i % 10 == 0 {
            want.insert(format!("[x] ERROR {i}!"), 7);
        } else {
            want.insert(format!("[x] info {i}"), 3);
        }
    }
    for (ty, time, msg) in &got {
        assert_eq!(
            want.remove(msg),
            Some(*ty),
            "unexpected {msg:?} of type {ty}"
        );
        assert!((t0..=t1).contains(time), "time {time} not in [{t0}, {t1}]");
    }
    assert!(want.is_empty(), "missing: {want:?}");

    // Each logger is its own producer, numbering its records 0, 1, 2, ...
    let mut seqs: HashMap<u64, Vec<u64>> = HashMap::new();
    for (_, r) in records(&data) {
        seqs.entry(r.meta.producer).or_default().push(r.meta.seq);
    }
    assert_eq!(seqs.len(), 2, "{seqs:?}");
    for s in seqs.values() {
        assert_eq!(*s, (0..s.len() as u64).collect::<Vec<_>>());
    }
    assert!(lg.close(Duration::from_secs(5)));
    assert_eq!(d.term(), Some(0));
}

#[test]
fn kill9_mid_stream_every_message_is_stored_once_per_sink() {
    let dir = TempDir::new("rl-kill");
    let data = dir.join("data");
    let mut d = Proc::serve(&data, &["--listen", "rlogd://127.0.0.1:0"], dir.join("log"));
    let addr = d.bound("rlogd");
    // Two rlogd sinks: messages ending in 7 go to "sevens" only, the rest to the default one.
    let cfg = Config::parse(&format!(
        "logger = rlogd://{addr}\nlogger = sevens rlogd://{addr}\nlog-route = sevens 7$\n\
         log-encoder = \"prefix [k] \"\nflush_limit = 65536\ndrop_limit = 268435456\n\
         retry_interval = 20\nmax_retry_times = 2\ntimeout = 2000"
    ))
    .unwrap();
    let lg = Arc::new(Logger::start(cfg).unwrap());
    const N: u64 = 100_000;
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (lg, done) = (lg.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..N {
                let msg = format!("message {} {i:08}", "x".repeat(30));
                assert!(matches!(lg.log(msg.as_bytes()), rlog::Logged::Buffered(_)));
                if i % 5_000 == 0 {
                    std::thread::sleep(Duration::from_millis(30));
                }
            }
            done.store(true, Ordering::Release);
        })
    };
    assert!(
        wait_until(Duration::from_secs(60), || lg.stats().sent >= N / 3),
        "{:?}",
        lg.stats()
    );
    assert!(
        !done.load(Ordering::Acquire),
        "the load ended before the kill"
    );
    d.kill9();
    std::thread::sleep(Duration::from_millis(100));
    let mut d = Proc::serve(
        &data,
        &["--listen", &format!("rlogd://{addr}")],
        dir.join("log"),
    );
    producer.join().unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || {
            lg.flush();
            lg.stats().sent == N
        }),
        "{:?} {:?}",
        lg.stats(),
        lg.take_error()
    );
    let st = lg.stats();
    assert_eq!(
        (st.sent, st.lost, st.dropped, st.buffered),
        (N, 0, 0, 0),
        "{st:?}"
    );
    assert_identity(&st);
    let (s0, s1) = (lg.sink_stats(0).unwrap().1, lg.sink_stats(1).unwrap().1);
    assert_eq!((s0.sent, s1.sent), (N - N / 10, N / 10));
    assert!(lg.close(Duration::from_secs(5)));
    assert_eq!(d.term(), Some(0));
    // How many resent messages the restarted rlogd dropped (varies with where the kill landed).
    let resent: usize = d
        .log_text()
        .lines()
        .filter_map(|l| {
            l.split_once("dropped ")
                .and_then(|(_, r)| r.split(' ').next()?.parse::<usize>().ok())
        })
        .sum();
    eprintln!("resent messages dropped as duplicates after the restart: {resent}");

    let (code, out) = verify(&data);
    assert_eq!(code, 0, "{out}");
    let got = payloads(&data);
    let unique: HashSet<&Vec<u8>> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "a message was stored twice");
    assert_eq!(got.len() as u64, N, "messages missing");
    for i in [0, 7, N / 2, N - 1] {
        let m = format!("[k] message {} {i:08}", "x".repeat(30)).into_bytes();
        assert!(unique.contains(&m), "message {i} missing");
    }
}

#[test]
fn host_port_rlogd_and_rlogds_loggers_each_send_their_own_token() {
    let dir = TempDir::new("rl-tok");
    let p = pki::issue(&["localhost"]).write_to(&dir.0);
    let token = dir.join("token");
    fs::write(&token, "s3cret\n").unwrap();
    let data = dir.join("data");
    let mut d = Proc::serve(
        &data,
        &[
            "--listen",
            "rlogd://127.0.0.1:0",
            "--token-file",
            token.to_str().unwrap(),
            "--tls-cert",
            p.cert.to_str().unwrap(),
            "--tls-key",
            p.key.to_str().unwrap(),
        ],
        dir.join("log"),
    );
    let addr = d.bound("rlogd");
    let (host, port) = addr.rsplit_once(':').unwrap();
    // The host/port logger (sock_type = rlogd, ssl) takes the handle-wide token_file and type;
    // "good" and "bad" are rlogds:// loggers with their own.
    let cfg = Config::parse(&format!(
        "host = {host}\nport = {port}\nsock_type = rlogd\nssl = true\nsni_host = localhost\n\
         ssl_ca = {ca}\ntoken_file = {tok}\ntype = 2\nmax_retry_times = 0\nretry_interval = 10\n\
         logger = good rlogds://{addr}\ngood.type = 5\ngood.token = s3cret\n\
         logger = bad rlogds://{addr}\nbad.token = wrong\n\
         log-route = good ^G\nlog-route = bad ^B\nlog-encoder = nl",
        ca = p.ca.display(),
        tok = token.display()
    ))
    .unwrap();
    let lg = Logger::start(cfg).unwrap();
    for m in ["A1", "G1", "B1", "A2"] {
        lg.log(m.as_bytes());
    }
    assert_eq!(lg.flush(), -1, "the bad logger cannot deliver");
    let err = lg.take_error().unwrap();
    assert!(
        err.as_str().starts_with("logger \"bad\": try to connect")
            && err.as_str().contains("wrong token"),
        "{}",
        err.as_str()
    );
    let st = lg.stats();
    assert_eq!((st.logged, st.sent, st.buffered), (4, 3, 1), "{st:?}");
    assert_identity(&st);
    let (l0, s0) = lg.sink_stats(0).unwrap();
    assert_eq!(l0, format!("logger rlogds://{addr}"));
    assert_eq!(s0.sent, 2);
    assert_eq!(lg.sink_stats(1).unwrap().1.sent, 1);
    assert_eq!(lg.sink_stats(2).unwrap().1.pending, 1);
    let mut got: Vec<(u16, String)> = cat_json(&data)
        .into_iter()
        .map(|(t, _, m)| (t, m))
        .collect();
    got.sort();
    let want: Vec<(u16, String)> = vec![
        (2, "A1\\n".into()),
        (2, "A2\\n".into()),
        (5, "G1\\n".into()),
    ];
    assert_eq!(got, want);
    // Closing gives up on the copy the bad logger holds: its message counts as lost.
    lg.close(Duration::from_millis(200));
    let st = lg.stats();
    assert_eq!((st.sent, st.lost, st.buffered), (3, 1, 0), "{st:?}");
    assert_identity(&st);
    assert!(d.log_text().contains("refused_auth="), "{}", d.log_text());
    assert_eq!(d.term(), Some(0));
}

#[test]
fn bad_rlogd_logger_configs_are_init_errors_naming_the_line() {
    let err = |text: &str| Config::parse(text).unwrap_err();
    assert!(err("logger = rlogd://127.0.0.1").contains("logger \"rlogd://127.0.0.1\""));
    assert!(err("logger = rlogd://127.0.0.1:99999").contains("out of range"));
    assert!(err("logger = a tcp://127.0.0.1:1\na.token = x")
        .contains("\"a.token\" at line 2: logger \"a\" is not an rlogd logger"));
    assert!(err("logger = a rlogd://127.0.0.1:1\na.framing = octet")
        .contains("\"a.framing\" at line 2: framing does not apply"));
    assert_eq!(
        err("logger = udp://127.0.0.1:1\ncompression = zlib"),
        "\"compression\" at line 2 needs \"sock_type = rlogd\" or an rlogd:// logger"
    );
    assert!(err("logger = a rlogd://127.0.0.1:1\nb.type = 1").contains("no logger is named \"b\""));
    // Logging to a closed port: the error names the logger, the message stays counted.
    let lg = Logger::start(
        Config::parse("logger = x rlogd://127.0.0.1:1\nlog-route = x .\nmax_retry_times = 0")
            .unwrap(),
    )
    .unwrap();
    lg.log(b"m");
    assert_eq!(lg.flush(), -1);
    let e = lg.take_error().unwrap();
    assert!(
        e.as_str()
            .starts_with("logger \"x\": try to connect to the log server failed after 0 retries"),
        "{}",
        e.as_str()
    );
    lg.close(Duration::from_millis(100));
    let st = lg.stats();
    assert_eq!((st.logged, st.lost), (1, 1));
    assert_identity(&st);
}

/// A relay on 127.0.0.1 in front of the real rlogd that loses the first acknowledgement: on the
/// first connection it forwards rlogd's frames up to the first ACK, then closes both sides
/// instead of forwarding it. Later connections are relayed as they are. Returns its address.
fn ack_losing_relay(upstream: String) -> String {
    use rlog::proto::frame;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for (n, client) in l.incoming().enumerate() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = TcpStream::connect(&upstream) else {
                return;
            };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(k) = c2.read(&mut buf) {
                    if k == 0 || s2.write_all(&buf[..k]).is_err() {
                        break;
                    }
                }
                let _ = s2.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || {
                let mut body = Vec::new();
                while let Ok(kind) = frame::read_frame(&mut server, 1 << 20, &mut body) {
                    if n == 0 && kind == frame::ACK {
                        break;
                    }
                    if frame::write_frame(&mut client, kind, &body).is_err() {
                        break;
                    }
                }
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
            });
        }
    });
    addr
}

#[test]
fn a_lost_ack_makes_the_sink_resend_and_rlogd_drops_the_copy() {
    let dir = TempDir::new("rl-ack");
    let data = dir.join("data");
    let mut d = Proc::serve(&data, &["--listen", "rlogd://127.0.0.1:0"], dir.join("log"));
    let relay = ack_losing_relay(d.bound("rlogd"));
    // Two default rlogd loggers: every message is stored once by each (two producers).
    let lg = Logger::start(
        Config::parse(&format!(
            "logger = rlogd://{relay}\nlogger = rlogd://{relay}\nretry_interval = 10\n\
             log-encoder = suffix !"
        ))
        .unwrap(),
    )
    .unwrap();
    const N: u64 = 50;
    for i in 0..N {
        lg.log(format!("m{i}").as_bytes());
    }
    assert!(lg.flush() > 0, "{:?}", lg.take_error());
    let st = lg.stats();
    assert_eq!(
        (st.logged, st.sent, st.lost, st.buffered),
        (N, N, 0, 0),
        "{st:?}"
    );
    assert_identity(&st);
    let retries: u64 = (0..2).map(|i| lg.sink_stats(i).unwrap().1.retries).sum();
    assert!(retries >= 1, "the lost ack made no resend");
    assert!(lg.close(Duration::from_secs(5)));
    assert_eq!(d.term(), Some(0));
    assert!(
        d.log_text()
            .contains(&format!("dropped {N} records it resent")),
        "{}",
        d.log_text()
    );
    let mut per_producer: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
    for (_, r) in records(&data) {
        per_producer
            .entry(r.meta.producer)
            .or_default()
            .push(r.payload);
    }
    let want: Vec<Vec<u8>> = (0..N).map(|i| format!("m{i}!").into_bytes()).collect();
    assert_eq!(per_producer.len(), 2);
    for got in per_producer.values() {
        assert_eq!(*got, want, "each logger's copies, once each, in order");
    }
}

/// A record larger than the frame limit rlogd announces (`--max-frame`) can never be carried:
/// it is counted lost with an error naming it, and the records before and after it are stored
/// — on the `logger = rlogd://` path and on `sock_type = rlogd` alike. (Retried, it held up
/// everything behind it for good.)
#[test]
fn a_record_over_rlogds_frame_limit_is_lost_alone_not_retried_forever() {
    let dir = TempDir::new("rl-maxframe");
    let data = dir.join("data");
    let mut d = Proc::serve(
        &data,
        &["--listen", "rlogd://127.0.0.1:0", "--max-frame", "100000"],
        dir.join("log"),
    );
    let addr = d.bound("rlogd");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let big = vec![b'y'; 150_000];
    for (i, text) in [
        format!("logger = rlogd://{addr}"),
        format!("host = {host}\nport = {port}\nsock_type = rlogd"),
    ]
    .iter()
    .enumerate()
    {
        let lg = Logger::start(Config::parse(&format!("{text}\ndrop_limit = 1000000")).unwrap())
            .unwrap();
        let before = format!("before {i}");
        let after = format!("after {i}");
        lg.log(before.as_bytes());
        lg.log(&big);
        lg.log(after.as_bytes());
        assert!(lg.flush() > 0, "{text}");
        let err = lg.take_error().expect("an error names the record");
        assert!(
            err.as_str()
                .contains("a message of 150000 bytes exceeds rlogd's frame limit")
                && err.as_str().ends_with("not sent"),
            "{text}: {}",
            err.as_str()
        );
        // The logger goes on: a later message is delivered too.
        let later = format!("later {i}");
        lg.log(later.as_bytes());
        assert!(lg.flush() > 0, "{text}");
        let s = lg.stats();
        assert_eq!(
            (s.logged, s.sent, s.lost, s.buffered),
            (4, 3, 1, 0),
            "{text}: {s:?}"
        );
        assert_identity(&s);
        assert!(!lg.close(Duration::from_secs(2)), "one record was lost");
        let stored: Vec<Vec<u8>> = payloads(&data);
        for m in [&before, &after, &later] {
            assert_eq!(
                stored
                    .iter()
                    .filter(|p| p.as_slice() == m.as_bytes())
                    .count(),
                1,
                "{text}: {m}"
            );
        }
        assert!(stored.iter().all(|p| p.len() < 150_000));
    }
    d.term();
}
