//! A per-thread ring: the lock-free front of a logger's buffer.
//!
//! Each thread that logs to a logger owns one ring (see `producer.rs`). The thread is its only
//! writer; whoever holds the logger's state lock is its only reader (the worker, or a caller in
//! a slow path), and moves its records into the logger's `Buffer`. That makes every ring a
//! single-producer single-consumer queue: appending is a memcpy and one release store, with no
//! locked instruction, which is what keeps `log` near the cost of the copy itself.
//!
//! Records are 8-byte aligned: a header word (the message length), the time word when the
//! logger captures time, then the message padded to 8 bytes. A record that does not fit before
//! the end of the storage is preceded by a wrap marker and starts again at offset 0.

use std::cell::UnsafeCell;

use crate::atomics::{Accesses, AtomicBool, AtomicUsize, Ordering};
use crate::buffer::Buffer;

/// The header word that says "the rest of this lap is unused, continue at offset 0".
const WRAP: u64 = u64::MAX;

/// Cache lines past the one holding the producer's position that it asks the CPU for after
/// each push: with the current line (just written, so cached) they hold the next record of up
/// to ~200 bytes.
const PREFETCH_LINES: usize = 3;

/// Asks the CPU to bring the ring's next `PREFETCH_LINES` cache lines after position `at`
/// (clipped to the storage) into the cache before the producer's next push writes them. A
/// thread that logs once per request (nginx) does a request's worth of other work in between,
/// which evicts the ring from L1: the misses are then taken off the `log` call (BENCHMARKS.md,
/// "The ring prefetch").
#[inline(always)]
fn prefetch_for_write(base: *mut u8, at: usize, cap: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let line = at & !63;
        for k in 1..=PREFETCH_LINES {
            let off = (line + 64 * k).min(cap - 1);
            // SAFETY: `off < cap`, so the address lies inside the ring's storage; a prefetch
            // reads nothing the program sees and never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(off).cast::<i8>()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (base, at, cap);
}

/// Keeps a field on a cache line of its own, so the producer's and the consumer's positions do
/// not share one.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Line<T>(T);

/// The producer's published positions (one cache line, written only by the producer).
#[derive(Debug, Default)]
struct Produced {
    /// Bytes appended since the ring was made (positions grow forever; `& mask` is the offset).
    head: AtomicUsize,
    /// Message bytes appended since the ring was made (headers and padding not counted).
    written: AtomicUsize,
}

/// The consumer's side (one cache line, written under the logger's state lock).
#[derive(Debug, Default)]
struct Consumed {
    /// Bytes consumed since the ring was made.
    tail: AtomicUsize,
    /// The logger took back the producer's unspent credit (see `Rings::revoke`, `credit.rs`).
    revoked: AtomicBool,
}

pub(crate) struct Ring {
    produced: Line<Produced>,
    consumed: Line<Consumed>,
    /// The producing thread has exited: once drained, the ring can be forgotten.
    orphaned: AtomicBool,
    /// The logger has stopped: nothing will drain the ring again, its thread may forget it.
    retired: AtomicBool,
    /// Records carry a time word.
    timed: bool,
    mask: usize,
    /// The storage, as words so every record header is aligned.
    words: Box<[UnsafeCell<u64>]>,
    /// Which words each side touches, for the loom model's race check (empty in a real build).
    accesses: Accesses,
}

// SAFETY: the storage is shared under the single-producer single-consumer protocol: the producer
// writes only bytes in [head, tail + capacity) and publishes them with a release store of `head`;
// the consumer (serialised by the logger's state lock) reads only [tail, head) after an acquire
// load of `head`, and hands the space back with a release store of `tail`, which the producer
// loads with acquire before reusing it. No byte is ever accessed by both sides at once.
unsafe impl Sync for Ring {}
// SAFETY: as above; the ring owns its storage and has no thread affinity.
unsafe impl Send for Ring {}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("produced", &self.produced.0)
            .field("consumed", &self.consumed.0)
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// `n` zeroed words from the allocator's zeroed path: for a ring this size that is fresh pages
/// from the kernel, so a thread that logs a few messages touches a few pages, not 256 KiB.
fn zeroed_words(n: usize) -> Box<[UnsafeCell<u64>]> {
    let words: Box<[u64]> = vec![0u64; n].into_boxed_slice();
    // SAFETY: UnsafeCell<u64> is repr(transparent) over u64, so the slice has the same layout
    // and the same allocation; ownership moves from one Box to the other.
    unsafe { Box::from_raw(Box::into_raw(words) as *mut [UnsafeCell<u64>]) }
}

/// Rounds `n` up to a whole number of words.
#[inline]
fn padded(n: usize) -> usize {
    (n + 7) & !7
}

/// The producer's private view of its ring: positions it keeps without touching shared lines.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Cursor {
    /// Where the next record goes (equal to the ring's `head` after every append).
    pub head: usize,
    /// The consumer's position as last seen: space up to `tail + capacity` is free.
    pub tail: usize,
    /// Message bytes appended so far (equal to the ring's `written`).
    pub written: usize,
}

impl Ring {
    /// A ring of at least `bytes` bytes (rounded up to a power of two, at least 4 KiB);
    /// `timed` when records carry a time.
    pub fn new(bytes: usize, timed: bool) -> Ring {
        let cap = bytes.max(4096).next_power_of_two();
        Ring {
            produced: Line::default(),
            consumed: Line::default(),
            orphaned: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            timed,
            mask: cap - 1,
            words: zeroed_words(cap / 8),
            accesses: Accesses::new(cap / 8),
        }
    }

    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Bytes a record of a `len`-byte message takes.
    #[inline]
    fn record_size(&self, len: usize) -> usize {
        8 + if self.timed { 8 } else { 0 } + padded(len)
    }

    /// A pointer to byte `pos` of the storage.
    #[inline]
    fn at(&self, pos: usize) -> *mut u8 {
        // The offset is masked into the storage; UnsafeCell makes writing through it sound.
        self.words
            .as_ptr()
            .cast::<u8>()
            .cast_mut()
            .wrapping_add(pos & self.mask)
    }

    /// Producer: appends one message if it fits in the free space, and publishes it. Returns
    /// false (and changes nothing) when the ring lacks room. Must only be called by the ring's
    /// producing thread, with its own cursor.
    #[inline]
    pub fn try_push(&self, cur: &mut Cursor, msg: &[u8], time_us: i64) -> bool {
        // Fields in locals: the stores below go through raw pointers, which the compiler would
        // otherwise assume may change them.
        let (mask, timed) = (self.mask, self.timed);
        let base = self.words.as_ptr().cast::<u8>().cast_mut();
        let cap = mask + 1;
        let len = msg.len();
        // The largest message taken: half the ring, so an empty ring always takes it, wrap
        // included (larger ones go to the logger's buffer under its lock).
        if len > cap / 2 - 16 {
            return false;
        }
        let rec = 8 + if timed { 8 } else { 0 } + padded(len);
        let mut pos = cur.head;
        let lap_left = cap - (pos & mask);
        let need = if rec <= lap_left { rec } else { lap_left + rec };
        if pos + need - cur.tail > cap {
            cur.tail = self.consumed.0.tail.load(Ordering::Acquire);
            if pos + need - cur.tail > cap {
                return false;
            }
        }
        // SAFETY: [head, head + need) lies within the free space checked above (head + need <=
        // tail + capacity), which the consumer does not read until `head` is published below;
        // positions stay multiples of 8, so every header and time word is an aligned word of
        // the storage, and a record never runs past the end of a lap (it wraps first), so
        // `base + (pos & mask)` plus the record's size stays inside the storage.
        unsafe {
            if rec > lap_left {
                self.accesses.write((pos & mask) / 8, (pos & mask) / 8 + 1);
                base.add(pos & mask).cast::<u64>().write(WRAP);
                pos += lap_left;
            }
            self.accesses
                .write((pos & mask) / 8, (pos & mask) / 8 + rec / 8);
            let at = base.add(pos & mask);
            at.cast::<u64>().write(len as u64);
            let body = if timed {
                at.add(8).cast::<u64>().write(time_us as u64);
                at.add(16)
            } else {
                at.add(8)
            };
            std::ptr::copy_nonoverlapping(msg.as_ptr(), body, len);
        }
        cur.head = pos + rec;
        cur.written += len;
        prefetch_for_write(base, cur.head & mask, cap);
        self.produced
            .0
            .written
            .store(cur.written, Ordering::Relaxed);
        self.produced.0.head.store(cur.head, Ordering::Release);
        true
    }

    /// Producer: takes back the record of `len` bytes it appended last, which started at `at`
    /// (used when the logger turned out to be closed and no consumer will ever read it).
    pub fn retract(&self, cur: &mut Cursor, at: usize, len: usize) {
        cur.head = at;
        cur.written -= len;
        self.produced
            .0
            .written
            .store(cur.written, Ordering::Relaxed);
        self.produced.0.head.store(at, Ordering::Release);
    }

    /// Whether the record that starts at position `at` has been consumed (state lock held).
    pub fn consumed_past(&self, at: usize) -> bool {
        self.consumed.0.tail.load(Ordering::Acquire) > at
    }

    /// Producer, after appending: whether the logger revoked its credit.
    #[inline]
    pub fn is_revoked(&self) -> bool {
        self.consumed.0.revoked.load(Ordering::Relaxed)
    }

    /// Message bytes the producer has appended so far (for `Rings::revoke`, after a
    /// fence; or under the state lock by the producer itself).
    pub fn written(&self) -> usize {
        self.produced.0.written.load(Ordering::Relaxed)
    }

    /// State lock held: marks (or clears) the producer's credit as revoked.
    pub fn set_revoked(&self, revoked: bool) {
        self.consumed.0.revoked.store(revoked, Ordering::Relaxed);
    }

    /// Consumer (state lock held): moves published records into `buf`, in order, until at
    /// least `budget` message bytes have moved, and frees their space. Returns the message
    /// bytes moved and whether the ring is drained (of what was published when it started).
    pub fn drain_into(&self, buf: &mut Buffer, budget: usize) -> (usize, bool) {
        let head = self.produced.0.head.load(Ordering::Acquire);
        let mut pos = self.consumed.0.tail.load(Ordering::Relaxed);
        let mut moved = 0;
        while pos < head && moved < budget {
            // SAFETY: [tail, head) was written and published by the producer (acquire load of
            // `head` above) and is not touched by it again until `tail` moves past it; headers
            // are 8-aligned words inside the storage, and a header's length was written by
            // `try_push`, so the message bytes lie inside the same lap.
            unsafe {
                let first = (pos & self.mask) / 8;
                self.accesses.read(first, first + 1);
                let word = self.at(pos).cast::<u64>().read();
                if word == WRAP {
                    pos += self.capacity() - (pos & self.mask);
                    continue;
                }
                let len = word as usize;
                self.accesses
                    .read(first + 1, first + self.record_size(len) / 8);
                let mut body = pos + 8;
                let time = if self.timed {
                    let t = self.at(body).cast::<u64>().read() as i64;
                    body += 8;
                    Some(t)
                } else {
                    None
                };
                let bytes = std::slice::from_raw_parts(self.at(body), len);
                buf.push(bytes, time);
                moved += len;
                pos += self.record_size(len);
            }
        }
        self.consumed.0.tail.store(pos, Ordering::Release);
        (moved, pos >= head)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.produced.0.head.load(Ordering::Acquire) == self.consumed.0.tail.load(Ordering::Relaxed)
    }

    /// Producer, from its thread's exit: it will append nothing more.
    pub fn orphan(&self) {
        self.orphaned.store(true, Ordering::Release);
    }

    pub fn is_orphaned(&self) -> bool {
        self.orphaned.load(Ordering::Acquire)
    }

    /// Consumer, when its logger stops: the producing thread may forget the ring.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(r: &Ring) -> Vec<(Vec<u8>, Option<i64>)> {
        let mut b = Buffer::default();
        r.drain_into(&mut b, usize::MAX);
        b.records().map(|r| (r.bytes.to_vec(), r.time_us)).collect()
    }

    #[test]
    fn push_and_drain_in_order_with_times() {
        let r = Ring::new(4096, true);
        let mut c = Cursor::default();
        assert!(r.try_push(&mut c, b"abc", 1));
        assert!(r.try_push(&mut c, b"", 2));
        assert!(r.try_push(&mut c, b"0123456789", 3));
        assert_eq!(
            drain(&r),
            vec![
                (b"abc".to_vec(), Some(1)),
                (b"".to_vec(), Some(2)),
                (b"0123456789".to_vec(), Some(3))
            ]
        );
        assert!(r.is_empty());
    }

    #[test]
    fn wraps_and_refuses_when_full() {
        let r = Ring::new(4096, false);
        let mut c = Cursor::default();
        let msg = [b'x'; 1000];
        // 1008-byte records: four fit in 4096 bytes.
        for _ in 0..4 {
            assert!(r.try_push(&mut c, &msg, 0));
        }
        assert!(!r.try_push(&mut c, &msg, 0));
        assert_eq!(drain(&r).len(), 4);
        // Now the free space straddles the end: the next records wrap.
        let mut sent = 0;
        for round in 0..50u8 {
            let m = vec![round; 700 + round as usize * 13];
            assert!(r.try_push(&mut c, &m, 0));
            sent += 1;
            if round % 2 == 1 {
                let got = drain(&r);
                assert!(got.iter().all(|(b, _)| b.iter().all(|&x| x == b[0])));
                sent -= got.len();
            }
        }
        assert_eq!(drain(&r).len(), sent);
    }

    #[test]
    fn too_large_is_refused() {
        let r = Ring::new(4096, false);
        let mut c = Cursor::default();
        assert!(!r.try_push(&mut c, &[0; 2048], 0));
        assert!(r.try_push(&mut c, &[0; 2048 - 16], 0));
    }

    #[test]
    fn retract_and_discard() {
        let r = Ring::new(4096, false);
        let mut c = Cursor::default();
        assert!(r.try_push(&mut c, b"keep", 0));
        let at = c.head;
        assert!(r.try_push(&mut c, b"take back", 0));
        r.retract(&mut c, at, 9);
        assert_eq!(drain(&r), vec![(b"keep".to_vec(), None)]);
        assert!(r.is_empty());
    }

    #[test]
    fn producer_and_consumer_threads() {
        use std::sync::{Arc, Mutex};
        let r = Arc::new(Ring::new(4096, false));
        let lock = Arc::new(Mutex::new(Buffer::default()));
        // Miri interprets every step: a smaller run still interleaves the two threads.
        let n = if cfg!(miri) { 3_000u32 } else { 200_000u32 };
        let p = {
            let r = r.clone();
            std::thread::spawn(move || {
                let mut c = Cursor::default();
                for i in 0..n {
                    let m = i.to_le_bytes();
                    while !r.try_push(&mut c, &m[..(i % 5) as usize], 0) {
                        std::hint::spin_loop();
                    }
                }
            })
        };
        let mut got = 0u32;
        while got < n {
            let mut b = lock.lock().unwrap();
            r.drain_into(&mut b, 1000);
            for rec in b.records() {
                let want = got.to_le_bytes();
                assert_eq!(rec.bytes, &want[..(got % 5) as usize]);
                got += 1;
            }
            b.clear();
        }
        p.join().unwrap();
    }
}

/// The ring under loom (`make loom`, docs/MODELS.md): one producer thread, and a consumer that
/// drains under the logger's state lock (`sync::Mutex`, itself modelled), while the producer
/// fills the ring, waits for room and wraps. Loom checks every word the two sides touch through
/// raw pointers against the happens-before order (`Accesses`), so a record read before it was
/// published, or space reused before it was read, fails the model.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::Mutex;
    use loom::sync::Arc;

    /// 1500-byte messages in a 4 KiB ring: records of 1512 bytes, two per lap, and the third
    /// does not fit before the end (a wrap marker, then offset 0).
    fn message(i: u8) -> Vec<u8> {
        (0..1500)
            .map(|k| i.wrapping_mul(31).wrapping_add(k as u8))
            .collect()
    }

    #[test]
    fn loom_ring_publish_reuse_and_wrap() {
        crate::atomics::model(None, || {
            let ring = Arc::new(Ring::new(4096, true));
            let state = Arc::new(Mutex::new(Buffer::default()));
            let producer = {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    let mut cur = Cursor::default();
                    for i in 0..3u8 {
                        // The third waits for the consumer to free the first lap.
                        while !ring.try_push(&mut cur, &message(i), i as i64) {
                            loom::thread::yield_now();
                        }
                    }
                })
            };
            let mut got = Vec::new();
            while got.len() < 3 {
                let mut buf = state.lock();
                ring.drain_into(&mut buf, usize::MAX);
                got.extend(buf.records().map(|r| (r.bytes.to_vec(), r.time_us)));
                buf.clear();
                drop(buf);
                if got.len() < 3 {
                    loom::thread::yield_now();
                }
            }
            producer.join().unwrap();
            for (i, (bytes, time)) in got.iter().enumerate() {
                assert_eq!(bytes, &message(i as u8), "record {i}");
                assert_eq!(*time, Some(i as i64));
            }
            assert!(ring.is_empty());
        });
    }
}
