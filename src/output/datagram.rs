//! Datagram transports: one datagram per message over a connected socket — UDP (`sock_type =
//! udp`, `udp://`, `socket:HOST:PORT`) or a unix datagram socket (`socket:/path`, as uWSGI's
//! socket logger). lua-resty-logger-socket concatenates its whole buffer into one UDP datagram,
//! which a receiver cannot split again; rlog does not.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{Output, SendError};
use crate::buffer::Buffer;

/// The largest UDP payload over IPv4: 65535 - 8 (UDP header) - 20 (IP header).
pub const MAX_DATAGRAM: usize = 65507;

/// A connected datagram socket: the kernel reports a receiver that is not there (ICMP port
/// unreachable, or no socket at the path) as an error on a later send.
pub struct Datagram {
    sock: Socket,
    /// `host:port` of a UDP peer, to name it when it refused datagrams.
    udp_peer: Option<String>,
    /// UDP datagrams the peer refused since the last [`Output::take_notice`].
    refused: u64,
}

/// A UDP send's `ECONNREFUSED` is about an *earlier* datagram: the kernel learnt from an ICMP port
/// unreachable that it reached no receiver, after it was handed over and counted sent. The call
/// that reports it sends nothing, so the datagram is sent again at once, this many times at most
/// (each refusal comes from a datagram that went out, so more in a row would be another fault).
const REFUSED_RESENDS: u32 = 3;

/// Connects a UDP socket to `host:port` (the first address it resolves to); each send waits at
/// most `timeout` for room in the socket's buffer.
pub fn udp(host: &str, port: u16, timeout: Duration) -> io::Result<Datagram> {
    let addr = super::socket::resolve(host, port)?[0];
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    sock.connect(&addr.into())?;
    super::socket::refuse_self_connect(&sock)?;
    sock.set_write_timeout(Some(timeout))?;
    Ok(Datagram {
        sock,
        udp_peer: Some(addr.to_string()),
        refused: 0,
    })
}

/// Connects a unix datagram socket to `path`; each send waits at most `timeout` for room. A
/// receiver that stops reading fills its queue (`net.unix.max_dgram_qlen`, a few datagrams),
/// and without a send timeout the worker would wait for it forever.
///
/// Errors: the path is too long, or nothing is bound there (`ECONNREFUSED`/`ENOENT`).
pub fn unix(path: &str, timeout: Duration) -> io::Result<Datagram> {
    let sock = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
    sock.connect(&SockAddr::unix(path)?)
        .map_err(|e| super::socket::unix_error(path, e))?;
    sock.set_write_timeout(Some(timeout))?;
    Ok(Datagram {
        sock,
        udp_peer: None,
        refused: 0,
    })
}

impl Output for Datagram {
    fn send(&mut self, batch: &Buffer, until: Option<Instant>) -> Result<(), SendError> {
        for (i, rec) in batch.records().enumerate() {
            super::past(until).map_err(|e| SendError::retry(i, e))?;
            let mut resends = 0;
            loop {
                match self.sock.send_with_flags(rec.bytes, libc::MSG_NOSIGNAL) {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e)
                        if e.kind() == io::ErrorKind::ConnectionRefused
                            && self.udp_peer.is_some()
                            && resends < REFUSED_RESENDS =>
                    {
                        self.refused += 1;
                        resends += 1;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                        return Err(SendError::reject(
                            i,
                            format!(
                                "log record of {} bytes is too large for one datagram",
                                rec.bytes.len()
                            ),
                        ))
                    }
                    Err(error) => return Err(SendError::retry(i, error)),
                }
            }
        }
        Ok(())
    }

    /// Refusals of datagrams already counted sent: reported, not counted as losses, since not
    /// every refusal comes back and none says which datagram it was about.
    fn take_notice(&mut self) -> Option<String> {
        let n = std::mem::take(&mut self.refused);
        let peer = self.udp_peer.as_deref()?;
        (n > 0).then(|| {
            let what = if n == 1 {
                "1 UDP datagram".to_string()
            } else {
                format!("{n} UDP datagrams")
            };
            format!(
                "{what} counted sent {} refused by {peer}: connection refused (is anything receiving there?)",
                if n == 1 { "was" } else { "were" }
            )
        })
    }

    fn is_alive(&mut self) -> bool {
        true
    }

    fn fds(&self) -> Vec<i32> {
        vec![self.sock.as_raw_fd()]
    }
}

#[cfg(test)]
mod tests {

    /// A UDP socket whose source port is its peer's port sends to itself: refused, as TCP's.
    #[test]
    fn a_udp_socket_connected_to_itself_is_refused() {
        let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        sock.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        let me = sock.local_addr().unwrap();
        sock.connect(&me).unwrap();
        let e = super::super::socket::refuse_self_connect(&sock).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        // A socket connected elsewhere passes.
        let other = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        other.connect(&me).unwrap();
        super::super::socket::refuse_self_connect(&other).unwrap();
    }

    use super::*;

    /// A unix datagram receiver bound in a fresh directory named after `name`: the directory,
    /// the socket's path and the receiver.
    fn receiver(
        name: &str,
    ) -> (
        std::path::PathBuf,
        std::path::PathBuf,
        std::os::unix::net::UnixDatagram,
    ) {
        let dir = std::env::temp_dir().join(format!("rlog-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let _ = std::fs::remove_file(&path);
        let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        (dir, path, rx)
    }

    #[test]
    fn unix_one_datagram_per_record() {
        let (dir, path, rx) = receiver("ud");
        let mut t = unix(path.to_str().unwrap(), Duration::from_secs(1)).unwrap();
        let mut b = Buffer::default();
        b.push(b"one", None);
        b.push(b"", None);
        b.push(b"three", None);
        t.send(&b, None).unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        for _ in 0..3 {
            let n = rx.recv(&mut buf).unwrap();
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got, vec![b"one".to_vec(), b"".to_vec(), b"three".to_vec()]);
        drop(rx);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(unix(path.to_str().unwrap(), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn unix_send_to_a_receiver_that_stops_reading_times_out() {
        let (dir, path, _rx) = receiver("ud-full");
        let mut t = unix(path.to_str().unwrap(), Duration::from_millis(50)).unwrap();
        // The kernel keeps timeouts in ticks: what it reports back is rounded up to one.
        let set = t.sock.write_timeout().unwrap().expect("a send timeout");
        assert!(set >= Duration::from_millis(50), "{set:?}");
        // Far more than the receiver's queue holds: the send must fail, not block.
        let mut b = Buffer::default();
        for _ in 0..10_000 {
            b.push(b"queued and never read", None);
        }
        let e = t.send(&b, None).unwrap_err();
        let super::super::Failure::Retry { error, .. } = &e.failure else {
            panic!("{e:?}")
        };
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{e:?}"
        );
        assert!(e.done > 0 && e.done < 10_000, "{}", e.done);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
