//! Encoder benchmarks (criterion): what the worker thread pays per line for `json {...}` +
//! `gzip` and for `msgpack map:4|...`, the same chains end to end through a logger to a UDP
//! collector on 127.0.0.1, and the `log` call's cost with and without encoders configured (it
//! must not change: encoders run on the worker).
//!
//! Run: `cargo bench --bench encoders`. uWSGI's own throughput for the same chains, for
//! comparison: `python3 bench/uwsgi_encoders.py`.

use std::hint::black_box;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rlog::encode::{Chain, Encoder, Scratch};
use rlog::{Config, Logger};

const JSON: &str = r#"json {"unix":${unix},"msg":"${msg}","date":"${strftime:%d/%m/%Y %H:%M:%S}"}"#;
const MSGPACK: &str =
    "msgpack map:4|str:message|msg|str:hostname|str:web-1|str:version|str:2.0|str:unix|unix";
const LINE: &[u8] =
    b"[pid: 4242|app: 0|req: 17/42] 127.0.0.1 () {34 vars in 512 bytes} GET /index.html => generated 1234 bytes in 2 msecs (HTTP/1.1 200)\n";

fn chain(lines: &[&str]) -> Chain {
    let specs: Vec<_> = lines.iter().map(|l| Encoder::parse(l).unwrap()).collect();
    Chain::for_logger(&specs, None)
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    let now = rlog::encode::clock::now_micros();
    for (name, lines) in [
        ("json+gzip", vec![JSON, "gzip"]),
        ("json", vec![JSON]),
        ("gzip", vec!["gzip"]),
        ("msgpack_map4", vec![MSGPACK]),
    ] {
        let ch = chain(&lines);
        let mut scratch = Scratch::default();
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(ch.encode(black_box(LINE), now, &mut scratch).unwrap().len());
            })
        });
    }
    g.finish();
}

/// Logs `n` lines and flushes; the time until everything is on the wire (UDP to a collector that
/// is drained by its own thread).
fn end_to_end(c: &mut Criterion) {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = rx.local_addr().unwrap().port();
    // Drained until the process ends.
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 70000];
        loop {
            let _ = rx.recv(&mut buf);
        }
    });
    let mut g = c.benchmark_group("worker");
    const N: u64 = 10_000;
    g.throughput(Throughput::Elements(N));
    g.sample_size(20);
    for (name, enc) in [
        ("json+gzip", vec![JSON, "gzip"]),
        ("msgpack_map4", vec![MSGPACK]),
        ("none", vec![]),
    ] {
        let mut text = format!(
            "logger = socket:127.0.0.1:{port}\nflush_limit = 4000000\ndrop_limit = 8000000\n"
        );
        for e in &enc {
            text.push_str(&format!(
                "log-encoder = \"{}\"\n",
                e.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
        let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    for _ in 0..N {
                        lg.log(LINE);
                    }
                    assert!(lg.flush() > 0);
                    total += t.elapsed();
                }
                total
            })
        });
        let s = lg.stats();
        assert_eq!(s.logged, s.sent + s.lost + s.spooled + s.buffered);
        lg.close(Duration::from_secs(2));
    }
    g.finish();
}

/// The caller's cost per `log` call, without and with encoders configured: the same, because
/// encoding happens on the worker. Chains with a time variable add one clock read per call
/// (time is captured at `log`, only when some encoder needs it).
fn log_call(c: &mut Criterion) {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = rx.local_addr().unwrap().port();
    let mut g = c.benchmark_group("log_call");
    g.throughput(Throughput::Elements(1));
    const BATCH: u64 = 1000;
    for (name, enc) in [
        ("no_encoders", vec![]),
        ("format+gzip_no_time", vec!["format <${msg}>", "gzip"]),
        ("json+gzip", vec![JSON, "gzip"]),
        ("msgpack_map4", vec![MSGPACK]),
    ] {
        let mut text = format!(
            "logger = socket:127.0.0.1:{port}\nflush_limit = 4000000\ndrop_limit = 8000000\n"
        );
        for e in &enc {
            text.push_str(&format!(
                "log-encoder = \"{}\"\n",
                e.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
        let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                // Time only the calls; flush (untimed) every BATCH so the buffer never fills.
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let n = BATCH.min(iters - done);
                    let t = Instant::now();
                    for _ in 0..n {
                        black_box(lg.log(black_box(LINE)));
                    }
                    total += t.elapsed();
                    lg.flush();
                    done += n;
                }
                total
            })
        });
        lg.close(Duration::from_secs(2));
    }
    drop(rx);
    g.finish();
}

/// The clock read `log` adds when some encoder needs the call's time: the precise clock when an
/// encoder wants micros/millis, the coarse one when seconds are enough.
fn clock(c: &mut Criterion) {
    c.bench_function("clock/now_micros", |b| {
        b.iter(|| black_box(rlog::encode::clock::now_micros()))
    });
    c.bench_function("clock/coarse_now_micros", |b| {
        b.iter(|| black_box(rlog::encode::clock::coarse_now_micros()))
    });
}

criterion_group!(benches, encode, end_to_end, log_call, clock);
criterion_main!(benches);
