//! Listener URLs, TLS server setup, and [`Conn`]: one byte stream type over TCP, unix sockets
//! and TLS, so the protocol code does not care which it got.

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rlog::proto::format::SenderAddr;
use rustls::{ClientConnection, ServerConfig, ServerConnection, StreamOwned};

/// A `--listen`, `--replication` or `--master` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Url {
    /// `rlogd://HOST:PORT`: the acknowledged protocol (producers and followers).
    Rlogd(String),
    /// `tcp://HOST:PORT`: newline-delimited or RFC 6587 octet-counted records.
    Tcp(String),
    /// `udp://HOST:PORT`: one datagram, one record.
    Udp(String),
    /// `unix:///path`: a unix stream socket, records as on `tcp://`.
    Unix(String),
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Url::Rlogd(a) => write!(f, "rlogd://{a}"),
            Url::Tcp(a) => write!(f, "tcp://{a}"),
            Url::Udp(a) => write!(f, "udp://{a}"),
            Url::Unix(p) => write!(f, "unix://{p}"),
        }
    }
}

/// Parses a listener URL. Errors: unknown scheme, missing port, relative unix path.
pub fn parse_url(s: &str) -> Result<Url, String> {
    let (scheme, rest) = s.split_once("://").ok_or_else(|| {
        format!(
            "\"{s}\": expected rlogd://HOST:PORT, tcp://HOST:PORT, udp://HOST:PORT or unix:///path"
        )
    })?;
    let hostport = |rest: &str| -> Result<String, String> {
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("\"{s}\": missing \":PORT\""))?;
        if host.is_empty() {
            return Err(format!("\"{s}\": missing host"));
        }
        port.parse::<u16>()
            .map_err(|_| format!("\"{s}\": port must be 0..65535"))?;
        Ok(rest.to_string())
    };
    match scheme {
        "rlogd" => Ok(Url::Rlogd(hostport(rest)?)),
        "tcp" => Ok(Url::Tcp(hostport(rest)?)),
        "udp" => Ok(Url::Udp(hostport(rest)?)),
        "unix" if rest.starts_with('/') && rest.len() > 1 => Ok(Url::Unix(rest.to_string())),
        "unix" => Err(format!("\"{s}\": expected unix:///absolute/path")),
        _ => Err(format!("\"{s}\": unknown scheme \"{scheme}\"")),
    }
}

/// Splits `HOST:PORT` (brackets around an IPv6 host removed).
pub fn split_host_port(a: &str) -> (String, u16) {
    let (h, p) = a.rsplit_once(':').unwrap_or((a, "0"));
    (
        h.trim_start_matches('[').trim_end_matches(']').to_string(),
        p.parse().unwrap_or(0),
    )
}

/// A connected byte stream.
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
    ClientTls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    /// Sets the timeout of every later read and write.
    pub fn set_timeouts(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => {
                s.set_read_timeout(d)?;
                s.set_write_timeout(d)
            }
            Conn::Unix(s) => {
                s.set_read_timeout(d)?;
                s.set_write_timeout(d)
            }
            Conn::Tls(s) => {
                s.sock.set_read_timeout(d)?;
                s.sock.set_write_timeout(d)
            }
            Conn::ClientTls(s) => {
                s.sock.set_read_timeout(d)?;
                s.sock.set_write_timeout(d)
            }
        }
    }

    /// Sets the timeout of every later read.
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(d),
            Conn::Unix(s) => s.set_read_timeout(d),
            Conn::Tls(s) => s.sock.set_read_timeout(d),
            Conn::ClientTls(s) => s.sock.set_read_timeout(d),
        }
    }

    /// The address stored with a plain sender's records: its IP address and port, or `unix`.
    /// `None` when the peer's address cannot be had (it already disconnected).
    pub fn sender(&self) -> Option<SenderAddr> {
        match self {
            Conn::Tcp(s) => s.peer_addr().ok().map(SenderAddr::ip),
            Conn::Tls(s) => s.sock.peer_addr().ok().map(SenderAddr::ip),
            Conn::ClientTls(s) => s.sock.peer_addr().ok().map(SenderAddr::ip),
            Conn::Unix(_) => Some(SenderAddr::Unix),
        }
    }

    /// Who is on the other end, for log lines.
    pub fn peer(&self) -> String {
        match self {
            Conn::Tcp(s) => s.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
            Conn::Tls(s) => s
                .sock
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            Conn::ClientTls(s) => s
                .sock
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            Conn::Unix(_) => "unix".into(),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
            Conn::ClientTls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
            Conn::ClientTls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
            Conn::ClientTls(s) => s.flush(),
        }
    }
}

/// Builds the server's TLS configuration from PEM files. Errors name the file and the problem.
pub fn server_tls(cert_file: &str, key_file: &str) -> Result<Arc<ServerConfig>, String> {
    let pem =
        std::fs::read(cert_file).map_err(|e| format!("cannot read --tls-cert {cert_file}: {e}"))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM in --tls-cert {cert_file}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("no certificate in --tls-cert {cert_file}"));
    }
    let pem =
        std::fs::read(key_file).map_err(|e| format!("cannot read --tls-key {key_file}: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => format!("no private key in --tls-key {key_file}"),
        e => format!("bad PEM in --tls-key {key_file}: {e}"),
    })?;
    let cfg =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    Ok(Arc::new(cfg))
}

/// The time left until `at`. Errors (`TimedOut`): none is left.
pub fn time_left(at: Instant) -> io::Result<Duration> {
    let left = at.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
    }
    Ok(left)
}

/// Whether `e` is a timeout (a socket timeout reads as `WouldBlock` on Linux).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Runs the server side of a TLS handshake on an accepted connection, all of it before
/// `deadline` (however slowly the client sends). Errors: the handshake failed (say, a client
/// that does not trust our certificate), or the deadline passed (`TimedOut`/`WouldBlock`).
pub fn accept_tls(sock: TcpStream, cfg: &Arc<ServerConfig>, deadline: Instant) -> io::Result<Conn> {
    let mut conn = ServerConnection::new(cfg.clone()).map_err(io::Error::other)?;
    let mut sock = sock;
    while conn.is_handshaking() {
        let left = time_left(deadline)?;
        sock.set_read_timeout(Some(left))?;
        sock.set_write_timeout(Some(left))?;
        conn.complete_io(&mut sock)?;
    }
    Ok(Conn::Tls(Box::new(StreamOwned::new(conn, sock))))
}

/// Reads from a connection with one deadline for all the reads together (a handshake): each
/// read waits at most for the time left.
pub struct DeadlineReader<'a> {
    pub conn: &'a mut Conn,
    pub at: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = time_left(self.at)?;
        self.conn.set_read_timeout(Some(left))?;
        self.conn.read(buf)
    }
}

/// Connects to `HOST:PORT`, with TLS when `tls` is given (client side: followers and tests).
pub fn connect(
    addr: &str,
    tls: Option<&rlog::output::tls::TlsSettings>,
    timeout: Duration,
) -> io::Result<Conn> {
    let (host, port) = split_host_port(addr);
    let sock = rlog::output::socket::connect_tcp(&host, port, timeout)?;
    let tcp: TcpStream = sock.into();
    match tls {
        None => Ok(Conn::Tcp(tcp)),
        Some(t) => {
            let mut conn = ClientConnection::new(t.config.clone(), t.server_name.clone())
                .map_err(io::Error::other)?;
            let mut tcp = tcp;
            while conn.is_handshaking() {
                conn.complete_io(&mut tcp)?;
            }
            Ok(Conn::ClientTls(Box::new(StreamOwned::new(conn, tcp))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("rlogd://127.0.0.1:5140").unwrap(),
            Url::Rlogd("127.0.0.1:5140".into())
        );
        assert_eq!(
            parse_url("unix:///tmp/x").unwrap(),
            Url::Unix("/tmp/x".into())
        );
        assert!(parse_url("unix://tmp/x").is_err());
        assert!(parse_url("http://h:1").is_err());
        assert!(parse_url("tcp://h").is_err());
        assert!(parse_url("tcp://h:99999").is_err());
        assert_eq!(split_host_port("[::1]:5"), ("::1".into(), 5));
    }
}
