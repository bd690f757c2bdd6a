//! Connecting sockets with a timeout, and writing to them without ever raising SIGPIPE.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::ToSocketAddrs;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// A stream socket whose writes use `MSG_NOSIGNAL`: a peer that went away yields `EPIPE`, never a
/// signal in the host process.
#[derive(Debug)]
pub struct NoSigPipe(pub Socket);

impl Write for NoSigPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send_with_flags(buf, libc::MSG_NOSIGNAL)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for NoSigPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.0).read(buf)
    }
}

/// What a non-blocking look at the receive side finds.
#[derive(Debug, PartialEq, Eq)]
pub enum Peek {
    /// Nothing to read: the connection is idle and open.
    Idle,
    /// The peer sent bytes.
    Data,
    /// The peer closed the connection (or it failed).
    Closed,
}

/// Looks at the receive side without blocking and without consuming anything.
pub fn peek(sock: &Socket) -> Peek {
    let mut byte = [MaybeUninit::<u8>::uninit(); 1];
    match sock.recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
        Ok(0) => Peek::Closed,
        Ok(_) => Peek::Data,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Peek::Idle,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Peek::Idle,
        Err(_) => Peek::Closed,
    }
}

fn prepare(sock: &Socket, timeout: Duration) -> io::Result<()> {
    sock.set_write_timeout(Some(timeout))?;
    sock.set_read_timeout(Some(timeout))?;
    Ok(())
}

/// The addresses `host:port` resolves to. Errors name the host (the resolver's own message
/// does not): `cannot resolve host "logs.example": ...`.
pub fn resolve(host: &str, port: u16) -> io::Result<Vec<std::net::SocketAddr>> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| io::Error::other(format!("cannot resolve host \"{host}\": {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(io::Error::other(format!(
            "cannot resolve host \"{host}\": no address"
        )));
    }
    Ok(addrs)
}

/// Connects to `host:port`, trying each address it resolves to, each bounded by `timeout`.
pub fn connect_tcp(host: &str, port: u16, timeout: Duration) -> io::Result<Socket> {
    let mut last = io::Error::other(format!("cannot resolve host \"{host}\": no address"));
    for addr in resolve(host, port)? {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        match sock
            .connect_timeout(&addr.into(), timeout)
            .and_then(|()| refuse_self_connect(&sock))
        {
            Ok(()) => {
                sock.set_tcp_nodelay(true)?;
                prepare(&sock, timeout)?;
                return Ok(sock);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A TCP connect to a port of this host in the ephemeral range, with nothing listening there,
/// can be given that very port as its source: SYN to itself, "simultaneous open", and the
/// socket is connected to itself. Every byte written would come back to it and be counted sent.
/// Such a connection is refused, as Go's net package does (nothing listens on the port, or the
/// kernel could not have handed it out as a source port). It is reset on close rather than shut
/// down (`SO_LINGER` 0): a normal close would leave the port in TIME_WAIT for a minute, and a
/// collector that binds it without `SO_REUSEADDR` could not start there meanwhile. A UDP socket
/// can be given its peer's port as its source too (rarely: UDP picks source ports at random);
/// its datagrams would come back to it, and no refusal would ever be reported.
pub(super) fn refuse_self_connect(sock: &Socket) -> io::Result<()> {
    let local = sock.local_addr()?.as_socket();
    if local.is_some() && local == sock.peer_addr()?.as_socket() {
        let _ = sock.set_linger(Some(Duration::ZERO));
        return Err(io::Error::from_raw_os_error(libc::ECONNREFUSED));
    }
    Ok(())
}

/// Connects to the unix stream socket at `path`, bounded by `timeout`.
pub fn connect_unix(path: &str, timeout: Duration) -> io::Result<Socket> {
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    sock.connect_timeout(&SockAddr::unix(path)?, timeout)
        .map_err(|e| unix_error(path, e))?;
    prepare(&sock, timeout)?;
    Ok(sock)
}

/// A unix socket's connect error. The message around it names the target; a relative path
/// also gets the directory it was resolved from (the host's working directory, which is seldom
/// what its user expects): `no such file or directory (relative to /srv/app)`.
pub(super) fn unix_error(path: &str, e: io::Error) -> io::Error {
    if e.kind() != io::ErrorKind::NotFound || path.starts_with('/') {
        return e;
    }
    let from = std::env::current_dir().map_or_else(
        |_| "a relative path".to_string(),
        |d| format!("relative to {}", d.display()),
    );
    io::Error::other(format!("no such file or directory ({from})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr, TcpListener};

    /// A free port of 127.0.0.1 (nothing bound to it when this returns).
    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Deterministic: a socket bound to 127.0.0.1:P with SO_REUSEADDR and connected to
    /// 127.0.0.1:P connects to itself on Linux; the check must call that refused.
    #[test]
    fn errors_name_the_host_and_a_relative_path_s_directory() {
        let e = connect_tcp("no-such-host.invalid", 1, Duration::from_millis(100)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot resolve host \"no-such-host.invalid\""),
            "{e}"
        );
        assert!(crate::output::reason(&e).contains("no-such-host.invalid"));
        let e = connect_unix("no/such.sock", Duration::from_millis(100)).unwrap_err();
        let why = crate::output::reason(&e);
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            why,
            format!("no such file or directory (relative to {})", cwd.display())
        );
        let e = connect_unix("/no/such.sock", Duration::from_millis(100)).unwrap_err();
        assert_eq!(crate::output::reason(&e), "no such file or directory");
    }

    #[test]
    fn a_socket_connected_to_itself_is_refused() {
        let port = free_port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        sock.set_reuse_address(true).unwrap();
        sock.bind(&addr.into()).unwrap();
        sock.connect_timeout(&addr.into(), Duration::from_secs(5))
            .expect("simultaneous open to itself");
        assert_eq!(sock.peer_addr().unwrap().as_socket(), Some(addr));
        let err = refuse_self_connect(&sock).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        // Closed, it leaves the port free for a collector (no TIME_WAIT): a listener without
        // SO_REUSEADDR binds it at once.
        drop(sock);
        let collector = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        collector.set_reuse_address(false).unwrap();
        collector
            .bind(&addr.into())
            .expect("the port is free after the refused self-connection");
        drop(collector);

        // A real connection passes.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let real = connect_tcp(
            "127.0.0.1",
            listener.local_addr().unwrap().port(),
            Duration::from_secs(5),
        )
        .unwrap();
        refuse_self_connect(&real).unwrap();
    }

    /// The defect as users met it: connect_tcp to a free port in the ephemeral range, retried
    /// as the worker retries, is sooner or later handed that port as its source and connects
    /// to itself (the old code returned that socket). Every attempt must be refused.
    #[test]
    fn connect_tcp_never_returns_a_connection_to_itself() {
        // Linux hands even ports to connect() and odd ones to bind(0): look for a free even one.
        let (lo, hi) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|v| v.parse::<u16>().ok());
                Some((it.next()??, it.next()??))
            })
            .unwrap_or((32768, 60999));
        let port = loop {
            let p = free_port();
            let p = if p % 2 == 1 { p - 1 } else { p };
            if p >= lo && p <= hi && TcpListener::bind(("127.0.0.1", p)).is_ok() {
                break p;
            }
        };
        let start = std::time::Instant::now();
        let mut attempts = 0u32;
        // The kernel walks the source ports for one destination in small random steps: a pass
        // over the range takes a few thousand connects and hits a given port about one time in
        // four. 100 000 attempts (a second or two) leave the old code no chance to pass.
        while attempts < 100_000 && start.elapsed() < Duration::from_secs(30) {
            attempts += 1;
            match connect_tcp("127.0.0.1", port, Duration::from_secs(5)) {
                Ok(sock) => {
                    let local = sock.local_addr().unwrap().as_socket();
                    let peer = sock.peer_addr().unwrap().as_socket();
                    assert_ne!(local, peer, "connect #{attempts} connected to itself");
                    // Another process started listening on the port: nothing more to learn.
                    return;
                }
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}"),
            }
        }
    }
}
