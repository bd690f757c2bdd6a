//! Loopback collectors for the integration tests: real sockets on 127.0.0.1 that record what
//! they receive, plus the misbehaving kinds the fault tests need (closes at once, never reads,
//! never accepts).

#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Everything a collector received, by connection, in arrival order.
#[derive(Default)]
pub struct Received {
    pub conns: Vec<Vec<u8>>,
    pub datagrams: Vec<Vec<u8>>,
}

pub type Shared = Arc<Mutex<Received>>;

/// A TCP (or unix) collector that accepts any number of connections and reads them to EOF.
pub struct Collector {
    pub addr: Option<SocketAddr>,
    pub path: Option<PathBuf>,
    pub got: Shared,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn read_conn(mut s: impl Read, got: Shared, idx: usize, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => got.lock().unwrap().conns[idx].extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

impl Collector {
    /// A TCP collector on an ephemeral 127.0.0.1 port.
    pub fn tcp() -> Collector {
        Self::tcp_on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// A TCP collector on a given port (to restart one on the same address).
    pub fn tcp_at(addr: SocketAddr) -> Collector {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(addr) {
                Ok(l) => return Self::tcp_on(l),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("cannot rebind {addr}: {e}"),
            }
        }
    }

    /// A TCP collector on a socket bound and held so far (see `refusing_port`): the collector
    /// "comes up" on the very port a logger was failing to reach.
    pub fn listen_on(s: socket2::Socket) -> Collector {
        s.listen(128).unwrap();
        Self::tcp_on(s.into())
    }

    fn tcp_on(l: TcpListener) -> Collector {
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        Self::serve(Some(addr), None, move || {
            let (s, _) = l.accept()?;
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
            Ok(Box::new(s) as Box<dyn Read + Send>)
        })
    }

    /// A unix stream collector at a fresh path.
    pub fn unix(dir: &Path) -> Collector {
        let path = dir.join("collector.sock");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        l.set_nonblocking(true).unwrap();
        Self::serve(None, Some(path), move || {
            let (s, _) = l.accept()?;
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
            Ok(Box::new(s) as Box<dyn Read + Send>)
        })
    }

    /// Runs `accept` (non-blocking) until stopped, reading each connection on its own thread.
    fn serve(
        addr: Option<SocketAddr>,
        path: Option<PathBuf>,
        mut accept: impl FnMut() -> std::io::Result<Box<dyn Read + Send>> + Send + 'static,
    ) -> Collector {
        let got: Shared = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (g, st) = (got.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut readers = Vec::new();
            while !st.load(Ordering::SeqCst) {
                match accept() {
                    Ok(s) => {
                        let idx = {
                            let mut r = g.lock().unwrap();
                            r.conns.push(Vec::new());
                            r.conns.len() - 1
                        };
                        let (g2, st2) = (g.clone(), st.clone());
                        readers.push(thread::spawn(move || read_conn(s, g2, idx, st2)));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
            drop(accept);
            for r in readers {
                let _ = r.join();
            }
        });
        Collector {
            addr,
            path,
            got,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.unwrap().port()
    }

    /// All bytes received, connections concatenated in accept order.
    pub fn data(&self) -> Vec<u8> {
        self.got.lock().unwrap().conns.concat()
    }

    pub fn connections(&self) -> usize {
        self.got.lock().unwrap().conns.len()
    }

    /// Newline-terminated lines received.
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.data())
            .split_terminator('\n')
            .map(str::to_string)
            .collect()
    }

    /// Waits until `pred(data)` holds (or 10 s pass); returns whether it did.
    pub fn wait(&self, pred: impl Fn(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if pred(&self.data()) {
                return true;
            }
            thread::sleep(Duration::from_millis(5));
        }
        pred(&self.data())
    }

    pub fn wait_bytes(&self, n: usize) -> bool {
        self.wait(|d| d.len() >= n)
    }

    /// Stops accepting and reading; returns what it got.
    pub fn stop(mut self) -> Vec<u8> {
        self.shutdown();
        self.data()
    }

    /// Stops accepting and reading; returns the lines it got.
    #[allow(dead_code)]
    pub fn stop_lines(self) -> Vec<String> {
        String::from_utf8_lossy(&self.stop())
            .split_terminator('\n')
            .map(str::to_string)
            .collect()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A UDP collector recording each datagram.
pub struct UdpCollector {
    pub addr: SocketAddr,
    pub got: Shared,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpCollector {
    pub fn new() -> UdpCollector {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let _ = socket2::SockRef::from(&s).set_recv_buffer_size(8 << 20);
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let addr = s.local_addr().unwrap();
        let got: Shared = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (g, st) = (got.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 70_000];
            while !st.load(Ordering::SeqCst) {
                if let Ok(n) = s.recv(&mut buf) {
                    g.lock().unwrap().datagrams.push(buf[..n].to_vec());
                }
            }
        });
        UdpCollector {
            addr,
            got,
            stop,
            thread: Some(thread),
        }
    }

    pub fn datagrams(&self) -> Vec<Vec<u8>> {
        self.got.lock().unwrap().datagrams.clone()
    }

    pub fn wait_count(&self, n: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.datagrams().len() >= n {
                return true;
            }
            thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

impl Drop for UdpCollector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A listener that accepts each connection and closes it at once.
pub fn closing_listener() -> (SocketAddr, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    thread::spawn(move || {
        while !st.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((s, _)) => drop(s),
                Err(_) => thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    (addr, stop)
}

/// A listener that accepts connections and never reads from them.
pub fn silent_listener() -> (SocketAddr, Arc<Mutex<Vec<TcpStream>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let h = held.clone();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let _ = socket2::SockRef::from(&s).set_recv_buffer_size(4096);
            h.lock().unwrap().push(s);
        }
    });
    (addr, held)
}

/// A port where connections are refused for as long as the returned socket lives: it is bound
/// and never listens, so no other test or process can start listening there meanwhile (a port
/// found free and released can be taken by a parallel test's collector).
pub fn refusing_port() -> (u16, socket2::Socket) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let port = s.local_addr().unwrap().as_socket().unwrap().port();
    (port, s)
}

/// A listener whose accept queue is full and never drained: connects to it time out.
pub fn black_hole() -> (SocketAddr, Vec<socket2::Socket>) {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    // Fill the accept queue (backlog 0 holds one or two) with connections nobody accepts.
    for _ in 0..4 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    thread::sleep(Duration::from_millis(50));
    fillers.push(l);
    (addr, fillers)
}

/// Config text for a TCP collector, plus extra lines.
pub fn tcp_config(port: u16, extra: &str) -> String {
    format!("host = 127.0.0.1\nport = {port}\n{extra}")
}

/// Checks the accounting identity (SPEC §6): `logged + adopted == sent + lost + spooled +
/// buffered`, in messages and in bytes.
pub fn assert_identity(s: &rlog::rlog_stats) {
    assert_eq!(
        s.logged + s.adopted,
        s.sent + s.lost + s.spooled + s.buffered,
        "identity broken: {s:?}"
    );
    assert_eq!(
        s.logged_bytes + s.adopted_bytes,
        s.sent_bytes + s.lost_bytes + s.spooled_bytes + s.buffered_bytes,
        "byte identity broken: {s:?}"
    );
}

/// Waits until the logger holds nothing in memory (10 s at most).
pub fn wait_drained(lg: &rlog::Logger) -> rlog::rlog_stats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = lg.stats();
        if s.buffered == 0 || Instant::now() > deadline {
            return s;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A fresh temporary directory under the target dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rlog-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The stalled-collector half of the resume tests: logs 6 000 lines of 1 000 bytes, sees the
/// first flush time out while the collector reads nothing, then tells it to read (`go`) while
/// the logger closes. Checks that every line arrived whole, once and in order on one
/// connection, and the counts. `reader` returns the connections it accepted and the bytes read.
pub fn stall_then_resume(
    lg: &rlog::Logger,
    go: std::sync::mpsc::Sender<()>,
    reader: JoinHandle<(usize, Vec<u8>)>,
) {
    const N: usize = 6000;
    let msg = |i: usize| format!("{i:05}:{}\n", "x".repeat(993));
    for i in 0..N {
        assert!(matches!(
            lg.log(msg(i).as_bytes()),
            rlog::Logged::Buffered(_)
        ));
    }
    // The collector reads nothing yet: the send fills the socket buffers and times out.
    assert_eq!(lg.flush(), -1);
    let s = lg.stats();
    assert!(s.sent < N as u64, "{s:?}");
    assert_identity(&s);
    let closer = {
        let lg = lg.clone();
        thread::spawn(move || lg.close(Duration::from_secs(20)))
    };
    thread::sleep(Duration::from_millis(200));
    go.send(()).unwrap();
    assert!(closer.join().unwrap(), "everything delivered");
    let (conns, got) = reader.join().unwrap();
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.lost), (N as u64, N as u64, 0), "{s:?}");
    assert_identity(&s);
    assert_eq!(s.connects, 1, "the timed-out connection was kept");
    assert_eq!(conns, 1);
    let lines: Vec<&[u8]> = got.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), N, "no fragment, no duplicate");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(*l, msg(i).as_bytes(), "record {i}");
    }
}

/// A free port of 127.0.0.1 that this function never returned before in this test process.
/// The tests of a binary run in parallel, and the kernel may offer a port one test released (a
/// probe, or a server it stops and starts again) to another. Seen: a test whose records all
/// went to another test's nginx; a concurrent test's rsyslogd that took a restarting one's
/// port for its imtcp input, where the restarting test's `relps://` logger then sent its TLS
/// handshake.
pub fn fresh_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}
