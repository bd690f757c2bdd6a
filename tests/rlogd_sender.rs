//! The sender's address (store format version 2): records from `tcp://`, `udp://` and
//! `unix://` senders carry where they came from, `rlogd cat --json` shows it, and a store of
//! format version 1 (tests/fixtures/rlogd-v1, written by an rlogd that predates version 2)
//! is still read, verified, continued and replicated byte for byte.

mod rlogd_util;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use rlog::proto::format::{Date, SenderAddr};
use rlog::proto::frame::{self, Cursor, Hello, Position, Role};
use rlog::proto::reader::{self, DateReader};
use rlogd_util::*;

/// `rlogd cat --json` of a store, one line a record.
fn cat_json(data: &Path) -> Vec<String> {
    let (code, out, err) = run(&["cat", "--data", data.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    out.lines().map(str::to_string).collect()
}

/// The `cat --json` line whose message is `msg`.
fn line_of<'a>(lines: &'a [String], msg: &str) -> &'a str {
    let want = format!("\"msg\":\"{msg}\"}}");
    lines
        .iter()
        .find(|l| l.ends_with(&want))
        .unwrap_or_else(|| panic!("no record {msg:?} in {lines:#?}"))
}

/// The version in a date's index header.
fn version(data: &Path, d: Date) -> u32 {
    DateReader::open(data, d).unwrap().version
}

/// Every file under a store, by relative path.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for d in fs::read_dir(root).unwrap() {
        let d = d.unwrap();
        for f in fs::read_dir(d.path()).unwrap() {
            let f = f.unwrap();
            out.insert(
                format!(
                    "{}/{}",
                    d.file_name().to_string_lossy(),
                    f.file_name().to_string_lossy()
                ),
                fs::read(f.path()).unwrap(),
            );
        }
    }
    out
}

/// A copy of the committed version-1 store (tests change it).
fn v1_store(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rlogd-v1");
    for (rel, bytes) in files(&from) {
        let p = to.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
}

const V1_MESSAGES: [&str; 7] = [
    "producer one",
    "producer two",
    "producer three",
    "tcp one",
    "tcp two",
    "unix one",
    "udp one",
];

#[test]
fn a_tcp_senders_address_is_stored_and_shown_by_cat_json() {
    let dir = TempDir::new("snd-tcp");
    let data = dir.join("data");
    let d = Proc::serve(
        &data,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--listen",
            "rlogd://127.0.0.1:0",
        ],
        dir.join("log"),
    );
    let mut a = TcpStream::connect(d.bound("tcp")).unwrap();
    let mut b = TcpStream::connect(d.bound("tcp")).unwrap();
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    a.write_all(b"from a\n").unwrap();
    b.write_all(b"from b\n").unwrap();
    a.write_all(b"a again\n").unwrap();
    drop((a, b));
    // A librlog producer's record: identified by its producer id, no address stored.
    send_dated(
        &d.bound("rlogd"),
        77,
        0,
        rlog::proto::format::now_micros(),
        &[b"from a producer".to_vec()],
    );
    assert!(wait_until(Duration::from_secs(20), || records(&data).len() >= 4));
    let recs = records(&data);
    let sender_of = |msg: &[u8]| {
        recs.iter()
            .find(|(_, r)| r.payload == msg)
            .unwrap_or_else(|| panic!("{recs:?}"))
            .1
            .sender
    };
    assert_eq!(sender_of(b"from a"), Some(SenderAddr::Ip(a_addr)));
    assert_eq!(sender_of(b"a again"), Some(SenderAddr::Ip(a_addr)));
    assert_eq!(sender_of(b"from b"), Some(SenderAddr::Ip(b_addr)));
    assert_eq!(sender_of(b"from a producer"), None);
    let lines = cat_json(&data);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let shown = format!("\"type\":0,\"sender\":\"127.0.0.1:{}\",", a_addr.port());
    assert!(line_of(&lines, "from a").contains(&shown), "{lines:#?}");
    assert!(line_of(&lines, "from b").contains(&format!("\"sender\":\"{b_addr}\"")));
    assert!(!line_of(&lines, "from a producer").contains("sender"));
    let (code, out) = verify(&data);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("format version 2, ok"), "{out}");
}

#[test]
fn each_udp_datagram_carries_its_senders_address() {
    let dir = TempDir::new("snd-udp");
    let data = dir.join("data");
    let d = Proc::serve(&data, &["--listen", "udp://127.0.0.1:0"], dir.join("log"));
    let to = d.bound("udp");
    let x = UdpSocket::bind("127.0.0.1:0").unwrap();
    let y = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Interleaved, so one batch of the listener holds both senders.
    for i in 0..20 {
        x.send_to(format!("x {i}").as_bytes(), &to).unwrap();
        y.send_to(format!("y {i}").as_bytes(), &to).unwrap();
    }
    // UDP may drop on a busy machine: check what arrived, and that enough did.
    assert!(wait_until(Duration::from_secs(20), || records(&data).len() >= 10));
    std::thread::sleep(Duration::from_millis(300));
    let recs = records(&data);
    for (_, r) in &recs {
        let from = match r.payload[0] {
            b'x' => x.local_addr().unwrap(),
            b'y' => y.local_addr().unwrap(),
            _ => panic!("{r:?}"),
        };
        assert_eq!(r.sender, Some(SenderAddr::Ip(from)), "{r:?}");
    }
    let lines = cat_json(&data);
    assert_eq!(lines.len(), recs.len());
    for l in &lines {
        let from = if l.contains("\"msg\":\"x ") { &x } else { &y };
        let want = format!("\"sender\":\"{}\"", from.local_addr().unwrap());
        assert!(l.contains(&want), "{l}");
    }
}

#[test]
fn a_unix_sender_shows_unix() {
    let dir = TempDir::new("snd-unix");
    let data = dir.join("data");
    let sock = dir.join("s.sock");
    let _d = Proc::serve(
        &data,
        &["--listen", &format!("unix://{}", sock.display())],
        dir.join("log"),
    );
    let mut u = UnixStream::connect(&sock).unwrap();
    u.write_all(b"via unix\n").unwrap();
    drop(u);
    assert!(wait_until(Duration::from_secs(20), || records(&data).len() == 1));
    assert_eq!(records(&data)[0].1.sender, Some(SenderAddr::Unix));
    let lines = cat_json(&data);
    assert!(
        line_of(&lines, "via unix").contains(",\"sender\":\"unix\",\"msg\""),
        "{lines:#?}"
    );
}

#[test]
fn a_version_1_store_still_reads_verifies_and_goes_on_in_version_2() {
    let dir = TempDir::new("snd-v1");
    let data = dir.join("data");
    v1_store(&data);
    let before = files(&data);
    let (code, out) = verify(&data);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("20240101: 3 records, sealed, format version 1, ok")
            && out.contains("20240102: 4 records, open, format version 1, ok"),
        "{out}"
    );
    let lines = cat_json(&data);
    let msgs: Vec<&str> = lines
        .iter()
        .map(|l| {
            l.rsplit_once("\"msg\":\"")
                .unwrap()
                .1
                .trim_end_matches("\"}")
        })
        .collect();
    assert_eq!(msgs, V1_MESSAGES, "{lines:#?}");
    assert!(lines.iter().all(|l| !l.contains("sender")), "{lines:#?}");
    assert!(line_of(&lines, "producer two").contains("\"date\":\"20240101\",\"id\":1,"));

    // A daemon of this version recovers the open version-1 date, says it stays version 1,
    // seals it when a newer date begins, and writes the newer date in version 2.
    let mut d = Proc::serve(&data, &["--listen", "tcp://127.0.0.1:0"], dir.join("log"));
    assert!(d
        .log_text()
        .contains("the open date 20240102 is store format version 1"));
    let mut t = TcpStream::connect(d.bound("tcp")).unwrap();
    let from = t.local_addr().unwrap();
    t.write_all(b"new line\n").unwrap();
    drop(t);
    assert!(wait_until(Duration::from_secs(20), || records(&data).len() == 8));
    assert_eq!(d.term(), Some(0));
    let (date, last) = records(&data).pop().unwrap();
    assert!(date > Date::parse("20240102").unwrap());
    assert_eq!(
        (last.payload, last.sender),
        (b"new line".to_vec(), Some(SenderAddr::Ip(from)))
    );
    assert_eq!(
        reader::list_dates(&data)
            .unwrap()
            .iter()
            .map(|&d| version(&data, d))
            .collect::<Vec<_>>(),
        [1, 1, 2]
    );
    // The version-1 files are as they were; the old open date only gained `finish`.
    let after = files(&data);
    for (name, bytes) in &before {
        assert_eq!(after.get(name), Some(bytes), "{name}");
    }
    assert!(reader::is_sealed(&data, Date::parse("20240102").unwrap()));
    let (code, out) = verify(&data);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("20240102: 4 records, sealed, format version 1, ok")
            && out.contains("open, format version 2, ok"),
        "{out}"
    );
}

/// A master with version-1 dates and a version-2 date of plain senders' records.
fn mixed_master(dir: &TempDir) -> (Proc, Vec<String>) {
    let mdata = dir.join("master");
    v1_store(&mdata);
    let m = Proc::serve(
        &mdata,
        &[
            "--listen",
            "rlogd://127.0.0.1:0",
            "--listen",
            "tcp://127.0.0.1:0",
            "--listen",
            "udp://127.0.0.1:0",
        ],
        dir.join("mlog"),
    );
    let mut t = TcpStream::connect(m.bound("tcp")).unwrap();
    t.write_all(b"tcp new 1\ntcp new 2\n").unwrap();
    drop(t);
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut want = vec!["tcp new 1".to_string(), "tcp new 2".to_string()];
    // UDP may drop: resend until one arrives (so it may arrive more than once).
    assert!(wait_until(Duration::from_secs(20), || {
        if !payloads(&mdata).contains(&b"udp new".to_vec()) {
            u.send_to(b"udp new", m.bound("udp")).unwrap();
            return false;
        }
        true
    }));
    want.push("udp new".into());
    assert!(wait_until(Duration::from_secs(20), || {
        let p = payloads(&mdata);
        want.iter().all(|w| p.contains(&w.as_bytes().to_vec()))
    }));
    (m, want)
}

#[test]
fn a_follower_copies_version_1_dates_and_sender_records_byte_for_byte() {
    let dir = TempDir::new("snd-repl");
    let (mdata, fdata) = (dir.join("master"), dir.join("follower"));
    let (m, _) = mixed_master(&dir);
    let mut f = Proc::start(
        &[
            "follow",
            "--master",
            &format!("rlogd://{}", m.bound("rlogd")),
            "--data",
            fdata.to_str().unwrap(),
        ],
        dir.join("flog"),
    );
    // The master's store no longer changes: the follower's copy must become identical.
    let master_files = files(&mdata);
    assert!(
        wait_until(Duration::from_secs(30), || fdata.is_dir()
            && files(&fdata) == master_files),
        "master {:?}\nfollower {:?}\n{}",
        master_files.keys(),
        files(&fdata).keys(),
        f.log_text()
    );
    assert!(f.log_text().contains("(protocol 2)"), "{}", f.log_text());
    let recs = records(&fdata);
    // Ten, or more if a resent datagram arrived twice.
    assert_eq!(recs.len(), records(&mdata).len());
    assert!(recs.len() >= 10);
    assert!(recs[..7].iter().all(|(_, r)| r.sender.is_none()));
    assert!(recs[7..].iter().all(|(_, r)| matches!(
        r.sender,
        Some(SenderAddr::Ip(a)) if a.ip().is_loopback()
    )));
    let dates = reader::list_dates(&fdata).unwrap();
    let versions: Vec<u32> = dates.iter().map(|&d| version(&fdata, d)).collect();
    assert_eq!(versions, [1, 1, 2]);
    f.term();
    let (code, out) = verify(&fdata);
    assert_eq!(code, 0, "{out}");
}

/// Reads frames until `until` says stop (or the connection ends); returns (kind, body) pairs.
fn frames(s: &mut TcpStream, mut until: impl FnMut(u8, &[u8]) -> bool) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut body = Vec::new();
    while let Ok(k) = frame::read_frame(s, 1 << 24, &mut body) {
        if k == frame::HEARTBEAT {
            continue;
        }
        out.push((k, body.clone()));
        if until(k, &body) {
            break;
        }
    }
    out
}

fn hello_follower(addr: &str, version: u16) -> (TcpStream, u16) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let hello = Hello {
        version,
        token: Vec::new(),
        role: Role::Follower(Position::Empty),
    };
    frame::write_frame(&mut s, frame::HELLO, &hello.encode()).unwrap();
    let mut body = Vec::new();
    assert_eq!(
        frame::read_frame(&mut s, 1 << 20, &mut body).unwrap(),
        frame::WELCOME
    );
    let (v, _) = frame::decode_welcome(&body).unwrap();
    (s, v)
}

#[test]
fn protocol_1_followers_get_version_1_dates_and_a_named_refusal_for_version_2() {
    let dir = TempDir::new("snd-proto");
    let (m, _) = mixed_master(&dir);
    let addr = m.bound("rlogd");

    // What an rlogd older than format version 2 sends: it gets both version-1 dates, then an
    // ERROR that names the problem instead of records it would call damaged.
    let (mut s, v) = hello_follower(&addr, 1);
    assert_eq!(v, 1);
    let got = frames(&mut s, |k, _| k == frame::ERROR);
    let kinds: Vec<u8> = got.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [
            frame::RECORDS,
            frame::FINISH,
            frame::RECORDS,
            frame::FINISH,
            frame::ERROR
        ],
        "{got:?}"
    );
    let why = String::from_utf8_lossy(&got[4].1).into_owned();
    assert!(
        why.contains("store format version 2") && why.contains("upgrade the follower"),
        "{why}"
    );

    // Protocol 2: a BEGIN with each date's format version before its records.
    let (mut s, v) = hello_follower(&addr, 2);
    assert_eq!(v, 2);
    let mut records_of_new_date = 0;
    let got = frames(&mut s, |k, body| {
        if k == frame::RECORDS && u32::from_le_bytes(body[..4].try_into().unwrap()) > 20240102 {
            records_of_new_date += 1;
        }
        records_of_new_date > 0
    });
    let begins: Vec<(u32, u32)> = got
        .iter()
        .filter(|(k, _)| *k == frame::BEGIN)
        .map(|(_, b)| {
            let mut c = Cursor::new(b);
            (c.u32().unwrap(), c.u32().unwrap())
        })
        .collect();
    assert_eq!(begins.len(), 3, "{got:?}");
    assert_eq!(begins[..2], [(20240101, 1), (20240102, 1)]);
    assert_eq!(begins[2].1, 2);
    assert_eq!(got[0].0, frame::BEGIN);
}

/// A MOCK master standing for an rlogd older than format version 2 (which cannot run here): it
/// refuses protocol 2 as such an rlogd does, then serves the fixture's version-1 date over
/// protocol 1. The follower falls back and copies the date byte for byte, in version 1.
#[test]
fn a_follower_falls_back_to_protocol_1_for_an_older_master_mock() {
    let dir = TempDir::new("snd-old-master");
    let fdata = dir.join("follower");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rlogd-v1/20240101");
    let index = fs::read(fixture.join("index")).unwrap();
    let data = fs::read(fixture.join("data000000")).unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let mut versions = Vec::new();
        let mut body = Vec::new();
        // First connection: protocol 2 is refused with the old master's words.
        let (mut s, _) = l.accept().unwrap();
        frame::read_frame(&mut s, 1 << 20, &mut body).unwrap();
        versions.push(Hello::decode(&body).unwrap().version);
        frame::write_frame(&mut s, frame::ERROR, b"unsupported protocol version 2").unwrap();
        drop(s);
        // Second: protocol 1, the date's records as stored, then FINISH.
        let (mut s, _) = l.accept().unwrap();
        frame::read_frame(&mut s, 1 << 20, &mut body).unwrap();
        versions.push(Hello::decode(&body).unwrap().version);
        frame::write_frame(&mut s, frame::WELCOME, &frame::encode_welcome(1 << 20)).unwrap();
        let mut b = 20240101u32.to_le_bytes().to_vec();
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        for e in index[16..].chunks_exact(32) {
            let e = rlog::proto::format::Entry::decode(e).unwrap();
            b.extend_from_slice(&e.encode());
            b.extend_from_slice(&data[e.offset as usize..e.end() as usize]);
        }
        frame::write_frame(&mut s, frame::RECORDS, &b).unwrap();
        let mut fin = 20240101u32.to_le_bytes().to_vec();
        fin.extend_from_slice(&3u64.to_le_bytes());
        frame::write_frame(&mut s, frame::FINISH, &fin).unwrap();
        let _ = read_all(&mut s);
        versions
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
    let want = files(fixture.parent().unwrap())
        .into_iter()
        .filter(|(k, _)| k.starts_with("20240101/"))
        .collect::<BTreeMap<_, _>>();
    assert!(
        wait_until(Duration::from_secs(30), || fdata.is_dir()
            && files(&fdata) == want),
        "{}",
        f.log_text()
    );
    let log = f.log_text();
    assert!(log.contains("speaking protocol 1"), "{log}");
    assert!(log.contains("(protocol 1)"), "{log}");
    drop(f);
    assert_eq!(server.join().unwrap(), [2, 1]);
}
