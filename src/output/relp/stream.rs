//! The byte stream under a RELP session: the plain socket (`relp://`) or TLS over it
//! (`relps://`, imrelp's `tls="on"`).

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use socket2::Socket;

use crate::output::socket::{peek, NoSigPipe, Peek};
pub use crate::output::tls::Stream;
use crate::output::tls::{Tls, TlsSettings};

impl Stream {
    /// `sock` as is, or after a TLS handshake when `tls` is given.
    ///
    /// Errors: the handshake's (worded by [`Tls::handshake`]: `handshake failed: …`); a
    /// server that hangs up during the handshake gets a sentence on its likely cause.
    pub fn open(
        sock: Socket,
        tls: Option<&TlsSettings>,
        timeout: std::time::Duration,
    ) -> io::Result<Stream> {
        Ok(match tls {
            None => Stream::Plain(NoSigPipe(sock)),
            Some(t) => {
                let tls = Tls::handshake(sock, t, timeout).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        // GnuTLS-backed imrelp without tls.myCert offers only anonymous
                        // (ANON-DH) cipher suites, and hangs up on a client that has none.
                        io::Error::other(
                            "handshake failed: the RELP server closed the connection (an imrelp \
                             with tls=\"on\" but no tls.myCert offers only anonymous TLS, which \
                             rlog does not speak)",
                        )
                    } else {
                        e
                    }
                })?;
                Stream::Tls(Box::new(tls.into_stream()))
            }
        })
    }

    /// Whether nothing but TLS housekeeping arrived unasked on `probe` (this stream's socket):
    /// the server speaks only when spoken to, but for `serverclose`, so any application data,
    /// an end of stream or an error means the session is over. TLS 1.3 session tickets that
    /// arrive after the handshake are handed to rustls.
    pub fn is_idle(&mut self, probe: &Socket) -> bool {
        loop {
            match peek(probe) {
                Peek::Idle => return true,
                Peek::Closed => return false,
                Peek::Data => match self {
                    Stream::Plain(_) => return false,
                    Stream::Tls(s) => {
                        match s.conn.read_tls(&mut s.sock) {
                            Ok(0) | Err(_) => return false,
                            Ok(_) => {}
                        }
                        match s.conn.process_new_packets() {
                            Ok(st) if st.peer_has_closed() || st.plaintext_bytes_to_read() > 0 => {
                                return false
                            }
                            Ok(_) => {}
                            Err(_) => return false,
                        }
                    }
                },
            }
        }
    }

    pub fn fd(&self) -> RawFd {
        match self {
            Stream::Plain(s) => s.0.as_raw_fd(),
            Stream::Tls(s) => s.sock.0.as_raw_fd(),
        }
    }
}
