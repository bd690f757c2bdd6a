//! The `clickhouse://` output against Debian's real clickhouse-server (18.16): rows stored
//! once with their content; a bad row dead-lettered with the rest inserted; the server down
//! for 30 s with a spool, then up: every row once; a wrong password keeps the rows and says
//! why, and they go in once the password is right. Each test runs its own server (one kills
//! it, one changes its users), about 50 MB and 0.15 s to start here. Counts are what ClickHouse
//! stored against what was logged, with the stats identity.

mod clickhouse_util;
mod common;
mod pki;

use std::thread;
use std::time::{Duration, Instant};

use clickhouse_util::ClickHouse;
use common::{assert_identity, temp_dir};
use rlog::{Config, Logged, Logger};

/// A config with one (default) clickhouse logger into `logs.TABLE` (`userinfo` = `USER:PASS@` or
/// empty), rows `{"id":MSG,"msg":"row MSG"}`, plus `extra` lines.
fn config(port: u16, userinfo: &str, table: &str, extra: &str) -> Config {
    Config::parse(&format!(
        "logger = clickhouse://{userinfo}127.0.0.1:{port}/logs.{table}\n\
         log-encoder = json {{\"id\":${{msg}},\"msg\":\"row ${{msg}}\"}}\n\
         drop_limit = 67108864\n{extra}"
    ))
    .unwrap()
}

fn log_ids(lg: &Logger, ids: std::ops::Range<u64>) {
    for i in ids {
        let m = i.to_string();
        assert_eq!(lg.log(m.as_bytes()), Logged::Buffered(m.len()), "row {i}");
    }
}

/// The identity in messages only. With an encoder and a spool, main's spool counts a spooled
/// (and then replayed and sent) record by its encoded bytes while `logged_bytes` counts the
/// message's: the byte identity does not hold there (reported to the lead, not this output's).
fn assert_message_identity(s: &rlog::rlog_stats) {
    assert_eq!(
        s.logged + s.adopted,
        s.sent + s.lost + s.spooled + s.buffered,
        "identity broken: {s:?}"
    );
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// `(count(), uniqExact(id))` of `logs.TABLE`.
fn count_and_distinct(ch: &ClickHouse, table: &str) -> (u64, u64) {
    let out = ch
        .query(&format!(
            "SELECT count(), uniqExact(id) FROM logs.{table} FORMAT TabSeparated"
        ))
        .unwrap();
    let (a, b) = out.trim().split_once('\t').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

/// With each body compression: ClickHouse's LZ4 blocks (the default, `decompress=1`), gzip
/// and none.
#[test]
fn every_row_is_stored_once_with_its_content() {
    let ch = ClickHouse::start("delivery");
    const N: u64 = 25_000;
    for (table, extra) in [
        ("once", ""),
        ("once_gzip", "compression = gzip"),
        ("once_none", "compression = none"),
    ] {
        ch.create_table(table);
        let lg = Logger::start(config(ch.http_port, "", table, extra)).unwrap();
        log_ids(&lg, 0..N);
        assert!(lg.close(Duration::from_secs(60)), "{:?}", lg.stats());
        let s = lg.stats();
        assert_eq!((s.logged, s.sent, s.lost), (N, N, 0), "{table}: {s:?}");
        assert_identity(&s);
        assert_eq!(count_and_distinct(&ch, table), (N, N), "{table}");
        let rows = ch.rows(table);
        for (i, (id, msg)) in rows.iter().enumerate() {
            assert_eq!((*id, msg.as_str()), (i as u64, format!("row {i}").as_str()));
        }
    }
}

#[test]
fn a_bad_row_is_dead_lettered_and_the_rest_inserted() {
    let ch = ClickHouse::start("delivery");
    ch.create_table("bad");
    let dir = temp_dir("clickhouse-bad");
    let dead = dir.join("dead.jsonl");
    let lg = Logger::start(config(
        ch.http_port,
        "",
        "bad",
        &format!("dead_letter = {}", dead.display()),
    ))
    .unwrap();
    // `{"id":oops,...}` is not JSON: ClickHouse answers code 27 for the whole insert.
    log_ids(&lg, 0..537);
    assert_eq!(lg.log(b"oops"), Logged::Buffered(4));
    log_ids(&lg, 538..1000);
    assert!(!lg.close(Duration::from_secs(60)), "one row was refused");
    let s = lg.stats();
    assert_eq!(
        (s.logged, s.sent, s.lost, s.rejected),
        (1000, 999, 1, 1),
        "{s:?}"
    );
    assert_identity(&s);
    assert_eq!(count_and_distinct(&ch, "bad"), (999, 999));
    assert!(!ch.rows("bad").iter().any(|(id, _)| *id == 537));
    let lines: Vec<String> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("ClickHouse error 27"), "{}", lines[0]);
    assert!(
        lines[0].contains(r#""record":"{\"id\":oops,\"msg\":\"row oops\"}""#),
        "{}",
        lines[0]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn down_for_30_s_with_a_spool_then_up_every_row_once() {
    let mut ch = ClickHouse::start("delivery");
    ch.create_table("outage");
    let dir = temp_dir("clickhouse-outage");
    let spool = dir.join("spool");
    let lg = Logger::start(config(
        ch.http_port,
        "",
        "outage",
        &format!(
            "spool = {}\nmax_retry_times = 0\nretry_interval = 50",
            spool.display()
        ),
    ))
    .unwrap();
    log_ids(&lg, 0..1000);
    assert!(lg.flush() > 0, "{:?}", lg.stats());
    assert_eq!(ch.count("outage"), 1000);
    // Nothing in flight: the crash cannot leave an insert stored but unanswered.
    ch.kill9();
    let down = Instant::now();
    let mut logged = 1000;
    while down.elapsed() < Duration::from_secs(30) {
        log_ids(&lg, logged..logged + 500);
        logged += 500;
        thread::sleep(Duration::from_millis(500));
    }
    wait_for("the rows of the outage to reach the spool", 60, || {
        let s = lg.stats();
        s.buffered == 0 && s.spooled == logged - 1000
    });
    let s = lg.stats();
    assert_eq!(s.sent, 1000, "{s:?}");
    assert_message_identity(&s);
    ch.restart();
    wait_for("every row in ClickHouse", 120, || {
        ch.count("outage") >= logged
    });
    assert!(lg.close(Duration::from_secs(60)), "{:?}", lg.stats());
    let s = lg.stats();
    assert_eq!(
        (s.logged, s.sent, s.lost, s.spooled),
        (logged, logged, 0, 0),
        "{s:?}"
    );
    assert_message_identity(&s);
    assert_eq!(count_and_distinct(&ch, "outage"), (logged, logged));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_wrong_password_keeps_the_rows_says_why_and_they_go_in_once_it_is_right() {
    let ch = ClickHouse::start("delivery");
    ch.create_table("auth");
    let lg = Logger::start(config(
        ch.http_port,
        "writer:nope@",
        "auth",
        "max_retry_times = 0",
    ))
    .unwrap();
    log_ids(&lg, 0..100);
    assert_eq!(lg.flush(), -1);
    let e = lg.take_error().expect("a pending error");
    assert!(
        e.as_str().contains("Wrong password for user writer"),
        "{}",
        e.as_str()
    );
    let s = lg.stats();
    assert_eq!(
        (s.logged, s.sent, s.lost, s.buffered),
        (100, 0, 0, 100),
        "{s:?}"
    );
    assert_identity(&s);
    assert_eq!(ch.count("auth"), 0);
    // The operator sets the password rlog uses; ClickHouse reloads users.xml by itself.
    ch.set_password(clickhouse_util::USER, "nope");
    wait_for("the new password", 60, || {
        ch.query_as(Some((clickhouse_util::USER, "nope")), "SELECT 1")
            .is_ok()
    });
    // A flush does not wait out the slow retry's pause.
    assert!(lg.flush() > 0, "{:?}", lg.stats());
    assert!(lg.close(Duration::from_secs(30)));
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.lost), (100, 100, 0), "{s:?}");
    assert_identity(&s);
    assert_eq!(count_and_distinct(&ch, "auth"), (100, 100));
}

/// `clickhouses://` to ClickHouse's own HTTPS interface (its `https_port`, OpenSSL), the
/// server's certificate checked against `ssl_ca` for `sni_host`: every row once. A CA that did
/// not sign it fails the handshake, says so, and keeps the rows.
#[test]
fn clickhouses_over_tls_stores_every_row_once() {
    let dir = temp_dir("clickhouse-tls");
    let server = pki::issue(&["ch.example.test"]).write_to(&dir);
    std::fs::create_dir_all(dir.join("other")).unwrap();
    let other = pki::issue(&["ch.example.test"]).write_to(&dir.join("other"));
    let ch = ClickHouse::start_tls("tls", &server.cert, &server.key);
    let port = ch.https_port.unwrap();
    ch.create_table("over_tls");
    let text = |ca: &std::path::Path, extra: &str| {
        Config::parse(&format!(
            "logger = clickhouses://127.0.0.1:{port}/logs.over_tls\n\
             log-encoder = json {{\"id\":${{msg}},\"msg\":\"row ${{msg}}\"}}\n\
             sni_host = ch.example.test\nssl_ca = {}\ndrop_limit = 67108864\n{extra}",
            ca.display()
        ))
        .unwrap()
    };

    let lg = Logger::start(text(&other.ca, "max_retry_times = 0\n")).unwrap();
    log_ids(&lg, 0..10);
    assert_eq!(lg.flush(), -1);
    let e = lg.take_error().unwrap();
    assert!(
        e.as_str().contains(&format!(
            "TLS handshake with clickhouses://127.0.0.1:{port}/logs.over_tls: invalid peer certificate"
        )),
        "{}",
        e.as_str()
    );
    let s = lg.stats();
    assert_eq!((s.sent, s.lost, s.buffered), (0, 0, 10), "{s:?}");
    let _ = lg.close(Duration::from_millis(100));

    const N: u64 = 20_000;
    let lg = Logger::start(text(&server.ca, "")).unwrap();
    log_ids(&lg, 0..N);
    assert!(lg.close(Duration::from_secs(60)), "{:?}", lg.take_error());
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.lost), (N, N, 0), "{s:?}");
    assert_identity(&s);
    assert_eq!(count_and_distinct(&ch, "over_tls"), (N, N));
    let (_, sink) = lg.sink_stats(0).unwrap();
    assert!(sink.connects >= 1, "{sink:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
