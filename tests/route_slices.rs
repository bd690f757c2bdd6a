//! A round's batch is routed to the output threads a slice at a time (`pipeline::run_lanes`):
//! a driver starts on the first slice while the rest is encoded. Each slice moves its messages
//! from "in flight" to the outputs' queues in one step, so the stats identity holds at every
//! look, and every output gets every message once, in order.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use rlog::{Config, Logged, Logger};

#[test]
fn a_batch_of_many_slices_reaches_every_output_once_in_order_and_the_identity_holds_throughout() {
    let (a, b) = (Collector::tcp(), Collector::tcp());
    // flush_limit 64 KiB: a slice is 1 MiB (ROUTE_SLICE), and the rounds the worker paces while
    // the burst comes hold several MiB: several slices each (a flush_limit of 8 MiB made the
    // slice 8 MiB, and most runs saw no batch of two slices).
    let lg = Arc::new(
        Logger::start(
            Config::parse(&format!(
                "logger = a tcp://127.0.0.1:{}\nlogger = b tcp://127.0.0.1:{}\n\
                 log-route = a .\nlog-route = b .\nlog-encoder = prefix:b B:\n\
                 framing = newline\nflush_limit = 65536\ndrop_limit = 268435456",
                a.port(),
                b.port()
            ))
            .unwrap(),
        )
        .unwrap(),
    );
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (lg, done) = (lg.clone(), done.clone());
        thread::spawn(move || {
            let mut looks = 0u64;
            while !done.load(Ordering::Relaxed) {
                assert_identity(&lg.stats());
                looks += 1;
            }
            looks
        })
    };
    const N: usize = 400_000;
    for i in 0..N {
        let m = format!("message {i:08} of the burst, forty bytes");
        assert_eq!(lg.log(m.as_bytes()), Logged::Buffered(m.len()));
    }
    assert!(lg.flush() > 0);
    let s = wait_drained(&lg);
    done.store(true, Ordering::Relaxed);
    let looks = watcher.join().expect("the identity held at every look");
    assert!(looks > 0);
    assert_eq!(
        (s.logged, s.sent, s.lost, s.buffered),
        (N as u64, N as u64, 0, 0)
    );
    assert_identity(&s);
    assert!(Arc::try_unwrap(lg)
        .ok()
        .unwrap()
        .close(Duration::from_secs(10)));
    for (c, prefix) in [(a, ""), (b, "B:")] {
        let lines = c.stop_lines();
        assert_eq!(lines.len(), N);
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(
                *l,
                format!("{prefix}message {i:08} of the burst, forty bytes")
            );
        }
    }
}
