//! Per-call cost of `log` with a 200-byte message, 1 and 4 threads, with a loopback TCP collector
//! draining; next to a plain 200-byte memcpy into a preallocated buffer, in the same run.
//!
//! Only the `log` calls are timed: each sample logs a burst that fits under `drop_limit`, then
//! waits (untimed) for the worker to drain it, so the figure is the cost of buffering, not of
//! the drop path.
//!
//!   cargo bench --bench log_call

use std::hint::black_box;
use std::io::Read;
use std::net::TcpListener;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rlog::{Config, Logged, Logger};

const MSG: [u8; 200] = [b'x'; 200];
/// Messages per burst: 40 MB, under the 64 MiB drop_limit below.
const BURST: u64 = 200_000;

fn draining_collector() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

fn logger(port: u16) -> Logger {
    let text =
        format!("host = 127.0.0.1\nport = {port}\ndrop_limit = 67108864\nflush_limit = 65536");
    Logger::start(Config::parse(&text).unwrap()).unwrap()
}

fn drain(lg: &Logger) {
    lg.flush();
    while lg.stats().buffered > 0 {
        thread::sleep(Duration::from_micros(200));
    }
}

/// Times `iters` calls of `log`, in bursts that fit the buffer.
fn timed_logs(lg: &Logger, iters: u64, threads: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(BURST);
        left -= n;
        let per = n.div_ceil(threads);
        let start = Arc::new(Barrier::new(threads as usize + 1));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let lg = lg.clone();
                let start = start.clone();
                thread::spawn(move || {
                    start.wait();
                    let t = Instant::now();
                    for _ in 0..per {
                        black_box(lg.log(black_box(&MSG)));
                    }
                    t.elapsed()
                })
            })
            .collect();
        start.wait();
        // Wall time of the burst: the slowest thread.
        total += workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap();
        drain(lg);
    }
    total
}

fn bench(c: &mut Criterion) {
    let port = draining_collector();
    let lg = logger(port);
    let mut g = c.benchmark_group("log_200B");
    g.throughput(Throughput::Elements(1));
    g.bench_function("memcpy_baseline", |b| {
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0;
        b.iter(|| {
            if off + 200 > buf.len() {
                off = 0;
            }
            buf[off..off + 200].copy_from_slice(black_box(&MSG));
            off += 200;
            black_box(&buf);
        })
    });
    g.bench_function("rlog_log_1_thread", |b| {
        b.iter_custom(|iters| timed_logs(&lg, iters, 1))
    });
    g.bench_function("rlog_log_4_threads", |b| {
        b.iter_custom(|iters| timed_logs(&lg, iters, 4))
    });
    g.finish();
    drain(&lg);
    let s = lg.stats();
    assert_eq!(
        s.dropped, 0,
        "the burst sizing must keep log on its buffering path"
    );
    assert_eq!(s.logged, s.sent + s.buffered + s.lost);
    let _ = Logged::Dropped;
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
