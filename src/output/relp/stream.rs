//! The byte stream under a RELP session: the plain socket (`relp://`) or TLS over it
//! (`relps://`, imrelp's `tls="on"`).

use std::io;

use socket2::Socket;

use crate::output::socket::NoSigPipe;
pub use crate::output::tls::Stream;
use crate::output::tls::{HandshakeFailed, Tls, TlsSettings};

impl Stream {
    /// `sock` as is, or after a TLS handshake when `tls` is given.
    ///
    /// Errors: the handshake's (a [`HandshakeFailed`]); a
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
                        HandshakeFailed::error(
                            io::ErrorKind::UnexpectedEof,
                            "the RELP server closed the connection (an imrelp with tls=\"on\" \
                             but no tls.myCert offers only anonymous TLS, which rlog does not \
                             speak)"
                                .into(),
                        )
                    } else {
                        e
                    }
                })?;
                Stream::Tls(Box::new(tls.into_stream()))
            }
        })
    }
}
