//! The http output against nginx (Debian's, with its Lua module) as the real endpoint: a Lua
//! handler stores each request body and answers scripted statuses (tests/http_util). Every
//! test counts what nginx stored against what was logged, and checks the stats identity.

mod common;
mod http_util;
mod pki;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use http_util::{Nginx, NginxTls};
use rlog::{Config, Logger};

fn logger(cfg: &str) -> Logger {
    Logger::start(Config::parse(cfg).unwrap_or_else(|e| panic!("{e}\n{cfg}"))).unwrap()
}

fn line(i: usize) -> String {
    format!("{{\"i\":{i},\"msg\":\"request {i} {}\"}}", "x".repeat(150))
}

/// Logs `n` JSON lines (line `i` replaced by `bad(i)` where given).
fn log_lines(lg: &Logger, n: usize, bad: impl Fn(usize) -> Option<String>) {
    for i in 0..n {
        let l = bad(i).unwrap_or_else(|| line(i));
        assert!(matches!(lg.log(l.as_bytes()), rlog::Logged::Buffered(_)));
    }
}

/// Waits until the logger holds nothing and has settled `n` messages (sent or lost), 60 s at
/// most; returns the stats.
fn settled(lg: &Logger, n: u64) -> rlog::rlog_stats {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        lg.flush();
        let s = lg.stats();
        if (s.sent + s.lost >= n && s.buffered == 0) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every stored line is one of the logged ones, each at most once; returns their indexes.
fn indexes(lines: &[String]) -> Vec<usize> {
    let mut seen = HashSet::new();
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let i = v["i"].as_u64().unwrap() as usize;
            assert!(seen.insert(i), "line {i} stored twice");
            i
        })
        .collect()
}

const FAST: &str = "retry_interval = 5\nmax_retry_delay = 0.05\nmax_retry_times = 3\ndrop_limit = 67108864\nflush_limit = 65536\ntimeout = 5000";

#[test]
fn ndjson_batches_on_one_kept_connection() {
    let dir = temp_dir("http-ok");
    let ng = Nginx::start(&dir, None);
    let lg = logger(&format!(
        "logger = web http://127.0.0.1:{}/ok\nlog-route = web .\nmax_batch_size = 1000\n{FAST}",
        ng.port
    ));
    log_lines(&lg, 10_000, |_| None);
    let s = settled(&lg, 10_000);
    assert_eq!((s.sent, s.lost), (10_000, 0), "{s:?} {:?}", lg.take_error());
    assert_identity(&s);
    let got = indexes(&ng.lines());
    assert_eq!(got, (0..10_000).collect::<Vec<_>>(), "in order, each once");
    let reqs = ng.requests();
    assert!(
        reqs.iter().all(|(st, id, _)| *st == 204 && id != "-"),
        "{reqs:?}"
    );
    assert!(reqs.len() >= 10, "batches of 1000 at most: {}", reqs.len());
    let ids: HashSet<_> = reqs.iter().map(|r| r.1.clone()).collect();
    assert_eq!(ids.len(), reqs.len(), "each batch its own id");
    assert!(s.connects <= 2, "keep-alive: {} connects", s.connects);
    assert!(lg.close(Duration::from_secs(5)));
}

#[test]
fn gzip_bodies_are_bounded_after_compression() {
    let dir = temp_dir("http-gzip");
    let ng = Nginx::start(&dir, None);
    let lg = logger(&format!(
        "logger = web http://127.0.0.1:{}/ok\nlog-route = web .\ncompression = gzip\nmax_batch_bytes = 20000\n{FAST}",
        ng.port
    ));
    log_lines(&lg, 5_000, |_| None);
    let s = settled(&lg, 5_000);
    assert_eq!((s.sent, s.lost), (5_000, 0), "{s:?} {:?}", lg.take_error());
    assert_identity(&s);
    assert_eq!(indexes(&ng.lines()).len(), 5_000);
    let reqs = ng.requests();
    assert!(reqs.iter().all(|r| r.2 <= 20_000), "{reqs:?}");
    // Compressed, a request carries more than 20000 bytes of lines.
    let raw: usize = ng.bodies().iter().map(Vec::len).max().unwrap();
    assert!(raw > 20_000, "largest uncompressed body {raw}");
    lg.close(Duration::from_secs(5));
}

#[test]
fn a_storm_of_503_is_retried_and_each_resend_keeps_its_batch_id() {
    let dir = temp_dir("http-503");
    let ng = Nginx::start(&dir, None);
    let lg = logger(&format!(
        "logger = web http://127.0.0.1:{}/flaky?fail=25\nlog-route = web .\nmax_batch_size = 500\n{FAST}",
        ng.port
    ));
    log_lines(&lg, 3_000, |_| None);
    let s = settled(&lg, 3_000);
    assert_eq!((s.sent, s.lost), (3_000, 0), "{s:?}");
    assert_identity(&s);
    assert!(s.retries > 0);
    assert_eq!(indexes(&ng.lines()).len(), 3_000);
    let reqs = ng.requests();
    let failed: Vec<_> = reqs.iter().filter(|r| r.0 == 503).collect();
    assert_eq!(failed.len(), 25);
    let ok: HashSet<_> = reqs.iter().filter(|r| r.0 == 204).map(|r| &r.1).collect();
    // The batch that met the storm went through under the same id.
    assert!(ok.contains(&failed[0].1), "{reqs:?}");
    lg.close(Duration::from_secs(5));
}

/// A request that fails after others of the same send were delivered: the body built ahead
/// for the request after it is not used; the failed one is resent with the same records and
/// id; and every stored body holds exactly the records its `X-Rlog-Batch` names.
#[test]
fn a_503_between_delivered_requests_resends_the_same_records() {
    let dir = temp_dir("http-every");
    let ng = Nginx::start(&dir, None);
    for gzip in [false, true] {
        let lg = logger(&format!(
            "logger = web http://127.0.0.1:{}/every?n=3\nlog-route = web .\nmax_batch_size = 400\n{}{FAST}",
            ng.port,
            if gzip { "compression = gzip\n" } else { "" }
        ));
        let before = ng.requests().len();
        log_lines(&lg, 20_000, |_| None);
        let s = settled(&lg, 20_000);
        assert_eq!((s.sent, s.lost), (20_000, 0), "{s:?} {:?}", lg.take_error());
        assert_identity(&s);
        let reqs = ng.requests()[before..].to_vec();
        let failed: Vec<_> = reqs.iter().filter(|r| r.0 == 503).collect();
        let ok: Vec<_> = reqs.iter().filter(|r| r.0 == 204).collect();
        assert!(failed.len() >= 10, "{reqs:?}");
        for f in &failed {
            assert!(
                ok.iter().any(|o| o.1 == f.1),
                "{} never resent: {reqs:?}",
                f.1
            );
        }
        // Stored bodies pair with the 2xx requests in arrival order.
        let bodies = ng.bodies();
        let bodies = &bodies[bodies.len() - ok.len()..];
        // X-Rlog-Batch: the first record's identity (producer + sequence) and the count; the
        // first request starts at record 0.
        let id = |b: &str| {
            let (first, n) = b.split_once('-').unwrap();
            (
                u64::from_str_radix(first, 16).unwrap(),
                n.parse::<u64>().unwrap(),
            )
        };
        let base = id(&ok[0].1).0;
        let mut next = 0u64;
        for (r, body) in ok.iter().zip(bodies) {
            let (first, n) = id(&r.1);
            let first = first.wrapping_sub(base);
            assert_eq!(first, next, "requests in order, none skipped: {}", r.1);
            let text = String::from_utf8(body.clone()).unwrap();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            let got: Vec<u64> = indexes(&lines).into_iter().map(|i| i as u64).collect();
            assert_eq!(
                got,
                (first..first + n).collect::<Vec<_>>(),
                "body of {}",
                r.1
            );
            next = first + n;
        }
        assert_eq!(next, 20_000);
        lg.close(Duration::from_secs(5));
    }
}

#[test]
fn a_429_with_retry_after_is_honoured() {
    let dir = temp_dir("http-429");
    let ng = Nginx::start(&dir, None);
    let lg = logger(&format!(
        "logger = web http://127.0.0.1:{}/limit?fail=2\nlog-route = web .\n{FAST}",
        ng.port
    ));
    log_lines(&lg, 100, |_| None);
    let s = settled(&lg, 100);
    assert_eq!((s.sent, s.lost), (100, 0), "{s:?}");
    assert_identity(&s);
    assert_eq!(indexes(&ng.lines()).len(), 100);
    let reqs = ng.requests();
    assert_eq!(reqs.iter().filter(|r| r.0 == 429).count(), 2, "{reqs:?}");
    assert_eq!(reqs[0].1, reqs[2].1, "the resend carries the same batch id");
    lg.close(Duration::from_secs(5));
}

#[test]
fn slow_responses_are_waited_for() {
    let dir = temp_dir("http-slow");
    let ng = Nginx::start(&dir, None);
    let lg = logger(&format!(
        "logger = web http://127.0.0.1:{}/slow?ms=400\nlog-route = web .\nmax_batch_size = 100\n{FAST}",
        ng.port
    ));
    log_lines(&lg, 300, |_| None);
    let s = settled(&lg, 300);
    assert_eq!((s.sent, s.lost), (300, 0), "{s:?}");
    assert_identity(&s);
    assert_eq!(indexes(&ng.lines()).len(), 300);
    lg.close(Duration::from_secs(5));
}

#[test]
fn a_reset_mid_response_is_retried_on_a_new_connection() {
    let dir = temp_dir("http-reset");
    let ng = Nginx::start(&dir, None);
    let lg = logger(&format!(
        "logger = web http://127.0.0.1:{}/reset?fail=3\nlog-route = web .\n{FAST}",
        ng.port
    ));
    log_lines(&lg, 200, |_| None);
    let s = settled(&lg, 200);
    assert_eq!((s.sent, s.lost), (200, 0), "{s:?}");
    assert_identity(&s);
    assert_eq!(indexes(&ng.lines()).len(), 200);
    assert!(
        s.connects >= 4,
        "each reset costs the connection: {}",
        s.connects
    );
    lg.close(Duration::from_secs(5));
}

#[test]
fn a_400_for_one_record_in_10000_loses_that_record_only() {
    let dir = temp_dir("http-400");
    let ng = Nginx::start(&dir, None);
    let dead = dir.join("dead.jsonl");
    let lg = logger(&format!(
        "logger = web http://127.0.0.1:{}/refuse?bad=POISON\nlog-route = web .\n\
         dead_letter = {}\n{FAST}",
        ng.port,
        dead.display()
    ));
    log_lines(&lg, 10_000, |i| {
        (i == 6_789).then(|| format!("{{\"i\":{i},\"msg\":\"POISON\"}}"))
    });
    let s = settled(&lg, 10_000);
    assert_eq!((s.sent, s.lost, s.rejected), (9_999, 1, 1), "{s:?}");
    assert_identity(&s);
    // The refused record is kept in the dead letters, as it was sent.
    let letters = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(letters.lines().count(), 1, "{letters}");
    assert!(
        letters.contains("\"record\":\"{\\\"i\\\":6789,\\\"msg\\\":\\\"POISON\\\"}\""),
        "{letters}"
    );
    assert!(letters.contains("\"reason\":\"HTTP 400"), "{letters}");
    let got = indexes(&ng.lines());
    assert_eq!(got.len(), 9_999);
    assert!(!got.contains(&6_789));
    let err = lg
        .take_error()
        .map(|e| e.as_str().to_string())
        .unwrap_or_default();
    assert!(err.contains("HTTP 400"), "{err}");
    // Bisection: a few dozen requests, not one per record.
    assert!(ng.requests().len() < 100, "{}", ng.requests().len());
    lg.close(Duration::from_secs(5));
}

#[test]
fn an_endpoint_that_refuses_everything_does_not_get_every_record_dead_lettered() {
    let dir = temp_dir("http-400-all");
    let ng = Nginx::start(&dir, None);
    let dead = dir.join("dead.jsonl");
    // Every record holds "msg": the endpoint refuses each one, as nginx refuses a client
    // certificate or a misrouted path with a 400 page.
    let lg = logger(&format!(
        "logger = web http://127.0.0.1:{}/refuse?bad=msg\nlog-route = web .\n\
         dead_letter = {}\n{FAST}",
        ng.port,
        dead.display()
    ));
    log_lines(&lg, 500, |_| None);
    // Returns once the output has tried: its 30 s pause is waited out as a backoff, not here.
    lg.flush();
    let mut error = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !error.contains("refuses everything") {
        assert!(Instant::now() < deadline, "no error saying so: {error}");
        if let Some(e) = lg.take_error() {
            error = e.as_str().to_string();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = lg.stats();
    let limit = rlog::output::http::REFUSED_IN_A_ROW as u64;
    // A few are dead-lettered before the output doubts the endpoint; the rest are kept.
    assert_eq!((s.sent, s.lost, s.rejected), (0, limit, limit), "{s:?}");
    assert_eq!(s.buffered, 500 - limit, "{s:?}");
    assert_identity(&s);
    assert_eq!(
        std::fs::read_to_string(&dead).unwrap().lines().count() as u64,
        limit
    );
    assert!(error.contains("HTTP 400"), "{error}");
    lg.close(Duration::from_millis(200));
}

#[test]
fn a_413_splits_the_batch_and_a_record_too_large_alone_is_lost() {
    let dir = temp_dir("http-413");
    let ng = Nginx::start(&dir, None);
    let lg = logger(&format!(
        "logger = web http://127.0.0.1:{}/small\nlog-route = web .\n{FAST}",
        ng.port
    ));
    log_lines(&lg, 2_000, |i| {
        (i == 1_500).then(|| format!("{{\"i\":{i},\"big\":\"{}\"}}", "y".repeat(100_000)))
    });
    let s = settled(&lg, 2_000);
    assert_eq!((s.sent, s.lost), (1_999, 1), "{s:?}");
    assert_identity(&s);
    assert_eq!(indexes(&ng.lines()).len(), 1_999);
    assert!(ng.requests().iter().all(|r| r.0 == 204 || r.2 == 0));
    let err = lg
        .take_error()
        .map(|e| e.as_str().to_string())
        .unwrap_or_default();
    assert!(err.contains("413"), "{err}");
    lg.close(Duration::from_secs(5));
}

#[test]
fn max_retry_time_gives_a_batch_up_counted() {
    let dir = temp_dir("http-maxretry");
    let ng = Nginx::start(&dir, None);
    let lg = logger(&format!(
        "logger = web http://127.0.0.1:{}/flaky?fail=1000000\nlog-route = web .\nmax_retry_time = 0.5\n{FAST}",
        ng.port
    ));
    log_lines(&lg, 50, |_| None);
    let s = settled(&lg, 50);
    assert_eq!((s.sent, s.lost), (0, 50), "{s:?}");
    assert_identity(&s);
    let err = lg
        .take_error()
        .map(|e| e.as_str().to_string())
        .unwrap_or_default();
    assert!(err.contains("max_retry_time"), "{err}");
    lg.close(Duration::from_secs(5));
}

#[test]
fn json_array_bodies_and_a_record_that_is_not_json() {
    let dir = temp_dir("http-jsonarray");
    let ng = Nginx::start(&dir, None);
    let lg = logger(&format!(
        "logger = web http://127.0.0.1:{}/ok\nlog-route = web .\nframing = json_array\n{FAST}",
        ng.port
    ));
    log_lines(&lg, 1_000, |i| (i == 10).then(|| "not json".to_string()));
    let s = settled(&lg, 1_000);
    assert_eq!((s.sent, s.lost), (999, 1), "{s:?}");
    assert_identity(&s);
    let mut n = 0;
    for b in ng.bodies() {
        let v: Vec<serde_json::Value> = serde_json::from_slice(&b).unwrap();
        n += v.len();
    }
    assert_eq!(n, 999);
    lg.close(Duration::from_secs(5));
}

#[test]
fn es_bulk_bodies_carry_action_lines_with_record_ids() {
    let dir = temp_dir("http-es");
    let ng = Nginx::start(&dir, None);
    let lg = logger(&format!(
        "logger = es http://127.0.0.1:{}/es/_bulk\nlog-route = es .\nhttp_api = es_bulk\n{FAST}",
        ng.port
    ));
    log_lines(&lg, 500, |_| None);
    let s = settled(&lg, 500);
    assert_eq!((s.sent, s.lost), (500, 0), "{s:?}");
    assert_identity(&s);
    let lines = ng.lines();
    assert_eq!(lines.len(), 1_000);
    let ids: HashSet<_> = lines
        .iter()
        .step_by(2)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["create"]["_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 500, "one id per record");
    assert_eq!(
        indexes(&lines.iter().skip(1).step_by(2).cloned().collect::<Vec<_>>()).len(),
        500
    );
    lg.close(Duration::from_secs(5));
}

fn tls_files(dir: &std::path::Path) -> (pki::PkiFiles, pki::PkiFiles) {
    std::fs::create_dir_all(dir.join("server")).unwrap();
    std::fs::create_dir_all(dir.join("client")).unwrap();
    let server = pki::issue(&["logs.example.test"]).write_to(&dir.join("server"));
    let client = client_pki(&dir.join("client"));
    (server, client)
}

/// A client CA and certificate whose names differ (OpenSSL, unlike webpki, takes a leaf whose
/// issuer name is its own subject's for a self-signed certificate).
fn client_pki(dir: &std::path::Path) -> pki::PkiFiles {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "rlog test client CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["client.rlog.test".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "rlog client");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let f = pki::PkiFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&f.ca, ca_cert.pem()).unwrap();
    std::fs::write(&f.cert, cert.pem()).unwrap();
    std::fs::write(&f.key, key.serialize_pem()).unwrap();
    f
}

#[test]
fn https_verifies_the_server_with_ssl_ca_and_sni() {
    let dir = temp_dir("http-tls");
    let (server, _) = tls_files(&dir);
    let ng = Nginx::start(
        &dir,
        Some(NginxTls {
            cert: &server.cert,
            key: &server.key,
            client_ca: None,
        }),
    );
    let lg = logger(&format!(
        "logger = web https://127.0.0.1:{}/ok\nlog-route = web .\nssl_ca = {}\nsni_host = logs.example.test\n{FAST}",
        ng.port,
        server.ca.display()
    ));
    log_lines(&lg, 1_000, |_| None);
    let s = settled(&lg, 1_000);
    assert_eq!((s.sent, s.lost), (1_000, 0), "{s:?} {:?}", lg.take_error());
    assert_identity(&s);
    assert_eq!(indexes(&ng.lines()).len(), 1_000);
    lg.close(Duration::from_secs(5));

    // Without the CA, the system's roots do not know the server: nothing is sent, all is held.
    let lg = logger(&format!(
        "logger = web https://127.0.0.1:{}/ok\nlog-route = web .\nsni_host = logs.example.test\n{FAST}",
        ng.port
    ));
    log_lines(&lg, 10, |_| None);
    assert_eq!(lg.flush(), -1);
    let err = lg
        .take_error()
        .map(|e| e.as_str().to_string())
        .unwrap_or_default();
    assert!(
        err.contains("certificate") || err.contains("handshake"),
        "{err}"
    );
    let s = lg.stats();
    assert_eq!(s.sent, 0);
    assert_identity(&s);
    lg.close(Duration::from_millis(200));
}

#[test]
fn https_with_a_client_certificate_for_mutual_tls() {
    let dir = temp_dir("http-mtls");
    let (server, client) = tls_files(&dir);
    let ng = Nginx::start(
        &dir,
        Some(NginxTls {
            cert: &server.cert,
            key: &server.key,
            client_ca: Some(&client.ca),
        }),
    );
    let lg = logger(&format!(
        "logger = web https://127.0.0.1:{}/ok\nlog-route = web .\nssl_ca = {}\nsni_host = logs.example.test\nssl_cert = {}\nssl_key = {}\n{FAST}",
        ng.port,
        server.ca.display(),
        client.cert.display(),
        client.key.display()
    ));
    log_lines(&lg, 1_000, |_| None);
    let s = settled(&lg, 1_000);
    assert_eq!((s.sent, s.lost), (1_000, 0), "{s:?} {:?}", lg.take_error());
    assert_identity(&s);
    assert_eq!(indexes(&ng.lines()).len(), 1_000);
    lg.close(Duration::from_secs(5));
}

/// Elasticsearch cannot run here: `/esi/_bulk` is a mock answering item by item as the `_bulk`
/// documentation shows (tests/http_util).
#[test]
fn es_bulk_items_are_settled_one_by_one_against_a_mock_elasticsearch() {
    let dir = temp_dir("http-es-items");
    let ng = Nginx::start(&dir, None);
    let dead = dir.join("dead.jsonl");
    let lg = logger(&format!(
        "logger = es http://127.0.0.1:{}/esi/_bulk\nlog-route = es .\nhttp_api = es_bulk\n\
         max_batch_size = 250\ndead_letter = {}\n{FAST}",
        ng.port,
        dead.display()
    ));
    log_lines(&lg, 1_000, |i| match i {
        100 => Some(format!("{{\"i\":{i},\"msg\":\"BAD\"}}")),
        200 => Some(format!("{{\"i\":{i},\"msg\":\"DUP\"}}")),
        300..=309 => Some(format!("{{\"i\":{i},\"msg\":\"BUSY\"}}")),
        _ => None,
    });
    let s = settled(&lg, 1_000);
    // 400: refused for good; 409 on create: already there, delivered; 429: retried.
    assert_eq!((s.sent, s.lost, s.rejected), (999, 1, 1), "{s:?}");
    assert_identity(&s);
    let indexed = std::fs::read_to_string(dir.join("indexed.log")).unwrap();
    let got = indexes(&indexed.lines().map(str::to_string).collect::<Vec<_>>());
    assert_eq!(got.len(), 998, "every document once but BAD and DUP");
    assert!(!got.contains(&100) && !got.contains(&200));
    assert!(
        (300..310).all(|i| got.contains(&i)),
        "the 429s were retried"
    );
    let letters = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(letters.lines().count(), 1, "{letters}");
    assert!(letters.contains("mapper_parsing_exception"), "{letters}");
    lg.close(Duration::from_secs(5));
}

/// Loki cannot run here: `/loki/api/v1/push` is a mock that stores what it is sent.
#[test]
fn loki_push_bodies_carry_the_labels_and_each_line_with_its_time() {
    let dir = temp_dir("http-loki");
    let ng = Nginx::start(&dir, None);
    let lg = logger(&format!(
        "logger = loki http://127.0.0.1:{}/loki/api/v1/push\nlog-route = loki .\n\
         http_api = loki\nloki_labels = job=nginx,host=web1\n{FAST}",
        ng.port
    ));
    log_lines(&lg, 300, |_| None);
    let s = settled(&lg, 300);
    assert_eq!((s.sent, s.lost), (300, 0), "{s:?}");
    assert_identity(&s);
    let mut lines = Vec::new();
    for body in ng.bodies() {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let stream = &v["streams"][0];
        assert_eq!(stream["stream"]["job"], "nginx");
        assert_eq!(stream["stream"]["host"], "web1");
        for pair in stream["values"].as_array().unwrap() {
            let ns: u128 = pair[0].as_str().unwrap().parse().unwrap();
            assert!(ns > 1_700_000_000_000_000_000, "a time in ns: {ns}");
            lines.push(pair[1].as_str().unwrap().to_string());
        }
    }
    assert_eq!(indexes(&lines), (0..300).collect::<Vec<_>>());
    lg.close(Duration::from_secs(5));
}

/// An OpenTelemetry collector cannot run here: `/v1/logs` is a mock answering `{}`, or a
/// `partialSuccess` when a record says PARTIAL.
#[test]
fn otlp_logs_and_a_partial_success_is_reported() {
    let dir = temp_dir("http-otlp");
    let ng = Nginx::start(&dir, None);
    let lg = logger(&format!(
        "logger = otel http://127.0.0.1:{}/v1/logs\nlog-route = otel .\nhttp_api = otlp\n{FAST}",
        ng.port
    ));
    log_lines(&lg, 200, |_| None);
    let s = settled(&lg, 200);
    assert_eq!((s.sent, s.lost), (200, 0), "{s:?}");
    let mut lines = Vec::new();
    for body in ng.bodies() {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for r in v["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
            .as_array()
            .unwrap()
        {
            lines.push(r["body"]["stringValue"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(indexes(&lines), (0..200).collect::<Vec<_>>());
    assert!(lg.take_error().is_none());
    // OTLP says how many it rejected, not which: the pending error says so.
    log_lines(&lg, 1, |_| Some("{\"i\":200,\"msg\":\"PARTIAL\"}".into()));
    let s = settled(&lg, 201);
    assert_identity(&s);
    let e = lg
        .take_error()
        .map(|e| e.as_str().to_string())
        .unwrap_or_default();
    assert!(
        e.contains("2") && e.contains("older than the retention"),
        "{e}"
    );
    lg.close(Duration::from_secs(5));
}
