//! NATS over TLS: the server's INFO says `tls_required` and a `nats://` logger turns to TLS
//! after it (NATS starts in plain text); `nats+tls://` insists on TLS and refuses a server
//! that does not offer it.

mod common;
mod nats_util;
mod pki;

use std::time::Duration;

use common::assert_identity;
use nats_util::*;
use rlog::{Config, Logger};

#[test]
fn a_server_that_requires_tls_gets_it_after_info() {
    let dir = TempDir::new("tls");
    let files = pki::issue(&["nats.example.test"]).write_to(&dir.0);
    let port = free_port();
    let (cert, key) = (files.cert.to_str().unwrap(), files.key.to_str().unwrap());
    // The stream is made on the server without TLS (the test's own client speaks none),
    // which then restarts on the same store with TLS required.
    let mut srv = NatsServer::start(&dir.0, port, &[]);
    create_stream(port, "TLS", &["tls.>"], "");
    srv.stop();
    srv.extra = ["--tls", "--tlscert", cert, "--tlskey", key]
        .map(String::from)
        .to_vec();
    srv.restart();
    for (i, target) in ["nats", "nats+tls"].iter().enumerate() {
        let lg = Logger::start(
            Config::parse(&format!(
                "logger = {target}://127.0.0.1:{port}/tls.{i}\nsni_host = nats.example.test\n\
                 ssl_ca = {}\nretry_interval = 20\nmax_retry_times = 1\ntimeout = 2000",
                files.ca.display()
            ))
            .unwrap(),
        )
        .unwrap();
        for _ in 0..100 {
            lg.log(b"over tls");
        }
        assert!(
            lg.close(Duration::from_secs(30)),
            "{target}: {:?}",
            lg.take_error().map(|e| e.as_str().to_string())
        );
        let s = lg.stats();
        assert_eq!((s.sent, s.lost), (100, 0), "{target}: {s:?}");
        assert_identity(&s);
    }
    // A wrong CA: the handshake fails, and says so.
    std::fs::create_dir_all(dir.join("other")).unwrap();
    let other = pki::issue(&["nats.example.test"]).write_to(&dir.join("other"));
    let lg = Logger::start(
        Config::parse(&format!(
            "logger = nats://127.0.0.1:{port}/tls\nsni_host = nats.example.test\nssl_ca = {}\n\
             retry_interval = 20\nmax_retry_times = 0\ntimeout = 2000",
            other.ca.display()
        ))
        .unwrap(),
    )
    .unwrap();
    lg.log(b"x");
    assert_eq!(lg.flush(), -1);
    let e = lg.take_error().unwrap();
    assert!(
        e.as_str()
            .contains(&format!("TLS handshake with nats://127.0.0.1:{port}/tls: ")),
        "{}",
        e.as_str()
    );
    let _ = lg.close(Duration::from_millis(200));
    // What the stream holds, read back on the server without TLS.
    srv.stop();
    srv.extra.clear();
    srv.restart();
    assert_eq!(stream_state(port, "TLS").0, 200);
}

#[test]
fn nats_tls_refuses_a_server_without_tls() {
    let dir = TempDir::new("notls");
    let port = free_port();
    let _srv = NatsServer::start(&dir.0, port, &[]);
    let lg = Logger::start(
        Config::parse(&format!(
            "logger = nats+tls://127.0.0.1:{port}/x\nssl_verify = false\nmax_retry_times = 0\nretry_interval = 20"
        ))
        .unwrap(),
    )
    .unwrap();
    lg.log(b"x");
    assert_eq!(lg.flush(), -1);
    let e = lg.take_error().unwrap();
    assert!(
        e.as_str()
            .contains("nats+tls:// asks for TLS and the NATS server does not offer it"),
        "{}",
        e.as_str()
    );
    let s = lg.stats();
    assert_eq!((s.sent, s.lost, s.buffered), (0, 0, 1));
    assert_identity(&s);
    let _ = lg.close(Duration::from_millis(100));
}

/// A NATS server that verifies client certificates (`--tlsverify`): without one, the logger's
/// error says what happened, not only `closed`; with `ssl_cert`/`ssl_key` it delivers.
#[test]
fn a_server_that_wants_a_client_certificate_gets_one_or_says_so() {
    let dir = TempDir::new("mtls");
    let server = pki::issue(&["nats.example.test"]).write_to(&dir.0);
    std::fs::create_dir_all(dir.join("client")).unwrap();
    let client = pki::issue(&["rlog-client"]).write_to(&dir.join("client"));
    let port = free_port();
    let mut srv = NatsServer::start(&dir.0, port, &[]);
    create_stream(port, "MTLS", &["mtls.>"], "");
    srv.stop();
    srv.extra = [
        "--tls",
        "--tlscert",
        server.cert.to_str().unwrap(),
        "--tlskey",
        server.key.to_str().unwrap(),
        "--tlsverify",
        "--tlscacert",
        client.ca.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    srv.restart();
    let base = format!(
        "logger = nats+tls://127.0.0.1:{port}/mtls.x\nsni_host = nats.example.test\n\
         ssl_ca = {}\nretry_interval = 20\ntimeout = 2000\n",
        server.ca.display()
    );

    let lg =
        Logger::start(Config::parse(&format!("{base}max_retry_times = 0\n")).unwrap()).unwrap();
    lg.log(b"x");
    assert_eq!(lg.flush(), -1);
    let e = lg.take_error().unwrap();
    let e = e.as_str();
    // Go's TLS 1.3 server says no with an alert after the client's side of the handshake.
    assert!(
        e.contains(&format!(
            "TLS handshake with nats+tls://127.0.0.1:{port}/mtls.x: the server did not accept \
             a client certificate (\"ssl_cert\", \"ssl_key\"): received fatal alert: \
             BadCertificate"
        )),
        "{e}"
    );
    let s = lg.stats();
    assert_eq!((s.sent, s.lost, s.buffered), (0, 0, 1), "{s:?}");
    let _ = lg.close(Duration::from_millis(100));

    let lg = Logger::start(
        Config::parse(&format!(
            "{base}max_retry_times = 1\nssl_cert = {}\nssl_key = {}\n",
            client.cert.display(),
            client.key.display()
        ))
        .unwrap(),
    )
    .unwrap();
    for _ in 0..100 {
        lg.log(b"with a client certificate");
    }
    assert!(lg.close(Duration::from_secs(30)), "{:?}", lg.take_error());
    let s = lg.stats();
    assert_eq!((s.sent, s.lost), (100, 0), "{s:?}");
    assert_identity(&s);
    srv.stop();
    srv.extra.clear();
    srv.restart();
    assert_eq!(stream_state(port, "MTLS").0, 100);
}
