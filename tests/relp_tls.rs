//! `relps://` (RELP over TLS, rustls) against Debian's rsyslogd with imrelp `tls="on"`
//! (librelp 1.11): with librelp's GnuTLS (its default) and OpenSSL back ends, `tls.authMode`
//! `certvalid` and `name`; every message reaches rsyslog's file once and the stats identity
//! holds; a client certificate rsyslog does not permit, or none, delivers nothing and says so.
//!
//! Two PKIs, as a real deployment has: the server's (rlog checks rsyslog's certificate against
//! its CA, `ssl_ca`) and the clients' (imrelp checks rlog's `ssl_cert` against `tls.caCert`).

mod common;
mod pki;
mod rsyslog_util;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{assert_identity, temp_dir};
use rlog::{Config, Logged, Logger};
use rsyslog_util::{fields, RelpTls, Rsyslog};

struct Files {
    dir: PathBuf,
    server: pki::PkiFiles,
    client: pki::PkiFiles,
}

/// A server certificate for `localhost` and a client certificate for `client.test`, each
/// signed by its own CA.
fn files(name: &str) -> Files {
    let dir = temp_dir(name);
    let sdir = dir.join("server");
    let cdir = dir.join("client");
    std::fs::create_dir_all(&sdir).unwrap();
    std::fs::create_dir_all(&cdir).unwrap();
    Files {
        server: pki::issue(&["localhost"]).write_to(&sdir),
        client: pki::issue(&["client.test"]).write_to(&cdir),
        dir,
    }
}

fn rsyslog(
    name: &str,
    f: &Files,
    lib: &'static str,
    mode: &'static str,
    peers: &[&str],
) -> Rsyslog {
    Rsyslog::start_relp_tls(
        name,
        RelpTls {
            lib,
            files: Some((
                f.client.ca.clone(),
                f.server.cert.clone(),
                f.server.key.clone(),
            )),
            auth_mode: mode,
            permitted: peers.iter().map(|p| p.to_string()).collect(),
        },
    )
}

/// A `relps://` logger to `rs`, with the client certificate when `cert`.
fn logger(rs: &Rsyslog, f: &Files, cert: bool, extra: &str) -> Logger {
    let client = if cert {
        format!(
            "ssl_cert = {}\nssl_key = {}\n",
            f.client.cert.display(),
            f.client.key.display()
        )
    } else {
        String::new()
    };
    let text = format!(
        "logger = relps://127.0.0.1:{}\nlog-encoder = syslog app=relpstest\n\
         ssl_ca = {}\nsni_host = localhost\n{client}drop_limit = 16777216\n{extra}",
        rs.relp_port,
        f.server.ca.display()
    );
    Logger::start(Config::parse(&text).unwrap()).unwrap()
}

/// Waits (30 s at most) until rsyslog's imrelp completes a TLS handshake with the client's
/// certificate. Its port accepts connections a moment before its TLS is ready (a handshake in
/// between was reset once under load), and the restart test counts the tries its logger makes.
fn wait_tls_ready(rs: &Rsyslog, f: &Files) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&f.server.ca).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![CertificateDer::from_pem_file(&f.client.cert).unwrap()],
        PrivateKeyDer::from_pem_file(&f.client.key).unwrap(),
    )
    .unwrap();
    let config = std::sync::Arc::new(config);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = std::net::TcpStream::connect(("127.0.0.1", rs.relp_port)).is_ok_and(|mut s| {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let name = ServerName::try_from("localhost").unwrap();
            let mut c = rustls::ClientConnection::new(config.clone(), name).unwrap();
            while c.is_handshaking() {
                if c.complete_io(&mut s).is_err() {
                    return false;
                }
            }
            true
        });
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "imrelp's TLS never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn msg(i: usize) -> String {
    format!("id={i:06} {}", "x".repeat(60))
}

fn ids(lines: &[String]) -> HashMap<usize, usize> {
    let mut m = HashMap::new();
    for l in lines {
        let id = fields(l)["msg"]
            .strip_prefix("id=")
            .and_then(|r| r.get(..6))
            .unwrap_or_else(|| panic!("not ours: {l}"))
            .parse::<usize>()
            .unwrap();
        *m.entry(id).or_default() += 1;
    }
    m
}

/// Logs `n` messages, closes, and checks each reached rsyslog once, over one session.
fn all_once(rs: &Rsyslog, f: &Files, n: usize) {
    let lg = logger(rs, f, true, "");
    for i in 0..n {
        assert!(matches!(lg.log(msg(i).as_bytes()), Logged::Buffered(_)));
    }
    assert!(
        lg.close(Duration::from_secs(60)),
        "{:?}\nrsyslog: {}",
        lg.take_error(),
        rs.stderr()
    );
    let lines = rs.wait_lines(|l| l.len() >= n);
    let seen = ids(&lines);
    assert_eq!(lines.len(), n, "each message once");
    assert!((0..n).all(|i| seen.get(&i) == Some(&1)));
    assert_eq!(fields(&lines[0])["app"], "relpstest");
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.lost), (n as u64, n as u64, 0), "{s:?}");
    assert_identity(&s);
    let (_, o) = lg.sink_stats(0).unwrap();
    assert_eq!(o.connects, 1, "one RELP session: {o:?}");
}

#[test]
fn relps_gnutls_certvalid_every_message_once() {
    let f = files("relps-gnutls-certvalid");
    let rs = rsyslog("relps-gc", &f, "gnutls", "certvalid", &[]);
    all_once(&rs, &f, 5_000);
}

#[test]
fn relps_gnutls_authmode_name_every_message_once() {
    let f = files("relps-gnutls-name");
    let rs = rsyslog("relps-gn", &f, "gnutls", "name", &["client.test"]);
    all_once(&rs, &f, 2_000);
}

/// Logs 10 messages that cannot be delivered: nothing is sent, they stay buffered, and the
/// pending error says why. Returns the error.
fn refused(rs: &Rsyslog, f: &Files, cert: bool) -> String {
    let lg = logger(rs, f, cert, "retry_interval = 50\n");
    for i in 0..10 {
        lg.log(msg(i).as_bytes());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let err = loop {
        lg.flush();
        if let Some(e) = lg.take_error() {
            break e.as_str().to_string();
        }
        assert!(Instant::now() < deadline, "no error");
        std::thread::sleep(Duration::from_millis(50));
    };
    let s = lg.stats();
    assert_eq!((s.sent, s.buffered), (0, 10), "{s:?}");
    assert_identity(&s);
    assert!(rs.lines().is_empty());
    lg.close(Duration::from_millis(200));
    err
}

#[test]
fn relps_client_name_not_permitted_delivers_nothing() {
    let f = files("relps-not-permitted");
    let rs = rsyslog("relps-np", &f, "gnutls", "name", &["other.test"]);
    let err = refused(&rs, &f, true);
    eprintln!("not permitted: {err}\nrsyslog: {}", rs.stderr());
    assert!(err.contains("relps://127.0.0.1"), "{err}");
    assert!(
        err.contains("closed the TLS session before answering open"),
        "{err}"
    );
}

#[test]
fn relps_without_a_client_certificate_delivers_nothing() {
    let f = files("relps-no-cert");
    let rs = rsyslog("relps-nc", &f, "gnutls", "certvalid", &[]);
    let err = refused(&rs, &f, false);
    eprintln!("no client certificate: {err}\nrsyslog: {}", rs.stderr());
    assert!(err.contains("relps://127.0.0.1"), "{err}");
    assert!(err.contains("tls.authMode"), "{err}");
}

#[test]
fn relps_rejects_a_server_certificate_from_another_ca() {
    let f = files("relps-wrong-ca");
    let rs = rsyslog("relps-wca", &f, "gnutls", "certvalid", &[]);
    // The client's CA did not sign rsyslog's certificate.
    let wrong = Files {
        dir: f.dir.clone(),
        server: pki::PkiFiles {
            ca: f.client.ca.clone(),
            cert: f.server.cert.clone(),
            key: f.server.key.clone(),
        },
        client: pki::PkiFiles {
            ca: f.client.ca.clone(),
            cert: f.client.cert.clone(),
            key: f.client.key.clone(),
        },
    };
    let err = refused(&rs, &wrong, true);
    eprintln!("wrong CA: {err}");
    assert!(err.contains("TLS handshake with relps://"), "{err}");
    assert!(err.contains("certificate"), "{err}");
}

/// imrelp with `tls="on"` and no certificate of its own speaks anonymous TLS only (GnuTLS:
/// ANON-DH cipher suites; OpenSSL: none it can use), which rustls does not offer: no
/// handshake, nothing delivered, and the error says why.
#[test]
fn relps_to_an_anonymous_tls_imrelp_fails_the_handshake_and_says_why() {
    let f = files("relps-anon");
    for lib in ["gnutls", "openssl"] {
        let rs = Rsyslog::start_relp_tls(
            &format!("relps-anon-{lib}"),
            RelpTls {
                lib,
                files: None,
                auth_mode: "",
                permitted: Vec::new(),
            },
        );
        let err = refused(&rs, &f, true);
        eprintln!("anonymous {lib}: {err}");
        assert!(err.contains("TLS handshake with relps://"), "{lib}: {err}");
        if lib == "gnutls" {
            assert!(err.contains("only anonymous TLS"), "{err}");
        }
    }
}

#[test]
fn relps_openssl_certvalid_every_message_once() {
    let f = files("relps-openssl-certvalid");
    let rs = rsyslog("relps-oc", &f, "openssl", "certvalid", &[]);
    all_once(&rs, &f, 2_000);
}

#[test]
fn relps_openssl_authmode_name_every_message_once() {
    let f = files("relps-openssl-name");
    let rs = rsyslog("relps-on", &f, "openssl", "name", &["client.test"]);
    all_once(&rs, &f, 2_000);
}

/// rsyslog stopped (SIGTERM: imrelp sends `serverclose` inside the TLS session) and started
/// again: the kept session is seen closed before the next send, which opens a new one without
/// a failed try (TLS 1.3 session tickets that arrived meanwhile do not count as the server
/// speaking).
#[test]
fn relps_rsyslog_restart_closes_the_session_and_the_next_send_reconnects() {
    let f = files("relps-restart");
    let mut rs = rsyslog("relps-term", &f, "gnutls", "certvalid", &[]);
    let lg = logger(&rs, &f, true, "max_retry_times = 0\n");
    for i in 0..100 {
        lg.log(msg(i).as_bytes());
    }
    // 0 when the worker, woken by `flush_limit`, had already delivered everything.
    assert!(lg.flush() >= 0, "{:?}", lg.take_error());
    rs.wait_lines(|l| l.len() >= 100);
    rs.stop();
    rs.restart();
    wait_tls_ready(&rs, &f);
    for i in 100..200 {
        lg.log(msg(i).as_bytes());
    }
    // 0 when the worker, woken by `flush_limit`, had already delivered everything.
    assert!(lg.flush() >= 0, "{:?}", lg.take_error());
    let lines = rs.wait_lines(|l| l.len() >= 200);
    let seen = ids(&lines);
    assert_eq!(lines.len(), 200);
    assert!((0..200).all(|i| seen.get(&i) == Some(&1)));
    let (_, o) = lg.sink_stats(0).unwrap();
    assert_eq!((o.connects, o.retries), (2, 0), "{o:?}");
    assert!(lg.close(Duration::from_secs(10)));
    let s = lg.stats();
    assert_eq!((s.sent, s.lost), (200, 0), "{s:?}");
    assert_identity(&s);
}
