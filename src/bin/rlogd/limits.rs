//! What bounds rlogd's resources against senders that do not behave: connection slots (with a
//! share kept for authenticated producers, and the oldest unfinished handshake dropped first)
//! and a memory budget for the frames being received and the batches waiting for their commit.

use std::collections::BTreeMap;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rlog::sync::{Condvar, Mutex};

/// Connection slots. A connection is *unauthenticated* while its `rlogd://` handshake (TLS and
/// HELLO) is in progress, and for its whole life on a `tcp://` or `unix://` listener (those
/// have no handshake). Unauthenticated connections may take at most `max - max / 4` slots, so
/// a quarter is always left for producers and followers that completed their handshake. When
/// the slots a new connection needs are taken, the oldest handshake still in progress is
/// dropped to make room: a real client completes its handshake in a round trip or two, so the
/// connections dropped are the ones that trickle (slowloris), not the real ones.
pub struct Slots {
    max: usize,
    unauth_cap: usize,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    total: usize,
    unauth: usize,
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
            unauth_cap: (max - max / 4).max(1),
            state: Mutex::new(SlotState::default()),
        }
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.state.lock().total
    }

    /// Frees a slot for a new unauthenticated connection: `Some(evicted)` when there is one
    /// (`evicted`: by dropping the oldest handshake in progress), None when there is none.
    fn make_room(&self, st: &mut SlotState) -> Option<bool> {
        if st.total < self.max && st.unauth < self.unauth_cap {
            return Some(false);
        }
        let (_, sock) = st.handshakes.pop_first()?;
        // Its thread sees its socket shut down and ends; the slot is freed here, now.
        let _ = sock.shutdown(Shutdown::Both);
        st.total -= 1;
        st.unauth -= 1;
        Some(true)
    }

    /// Admits an `rlogd://` connection into its handshake. None: every slot is taken by
    /// connections past their handshake (or plain ones), refuse it. Second value: whether
    /// the oldest handshake was dropped to make room.
    pub fn admit_handshake(&self, sock: &TcpStream) -> (Option<Slot>, bool) {
        let handle = match sock.try_clone() {
            Ok(h) => h,
            Err(_) => return (None, false),
        };
        let mut st = self.state.lock();
        let Some(evicted) = self.make_room(&mut st) else {
            return (None, false);
        };
        st.total += 1;
        st.unauth += 1;
        st.next += 1;
        let id = st.next;
        st.handshakes.insert(id, handle);
        (Some(Slot::Handshake(id)), evicted)
    }

    /// Admits a `tcp://` or `unix://` connection. None: no room. Second value: whether the
    /// oldest handshake was dropped to make room.
    pub fn admit_plain(&self) -> (Option<Slot>, bool) {
        let mut st = self.state.lock();
        let Some(evicted) = self.make_room(&mut st) else {
            return (None, false);
        };
        st.total += 1;
        st.unauth += 1;
        (Some(Slot::Plain), evicted)
    }

    /// The handshake of `slot` succeeded: it moves to the authenticated share. False when it
    /// was dropped meanwhile to make room (the connection must then end).
    pub fn authenticated(&self, slot: &mut Slot) -> bool {
        let Slot::Handshake(id) = *slot else {
            return matches!(slot, Slot::Authenticated);
        };
        let mut st = self.state.lock();
        if st.handshakes.remove(&id).is_none() {
            // Released by the eviction already; releasing `slot` again finds nothing to free.
            return false;
        }
        st.unauth -= 1;
        *slot = Slot::Authenticated;
        true
    }

    /// Gives a connection's slot back (a handshake that was dropped to make room has nothing
    /// left to give back).
    pub fn release(&self, slot: Slot) {
        let mut st = self.state.lock();
        let (total, unauth) = match slot {
            Slot::Handshake(id) => match st.handshakes.remove(&id) {
                Some(_) => (1, 1),
                None => (0, 0),
            },
            Slot::Authenticated => (1, 0),
            Slot::Plain => (1, 1),
        };
        debug_assert!(st.total >= total && st.unauth >= unauth);
        // Saturating: a miscount must never wrap into "every slot is taken" forever.
        st.total = st.total.saturating_sub(total);
        st.unauth = st.unauth.saturating_sub(unauth);
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
}
