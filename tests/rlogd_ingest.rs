//! rlogd ingest on every listener type: records round-trip with time, type and bytes intact;
//! `cat` and `verify` read them back.

mod rlogd_util;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rlog::{Config, Logger};
use rlogd_util::*;

#[test]
fn librlog_over_rlogd_roundtrip_with_time_type_and_bytes() {
    let dir = TempDir::new("rt");
    let data = dir.join("data");
    let d = Proc::serve(&data, &["--listen", "rlogd://127.0.0.1:0"], dir.join("log"));
    let addr = d.bound("rlogd");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let cfg = Config::parse(&format!(
        "host = {host}\nport = {port}\nsock_type = rlogd\ntype = 7\nflush_limit = 65536"
    ))
    .unwrap();
    let lg = Logger::start(cfg).unwrap();
    let t0 = rlog::proto::format::now_micros();
    let mut sent = Vec::new();
    for i in 0..3000u32 {
        // Binary bytes, newlines and NULs included: carried as they are.
        let msg = format!("message {i}\n\0\u{e9}").into_bytes();
        lg.log(&msg);
        sent.push(msg);
    }
    lg.log(&[0xff, 0xfe, b'\n']);
    sent.push(vec![0xff, 0xfe, b'\n']);
    assert!(lg.flush() > 0);
    let t1 = rlog::proto::format::now_micros();
    let st = lg.stats();
    assert_eq!(st.sent, sent.len() as u64, "{st:?}");
    assert_identity(&st);
    assert!(lg.close(Duration::from_secs(5)));
    let recs = records(&data);
    assert_eq!(recs.len(), sent.len());
    for ((_, r), want) in recs.iter().zip(&sent) {
        assert_eq!(&r.payload, want);
        assert_eq!(r.meta.rtype, 7);
        assert!(
            r.meta.time_us >= t0 && r.meta.time_us <= t1,
            "time {} not in [{t0}, {t1}]",
            r.meta.time_us
        );
        assert_ne!(r.meta.producer, 0);
    }
    // Sequence numbers are consecutive from 0 for one logger.
    assert!(recs
        .iter()
        .enumerate()
        .all(|(i, (_, r))| r.meta.seq == i as u64));
    let (code, out) = verify(&data);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = run(&[
        "cat",
        "--data",
        data.to_str().unwrap(),
        "--from",
        "2999",
        "--json",
    ]);
    assert_eq!(code, 0);
    assert!(out.starts_with("{\"date\":\""), "{out}");
    assert!(
        out.contains("\"id\":2999,")
            && out.contains("\"type\":7,")
            && out.contains("message 2999\\n\\u0000\u{e9}"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 2);
    let (_, out, _) = run(&["cat", "--data", data.to_str().unwrap(), "--type", "8"]);
    assert!(out.is_empty());
}

#[test]
fn tcp_unix_and_udp_listeners() {
    let dir = TempDir::new("plain");
    let data = dir.join("data");
    let sock = dir.join("s.sock");
    let unix_url = format!("unix://{}", sock.display());
    let d = Proc::serve(
        &data,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--listen",
            "udp://127.0.0.1:0",
            "--listen",
            &unix_url,
        ],
        dir.join("log"),
    );
    let mut t = TcpStream::connect(d.bound("tcp")).unwrap();
    // Newline-delimited, then RFC 6587 octet-counted (with a newline inside), then a last
    // line without a newline (ended by the close).
    t.write_all(b"line one\nline two\n11 octet\ncount").unwrap();
    t.write_all(b"ed\nlast").unwrap();
    drop(t);
    let mut u = UnixStream::connect(&sock).unwrap();
    u.write_all(b"via unix\n").unwrap();
    drop(u);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"datagram one", d.bound("udp")).unwrap();
    udp.send_to(b"datagram\ntwo\n", d.bound("udp")).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || payloads(&data).len() >= 7),
        "{:?}",
        payloads(&data)
    );
    let mut got: Vec<String> = payloads(&data)
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    got.sort();
    let mut want = vec![
        "line one",
        "line two",
        "octet\ncount",
        "ed",
        "last",
        "via unix",
        "datagram one",
        "datagram\ntwo\n",
    ];
    want.sort();
    // "11 octet\ncount" is 11 bytes after the space: "octet\ncount"; then "ed\n" is a line.
    assert_eq!(got, want);
    assert!(records(&data)
        .iter()
        .all(|(_, r)| r.meta.rtype == 0 && r.meta.producer == 0));
    // An oversized line is refused and counted; the daemon keeps serving.
    let mut t = TcpStream::connect(d.bound("tcp")).unwrap();
    let _ = t.write_all(&vec![b'x'; (16 << 20) + 100]);
    drop(t);
    assert!(
        d.wait_log(|l| l.contains("refused_oversize=1")),
        "{}",
        d.log_text()
    );
    let mut t = TcpStream::connect(d.bound("tcp")).unwrap();
    t.write_all(b"still serving\n").unwrap();
    drop(t);
    assert!(wait_until(Duration::from_secs(10), || payloads(&data)
        .iter()
        .any(|p| p == b"still serving")));
}

#[test]
fn sigterm_is_graceful_and_restart_recovers() {
    let dir = TempDir::new("term");
    let data = dir.join("data");
    let mut d = Proc::serve(&data, &["--listen", "tcp://127.0.0.1:0"], dir.join("log"));
    let mut t = TcpStream::connect(d.bound("tcp")).unwrap();
    t.write_all(b"a\nb\n").unwrap();
    drop(t);
    assert!(wait_until(Duration::from_secs(10), || payloads(&data)
        .len()
        == 2));
    assert_eq!(d.term(), Some(0));
    assert!(
        d.log_text().contains("stopped (stored=2"),
        "{}",
        d.log_text()
    );
    let (code, out) = verify(&data);
    assert_eq!(code, 0, "{out}");
    // Damage the tail by hand: verify says so (exit 1); a restart repairs it and reports it.
    let date = rlog::proto::reader::list_dates(&data).unwrap()[0];
    let idx = data.join(date.to_string()).join("index");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&idx)
        .unwrap()
        .write_all(&[9; 40])
        .unwrap();
    let (code, out) = verify(&data);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DAMAGED"), "{out}");
    let _d = Proc::serve(&data, &["--listen", "tcp://127.0.0.1:0"], dir.join("log"));
    assert!(_d.log_text().contains("repaired:"), "{}", _d.log_text());
    let (code, out) = verify(&data);
    assert_eq!(code, 0, "{out}");
    assert_eq!(payloads(&data), vec![b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn a_message_over_the_record_limit_is_lost_and_counted_not_wedged() {
    let dir = TempDir::new("big");
    let data = dir.join("data");
    let d = Proc::serve(&data, &["--listen", "rlogd://127.0.0.1:0"], dir.join("log"));
    let addr = d.bound("rlogd");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let cfg = Config::parse(&format!(
        "host = {host}\nport = {port}\nsock_type = rlogd\ndrop_limit = 67108864"
    ))
    .unwrap();
    let lg = Logger::start(cfg).unwrap();
    lg.log(b"before");
    lg.log(&vec![b'z'; (16 << 20) + 1]);
    lg.log(b"after");
    lg.flush();
    let st = lg.stats();
    assert_eq!((st.sent, st.lost), (2, 1), "{st:?}");
    assert_identity(&st);
    assert!(lg
        .take_error()
        .unwrap()
        .as_str()
        .contains("larger than the largest rlogd record"));
    assert_eq!(payloads(&data), vec![b"before".to_vec(), b"after".to_vec()]);
}

#[test]
fn compressed_batches_are_stored_uncompressed() {
    let dir = TempDir::new("zlib");
    let data = dir.join("data");
    let d = Proc::serve(&data, &["--listen", "rlogd://127.0.0.1:0"], dir.join("log"));
    let addr = d.bound("rlogd");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let cfg = Config::parse(&format!(
        "host = {host}\nport = {port}\nsock_type = rlogd\ncompression = zlib\nflush_limit = 500000\ndrop_limit = 4000000"
    ))
    .unwrap();
    let lg = Logger::start(cfg).unwrap();
    let msgs: Vec<Vec<u8>> = (0..20_000)
        .map(|i| format!("GET /index.html 200 {i} {}", "a".repeat(100)).into_bytes())
        .collect();
    for m in &msgs {
        lg.log(m);
    }
    lg.flush();
    assert!(wait_until(Duration::from_secs(20), || {
        lg.flush();
        lg.stats().sent == msgs.len() as u64
    }));
    assert_eq!(payloads(&data), msgs);
}
