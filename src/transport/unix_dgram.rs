//! Unix datagram transport (`logger = socket:/path`, as uWSGI's socket logger): one datagram per
//! record, sent to the socket at a path.

use std::io;

use socket2::{Domain, SockAddr, Socket, Type};

use super::{SendError, Transport};
use crate::buffer::Buffer;

pub struct UnixDgram {
    sock: Socket,
}

impl UnixDgram {
    /// A datagram socket connected to `path`, so a receiver that went away is reported on send.
    ///
    /// Errors: the path is too long, or nothing is bound there (`ECONNREFUSED`/`ENOENT`).
    pub fn connect(path: &str) -> io::Result<UnixDgram> {
        let sock = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
        sock.connect(&SockAddr::unix(path)?)?;
        Ok(UnixDgram { sock })
    }
}

impl Transport for UnixDgram {
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
    fn one_datagram_per_record() {
        let dir = std::env::temp_dir().join(format!("rlog-ud-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let _ = std::fs::remove_file(&path);
        let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let mut t = UnixDgram::connect(path.to_str().unwrap()).unwrap();
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
        assert!(UnixDgram::connect(path.to_str().unwrap()).is_err());
    }
}
