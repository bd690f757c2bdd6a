//! Senders that cost rlogd resources without sending logs: frame headers claiming 16 MiB with
//! nothing after them, frames that arrive but fill memory, handshakes trickled a byte at a time
//! to hold connection slots, and connections that go silent. rlogd's memory stays bounded, a
//! handshake has a deadline, a real producer still gets a slot, and a silence is logged as an
//! idle timeout (not as garbage).

mod rlogd_util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rlog::proto::frame::{self, Hello, Role};
use rlogd_util::*;

/// The resident memory of process `pid`, in bytes (`VmRSS` of /proc/PID/status).
fn rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// The highest RSS of `pid` seen while polling for `d`.
fn max_rss_over(pid: u32, d: Duration) -> u64 {
    let until = Instant::now() + d;
    let mut max = 0;
    while Instant::now() < until {
        max = max.max(rss(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    max
}

/// A producer connection past its handshake.
fn producer(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let h = Hello {
        version: frame::PROTOCOL,
        token: Vec::new(),
        role: Role::Producer,
    };
    frame::write_frame(&mut s, frame::HELLO, &h.encode()).unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        frame::read_frame(&mut s, 1 << 20, &mut buf).unwrap(),
        frame::WELCOME
    );
    s
}

/// The header of a BATCH frame claiming `len` bytes of body.
fn claim(len: u32) -> Vec<u8> {
    let mut h = (len + 1).to_le_bytes().to_vec();
    h.push(frame::BATCH);
    h
}

const MIB: u64 = 1 << 20;

#[test]
fn headers_claiming_16_mib_cost_nothing_until_the_bytes_arrive() {
    let dir = TempDir::new("claims");
    let d = Proc::serve(
        &dir.join("data"),
        &["--listen", "rlogd://127.0.0.1:0"],
        dir.join("log"),
    );
    let addr = d.bound("rlogd");
    let pid = d.child.as_ref().unwrap().id();
    let before = rss(pid);
    // 40 producers (no token needed) each announce a 16 MiB frame and send nothing more.
    let conns: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = producer(&addr);
            s.write_all(&claim(16 << 20)).unwrap();
            s
        })
        .collect();
    let max = max_rss_over(pid, Duration::from_secs(3));
    eprintln!(
        "rlogd RSS: {} MiB before, {} MiB at most",
        before / MIB,
        max / MIB
    );
    assert!(
        max < 100 * MIB,
        "rlogd grew from {} to {} MiB for 40 headers",
        before / MIB,
        max / MIB
    );
    // The daemon still serves, and the connections are still open (nothing was refused).
    let (_, next) = send_batch(&addr, &batch_body(9, 0, 1_700_000_000_000_000, 0, &[b"ok"]));
    assert_eq!(next, 1);
    drop(conns);
}

#[test]
fn frames_that_arrive_are_bounded_by_max_buffered() {
    let dir = TempDir::new("budget");
    let d = Proc::serve(
        &dir.join("data"),
        &[
            "--listen",
            "rlogd://127.0.0.1:0",
            "--max-buffered",
            &(32 * MIB).to_string(),
        ],
        dir.join("log"),
    );
    let addr = d.bound("rlogd");
    let pid = d.child.as_ref().unwrap().id();
    // 40 producers each announce 16 MiB and send 6 MiB of it: 240 MiB arrive, or would.
    let chunk = vec![b'x'; 6 << 20];
    let senders: Vec<_> = (0..40)
        .map(|_| {
            let addr = addr.clone();
            let chunk = chunk.clone();
            std::thread::spawn(move || {
                let mut s = producer(&addr);
                s.set_write_timeout(Some(Duration::from_secs(8))).unwrap();
                let _ = s.write_all(&claim(16 << 20));
                let _ = s.write_all(&chunk);
                s
            })
        })
        .collect();
    let max = max_rss_over(pid, Duration::from_secs(5));
    eprintln!("rlogd RSS: {} MiB at most", max / MIB);
    assert!(
        max < 150 * MIB,
        "rlogd took {} MiB with --max-buffered 32 MiB",
        max / MIB
    );
    for s in senders {
        drop(s.join().unwrap());
    }
}

/// Starts a handshake that never ends: a HELLO header announcing 4000 bytes, then one byte.
fn slow_hello(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&4001u32.to_le_bytes()).unwrap();
    s.write_all(&[frame::HELLO, 1]).unwrap();
    s
}

#[test]
fn a_trickled_handshake_times_out_and_is_logged_as_a_timeout() {
    // The default --handshake-timeout (10 s).
    let dir = TempDir::new("slowloris");
    let d = Proc::serve(
        &dir.join("data"),
        &["--listen", "rlogd://127.0.0.1:0"],
        dir.join("log"),
    );
    let addr = d.bound("rlogd");
    // A connection that says nothing at all.
    let mut quiet = TcpStream::connect(&addr).unwrap();
    // One byte every 300 ms: each read is quick, the handshake never completes.
    let mut s = slow_hello(&addr);
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let start = Instant::now();
    let closed = loop {
        if start.elapsed() > Duration::from_secs(30) {
            break false;
        }
        if s.write_all(&[0]).is_err() {
            break true;
        }
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(_) => break true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break true,
        }
    };
    assert!(closed, "a trickled handshake stayed open for 30 s");
    assert!(read_all(&mut quiet).is_empty());
    // Both are idle timeouts, neither is garbage.
    assert!(
        d.wait_log(|l| l.matches("idle timeout").count() == 2),
        "{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(!log.contains("refused"), "{log}");
    assert!(!log.contains("bad HELLO"), "{log}");
    assert!(!log.contains("Resource temporarily unavailable"), "{log}");
}

#[test]
fn a_silent_producer_is_an_idle_timeout() {
    let dir = TempDir::new("idle");
    let d = Proc::serve(
        &dir.join("data"),
        &["--listen", "rlogd://127.0.0.1:0", "--idle-timeout", "1"],
        dir.join("log"),
    );
    let mut p = producer(&d.bound("rlogd"));
    assert!(read_all(&mut p).is_empty());
    assert!(
        d.wait_log(
            |l| l.contains("closed producer") && l.contains("idle timeout: no frame for 1 s")
        ),
        "{}",
        d.log_text()
    );
    assert!(!d.log_text().contains("Resource temporarily unavailable"));
}

#[test]
fn slow_handshakes_cannot_take_every_slot_from_producers() {
    let dir = TempDir::new("slots");
    let d = Proc::serve(
        &dir.join("data"),
        &["--listen", "rlogd://127.0.0.1:0", "--max-connections", "40"],
        dir.join("log"),
    );
    let addr = d.bound("rlogd");
    // More slow handshakes than there are slots.
    let mut slow: Vec<TcpStream> = (0..60).map(|_| slow_hello(&addr)).collect();
    std::thread::sleep(Duration::from_millis(500));
    // A real producer still gets in, and is acknowledged.
    let mut p = TcpStream::connect(&addr).unwrap();
    p.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let h = Hello {
        version: frame::PROTOCOL,
        token: Vec::new(),
        role: Role::Producer,
    };
    let mut buf = Vec::new();
    let welcomed = frame::write_frame(&mut p, frame::HELLO, &h.encode())
        .map_err(|e| e.to_string())
        .and_then(|_| frame::read_frame(&mut p, 1 << 20, &mut buf).map_err(|e| e.to_string()));
    assert_eq!(
        welcomed.as_ref().ok(),
        Some(&frame::WELCOME),
        "{welcomed:?}\n{}",
        d.log_text()
    );
    let body = batch_body(77, 0, 1_700_000_000_000_000, 0, &[b"first"]);
    frame::write_frame(&mut p, frame::BATCH, &body).unwrap();
    assert_eq!(
        frame::read_frame(&mut p, 1 << 20, &mut buf).unwrap(),
        frame::ACK
    );
    // Once past its handshake it keeps its slot, however many slow handshakes come after it.
    slow.extend((0..60).map(|_| slow_hello(&addr)));
    std::thread::sleep(Duration::from_millis(500));
    let body = batch_body(77, 1, 1_700_000_000_000_000, 0, &[b"second"]);
    frame::write_frame(&mut p, frame::BATCH, &body).unwrap();
    assert_eq!(
        frame::read_frame(&mut p, 1 << 20, &mut buf).unwrap(),
        frame::ACK
    );
    assert!(
        d.wait_log(|l| l.contains("dropped the oldest handshake")),
        "{}",
        d.log_text()
    );
    drop(slow);
}

#[test]
fn with_every_slot_taken_a_new_client_is_told_why() {
    let dir = TempDir::new("full");
    let d = Proc::serve(
        &dir.join("data"),
        &["--listen", "rlogd://127.0.0.1:0", "--max-connections", "4"],
        dir.join("log"),
    );
    let addr = d.bound("rlogd");
    let held: Vec<TcpStream> = (0..4).map(|_| producer(&addr)).collect();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let got = frame::read_frame(&mut s, 1 << 20, &mut buf).map_err(|e| e.to_string());
    assert_eq!(got, Ok(frame::ERROR), "{}", d.log_text());
    assert!(String::from_utf8_lossy(&buf).contains("every connection slot is taken"));
    assert!(
        d.wait_log(|l| l.contains("refused_slots=1")),
        "{}",
        d.log_text()
    );
    // One goes away: its slot is free again.
    drop(held);
    assert!(wait_until(Duration::from_secs(10), || {
        let mut p = TcpStream::connect(&addr).unwrap();
        p.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let h = Hello {
            version: frame::PROTOCOL,
            token: Vec::new(),
            role: Role::Producer,
        };
        frame::write_frame(&mut p, frame::HELLO, &h.encode()).is_ok()
            && frame::read_frame(&mut p, 1 << 20, &mut Vec::new()).ok() == Some(frame::WELCOME)
    }));
}

#[test]
fn long_lines_on_tcp_are_bounded_by_max_buffered_too() {
    let dir = TempDir::new("longlines");
    let data = dir.join("data");
    let d = Proc::serve(
        &data,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--max-buffered",
            &(32 * MIB).to_string(),
        ],
        dir.join("log"),
    );
    let addr = d.bound("tcp");
    let pid = d.child.as_ref().unwrap().id();
    // 30 senders each start a 10 MiB line (no newline yet): a tcp:// sender needs no
    // handshake at all, so nothing but the budget bounds what it makes rlogd hold.
    let chunk = vec![b'x'; 10 << 20];
    let senders: Vec<_> = (0..30)
        .map(|_| {
            let addr = addr.clone();
            let chunk = chunk.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(8))).unwrap();
                let _ = s.write_all(&chunk);
                s
            })
        })
        .collect();
    let max = max_rss_over(pid, Duration::from_secs(5));
    eprintln!("rlogd RSS: {} MiB at most", max / MIB);
    assert!(
        max < 150 * MIB,
        "rlogd took {} MiB for long lines with --max-buffered 32 MiB",
        max / MIB
    );
    drop(senders);
    // Lines that end are stored as ever.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"short\n").unwrap();
    drop(s);
    assert!(wait_until(Duration::from_secs(20), || payloads(&data)
        .contains(&b"short".to_vec())));
}

#[test]
fn plain_senders_cannot_take_every_slot_from_producers() {
    let dir = TempDir::new("plainslots");
    let d = Proc::serve(
        &dir.join("data"),
        &[
            "--listen",
            "rlogd://127.0.0.1:0",
            "--listen",
            "tcp://127.0.0.1:0",
            "--max-connections",
            "8",
        ],
        dir.join("log"),
    );
    let (raddr, taddr) = (d.bound("rlogd"), d.bound("tcp"));
    // Idle tcp:// senders, more than there are slots.
    let plain: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(&taddr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // A producer still gets in and is acknowledged.
    let got = std::panic::catch_unwind(|| {
        send_batch(
            &raddr,
            &batch_body(3, 0, 1_700_000_000_000_000, 0, &[b"in"]),
        )
    });
    assert_eq!(got.ok(), Some((3, 1)), "{}", d.log_text());
    drop(plain);
}
