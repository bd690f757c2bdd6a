//! Per-call cost of `log` with a 200-byte message, 1 and 4 threads, with a loopback TCP collector
//! draining; next to a plain 200-byte memcpy into a preallocated buffer, in the same run.
//!
//! Only the `log` calls are timed, on threads that live for the whole run (as a server's do):
//! each sample logs bursts of `BURST` messages per thread — what a thread's ring holds — and
//! waits (untimed) for the worker to drain them, so the figure is the cost of buffering, not of
//! the drop path or of a worker that cannot keep up (`throughput.rs` measures that).
//!
//!   cargo bench --bench log_call

use std::hint::black_box;
use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rlog::{Config, Logged, Logger};

const MSG: [u8; 200] = [b'x'; 200];
/// Messages per burst and thread: 200 KB, inside the 256 KiB ring a thread gets with the
/// `flush_limit` below.
const BURST: u64 = 1_000;

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

/// Producer threads that live for the whole bench and log bursts on command.
struct Pool {
    per: Arc<AtomicU64>,
    start: Arc<Barrier>,
    done: Arc<Barrier>,
    times: Arc<Mutex<Vec<Duration>>>,
}

impl Pool {
    fn new(lg: &Logger, threads: usize) -> Pool {
        let pool = Pool {
            per: Arc::new(AtomicU64::new(0)),
            start: Arc::new(Barrier::new(threads + 1)),
            done: Arc::new(Barrier::new(threads + 1)),
            times: Arc::new(Mutex::new(Vec::new())),
        };
        for _ in 0..threads {
            let (lg, per, start, done, times) = (
                lg.clone(),
                pool.per.clone(),
                pool.start.clone(),
                pool.done.clone(),
                pool.times.clone(),
            );
            thread::spawn(move || loop {
                start.wait();
                let n = per.load(Ordering::Acquire);
                let t = Instant::now();
                for _ in 0..n {
                    black_box(lg.log(black_box(&MSG)));
                }
                times.lock().unwrap().push(t.elapsed());
                done.wait();
            });
        }
        pool
    }

    /// Times `iters` calls of `log` spread over the pool, in bursts of `BURST` per thread.
    fn timed_logs(&self, lg: &Logger, iters: u64, threads: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let per = left.div_ceil(threads).min(BURST);
            left = left.saturating_sub(per * threads);
            self.per.store(per, Ordering::Release);
            self.start.wait();
            self.done.wait();
            // Wall time of the burst: the slowest thread.
            total += self.times.lock().unwrap().drain(..).max().unwrap();
            drain(lg);
        }
        total
    }
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
    let one = Pool::new(&lg, 1);
    g.bench_function("rlog_log_1_thread", |b| {
        b.iter_custom(|iters| one.timed_logs(&lg, iters, 1))
    });
    let four = Pool::new(&lg, 4);
    g.bench_function("rlog_log_4_threads", |b| {
        b.iter_custom(|iters| four.timed_logs(&lg, iters, 4))
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
