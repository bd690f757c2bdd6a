//! Sustained delivery to a loopback TCP collector: 1 M messages of 200 bytes logged as fast as
//! `log` accepts them (a full buffer makes the producer wait briefly and retry, so nothing is
//! dropped), timed until the collector has every byte. Next to it, in the same run, a raw loop
//! that `send`s pre-built 64 KiB batches of the same bytes on a plain socket.
//!
//!   cargo bench --bench throughput

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rlog::{Config, Logged, Logger};

const N: u64 = 1_000_000;
const SIZE: usize = 200;

/// A collector that counts bytes received.
fn counting_collector() -> (u16, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let c = c.clone();
            thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    c.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (port, count)
}

fn wait_for(count: &AtomicU64, target: u64) {
    while count.load(Ordering::Relaxed) < target {
        std::hint::spin_loop();
    }
}

fn bench(c: &mut Criterion) {
    let (port, count) = counting_collector();
    let text =
        format!("host = 127.0.0.1\nport = {port}\ndrop_limit = 8388608\nflush_limit = 65536");
    let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
    let msg = [b'm'; SIZE];
    let mut g = c.benchmark_group("deliver_1M_x_200B");
    g.throughput(Throughput::Bytes(N * SIZE as u64));
    g.sample_size(10);
    g.bench_function("rlog_tcp", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let base = count.load(Ordering::Relaxed);
                let t = Instant::now();
                for _ in 0..N {
                    while lg.log(&msg) == Logged::Dropped {
                        thread::yield_now();
                    }
                }
                lg.flush();
                wait_for(&count, base + N * SIZE as u64);
                total += t.elapsed();
            }
            total
        })
    });
    let _ = lg.take_error();
    let mut raw = TcpStream::connect(("127.0.0.1", port)).unwrap();
    raw.set_nodelay(true).unwrap();
    let batch = vec![b'r'; 64 * 1024];
    g.bench_function("raw_send_64KiB_batches", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let base = count.load(Ordering::Relaxed);
                let bytes = N * SIZE as u64;
                let t = Instant::now();
                let mut left = bytes as usize;
                while left > 0 {
                    let n = left.min(batch.len());
                    raw.write_all(&batch[..n]).unwrap();
                    left -= n;
                }
                wait_for(&count, base + bytes);
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
    let s = lg.stats();
    assert_eq!(s.logged, s.sent + s.buffered + s.lost);
    assert_eq!(s.lost, 0);
}

criterion_group!(benches, bench);
criterion_main!(benches);
