//! TLS delivery against a real rustls server on 127.0.0.1 with a private CA made by rcgen:
//! verified, refused on a bad certificate (nothing sent), SNI, and `ssl_verify = false`.

mod common;
mod pki;

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use rlog::{Config, Logger};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

/// A CA and a server certificate for `names`, signed by it, as rustls takes them.
fn pki(names: &[&str]) -> Pki {
    let p = pki::issue(names);
    Pki {
        ca_pem: p.ca_pem,
        cert: CertificateDer::from(p.cert_der),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(p.key_der)),
    }
}

struct TlsServer {
    port: u16,
    got: Arc<Mutex<Vec<u8>>>,
    sni: Arc<Mutex<Vec<Option<String>>>>,
}

fn tls_server(p: &Pki) -> TlsServer {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![p.cert.clone()], p.key.clone_key())
        .unwrap();
    let config = Arc::new(config);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<u8>>> = Arc::default();
    let sni: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let (g, n) = (got.clone(), sni.clone());
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (g, n, config) = (g.clone(), n.clone(), config.clone());
            thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut buf = [0u8; 16384];
                let mut recorded = false;
                loop {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => {
                            if !recorded {
                                n.lock()
                                    .unwrap()
                                    .push(tls.conn.server_name().map(str::to_string));
                                recorded = true;
                            }
                            g.lock().unwrap().extend_from_slice(&buf[..k]);
                        }
                    }
                }
            });
        }
    });
    TlsServer { port, got, sni }
}

fn ca_file(p: &Pki, name: &str) -> PathBuf {
    let f = temp_dir(name).join("ca.pem");
    std::fs::write(&f, &p.ca_pem).unwrap();
    f
}

fn wait_for(got: &Arc<Mutex<Vec<u8>>>, n: usize) -> Vec<u8> {
    for _ in 0..2000 {
        if got.lock().unwrap().len() >= n {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    got.lock().unwrap().clone()
}

#[test]
fn verified_tls_delivers_and_sends_sni() {
    let p = pki(&["logs.example.test"]);
    let srv = tls_server(&p);
    let ca = ca_file(&p, "tls-ok");
    let lg = Logger::start(
        Config::parse(&format!(
            "host = 127.0.0.1\nport = {}\nssl = true\nsni_host = logs.example.test\nssl_ca = {}",
            srv.port,
            ca.display()
        ))
        .unwrap(),
    )
    .unwrap();
    lg.log(b"secret line 1\n");
    lg.log(b"secret line 2\n");
    assert_eq!(lg.flush(), 28);
    assert_eq!(wait_for(&srv.got, 28), b"secret line 1\nsecret line 2\n");
    assert_eq!(
        srv.sni.lock().unwrap()[0].as_deref(),
        Some("logs.example.test")
    );
    let s = lg.stats();
    assert_eq!((s.sent, s.connects), (2, 1));
    assert_identity(&s);
}

#[test]
fn a_certificate_for_another_name_is_refused_and_nothing_is_sent() {
    let p = pki(&["other.example.test"]);
    let srv = tls_server(&p);
    let ca = ca_file(&p, "tls-badname");
    let lg = Logger::start(
        Config::parse(&format!(
            "host = 127.0.0.1\nport = {}\nssl = true\nsni_host = logs.example.test\nssl_ca = {}\nmax_retry_times = 0",
            srv.port,
            ca.display()
        ))
        .unwrap(),
    )
    .unwrap();
    lg.log(b"must not leak\n");
    assert_eq!(lg.flush(), -1);
    let err = lg.take_error().unwrap();
    assert!(
        err.as_str().starts_with("try to send log messages to the log server failed after 0 retries: try to connect to the log server failed after 0 retries: TLS handshake with tls://"),
        "{}",
        err.as_str()
    );
    thread::sleep(Duration::from_millis(50));
    assert!(srv.got.lock().unwrap().is_empty());
    let s = lg.stats();
    assert_eq!((s.sent, s.buffered), (0, 1));
    assert_identity(&s);
}

#[test]
fn an_untrusted_ca_is_refused_unless_verification_is_off() {
    let p = pki(&["localhost"]);
    let srv = tls_server(&p);
    let other = pki(&["localhost"]);
    let wrong_ca = ca_file(&other, "tls-wrongca");
    let base = format!(
        "host = 127.0.0.1\nport = {}\nssl = true\nsni_host = localhost\nmax_retry_times = 0\n",
        srv.port
    );
    let lg =
        Logger::start(Config::parse(&format!("{base}ssl_ca = {}", wrong_ca.display())).unwrap())
            .unwrap();
    lg.log(b"x\n");
    assert_eq!(lg.flush(), -1);
    assert!(lg.take_error().unwrap().as_str().contains(&format!(
        "TLS handshake with tls://127.0.0.1:{}: invalid peer certificate",
        srv.port
    )));

    let lg = Logger::start(Config::parse(&format!("{base}ssl_verify = false")).unwrap()).unwrap();
    lg.log(b"unverified but encrypted\n");
    assert_eq!(lg.flush(), 25);
    assert_eq!(wait_for(&srv.got, 25), b"unverified but encrypted\n");
}

#[test]
fn bad_ca_files_are_init_errors() {
    let dir = temp_dir("tls-badca");
    let f = dir.join("junk.pem");
    std::fs::write(&f, "not a certificate").unwrap();
    let e = Config::parse(&format!(
        "host = h\nport = 1\nssl = on\nssl_ca = {}",
        f.display()
    ))
    .unwrap_err();
    assert!(
        e.starts_with("no certificate found in \"ssl_ca\" file"),
        "{e}"
    );
    let e =
        Config::parse("host = h\nport = 1\nssl = on\nssl_ca = /nonexistent/ca.pem").unwrap_err();
    assert!(
        e.starts_with("cannot read \"ssl_ca\" file /nonexistent/ca.pem"),
        "{e}"
    );
}

/// A TLS collector that completes the handshake and then reads nothing makes a send time out
/// part-way, with rustls holding records that are partly written. The connection is kept and
/// the next send pushes those first and goes on from the exact byte, so the collector decrypts
/// every line whole and once, on one connection. (Dropping it left a fragment of a line on the
/// old connection and sent the line whole again on a new one.)
#[test]
fn a_tls_send_that_times_out_resumes_on_the_same_connection() {
    let p = pki(&["localhost"]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![p.cert.clone()], p.key.clone_key())
            .unwrap(),
    );
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let reader = thread::spawn(move || {
        l.set_nonblocking(true).unwrap();
        let mut sessions = Vec::new();
        // Complete each handshake, then read nothing until told to.
        while rx.try_recv().is_err() {
            if let Ok((mut s, _)) = l.accept() {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
                while conn.is_handshaking() {
                    if conn.complete_io(&mut s).is_err() {
                        break;
                    }
                }
                let _ = conn.complete_io(&mut s);
                sessions.push((conn, s));
            }
            thread::sleep(Duration::from_millis(5));
        }
        let mut got = Vec::new();
        let conns = sessions.len();
        for (conn, s) in sessions {
            let mut tls = rustls::StreamOwned::new(conn, s);
            let mut buf = [0u8; 16384];
            loop {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => got.extend_from_slice(&buf[..k]),
                }
            }
        }
        (conns, got)
    });
    let lg = Logger::start(
        Config::parse(&format!(
            "host = 127.0.0.1\nport = {port}\nssl = true\nssl_verify = false\ntimeout = 1000\n\
             max_retry_times = 0\nretry_interval = 20\ndrop_limit = 30000000\nflush_limit = 20000000"
        ))
        .unwrap(),
    )
    .unwrap();
    stall_then_resume(&lg, tx, reader);
}

/// `ssl = true` against a plain TCP collector: the handshake times out, and the error says
/// what is likely wrong rather than a bare "timeout".
#[test]
fn ssl_against_a_plain_server_says_so() {
    let (addr, _held) = common::silent_listener();
    let lg = Logger::start(
        Config::parse(&format!(
            "host = 127.0.0.1\nport = {}\nssl = true\nssl_verify = false\ntimeout = 200\nmax_retry_times = 0",
            addr.port()
        ))
        .unwrap(),
    )
    .unwrap();
    lg.log(b"to a plain server\n");
    assert_eq!(lg.flush(), -1);
    let e = lg.take_error().unwrap();
    assert!(
        e.as_str()
            .ends_with(&format!("try to connect to the log server failed after 0 retries: TLS handshake with tls://127.0.0.1:{}: timeout (is it a TLS server?)", addr.port())),
        "{}",
        e.as_str()
    );
    lg.close(std::time::Duration::from_millis(10));
}
