//! Datagram transports: one datagram per message over a connected socket — UDP (`sock_type =
//! udp`, `udp://`, `socket:HOST:PORT`) or a unix datagram socket (`socket:/path`, as uWSGI's
//! socket logger). lua-resty-logger-socket concatenates its whole buffer into one UDP datagram,
//! which a receiver cannot split again; rlog does not.

use std::io;
use std::net::ToSocketAddrs;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{SendError, Transport};
use crate::buffer::Buffer;

/// The largest UDP payload over IPv4: 65535 - 8 (UDP header) - 20 (IP header).
pub const MAX_DATAGRAM: usize = 65507;

/// A connected datagram socket: the kernel reports a receiver that is not there (ICMP port
/// unreachable, or no socket at the path) as an error on a later send.
pub struct Datagram {
    sock: Socket,
}

/// Connects a UDP socket to `host:port` (the first address it resolves to).
pub fn udp(host: &str, port: u16) -> io::Result<Datagram> {
    let addr = (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{host}: host not found"))
    })?;
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    sock.connect(&addr.into())?;
    Ok(Datagram { sock })
}

/// Connects a unix datagram socket to `path`.
///
/// Errors: the path is too long, or nothing is bound there (`ECONNREFUSED`/`ENOENT`).
pub fn unix(path: &str) -> io::Result<Datagram> {
    let sock = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
    sock.connect(&SockAddr::unix(path)?)?;
    Ok(Datagram { sock })
}

impl Transport for Datagram {
    fn send(&mut self, batch: &Buffer) -> Result<(), SendError> {
        for (i, rec) in batch.records().enumerate() {
            loop {
                match self.sock.send_with_flags(rec.bytes, libc::MSG_NOSIGNAL) {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        return Err(SendError {
                            delivered: i,
                            error,
                        })
                    }
                }
            }
        }
        Ok(())
    }

    fn is_alive(&mut self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_one_datagram_per_record() {
        let dir = std::env::temp_dir().join(format!("rlog-ud-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let _ = std::fs::remove_file(&path);
        let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let mut t = unix(path.to_str().unwrap()).unwrap();
        let mut b = Buffer::default();
        b.push(b"one", None);
        b.push(b"", None);
        b.push(b"three", None);
        t.send(&b).unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        for _ in 0..3 {
            let n = rx.recv(&mut buf).unwrap();
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got, vec![b"one".to_vec(), b"".to_vec(), b"three".to_vec()]);
        drop(rx);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(unix(path.to_str().unwrap()).is_err());
    }
}
