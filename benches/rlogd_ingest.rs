//! rlogd benchmark (run with `cargo bench --bench rlogd_ingest`; not a test, nothing here
//! passes or fails on speed):
//!
//! 1. Durable ingest: librlog loggers send 200-byte messages over `rlogd://`; a message
//!    counts once rlogd acknowledged it, which it does after `fsync`. Reports messages/s.
//! 2. Live replication lag: a producer sends one record at a time; the time from its
//!    acknowledgement to the record's index entry appearing in a follower's store (polled
//!    every 50 µs) gives p50/p99/max, idle and under a background load.
//!
//! Environment: `RLOGD_BENCH_DIR` (default the temp dir) holds the stores; `RLOGD_BENCH_MSGS`
//! (default 2000000) and `RLOGD_BENCH_PRODUCERS` (default 2) size the ingest run.

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rlog::proto::format::{Date, ENTRY, FILE_HEADER};
use rlog::proto::frame::{self, Hello, Role};
use rlog::{Config, Logged, Logger};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str], log: &Path) -> Daemon {
    let err = fs::File::create(log).unwrap();
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_rlogd"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap(),
    )
}

fn bound(log: &Path, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut s = String::new();
        fs::File::open(log).unwrap().read_to_string(&mut s).unwrap();
        if let Some(l) = s.lines().find(|l| l.contains(what)) {
            return l
                .rsplit_once('(')
                .unwrap()
                .1
                .trim_end_matches(')')
                .to_string();
        }
        assert!(Instant::now() < deadline, "rlogd did not start: {s}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ingest(base: &Path) {
    let msgs = env_num("RLOGD_BENCH_MSGS", 2_000_000);
    let producers = env_num("RLOGD_BENCH_PRODUCERS", 2);
    let data = base.join("ingest");
    let _ = fs::remove_dir_all(&data);
    let log = base.join("ingest.log");
    let _d = start(
        &[
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "rlogd://127.0.0.1:0",
        ],
        &log,
    );
    let addr = bound(&log, "listening on rlogd://");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let cfg = format!(
        "host = {host}\nport = {port}\nsock_type = rlogd\nflush_limit = 1048576\ndrop_limit = 67108864\ntimeout = 5000"
    );
    let msg = vec![b'm'; 200];
    let per = msgs / producers;
    let t0 = Instant::now();
    let threads: Vec<_> = (0..producers)
        .map(|_| {
            let cfg = cfg.clone();
            let msg = msg.clone();
            std::thread::spawn(move || {
                let lg = Logger::start(Config::parse(&cfg).unwrap()).unwrap();
                for _ in 0..per {
                    // Never drop: when the buffer is full, wait for acknowledgements.
                    while lg.log(&msg) == Logged::Dropped {
                        std::thread::yield_now();
                    }
                }
                while lg.stats().sent < per {
                    lg.flush();
                }
                let st = lg.stats();
                assert_eq!(st.sent, per);
                lg.close(Duration::from_secs(5));
                st
            })
        })
        .collect();
    let mut connects = 0;
    for t in threads {
        connects += t.join().unwrap().connects;
    }
    let secs = t0.elapsed().as_secs_f64();
    let total = per * producers;
    println!(
        "ingest: {total} messages of 200 B from {producers} librlog loggers over rlogd://, fsync before ack: \
         {secs:.2} s, {:.0} msg/s, {:.1} MB/s (flush_limit 1 MiB ≈ 5000 msgs per batch, 1 MiB frames, \
         up to 8 frames in flight, {connects} connects)",
        total as f64 / secs,
        total as f64 * 200.0 / secs / 1e6
    );
}

/// One producer connection that sends single-record batches and waits for each ack.
struct Probe {
    s: TcpStream,
    seq: u64,
    buf: Vec<u8>,
}

impl Probe {
    fn new(addr: &str, producer: u64) -> Probe {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
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
        let _ = producer;
        Probe { s, seq: 0, buf }
    }

    fn send(&mut self, producer: u64, n: usize) {
        let mut raw = Vec::new();
        for _ in 0..n {
            frame::batch_record(&mut raw, rlog::proto::format::now_micros(), 0, &[b'p'; 200]);
        }
        let mut body = Vec::new();
        frame::batch_head(
            &mut body,
            producer,
            self.seq,
            n as u32,
            frame::CODEC_NONE,
            raw.len() as u32,
        );
        body.extend_from_slice(&raw);
        self.seq += n as u64;
        frame::write_frame(&mut self.s, frame::BATCH, &body).unwrap();
        assert_eq!(
            frame::read_frame(&mut self.s, 1 << 20, &mut self.buf).unwrap(),
            frame::ACK
        );
    }
}

fn entries(index: &Path) -> u64 {
    fs::metadata(index)
        .map(|m| m.len().saturating_sub(FILE_HEADER as u64) / ENTRY as u64)
        .unwrap_or(0)
}

/// Follows an index file, looking for the entry of one (producer, sequence).
struct IndexWatch {
    f: fs::File,
    pos: u64,
    buf: Vec<u8>,
}

impl IndexWatch {
    fn new(index: &Path) -> IndexWatch {
        IndexWatch {
            f: fs::File::open(index).unwrap(),
            pos: FILE_HEADER as u64,
            buf: Vec::new(),
        }
    }

    /// Whether the entry of `producer`/`seq` has appeared (reads what is new since last time).
    fn seen(&mut self, producer: u64, seq: u64) -> bool {
        use std::os::unix::fs::FileExt;
        let len = self.f.metadata().unwrap().len();
        let whole = (len - self.pos) / ENTRY as u64 * ENTRY as u64;
        if whole == 0 {
            return false;
        }
        self.buf.resize(whole as usize, 0);
        self.f.read_exact_at(&mut self.buf, self.pos).unwrap();
        self.pos += whole;
        self.buf.chunks_exact(ENTRY).any(|e| {
            let e = rlog::proto::format::Entry::decode(e).unwrap();
            e.producer == producer && e.seq == seq
        })
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn lag(base: &Path) {
    let (mdata, fdata) = (base.join("lag-master"), base.join("lag-follower"));
    let _ = fs::remove_dir_all(&mdata);
    let _ = fs::remove_dir_all(&fdata);
    let mlog = base.join("lag-master.log");
    let _m = start(
        &[
            "serve",
            "--data",
            mdata.to_str().unwrap(),
            "--listen",
            "rlogd://127.0.0.1:0",
        ],
        &mlog,
    );
    let addr = bound(&mlog, "listening on rlogd://");
    let _f = start(
        &[
            "follow",
            "--master",
            &format!("rlogd://{addr}"),
            "--data",
            fdata.to_str().unwrap(),
        ],
        &base.join("lag-follower.log"),
    );
    let mut probe = Probe::new(&addr, 1);
    probe.send(1, 1);
    let _ = entries;
    let index = fdata.join(Date::today().to_string()).join("index");
    let deadline = Instant::now() + Duration::from_secs(20);
    while entries(&index) < 1 {
        assert!(Instant::now() < deadline, "the follower does not replicate");
        std::thread::sleep(Duration::from_millis(1));
    }
    for (label, background) in [("idle", false), ("under ~100k msg/s background load", true)] {
        let stop = Arc::new(AtomicBool::new(false));
        let bg = background.then(|| {
            let (addr, stop) = (addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut p = Probe::new(&addr, 2);
                while !stop.load(Ordering::Relaxed) {
                    p.send(2, 1000);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        });
        let mut lags = Vec::new();
        let mut watch = IndexWatch::new(&index);
        for _ in 0..500 {
            let seq = probe.seq;
            let sent = Instant::now();
            probe.send(1, 1);
            let acked = sent.elapsed();
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut seen = watch.seen(1, seq);
            while !seen && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(50));
                seen = watch.seen(1, seq);
            }
            assert!(seen, "probe {seq} never reached the follower");
            // (ack round trip, send -> on the follower)
            lags.push((acked, sent.elapsed()));
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, Ordering::Relaxed);
        if let Some(b) = bg {
            b.join().unwrap();
        }
        let mut acks: Vec<Duration> = lags.iter().map(|l| l.0).collect();
        let mut repl: Vec<Duration> = lags.iter().map(|l| l.1).collect();
        acks.sort();
        repl.sort();
        println!(
            "replication lag ({label}), 500 single-record probes: send -> entry in the follower's index \
             p50 {:?} p99 {:?} max {:?}; for comparison send -> durable ack from the master p50 {:?} p99 {:?}",
            percentile(&repl, 0.5),
            percentile(&repl, 0.99),
            repl[repl.len() - 1],
            percentile(&acks, 0.5),
            percentile(&acks, 0.99),
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: only run
    // when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let base: PathBuf = std::env::var_os("RLOGD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("rlogd-bench-{}", std::process::id()))
        });
    fs::create_dir_all(&base).unwrap();
    ingest(&base);
    lag(&base);
    let _ = fs::remove_dir_all(&base);
}
