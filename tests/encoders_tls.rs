//! A `tls://` logger with octet framing and gzip, against a real rustls server on 127.0.0.1
//! with a private CA made by rcgen: the receiver splits the stream into records and gets back
//! every message.

mod common;
mod pki;

use std::io::Read;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use rlog::{Config, Logger};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

#[test]
fn tls_logger_with_octet_framed_gzip_records() {
    let p = pki::issue(&["logs.example.test"]);
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![p.cert_der.clone().into()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(p.key_der.clone())),
        )
        .unwrap(),
    );
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<u8>>> = Arc::default();
    let g = got.clone();
    thread::spawn(move || {
        if let Some(s) = l.incoming().flatten().next() {
            let conn = rustls::ServerConnection::new(config).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, s);
            let mut buf = [0u8; 16384];
            while let Ok(k) = tls.read(&mut buf) {
                if k == 0 {
                    break;
                }
                g.lock().unwrap().extend_from_slice(&buf[..k]);
            }
        }
    });
    let dir = temp_dir("enc-tls");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &p.ca_pem).unwrap();

    let lg = Logger::start(
        Config::parse(&format!(
            "logger = secure tls://127.0.0.1:{port}\nlog-route = secure .\nsni_host = logs.example.test\n\
             ssl_ca = {}\nlog-encoder = gzip:secure\nsecure.framing = octet",
            ca.display()
        ))
        .unwrap(),
    )
    .unwrap();
    let msgs: Vec<String> = (0..20).map(|i| format!("secret {i}\n")).collect();
    for m in &msgs {
        lg.log(m.as_bytes());
    }
    let n = lg.flush();
    assert!(n > 0, "{:?}", lg.take_error());
    for _ in 0..2000 {
        if got.lock().unwrap().len() >= n as usize {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let data = got.lock().unwrap().clone();
    let mut rest = &data[..];
    let mut back = Vec::new();
    while !rest.is_empty() {
        let sp = rest.iter().position(|&b| b == b' ').unwrap();
        let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
        let mut out = String::new();
        flate2::read::GzDecoder::new(&rest[sp + 1..sp + 1 + len])
            .read_to_string(&mut out)
            .unwrap();
        back.push(out);
        rest = &rest[sp + 1 + len..];
    }
    assert_eq!(back, msgs);
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.connects), (20, 20, 1));
    assert_identity(&s);
    lg.close(Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(&dir);
}
