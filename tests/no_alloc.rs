//! `log` allocates nothing in steady state: a counting global allocator counts the calling
//! thread's allocations across 100 000 calls after a warm-up, with a collector draining.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use rlog::{Config, Logged, Logger};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

#[test]
fn log_allocates_nothing_in_steady_state() {
    let c = Collector::tcp();
    let lg = Logger::start(Config::parse(&tcp_config(c.port(), "")).unwrap()).unwrap();
    let msg = [b'a'; 200];
    // Warm-up: let both buffers grow to the load they see.
    for _ in 0..200_000 {
        lg.log(&msg);
    }
    lg.flush();
    let before = allocs();
    let mut buffered = 0u64;
    for _ in 0..100_000 {
        if lg.log(&msg) == Logged::Buffered(200) {
            buffered += 1;
        }
    }
    let during = allocs() - before;
    assert_eq!(during, 0, "log allocated {during} times in 100000 calls");
    // The drop path (and its error) allocates nothing either.
    let small = Logger::start(
        Config::parse(&tcp_config(
            1,
            "flush_limit = 10\ndrop_limit = 20\nmax_retry_times = 0",
        ))
        .unwrap(),
    )
    .unwrap();
    for _ in 0..100 {
        small.log(&msg);
    }
    let before = allocs();
    for _ in 0..10_000 {
        assert_eq!(small.log(&msg), Logged::Dropped);
    }
    assert_eq!(allocs() - before, 0, "the drop path allocated");
    assert!(buffered > 0);
    lg.flush();
    let s = wait_drained(&lg);
    assert_identity(&s);
}
