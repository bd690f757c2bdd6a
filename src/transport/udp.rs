//! UDP transport: one datagram per message. (lua-resty-logger-socket concatenates the whole
//! buffer into one datagram, which a receiver cannot split again; rlog does not.)

use std::io;
use std::net::ToSocketAddrs;

use socket2::{Domain, Protocol, Socket, Type};

use super::{SendError, Transport};
use crate::buffer::Buffer;

/// The largest UDP payload over IPv4: 65535 - 8 (UDP header) - 20 (IP header).
pub const MAX_DATAGRAM: usize = 65507;

pub struct Udp {
    sock: Socket,
}

impl Udp {
    /// A UDP socket connected to `host:port`, so the kernel reports ICMP errors (nothing
    /// listening) on later sends.
    pub fn connect(host: &str, port: u16) -> io::Result<Udp> {
        let addr = (host, port).to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{host}: host not found"))
        })?;
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        sock.connect(&addr.into())?;
        Ok(Udp { sock })
    }
}

impl Transport for Udp {
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
