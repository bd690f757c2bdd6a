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

/// Connects to `host:port`, trying each address it resolves to, each bounded by `timeout`.
pub fn connect_tcp(host: &str, port: u16, timeout: Duration) -> io::Result<Socket> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host}: host not found"));
    for addr in (host, port).to_socket_addrs()? {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        match sock.connect_timeout(&addr.into(), timeout) {
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

/// Connects to the unix stream socket at `path`, bounded by `timeout`.
pub fn connect_unix(path: &str, timeout: Duration) -> io::Result<Socket> {
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    sock.connect_timeout(&SockAddr::unix(path)?, timeout)?;
    prepare(&sock, timeout)?;
    Ok(sock)
}
