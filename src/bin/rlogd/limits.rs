//! What bounds rlogd's resources against senders that do not behave: connection slots (with a
//! share kept for authenticated producers, and the oldest unfinished handshake dropped first)
//! and a memory budget for the frames being received and the batches waiting for their commit.

use std::collections::BTreeMap;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rlog::sync::{Condvar, Mutex};

/// Connection slots. A connection is *in its handshake* while its `rlogd://` TLS and HELLO are
/// in progress, *plain* for its whole life on a `tcp://` or `unix://` listener (those have no
/// handshake), and *authenticated* once past its HELLO. Handshakes may take at most
/// `max - max / 4` slots, and so may plain connections: neither kind can take the last
/// quarter, so producers and followers can always get in unless authenticated connections
/// (and plain ones, up to their share) fill the table. When the slots a new connection needs
/// are taken, the oldest handshake still in progress is dropped to make room: a real client
/// completes its handshake in a round trip or two, so the connections dropped are the ones
/// that trickle (slowloris), not the real ones; and once past its handshake a connection is
/// never dropped for room.
pub struct Slots {
    max: usize,
    /// The most handshakes, and the most plain connections, at a time.
    share: usize,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    total: usize,
    plain: usize,
    next: u64,
    /// Handshakes in progress, oldest first (ids grow), with a handle to shut them down.
    handshakes: BTreeMap<u64, TcpStream>,
}

/// An admitted connection's slot; give it back with [`Slots::release`].
#[derive(Debug)]
pub enum Slot {
    /// An `rlogd://` connection in its handshake (its id in the table of handshakes).
    Handshake(u64),
    /// An `rlogd://` connection past its handshake.
    Authenticated,
    /// A `tcp://` or `unix://` connection.
    Plain,
}

impl Slots {
    pub fn new(max: usize) -> Slots {
        Slots {
            max,
            share: (max - max / 4).max(1),
            state: Mutex::new(SlotState::default()),
        }
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.state.lock().total
    }

    /// Drops the oldest handshake in progress; false when there is none. Its thread sees its
    /// socket shut down and ends; the slot is freed here, now.
    fn evict_oldest(st: &mut SlotState) -> bool {
        let Some((_, sock)) = st.handshakes.pop_first() else {
            return false;
        };
        let _ = sock.shutdown(Shutdown::Both);
        st.total -= 1;
        true
    }

    /// Admits an `rlogd://` connection into its handshake. None: every slot is taken by
    /// connections past their handshake and plain ones, refuse it. Second value: whether
    /// the oldest handshake was dropped to make room.
    pub fn admit_handshake(&self, sock: &TcpStream) -> (Option<Slot>, bool) {
        let handle = match sock.try_clone() {
            Ok(h) => h,
            Err(_) => return (None, false),
        };
        let mut st = self.state.lock();
        let mut evicted = false;
        if st.total >= self.max || st.handshakes.len() >= self.share {
            if !Self::evict_oldest(&mut st) {
                return (None, false);
            }
            evicted = true;
        }
        st.total += 1;
        st.next += 1;
        let id = st.next;
        st.handshakes.insert(id, handle);
        (Some(Slot::Handshake(id)), evicted)
    }

    /// Admits a `tcp://` or `unix://` connection. None: no room. Second value: whether the
    /// oldest handshake was dropped to make room.
    pub fn admit_plain(&self) -> (Option<Slot>, bool) {
        let mut st = self.state.lock();
        if st.plain >= self.share {
            return (None, false);
        }
        let mut evicted = false;
        if st.total >= self.max {
            if !Self::evict_oldest(&mut st) {
                return (None, false);
            }
            evicted = true;
        }
        st.total += 1;
        st.plain += 1;
        (Some(Slot::Plain), evicted)
    }

    /// The handshake of `slot` succeeded: it becomes authenticated, and is never dropped for
    /// room. False when it was dropped meanwhile (the connection must then end).
    pub fn authenticated(&self, slot: &mut Slot) -> bool {
        let Slot::Handshake(id) = *slot else {
            return matches!(slot, Slot::Authenticated);
        };
        let mut st = self.state.lock();
        if st.handshakes.remove(&id).is_none() {
            // Released by the eviction already; releasing `slot` again finds nothing to free.
            return false;
        }
        *slot = Slot::Authenticated;
        true
    }

    /// Gives a connection's slot back (a handshake that was dropped to make room has nothing
    /// left to give back).
    pub fn release(&self, slot: Slot) {
        let mut st = self.state.lock();
        let (total, plain) = match slot {
            Slot::Handshake(id) => match st.handshakes.remove(&id) {
                Some(_) => (1, 0),
                None => (0, 0),
            },
            Slot::Authenticated => (1, 0),
            Slot::Plain => (1, 1),
        };
        debug_assert!(st.total >= total && st.plain >= plain);
        // Saturating: a miscount must never wrap into "every slot is taken" forever.
        st.total = st.total.saturating_sub(total);
        st.plain = st.plain.saturating_sub(plain);
    }
}

/// The memory budget of producers' frames: bytes of frame bodies being received plus bytes of
/// batches handed to the committer and not yet committed, across every connection. A
/// connection takes from it as the bytes of a frame arrive and waits when it is spent; what a
/// batch took comes back once the committer is done with it.
pub struct Budget {
    limit: usize,
    used: Mutex<usize>,
    freed: Condvar,
    /// How long a connection waits for room before it is refused.
    wait: Duration,
}

/// Bytes taken from a [`Budget`]; given back on drop.
pub struct Held {
    budget: Arc<Budget>,
    n: usize,
}

impl Budget {
    pub fn new(limit: usize, wait: Duration) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: Mutex::new(0),
            freed: Condvar::new(),
            wait,
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn used(&self) -> usize {
        *self.used.lock()
    }

    /// An empty holding, to take bytes into with [`Held::take`].
    pub fn hold(self: &Arc<Budget>) -> Held {
        Held {
            budget: self.clone(),
            n: 0,
        }
    }
}

impl Held {
    /// Takes `n` more bytes, waiting for room. Errors (`OutOfMemory`): no room came in time.
    pub fn take(&mut self, n: usize) -> io::Result<()> {
        let b = &self.budget;
        let deadline = Instant::now() + b.wait;
        let mut used = b.used.lock();
        // A holding that has nothing yet may always take one frame's worth when the budget is
        // idle, so a budget smaller than a frame cannot block everything forever.
        while *used + n > b.limit && !(*used == 0 && self.n == 0) {
            if b.freed.wait_until(&mut used, deadline).timed_out() && *used + n > b.limit {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!(
                        "rlogd is busy: {} bytes of frames are waiting to be stored (--max-buffered {})",
                        *used, b.limit
                    ),
                ));
            }
        }
        *used += n;
        self.n += n;
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.n > 0 {
            let mut used = self.budget.used.lock();
            *used -= self.n;
            self.budget.freed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_waits_and_refuses() {
        let b = Budget::new(100, Duration::from_millis(50));
        let mut a = b.hold();
        a.take(80).unwrap();
        let mut c = b.hold();
        assert!(c.take(30).is_err());
        assert_eq!(b.used(), 80);
        drop(a);
        assert_eq!(b.used(), 0);
        c.take(30).unwrap();
        drop(c);
        // Larger than the whole budget, but the budget is idle: allowed.
        let mut d = b.hold();
        d.take(500).unwrap();
    }

    #[test]
    fn slots_keep_a_share_and_drop_the_oldest_handshake() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let socks: Vec<_> = (0..6).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let s = Slots::new(4); // 3 unauthenticated at most
        let mut a = s.admit_handshake(&socks[0]).0.unwrap();
        assert!(s.authenticated(&mut a));
        let h1 = s.admit_handshake(&socks[1]).0.unwrap();
        let _h2 = s.admit_handshake(&socks[2]).0.unwrap();
        let _h3 = s.admit_handshake(&socks[3]).0.unwrap();
        assert_eq!(s.open(), 4);
        // Full: the oldest handshake (h1) makes room.
        let (h4, evicted) = s.admit_handshake(&socks[4]);
        assert!(evicted);
        assert_eq!(s.open(), 4);
        let mut h1 = h1;
        assert!(!s.authenticated(&mut h1));
        s.release(h1);
        assert_eq!(s.open(), 4);
        s.release(h4.unwrap());
        s.release(a);
        assert_eq!(s.open(), 2);
    }

    #[test]
    fn plain_connections_cannot_take_the_producers_share() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sock = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let s = Slots::new(4);
        let plain: Vec<_> = (0..3).map(|_| s.admit_plain().0.unwrap()).collect();
        assert!(s.admit_plain().0.is_none());
        // A producer still gets in, through its handshake.
        let mut p = s.admit_handshake(&sock).0.unwrap();
        assert!(s.authenticated(&mut p));
        assert_eq!(s.open(), 4);
        // Full of plain and authenticated connections: nothing to drop, refused.
        assert!(s.admit_handshake(&sock).0.is_none());
        for c in plain {
            s.release(c);
        }
        s.release(p);
        assert_eq!(s.open(), 0);
    }
}
