//! Hostile input: oversized frame headers, garbage, a follower asking for an invalid date or
//! a date that is not there, a wrong token, TLS clients that do not trust the server, and a
//! compression bomb. Each is refused and counted, and the daemon keeps serving others. Also:
//! token and TLS work end to end, for ingest and for replication.

mod pki;
mod rlogd_util;

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use rlog::proto::frame::{self, Hello, Position, Role};
use rlog::{Config, Logger};
use rlogd_util::*;

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn hello(s: &mut TcpStream, token: &[u8], role: Role) -> u8 {
    let h = Hello {
        version: frame::PROTOCOL,
        token: token.to_vec(),
        role,
    };
    frame::write_frame(s, frame::HELLO, &h.encode()).unwrap();
    let mut buf = Vec::new();
    frame::read_frame(s, 1 << 20, &mut buf).unwrap()
}

/// What the server sends after a bad frame: an ERROR frame, then it closes the connection.
fn expect_error_and_close(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let kind = frame::read_frame(s, 1 << 20, &mut buf).expect("an ERROR frame");
    assert_eq!(kind, frame::ERROR);
    let rest = read_all(s);
    assert!(rest.is_empty(), "the connection stays open");
    String::from_utf8_lossy(&buf).into_owned()
}

/// The daemon still stores what a well-behaved librlog sends.
fn still_serving(addr: &str, extra: &str, data: &std::path::Path, msg: &str) {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let lg = Logger::start(
        Config::parse(&format!(
            "host = {host}\nport = {port}\nsock_type = rlogd\n{extra}"
        ))
        .unwrap(),
    )
    .unwrap();
    lg.log(msg.as_bytes());
    assert!(lg.flush() > 0, "{:?}", lg.take_error());
    assert_eq!(lg.stats().sent, 1);
    assert!(payloads(data).iter().any(|p| p == msg.as_bytes()));
}

#[test]
fn bad_frames_bombs_and_bad_followers_are_refused_and_counted() {
    let dir = TempDir::new("hostile");
    let data = dir.join("data");
    let d = Proc::serve(
        &data,
        &["--listen", "rlogd://127.0.0.1:0", "--max-frame", "1048576"],
        dir.join("log"),
    );
    let addr = d.bound("rlogd");

    // An oversized frame header after HELLO: refused before anything is allocated.
    let mut s = connect(&addr);
    assert_eq!(hello(&mut s, b"", Role::Producer), frame::WELCOME);
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    assert!(expect_error_and_close(&mut s).contains("exceeds the limit"));
    // An oversized first frame.
    let mut s = connect(&addr);
    s.write_all(&[0xff, 0xff, 0xff, 0x7f, 1]).unwrap();
    assert!(expect_error_and_close(&mut s).contains("too large"));
    // Garbage: an unknown frame kind, then a truncated batch.
    let mut s = connect(&addr);
    s.write_all(&[3, 0, 0, 0, 99, 1, 2]).unwrap();
    assert!(expect_error_and_close(&mut s).contains("expected HELLO"));
    let mut s = connect(&addr);
    assert_eq!(hello(&mut s, b"", Role::Producer), frame::WELCOME);
    frame::write_frame(&mut s, frame::BATCH, &[1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
    assert!(expect_error_and_close(&mut s).contains("truncated"));
    // A batch whose record lengths lie.
    let mut s = connect(&addr);
    assert_eq!(hello(&mut s, b"", Role::Producer), frame::WELCOME);
    let mut body = Vec::new();
    frame::batch_head(&mut body, 5, 0, 1, frame::CODEC_NONE, 14);
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f]);
    frame::write_frame(&mut s, frame::BATCH, &body).unwrap();
    expect_error_and_close(&mut s);
    // A compression bomb: 64 MiB of zeros, announced as 100 bytes.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&vec![0u8; 64 << 20]).unwrap();
    let z = z.finish().unwrap();
    let mut s = connect(&addr);
    assert_eq!(hello(&mut s, b"", Role::Producer), frame::WELCOME);
    let mut body = Vec::new();
    frame::batch_head(&mut body, 5, 0, 1, frame::CODEC_ZLIB, 100);
    body.extend_from_slice(&z);
    frame::write_frame(&mut s, frame::BATCH, &body).unwrap();
    assert!(expect_error_and_close(&mut s).contains("decompresses to more than"));
    // A follower asking for a date that is no date (the protocol carries dates as YYYYMMDD
    // numbers, so "../../etc" cannot even be said; an invalid number is refused).
    let mut s = connect(&addr);
    let mut h = Hello {
        version: frame::PROTOCOL,
        token: Vec::new(),
        role: Role::Follower(Position::Sealed {
            date: rlog::proto::format::Date::parse("20260101").unwrap(),
        }),
    }
    .encode();
    let n = h.len();
    h[n - 12..n - 8].copy_from_slice(&0x2e2e2f2eu32.to_le_bytes());
    frame::write_frame(&mut s, frame::HELLO, &h).unwrap();
    assert!(expect_error_and_close(&mut s).contains("invalid date"));
    // A follower asking for a valid date this master does not have.
    let mut s = connect(&addr);
    let pos = Position::Open {
        date: rlog::proto::format::Date::parse("20200101").unwrap(),
        count: 5,
    };
    assert_eq!(hello(&mut s, b"", Role::Follower(pos)), frame::WELCOME);
    assert!(expect_error_and_close(&mut s).contains("cannot read"));
    // An HTTP client on the tcp:// side is just lines; nothing to refuse there.
    assert!(
        d.wait_log(|l| l.contains("refused_oversize=2")
            && l.contains("refused_garbage=3")
            && l.contains("refused_protocol=0")
            && l.contains("refused_bomb=1")
            && l.contains("refused_path=2")),
        "{}",
        d.log_text()
    );
    still_serving(&addr, "", &data, "after the attacks");
}

/// The start of a TLS 1.2/1.3 ClientHello record, as any TLS client sends first.
const CLIENT_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03, 1, 2, 3, 4, 5, 6, 7, 8,
];

#[test]
fn other_protocols_on_the_wrong_port_are_told_and_refused() {
    let dir = TempDir::new("wrongport");
    let data = dir.join("data");
    let d = Proc::serve(
        &data,
        &[
            "--listen",
            "rlogd://127.0.0.1:0",
            "--listen",
            "tcp://127.0.0.1:0",
        ],
        dir.join("log"),
    );
    let (raddr, taddr) = (d.bound("rlogd"), d.bound("tcp"));

    // A TCP logger's lines on the rlogd:// port: it is answered in text it can show, and
    // the refusal is logged and counted.
    let mut s = connect(&raddr);
    s.write_all(b"<13>Dec  7 06:00:00 web1 app: hello\n")
        .unwrap();
    let answer = String::from_utf8_lossy(&read_all(&mut s)).into_owned();
    assert!(
        answer.starts_with("rlogd: ") && answer.contains("tcp://"),
        "{answer:?}"
    );
    // An HTTP client too.
    let mut s = connect(&raddr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(String::from_utf8_lossy(&read_all(&mut s)).contains("tcp://"));
    // A TLS client on the plain rlogd:// port gets a TLS alert, not silence.
    let mut s = connect(&raddr);
    s.write_all(CLIENT_HELLO).unwrap();
    assert_eq!(read_all(&mut s).first(), Some(&0x15));
    assert!(
        d.wait_log(|l| l.contains("refused_protocol=3")),
        "{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(
        log.contains("not rlogd's protocol: text (\"<13>Dec"),
        "{log}"
    );
    assert!(
        log.contains("a TLS ClientHello on an rlogd:// listener"),
        "{log}"
    );

    // The tcp:// port refuses a TLS ClientHello and an rlogd HELLO instead of storing them
    // as records.
    let mut s = connect(&taddr);
    s.write_all(CLIENT_HELLO).unwrap();
    assert_eq!(read_all(&mut s).first(), Some(&0x15));
    let mut s = connect(&taddr);
    let h = Hello {
        version: frame::PROTOCOL,
        token: Vec::new(),
        role: Role::Producer,
    };
    frame::write_frame(&mut s, frame::HELLO, &h.encode()).unwrap();
    assert!(expect_error_and_close(&mut s).contains("rlogd:// listener"));
    assert!(
        d.wait_log(|l| l.contains("refused_protocol=5")),
        "{}",
        d.log_text()
    );
    // Plain lines still are records.
    let mut s = connect(&taddr);
    s.write_all(b"a plain line\n").unwrap();
    drop(s);
    assert!(wait_until(Duration::from_secs(10), || payloads(&data)
        == vec![b"a plain line".to_vec()]));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(payloads(&data), vec![b"a plain line".to_vec()]);
}

#[test]
fn token_and_tls_for_ingest_and_replication() {
    let dir = TempDir::new("tls");
    let p = pki::issue(&["localhost"]).write_to(&dir.0);
    let token = dir.join("token");
    fs::write(&token, "s3cret\n").unwrap();
    let (mdata, fdata) = (dir.join("master"), dir.join("follower"));
    let d = Proc::serve(
        &mdata,
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
    let base = format!("host = {host}\nport = {port}\nsock_type = rlogd\nmax_retry_times = 0\nsni_host = localhost\nssl = true");
    let ca = format!("ssl_ca = {}", p.ca.display());

    // A TLS client without our CA (it trusts another one) does not trust the server: the
    // handshake fails, counted.
    let other_dir = TempDir::new("other-ca");
    let other = pki::issue(&["localhost"]).write_to(&other_dir.0);
    let lg = Logger::start(
        Config::parse(&format!(
            "{base}\ntoken = s3cret\nssl_ca = {}",
            other.ca.display()
        ))
        .unwrap(),
    )
    .unwrap();
    lg.log(b"never");
    assert_eq!(lg.flush(), -1);
    assert_eq!(lg.stats().sent, 0);
    assert!(
        d.wait_log(|l| l.contains("refused_tls=1")),
        "{}",
        d.log_text()
    );
    // A plaintext client on the TLS listener.
    let mut s = connect(&addr);
    let _ = frame::write_frame(
        &mut s,
        frame::HELLO,
        &Hello {
            version: 1,
            token: Vec::new(),
            role: Role::Producer,
        }
        .encode(),
    );
    let _ = read_all(&mut s);
    assert!(
        d.wait_log(|l| l.contains("refused_tls=2")),
        "{}",
        d.log_text()
    );
    // A line-based logger on the TLS listener is told, in text, what the port speaks.
    let mut s = connect(&addr);
    s.write_all(b"a plain line\n").unwrap();
    let answer = String::from_utf8_lossy(&read_all(&mut s)).into_owned();
    assert!(
        answer.contains("TLS") && answer.contains("tcp://"),
        "{answer}"
    );
    assert!(
        d.wait_log(|l| l.contains("refused_protocol=1")),
        "{}",
        d.log_text()
    );
    // Trusted, wrong token: refused with a clear error.
    let lg =
        Logger::start(Config::parse(&format!("{base}\n{ca}\ntoken = wrong")).unwrap()).unwrap();
    lg.log(b"never");
    assert_eq!(lg.flush(), -1);
    let err = lg.take_error().unwrap();
    assert!(err.as_str().contains("wrong token"), "{}", err.as_str());
    assert!(
        d.wait_log(|l| l.contains("refused_auth=1")),
        "{}",
        d.log_text()
    );
    // Trusted, right token: delivered.
    still_serving(
        &addr,
        &format!(
            "max_retry_times = 0\nsni_host = localhost\nssl = true\n{ca}\ntoken_file = {}",
            token.display()
        ),
        &mdata,
        "over tls",
    );
    // A follower over TLS with the token copies it; without the token it is refused.
    let bad = Proc::start(
        &[
            "follow",
            "--master",
            &format!("rlogd://{addr}"),
            "--data",
            fdata.to_str().unwrap(),
            "--tls-ca",
            p.ca.to_str().unwrap(),
            "--sni-host",
            "localhost",
        ],
        dir.join("f0log"),
    );
    assert!(wait_until(Duration::from_secs(10), || fs::read_to_string(
        dir.join("f0log")
    )
    .unwrap_or_default()
    .contains("wrong token")));
    drop(bad);
    let _f = Proc::start(
        &[
            "follow",
            "--master",
            &format!("rlogd://{addr}"),
            "--data",
            fdata.to_str().unwrap(),
            "--tls-ca",
            p.ca.to_str().unwrap(),
            "--sni-host",
            "localhost",
            "--token-file",
            token.to_str().unwrap(),
        ],
        dir.join("flog"),
    );
    assert!(
        wait_until(Duration::from_secs(10), || payloads(&fdata)
            == vec![b"over tls".to_vec()]),
        "{}",
        fs::read_to_string(dir.join("flog")).unwrap()
    );
}

#[test]
fn follower_validates_everything_the_master_sends() {
    use rlog::proto::format::{self, Entry, Meta};
    let dir = TempDir::new("badmaster");
    let fdata = dir.join("follower");
    // A fake master on 127.0.0.1: each connection gets one hostile frame after the handshake.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let date = 20260101u32;
    let mut record = Vec::new();
    format::encode_record(
        &mut record,
        &Meta {
            time_us: 1,
            rtype: 0,
            producer: 0,
            seq: 0,
        },
        b"hello",
    );
    let entry = Entry {
        file: 0,
        offset: 16,
        len: 5,
        rtype: 0,
        flags: 0,
        producer: 0,
        seq: 0,
    }
    .encode();
    let records_frame = |date: u32, count: u32, corrupt: bool| {
        let mut b = date.to_le_bytes().to_vec();
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(&entry);
        let mut r = record.clone();
        if corrupt {
            r[format::RECORD_HEADER] ^= 1;
        }
        b.extend_from_slice(&r);
        (frame::RECORDS, b)
    };
    let mut finish = date.to_le_bytes().to_vec();
    finish.extend_from_slice(&7u64.to_le_bytes());
    let attacks: Vec<(u8, Vec<u8>)> = vec![
        records_frame(0x2e2e_2f2e, 1, false),  // "../." as a date
        records_frame(date, 1, true),          // CRC mismatch
        records_frame(date, 1_000_000, false), // count larger than the frame
        (frame::FINISH, finish),               // finish of a date it does not have
        (0, Vec::new()),                       // an oversized frame header
    ];
    let n = attacks.len();
    let server = std::thread::spawn(move || {
        for (kind, body) in attacks {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = Vec::new();
            assert_eq!(
                frame::read_frame(&mut s, 1 << 20, &mut buf).unwrap(),
                frame::HELLO
            );
            frame::write_frame(&mut s, frame::WELCOME, &frame::encode_welcome(1 << 20)).unwrap();
            if kind == 0 {
                s.write_all(&u32::MAX.to_le_bytes()).unwrap();
            } else {
                frame::write_frame(&mut s, kind, &body).unwrap();
            }
            let _ = read_all(&mut s);
        }
    });
    let f = Proc::start(
        &[
            "follow",
            "--master",
            &format!("rlogd://{addr}"),
            "--data",
            fdata.to_str().unwrap(),
        ],
        dir.join("flog"),
    );
    server.join().unwrap();
    let log = f.log_text();
    for what in [
        "invalid date",
        "bad record",
        "more than it can hold",
        "master finished",
        "exceeds the limit",
    ] {
        assert!(
            wait_until(Duration::from_secs(10), || f.log_text().contains(what)),
            "{what}:\n{log}"
        );
    }
    assert!(f.log_text().matches("replication from").count() >= n);
    // Nothing the fake master sent was written.
    assert!(rlog::proto::reader::list_dates(&fdata).unwrap().is_empty());
}

/// A plain TCP logger aimed at an rlogd:// port by mistake: rlogd answers with a line saying
/// where plain lines go, and the logger reports that line instead of sending into the void
/// without a word (issue 19).
#[test]
fn a_tcp_logger_on_an_rlogd_port_reports_what_rlogd_answered() {
    let dir = TempDir::new("wrong-port");
    let d = Proc::serve(
        &dir.join("data"),
        &["--listen", "rlogd://127.0.0.1:0"],
        dir.join("log"),
    );
    let addr = d.bound("rlogd");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let lg =
        Logger::start(Config::parse(&format!("host = {host}\nport = {port}")).unwrap()).unwrap();
    lg.log(b"a plain line\n");
    assert!(lg.flush() > 0);
    let mut said = None;
    for _ in 0..200 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        lg.log(b"another plain line\n");
        let _ = lg.flush();
        if let Some(e) = lg.take_error() {
            if e.as_str().contains("the collector answered") {
                said = Some(e.as_str().to_string());
                break;
            }
        }
    }
    let said = said.expect("the logger reported what rlogd answered");
    assert!(said.contains("rlogd: this port speaks"), "{said}");
    lg.close(std::time::Duration::from_millis(100));
}
