//! TLS over a stream socket, with rustls (ring provider).
//!
//! Verification is on unless `ssl_verify = false`; the roots are the system's, or the PEM file
//! named by `ssl_ca`. The server name checked (and sent as SNI unless it is an IP address) is
//! `sni_host`, else `host`.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use socket2::Socket;

use super::socket::{peek, NoSigPipe, Peek};
use super::{Output, Resume, SendError};
use crate::buffer::Buffer;

/// Why a TLS handshake failed (carried inside an `io::Error` of the matching kind): the
/// driver's connect error then says `TLS handshake with TARGET: WHY` rather than `connect`.
#[derive(Debug)]
pub struct HandshakeFailed(pub String);

impl HandshakeFailed {
    pub fn error(kind: io::ErrorKind, why: String) -> io::Error {
        io::Error::new(kind, HandshakeFailed(why))
    }

    /// The handshake failure `e` carries, if it carries one.
    pub fn of(e: &io::Error) -> Option<&HandshakeFailed> {
        e.get_ref()
            .and_then(|i| i.downcast_ref::<HandshakeFailed>())
    }

    /// Why the handshake failed, if `e` says it did: a [`HandshakeFailed`], or an alert the
    /// server sent in the first exchange after it. With TLS 1.3 the server checks the
    /// client's certificate after the client's side of the handshake is done, and says no with
    /// an alert there: for the user that is the handshake failing.
    pub fn why(e: &io::Error) -> Option<String> {
        if let Some(h) = Self::of(e) {
            return Some(h.0.clone());
        }
        match e.get_ref()?.downcast_ref::<rustls::Error>()? {
            rustls::Error::AlertReceived(a) => Some(alert_text(*a)),
            _ => None,
        }
    }
}

/// What a fatal alert from the server means for the user: most often, about the client's
/// certificate (`ssl_cert`, `ssl_key`).
fn alert_text(a: rustls::AlertDescription) -> String {
    use rustls::AlertDescription as A;
    match a {
        A::CertificateRequired => {
            "the server requires a client certificate (\"ssl_cert\", \"ssl_key\")".into()
        }
        A::BadCertificate
        | A::UnsupportedCertificate
        | A::CertificateRevoked
        | A::CertificateExpired
        | A::CertificateUnknown
        | A::UnknownCA
        | A::AccessDenied => format!(
            "the server did not accept a client certificate (\"ssl_cert\", \"ssl_key\"): \
             received fatal alert: {a:?}"
        ),
        _ => format!("received fatal alert: {a:?}"),
    }
}

impl std::fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HandshakeFailed {}

/// A ready client configuration and the name to verify.
pub struct TlsSettings {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in PEM file `file` (`ssl_ca`).
///
/// Errors: the file cannot be read, holds bad PEM, or no certificate.
fn ca_certs(file: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem =
        std::fs::read(file).map_err(|e| format!("cannot read \"ssl_ca\" file {file}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM in \"ssl_ca\" file {file}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in \"ssl_ca\" file {file}"));
    }
    Ok(certs)
}

fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    let name = if name.is_empty() { "localhost" } else { name };
    ServerName::try_from(name.to_string())
        .map_err(|_| format!("invalid \"sni_host\": \"{name}\" is not a valid server name"))
}

/// Checks, when the config is parsed, what [`settings`] will need: a valid server name and a
/// readable CA file that holds certificates. Nothing is built.
pub fn check(server: &str, verify: bool, ca_file: Option<&str>) -> Result<(), String> {
    server_name(server)?;
    if verify {
        if let Some(file) = ca_file {
            ca_certs(file)?;
        }
    }
    Ok(())
}

/// The client certificate chain in PEM file `cert` and its private key in `key` (`ssl_cert`,
/// `ssl_key`), for servers that ask for one.
///
/// Errors: a file cannot be read, or holds no certificate or no key.
fn client_identity(
    cert: &str,
    key: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let pem =
        std::fs::read(cert).map_err(|e| format!("cannot read \"ssl_cert\" file {cert}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM in \"ssl_cert\" file {cert}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in \"ssl_cert\" file {cert}"));
    }
    let pem = std::fs::read(key).map_err(|e| format!("cannot read \"ssl_key\" file {key}: {e}"))?;
    let key_der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("no private key found in \"ssl_key\" file {key}: {e}"))?;
    Ok((certs, key_der))
}

/// Checks, when the config is parsed, that the client certificate and key files can be read.
///
/// Errors: as [`client_identity`].
pub fn check_client(cert: &str, key: &str) -> Result<(), String> {
    client_identity(cert, key).map(|_| ())
}

/// Builds the TLS settings, when the logger starts.
///
/// Errors: as [`check`]; a certificate rustls refuses; no system roots.
pub fn settings(server: &str, verify: bool, ca_file: Option<&str>) -> Result<TlsSettings, String> {
    settings_with_client(server, verify, ca_file, None)
}

/// [`settings`], with a client certificate and key (`ssl_cert`, `ssl_key`) when `client` is
/// given.
///
/// Errors: as [`settings`]; unreadable client files; a key that does not match the certificate.
pub fn settings_with_client(
    server: &str,
    verify: bool,
    ca_file: Option<&str>,
    client: Option<(&str, &str)>,
) -> Result<TlsSettings, String> {
    let server_name = server_name(server)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let config = if verify {
        let mut roots = RootCertStore::empty();
        match ca_file {
            Some(file) => {
                for cert in ca_certs(file)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("bad certificate in \"ssl_ca\" file {file}: {e}"))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err("no system CA certificates found: install ca-certificates, or set \"ssl_ca\"".into());
                }
            }
        }
        with_client(builder.with_root_certificates(roots), client)?
    } else {
        with_client(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider()))),
            client,
        )?
    };
    Ok(TlsSettings {
        config: Arc::new(config),
        server_name,
    })
}

fn with_client(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    client: Option<(&str, &str)>,
) -> Result<ClientConfig, String> {
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let (certs, key_der) = client_identity(cert, key)?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| format!("\"ssl_cert\" {cert} and \"ssl_key\" {key}: {e}"))
        }
    }
}

/// `ssl_verify = false`: accepts any certificate (signatures are still checked, so the
/// handshake itself stays sound).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS session over a connected stream socket.
pub struct Tls {
    conn: ClientConnection,
    sock: NoSigPipe,
    /// What a send that timed out had already handed to rustls: it is sealed into records bound
    /// to this connection (some perhaps partly written), so the next send pushes those and goes
    /// on after it.
    resume: Resume,
    /// TLS bytes written to the socket, ever: whether a send moved anything.
    on_wire: u64,
}

/// Plaintext handed to rustls per write before its records are pushed to the socket, so that
/// progress (and so what a failure lost) is known to within one chunk.
const CHUNK: usize = 64 * 1024;

impl Tls {
    /// Runs the handshake; each socket operation is bounded by `timeout` (set on the socket).
    ///
    /// Errors carry a [`HandshakeFailed`], so that the driver's error names the stage.
    pub fn handshake(sock: Socket, settings: &TlsSettings, _timeout: Duration) -> io::Result<Tls> {
        let conn = ClientConnection::new(settings.config.clone(), settings.server_name.clone())
            .map_err(|e| HandshakeFailed::error(io::ErrorKind::InvalidData, e.to_string()))?;
        let mut tls = Tls {
            conn,
            sock: NoSigPipe(sock),
            resume: Resume::default(),
            on_wire: 0,
        };
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::InvalidData => {
                        let why = HandshakeFailed::why(&e);
                        HandshakeFailed::error(
                            io::ErrorKind::InvalidData,
                            why.unwrap_or_else(|| {
                                e.into_inner().map(|i| i.to_string()).unwrap_or_default()
                            }),
                        )
                    }
                    io::ErrorKind::UnexpectedEof => HandshakeFailed::error(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection".into(),
                    ),
                    // A plain (not TLS) server reads the ClientHello and waits for a line.
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HandshakeFailed::error(
                        io::ErrorKind::TimedOut,
                        "timeout (is it a TLS server?)".into(),
                    ),
                    kind => HandshakeFailed::error(kind, super::reason(&e)),
                })?;
        }
        Ok(tls)
    }

    /// The session as a plain read/write stream (after the handshake), for protocols that
    /// speak request and response over it (http).
    pub fn into_stream(self) -> rustls::StreamOwned<ClientConnection, NoSigPipe> {
        rustls::StreamOwned::new(self.conn, self.sock)
    }

    /// Pushes every pending TLS record to the socket. rustls keeps what a failed or partial
    /// write left, so calling this again continues from the exact byte.
    fn push(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.on_wire += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Seals `data[*accepted..]` into TLS records a chunk at a time and pushes each chunk's
    /// records to the socket. `pushed` ends at the last plaintext byte whose records have all
    /// reached the socket; `accepted` at the last byte rustls has taken.
    fn write_all(
        &mut self,
        data: &[u8],
        accepted: &mut usize,
        pushed: &mut usize,
        until: Option<Instant>,
    ) -> io::Result<()> {
        loop {
            super::past(until)?;
            // First what an earlier send or chunk left sealed but unwritten.
            self.push()?;
            *pushed = *accepted;
            if *accepted == data.len() {
                return Ok(());
            }
            let end = (*accepted + CHUNK).min(data.len());
            match self.conn.writer().write(&data[*accepted..end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => *accepted += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Output for Tls {
    fn send(&mut self, batch: &Buffer, until: Option<Instant>) -> Result<(), SendError> {
        let mut accepted = self.resume.start(batch);
        let mut pushed = 0;
        let wire_before = self.on_wire;
        let result = self.write_all(batch.data(), &mut accepted, &mut pushed, until);
        let moved = self.on_wire > wire_before;
        self.resume.settle(batch, result, pushed, accepted, moved)
    }

    fn is_alive(&mut self) -> bool {
        // TLS 1.3 servers send session tickets after the handshake, so readable bytes are
        // normal: feed them to rustls and see whether they say the session is over.
        loop {
            match peek(&self.sock.0) {
                Peek::Idle => return true,
                Peek::Closed => return false,
                Peek::Data => {
                    match self.conn.read_tls(&mut self.sock) {
                        Ok(0) | Err(_) => return false,
                        Ok(_) => {}
                    }
                    match self.conn.process_new_packets() {
                        Ok(state) if state.peer_has_closed() => return false,
                        Ok(state) => {
                            if state.plaintext_bytes_to_read() > 0 {
                                let mut sink = vec![0u8; state.plaintext_bytes_to_read()];
                                let _ = io::Read::read(&mut self.conn.reader(), &mut sink);
                            }
                        }
                        Err(_) => return false,
                    }
                }
            }
        }
    }

    fn fds(&self) -> Vec<i32> {
        vec![self.sock.0.as_raw_fd()]
    }
}

/// A connection with or without TLS, as the outputs that speak a protocol of their own over
/// TCP (rlogd, http, NATS, RELP) read and write it.
pub enum Stream {
    Plain(NoSigPipe),
    Tls(Box<rustls::StreamOwned<ClientConnection, NoSigPipe>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl Stream {
    /// For a peer that speaks only when spoken to (rlogd, an HTTP server, imrelp but for its
    /// `serverclose`): whether nothing but TLS housekeeping arrived unasked on `probe` (this
    /// stream's socket). Any application data, an end of stream or an error means the peer is
    /// done with the connection (a goodbye, an HTTP 408 for an idle connection). TLS 1.3 session tickets that
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

    /// The stream's socket.
    pub fn fd(&self) -> std::os::fd::RawFd {
        match self {
            Stream::Plain(s) => s.0.as_raw_fd(),
            Stream::Tls(s) => s.sock.0.as_raw_fd(),
        }
    }
}
