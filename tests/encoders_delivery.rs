//! uWSGI-style loggers over real loopback sockets: routes to several loggers with per-logger
//! encoders, framing on TCP, unix datagrams, encoder errors, a dead logger beside a live one —
//! each checking what arrived and the accounting identity `logged == sent + lost + spooled +
//! buffered`.

mod common;

use std::io::Read;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::*;
use rlog::{rlog_stats, Config, Logged, Logger};

fn logger(text: &str) -> Logger {
    Logger::start(Config::parse(text).unwrap()).unwrap()
}

fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn recv_n(s: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 70000];
    (0..n)
        .map(|_| {
            let k = s.recv(&mut buf).expect("datagram");
            buf[..k].to_vec()
        })
        .collect()
}

fn nothing_more(s: &UdpSocket) {
    s.set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    let mut buf = [0u8; 100];
    assert!(s.recv(&mut buf).is_err(), "unexpected extra datagram");
}

fn identity(s: &rlog_stats) {
    assert_eq!(s.logged, s.sent + s.lost + s.spooled + s.buffered, "{s:?}");
    assert_eq!(
        s.logged_bytes,
        s.sent_bytes + s.lost_bytes + s.spooled_bytes + s.buffered_bytes,
        "{s:?}"
    );
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn routes_fan_out_with_per_logger_encoders_and_settle_each_message_once() {
    let (def, err, audit) = (udp(), udp(), udp());
    let lg = logger(&format!(
        "logger = socket:127.0.0.1:{}\n\
         logger = errors socket:127.0.0.1:{},E|\n\
         logger = audit udp://127.0.0.1:{}\n\
         log-encoder = \"prefix [all] \"\n\
         log-encoder = gzip:errors\n\
         log-encoder = json:audit {{\"m\":\"${{msg}}\",\"t\":${{millis}}}}\n\
         log-route = errors ERROR\n\
         log-route = audit ^AUDIT|ERROR$",
        def.local_addr().unwrap().port(),
        err.local_addr().unwrap().port(),
        audit.local_addr().unwrap().port()
    ));
    assert!(lg.config().needs_time);
    let before = rlog::encode::clock::now_micros() / 1000;
    for m in ["plain\n", "an ERROR", "AUDIT me", "x ERROR\n"] {
        assert_eq!(lg.log(m.as_bytes()), Logged::Buffered(m.len()));
    }
    assert!(lg.flush() > 0);
    let after = rlog::encode::clock::now_micros() / 1000;
    assert_eq!(recv_n(&def, 1), vec![b"[all] plain\n".to_vec()]);
    let e = recv_n(&err, 2);
    for (got, want) in e.iter().zip(["[all] an ERROR", "[all] x ERROR\n"]) {
        assert_eq!(&got[..2], b"E|", "socket TEXT goes raw before the record");
        assert_eq!(gunzip(&got[2..]), want.as_bytes());
    }
    let a = recv_n(&audit, 3);
    for (got, want) in a
        .iter()
        .zip(["[all] an ERROR", "[all] AUDIT me", "[all] x ERROR"])
    {
        let text = String::from_utf8(got.clone()).unwrap();
        let (m, t) = text.split_once("\",\"t\":").unwrap();
        assert_eq!(m, format!("{{\"m\":\"{want}"));
        let t: i64 = t.trim_end_matches('}').parse().unwrap();
        assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
    }
    nothing_more(&def);
    nothing_more(&err);
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.lost, s.buffered), (4, 4, 0, 0));
    identity(&s);
    assert!(lg.close(Duration::from_secs(2)));
}

#[test]
fn unmatched_messages_without_a_default_logger_are_counted_lost() {
    let only = udp();
    let lg = logger(&format!(
        "logger = errors socket:127.0.0.1:{}\nlog-route = errors ERROR",
        only.local_addr().unwrap().port()
    ));
    lg.log(b"fine");
    lg.log(b"ERROR one");
    lg.flush();
    assert_eq!(recv_n(&only, 1), vec![b"ERROR one".to_vec()]);
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.lost, s.lost_bytes), (2, 1, 1, 4));
    identity(&s);
    let e = lg.take_error().unwrap();
    assert!(
        e.as_str().contains("matched no log-route"),
        "{}",
        e.as_str()
    );
    lg.close(Duration::from_secs(1));
}

#[test]
fn an_encoder_error_is_reported_and_counted_not_sent_empty() {
    let rx = udp();
    let lg = logger(&format!(
        "logger = socket:127.0.0.1:{}\nlog-encoder = gzip",
        rx.local_addr().unwrap().port()
    ));
    lg.log(b"");
    lg.log(b"x");
    lg.flush();
    let got = recv_n(&rx, 1);
    assert_eq!(gunzip(&got[0]), b"x");
    nothing_more(&rx);
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.lost), (2, 1, 1));
    identity(&s);
    assert!(lg
        .take_error()
        .unwrap()
        .as_str()
        .contains("gzip: empty record"));
    lg.close(Duration::from_secs(1));
}

#[test]
fn a_template_that_yields_nothing_is_an_error_not_an_empty_delivery() {
    // `${msg}` is the message without its trailing newline: for "\n" that is nothing, which
    // on a TCP logger without framing would go out as no bytes at all and count as sent.
    let c = Collector::tcp();
    let lg = logger(&format!(
        "logger = tcp://127.0.0.1:{}\nlog-encoder = format ${{msg}}\nlog-encoder = suffix ;\n\
         framing = none",
        c.port()
    ));
    let lg2 = logger(&format!(
        "logger = tcp://127.0.0.1:{}\nlog-encoder = format ${{msg}}\nframing = none",
        c.port()
    ));
    lg.log(b"a\n");
    lg2.log(b"\n");
    lg2.log(b"b\n");
    assert!(lg.flush() > 0 && lg2.flush() > 0);
    let (s, s2) = (lg.stats(), lg2.stats());
    assert_eq!((s.logged, s.sent, s.lost), (1, 1, 0));
    assert_eq!((s2.logged, s2.sent, s2.lost), (2, 1, 1));
    identity(&s);
    identity(&s2);
    assert!(lg2
        .take_error()
        .unwrap()
        .as_str()
        .contains("log-encoder failed: the encoders turned the message into an empty record"));
    assert!(lg.close(Duration::from_secs(2)));
    assert!(!lg2.close(Duration::from_secs(2)), "lg2 lost a message");
    assert!(c.wait_bytes(3));
    let mut got = c.stop();
    got.sort_unstable();
    assert_eq!(got, b";ab");
}

#[test]
fn json_or_format_without_a_template_is_a_config_error() {
    for (line, example) in [
        ("json", "e.g. json {\"msg\":\"${msg}\"}"),
        ("format:errors", "e.g. format [${strftime:%H:%M:%S}] ${msg}"),
    ] {
        let e = Config::parse(&format!("logger = tcp://127.0.0.1:9\nlog-encoder = {line}"))
            .unwrap_err();
        assert!(e.contains(&format!("log-encoder \"{line}\"")), "{e}");
        assert!(e.contains("needs a template") && e.contains(example), "{e}");
    }
}

#[test]
fn octet_framing_lets_a_tcp_receiver_split_gzip_records() {
    let c = Collector::tcp();
    let lg = logger(&format!(
        "logger = tcp://127.0.0.1:{}\nlog-encoder = gzip\nframing = octet",
        c.port()
    ));
    let msgs: Vec<String> = (0..50)
        .map(|i| format!("record {i} {}", "z".repeat(i)))
        .collect();
    for m in &msgs {
        lg.log(m.as_bytes());
    }
    let n = lg.flush();
    assert!(n > 0);
    assert!(lg.close(Duration::from_secs(2)));
    assert!(c.wait_bytes(n as usize));
    let data = c.stop();
    let mut rest = &data[..];
    let mut got = Vec::new();
    while !rest.is_empty() {
        let sp = rest.iter().position(|&b| b == b' ').unwrap();
        let n: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
        got.push(String::from_utf8(gunzip(&rest[sp + 1..sp + 1 + n])).unwrap());
        rest = &rest[sp + 1 + n..];
    }
    assert_eq!(got, msgs);
}

#[test]
fn newline_framing_and_unix_datagrams() {
    let c = Collector::tcp();
    let dir = std::env::temp_dir().join(format!("rlog-enc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dgram.sock");
    let _ = std::fs::remove_file(&path);
    let ux = UnixDatagram::bind(&path).unwrap();
    ux.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let lg = logger(&format!(
        "logger = t tcp://127.0.0.1:{}\nlogger = socket:{},U:\nlog-route = t ^a\nt.framing = newline\n\
         log-encoder = format:t <${{msg}}>",
        c.port(),
        path.display()
    ));
    lg.log(b"a\n");
    lg.log(b"a2");
    lg.log(b"b");
    assert!(lg.flush() > 0);
    assert!(lg.close(Duration::from_secs(2)));
    assert!(c.wait_bytes(9));
    assert_eq!(c.stop(), b"<a>\n<a2>\n");
    let mut buf = [0u8; 100];
    let n = ux.recv(&mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        b"U:b",
        "the unix datagram logger gets unrouted messages, TEXT first"
    );
    drop(ux);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_dead_logger_does_not_hold_up_a_live_one_and_its_loss_is_counted() {
    let live = udp();
    let (dead_port, _held) = refusing_port();
    let lg = logger(&format!(
        "logger = socket:127.0.0.1:{}\nlogger = down tcp://127.0.0.1:{dead_port}\n\
         log-route = down DOWN\nlog-route = down .\n\
         down.max_retry_times = 0\ndown.retry_interval = 10",
        live.local_addr().unwrap().port()
    ));
    lg.log(b"DOWN only"); // matches both routes: two copies to the dead logger
    lg.log(b"x");
    let r = lg.flush();
    assert_eq!(r, -1, "the dead logger keeps its records");
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.buffered), (2, 0, 2));
    identity(&s);
    assert!(lg
        .take_error()
        .unwrap()
        .as_str()
        .contains("logger \"down\""));
    // unmatched? no: "." matches everything, so nothing reaches the default logger
    nothing_more(&live);
    assert!(!lg.close(Duration::from_millis(300)));
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.lost, s.buffered), (2, 0, 2, 0));
    identity(&s);
}

#[test]
fn a_per_logger_drop_limit_bounds_what_a_dead_logger_holds() {
    let live = udp();
    let (dead_port, _held) = refusing_port();
    let lg = logger(&format!(
        "logger = socket:127.0.0.1:{}\nlogger = down tcp://127.0.0.1:{dead_port}\nlog-route = down ^D\n\
         down.max_retry_times = 0\ndown.drop_limit = 25",
        live.local_addr().unwrap().port()
    ));
    // Its first round fails: from then on it holds at most drop_limit.
    lg.log(b"D 0123456789"); // 12 bytes
    assert!(lg.flush() < 0);
    for _ in 0..5 {
        lg.log(b"D 0123456789"); // one more fits under 25
    }
    lg.log(b"to the live one");
    lg.flush();
    assert_eq!(recv_n(&live, 1), vec![b"to the live one".to_vec()]);
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.lost, s.buffered), (7, 1, 4, 2));
    identity(&s);
    let (_, down) = lg.sink_stats(1).unwrap();
    assert_eq!((down.dropped, down.pending), (4, 2));
    lg.close(Duration::from_millis(200));
    let s = lg.stats();
    assert_eq!((s.sent, s.lost, s.buffered), (1, 6, 0));
    identity(&s);
}

#[test]
fn a_logger_that_keeps_up_takes_a_burst_its_encoders_grow_past_drop_limit() {
    // 2000 messages of 10 bytes are 20 kB for the handle (under its drop_limit), and 420 kB
    // once prefixed: a logger whose collector reads everything must deliver them all.
    let c = Collector::tcp();
    let lg = logger(&format!(
        "logger = tcp://127.0.0.1:{}\ndrop_limit = 100000\nflush_limit = 90000\n\
         log-encoder = \"prefix {} \"\nlog-encoder = nl",
        c.port(),
        "p".repeat(200)
    ));
    for i in 0..2000 {
        assert!(matches!(
            lg.log(format!("msg {i:06}").as_bytes()),
            Logged::Buffered(_)
        ));
    }
    assert!(lg.flush() > 0);
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.lost, s.dropped), (2000, 2000, 0, 0));
    identity(&s);
    assert!(lg.close(Duration::from_secs(2)));
    assert!(c.wait(|d| d.iter().filter(|&&b| b == b'\n').count() >= 2000));
    let lines = c.stop_lines();
    assert_eq!(lines.len(), 2000);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l, &format!("{} msg {i:06}", "p".repeat(200)));
    }
}

#[test]
fn time_is_captured_only_when_an_encoder_needs_it() {
    let base = "logger = socket:127.0.0.1:9\n";
    for (enc, needs) in [
        ("prefix ${unix}", false),
        ("format ${msg}", false),
        ("json {\"t\":${micros}}", true),
        ("format ${strftime:%H}", true),
        ("msgpack map:1|str:t|unix", true),
        ("msgpack msg", false),
    ] {
        let c = Config::parse(&format!("{base}log-encoder = {enc}")).unwrap();
        assert_eq!(c.needs_time, needs, "{enc}");
    }
}

#[test]
fn flush_limit_and_periodic_flush_wake_the_sink_worker() {
    let rx = udp();
    let lg = logger(&format!(
        "logger = socket:127.0.0.1:{}\nlog-encoder = nl\nflush_limit = 20\nperiodic_flush = 0.1",
        rx.local_addr().unwrap().port()
    ));
    lg.log(b"0123456789");
    lg.log(b"0123456789"); // crosses flush_limit: delivered without a flush call
    assert_eq!(
        recv_n(&rx, 2),
        vec![b"0123456789\n".to_vec(), b"0123456789\n".to_vec()]
    );
    lg.log(b"late"); // below flush_limit: the periodic flush delivers it
    assert_eq!(recv_n(&rx, 1), vec![b"late\n".to_vec()]);
    lg.flush(); // waits for the round that sent it to be counted
    let s = lg.stats();
    assert_eq!((s.logged, s.sent), (3, 3));
    identity(&s);
    let (label, ss) = lg.sink_stats(0).unwrap();
    assert!(label.starts_with("logger udp://127.0.0.1:"), "{label}");
    assert_eq!((ss.sent, ss.sent_bytes, ss.pending), (3, 27, 0));
    assert!(lg.sink_stats(1).is_none());
    lg.close(Duration::from_secs(1));
}

#[test]
fn the_default_logger_keys_and_logger_lines_together() {
    let c = Collector::tcp();
    let rx = udp();
    let lg = logger(&format!(
        "host = 127.0.0.1\nport = {}\nlogger = socket:127.0.0.1:{}\nlog-encoder = \"prefix > \"\nframing = newline",
        c.port(),
        rx.local_addr().unwrap().port()
    ));
    assert_eq!(lg.sink_count(), 2);
    lg.log(b"both");
    assert!(lg.flush() > 0);
    assert_eq!(
        recv_n(&rx, 1),
        vec![b"> both".to_vec()],
        "datagrams are not framed"
    );
    assert!(c.wait_bytes(7));
    assert_eq!(c.stop(), b"> both\n");
    let s = lg.stats();
    assert_eq!((s.logged, s.sent), (1, 1));
    identity(&s);
    lg.close(Duration::from_secs(1));
}

#[test]
fn what_a_dead_logger_holds_does_not_count_against_the_handles_drop_limit() {
    let live = udp();
    let (dead_port, _held) = refusing_port();
    let lg = logger(&format!(
        "logger = socket:127.0.0.1:{}\nlogger = down tcp://127.0.0.1:{dead_port}\n\
         log-route = down .\nlog-route = up .\nlogger = up socket:127.0.0.1:{}\n\
         flush_limit = 500\ndrop_limit = 1000\ndown.max_retry_times = 0\ndown.drop_limit = 100000",
        live.local_addr().unwrap().port(),
        live.local_addr().unwrap().port()
    ));
    for i in 0..200 {
        assert_eq!(
            lg.log(format!("message {i:010}").as_bytes()),
            Logged::Buffered(18)
        );
        if i % 10 == 9 {
            lg.flush();
        }
    }
    assert_eq!(recv_n(&live, 200).len(), 200);
    let s = lg.stats();
    assert_eq!((s.logged, s.dropped, s.sent, s.buffered), (200, 0, 0, 200));
    identity(&s);
    let (_, down) = lg.sink_stats(1).unwrap();
    assert_eq!(down.pending, 200);
    assert!(!lg.close(Duration::from_millis(200)));
    let s = lg.stats();
    assert_eq!((s.sent, s.lost, s.buffered), (0, 200, 0));
    identity(&s);
}

#[test]
fn the_coarse_clock_is_used_only_when_seconds_are_enough() {
    let base = "logger = socket:127.0.0.1:9\n";
    for (enc, coarse) in [
        ("json {\"t\":${unix},\"d\":\"${strftime:%H}\"}", true),
        ("format ${millis}", false),
        ("msgpack map:1|str:t|micros", false),
        ("msgpack map:1|str:t|unix", true),
    ] {
        let c = Config::parse(&format!("{base}log-encoder = {enc}")).unwrap();
        assert!(c.needs_time);
        assert_eq!(c.coarse_time, coarse, "{enc}");
    }
}

#[test]
fn a_record_too_large_for_a_unix_datagram_is_lost_and_the_rest_delivered() {
    let dir = temp_dir("enc-emsgsize");
    let path = dir.join("d.sock");
    let ux = UnixDatagram::bind(&path).unwrap();
    ux.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let lg = logger(&format!(
        "logger = socket:{}\ndrop_limit = 4000000\nflush_limit = 3000000",
        path.display()
    ));
    let big = vec![b'x'; 2_000_000]; // above any socket send buffer: EMSGSIZE
    lg.log(b"before");
    lg.log(&big);
    lg.log(b"after");
    lg.flush();
    let mut buf = vec![0u8; 1000];
    let mut got = Vec::new();
    for _ in 0..2 {
        let n = ux.recv(&mut buf).unwrap();
        got.push(buf[..n].to_vec());
    }
    assert_eq!(got, vec![b"before".to_vec(), b"after".to_vec()]);
    let s = lg.stats();
    assert_eq!(
        (s.logged, s.sent, s.lost, s.lost_bytes),
        (3, 2, 1, 2_000_000)
    );
    identity(&s);
    let (_, ss) = lg.sink_stats(0).unwrap();
    assert_eq!((ss.sent, ss.lost), (2, 1));
    assert!(lg
        .take_error()
        .unwrap()
        .as_str()
        .contains("too large for one datagram"));
    lg.close(Duration::from_secs(1));
}

/// A uWSGI-style `socket:` logger whose UDP port has no receiver: the refusal of a datagram
/// already counted sent is reported, named by the logger, rather than kept quiet.
#[test]
fn a_socket_logger_reports_a_refused_datagram() {
    let port = udp().local_addr().unwrap().port();
    let lg = logger(&format!(
        "logger = socket:127.0.0.1:{port}\nretry_interval = 1\nflush_limit = 100000"
    ));
    lg.log(b"first\n");
    assert_eq!(lg.flush(), 6);
    assert!(lg.take_error().is_none());
    std::thread::sleep(Duration::from_millis(50));
    lg.log(b"second\n");
    lg.flush();
    let err = lg.take_error().expect("the refusal is reported");
    assert!(
        err.as_str()
            .contains("1 UDP datagram counted sent was refused by 127.0.0.1:"),
        "{}",
        err.as_str()
    );
    let s = wait_drained(&lg);
    assert_eq!(s.sent, 2, "{s:?}");
    identity(&s);
}

/// A json encoder on a TCP logger with no framing given: one record per line (uWSGI sends
/// them back to back, and a collector reads one long line of merged objects).
#[test]
fn a_text_encoder_on_a_stream_defaults_to_one_record_per_line() {
    let c = Collector::tcp();
    let lg = logger(&format!(
        "logger = tcp://127.0.0.1:{}\nlog-encoder = json {{\"msg\":\"${{msg}}\"}}",
        c.port()
    ));
    for i in 0..3 {
        assert_eq!(lg.log(format!("m{i}\n").as_bytes()), Logged::Buffered(3));
    }
    assert!(lg.close(Duration::from_secs(2)));
    assert!(c.wait_bytes(3 * 12));
    assert_eq!(
        c.stop(),
        b"{\"msg\":\"m0\"}\n{\"msg\":\"m1\"}\n{\"msg\":\"m2\"}\n"
    );
}
