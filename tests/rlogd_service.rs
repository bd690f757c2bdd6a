//! rlogd as a service: the signals operators send (logrotate's `kill -HUP`, `kill -USR1` for
//! counters), a config file, `--version` and `--help`, counters over HTTP and `rlogd stats`,
//! and log lines an operator can read (the follower's position).

mod pki;
mod rlogd_util;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rlog::proto::frame::{self, Hello, Role};
use rlogd_util::*;

fn signal(p: &Proc, sig: i32) {
    let pid = p.child.as_ref().expect("running").id() as i32;
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

fn alive(p: &mut Proc) -> bool {
    matches!(p.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
}

/// HELLO as a producer with `token`: the kind of the answer and its body.
fn hello(addr: &str, token: &[u8]) -> (u8, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let h = Hello {
        version: frame::PROTOCOL,
        token: token.to_vec(),
        role: Role::Producer,
    };
    frame::write_frame(&mut s, frame::HELLO, &h.encode()).unwrap();
    let mut buf = Vec::new();
    let k = frame::read_frame(&mut s, 1 << 20, &mut buf).unwrap();
    (k, String::from_utf8_lossy(&buf).into_owned())
}

#[test]
fn hup_reloads_the_token_usr1_and_usr2_log_counters_and_none_kills() {
    let dir = TempDir::new("signals");
    let token = dir.join("token");
    fs::write(&token, "one\n").unwrap();
    let mut d = Proc::serve(
        &dir.join("data"),
        &[
            "--listen",
            "rlogd://127.0.0.1:0",
            "--token-file",
            token.to_str().unwrap(),
        ],
        dir.join("log"),
    );
    let addr = d.bound("rlogd");
    assert_eq!(hello(&addr, b"one").0, frame::WELCOME);

    signal(&d, libc::SIGUSR1);
    assert!(
        d.wait_log(|l| l.contains("SIGUSR1: stored=0") && l.contains("open_connections=")),
        "{}",
        d.log_text()
    );
    signal(&d, libc::SIGUSR2);
    assert!(
        d.wait_log(|l| l.contains("SIGUSR2: stored=0")),
        "{}",
        d.log_text()
    );
    // logrotate's postrotate `kill -HUP`; the token file changed meanwhile.
    fs::write(&token, "two\n").unwrap();
    signal(&d, libc::SIGHUP);
    assert!(
        d.wait_log(|l| l.contains("SIGHUP: reloaded the token file")),
        "{}",
        d.log_text()
    );
    assert!(alive(&mut d), "{}", d.log_text());
    assert_eq!(hello(&addr, b"two").0, frame::WELCOME);
    let (k, why) = hello(&addr, b"one");
    assert_eq!((k, why.as_str()), (frame::ERROR, "wrong token"));
    // A token file that cannot be read keeps the token in use.
    fs::remove_file(&token).unwrap();
    signal(&d, libc::SIGHUP);
    assert!(
        d.wait_log(|l| l.contains("kept the previous token")),
        "{}",
        d.log_text()
    );
    assert_eq!(hello(&addr, b"two").0, frame::WELCOME);
    // SIGTERM still stops it, cleanly.
    assert_eq!(d.term(), Some(0));
    assert!(d
        .log_text()
        .contains("SIGTERM: finishing the commit in progress"));
}

#[test]
fn hup_reopens_the_log_file_after_rotation() {
    let dir = TempDir::new("logfile");
    let log = dir.join("rlogd.log");
    let mut d = Proc::start(
        &[
            "serve",
            "--data",
            dir.join("data").to_str().unwrap(),
            "--listen",
            "rlogd://127.0.0.1:0",
            "--log-file",
            log.to_str().unwrap(),
        ],
        dir.join("stderr"),
    );
    let read = |p: &std::path::Path| fs::read_to_string(p).unwrap_or_default();
    assert!(wait_until(Duration::from_secs(20), || read(&log)
        .contains("rlogd: serving")));
    fs::rename(&log, dir.join("rlogd.log.1")).unwrap();
    signal(&d, libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(20), || read(&log)
            .contains("SIGHUP: reopened the log file")),
        "{}",
        read(&dir.join("rlogd.log.1"))
    );
    assert!(alive(&mut d));
    assert!(read(&dir.join("stderr")).is_empty());
    // Why it could not start is in the log file too, not only on stderr.
    let flog = dir.join("failed.log");
    let blocker = dir.join("a-file");
    fs::write(&blocker, "").unwrap();
    let (code, _, err) = run(&[
        "serve",
        "--data",
        blocker.join("data").to_str().unwrap(),
        "--listen",
        "rlogd://127.0.0.1:0",
        "--log-file",
        flog.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot open the store"), "{err}");
    assert!(
        read(&flog).contains("cannot open the store"),
        "{}",
        read(&flog)
    );
}

#[test]
fn a_config_file_mirrors_the_flags_and_the_command_line_wins() {
    let dir = TempDir::new("config");
    let data = dir.join("data");
    let token = dir.join("token");
    fs::write(&token, "s3cret\n").unwrap();
    let conf = dir.join("rlogd.conf");
    fs::write(
        &conf,
        format!(
            "# rlogd's settings\ndata = {}\nlisten = rlogd://127.0.0.1:0\nlisten = tcp://127.0.0.1:0\n\ntoken-file = \"{}\"\nseal-grace = 5\nmax-connections = 100\n",
            data.display(),
            token.display()
        ),
    )
    .unwrap();
    let d = Proc::start(
        &["serve", "--config", conf.to_str().unwrap()],
        dir.join("log"),
    );
    assert!(
        d.wait_log(|l| l.contains("rlogd: serving")),
        "{}",
        d.log_text()
    );
    let addr = d.bound("rlogd");
    let _ = d.bound("tcp");
    assert_eq!(hello(&addr, b"s3cret").0, frame::WELCOME);
    assert_eq!(hello(&addr, b"").0, frame::ERROR);
    drop(d);
    // A --listen on the command line replaces the file's listeners.
    let d = Proc::start(
        &[
            "serve",
            "--config",
            conf.to_str().unwrap(),
            "--listen",
            "udp://127.0.0.1:0",
        ],
        dir.join("log2"),
    );
    assert!(d.wait_log(|l| l.contains("rlogd: serving")));
    assert!(d.log_text().contains("listening on udp://"));
    assert!(!d.log_text().contains("listening on rlogd://"));
    drop(d);
    // The example shipped in dist/ is a valid config (its paths replaced on the command line).
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/rlogd.conf");
    let d = Proc::start(
        &[
            "serve",
            "--config",
            example,
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "rlogd://127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ],
        dir.join("log3"),
    );
    assert!(
        d.wait_log(|l| l.contains("rlogd: serving")),
        "{}",
        d.log_text()
    );
    drop(d);
    // Mistakes are named with their line.
    fs::write(
        &conf,
        "data = /tmp/x\nlisten = rlogd://127.0.0.1:0\nlsiten = x\n",
    )
    .unwrap();
    let (code, _, err) = run(&["serve", "--config", conf.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("rlogd.conf:3: unknown option \"lsiten\""),
        "{err}"
    );
}

#[test]
fn version_and_help_for_each_command() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("rlogd {}", env!("CARGO_PKG_VERSION")));
    for (cmd, expect) in [
        ("serve", "--handshake-timeout"),
        ("follow", "--master"),
        ("cat", "--json"),
        ("tail", "--type"),
        ("verify", "damaged"),
        ("stats", "--metrics"),
    ] {
        let (code, out, err) = run(&[cmd, "--help"]);
        assert_eq!(code, 0, "{cmd}: {err}");
        assert!(
            out.starts_with(&format!("usage: rlogd {cmd}")) && out.contains(expect),
            "{cmd}: {out}"
        );
    }
}

/// GETs `path` from `addr`: the whole answer.
fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn counters_over_http_and_rlogd_stats() {
    let dir = TempDir::new("metrics");
    let d = Proc::serve(
        &dir.join("data"),
        &[
            "--listen",
            "rlogd://127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ],
        dir.join("log"),
    );
    let addr = d.bound("rlogd");
    let maddr = d.bound_by("metrics on");
    send_batch(
        &addr,
        &batch_body(5, 0, 1_700_000_000_000_000, 0, &[b"a", b"b"]),
    );
    let m = http_get(&maddr, "/metrics");
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    assert!(m.contains("\nrlogd_stored_total 2\n"), "{m}");
    assert!(
        m.contains("# TYPE rlogd_refused_garbage_total counter"),
        "{m}"
    );
    assert!(m.contains("\nrlogd_open_connections "), "{m}");
    let h = http_get(&maddr, "/health");
    assert!(h.starts_with("HTTP/1.1 200") && h.ends_with("ok\n"), "{h}");
    assert!(http_get(&maddr, "/nothing").starts_with("HTTP/1.1 404"));
    let (code, out, err) = run(&["stats", "--metrics", &maddr]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l == "stored 2"), "{out}");
    assert!(out.lines().any(|l| l == "refused_garbage 0"), "{out}");
    // Nobody listening: a clear error.
    drop(d);
    let (code, _, err) = run(&["stats", "--metrics", &maddr]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read the counters"), "{err}");
}

#[test]
fn the_follower_says_where_it_resumes_in_words() {
    let dir = TempDir::new("position");
    let (mdata, fdata) = (dir.join("master"), dir.join("follower"));
    let m = Proc::serve(
        &mdata,
        &["--listen", "rlogd://127.0.0.1:0"],
        dir.join("mlog"),
    );
    let addr = m.bound("rlogd");
    let now = rlog::proto::format::now_micros();
    send_batch(&addr, &batch_body(5, 0, now, 0, &[b"a", b"b"]));
    let follow = |log: &str| {
        Proc::start(
            &[
                "follow",
                "--master",
                &format!("rlogd://{addr}"),
                "--data",
                fdata.to_str().unwrap(),
            ],
            dir.join(log),
        )
    };
    let f = follow("flog1");
    assert!(
        f.wait_log(|l| l.contains("at an empty store")),
        "{}",
        f.log_text()
    );
    assert!(wait_until(Duration::from_secs(20), || payloads(&fdata)
        .len()
        == 2));
    drop(f);
    let f = follow("flog2");
    let today = rlog::proto::format::Date::of_micros(now);
    assert!(
        f.wait_log(|l| l.contains(&format!("at {today} record 2 (open)"))),
        "{}",
        f.log_text()
    );
    for log in [f.log_text(), m.log_text()] {
        assert!(!log.contains("Empty") && !log.contains("Open {"), "{log}");
    }
}

#[test]
fn hup_reloads_the_tls_certificate_and_keeps_it_when_unreadable() {
    use rlog::{Config, Logger};
    let dir = TempDir::new("tlsreload");
    fs::create_dir_all(dir.join("old")).unwrap();
    fs::create_dir_all(dir.join("new")).unwrap();
    let old = pki::issue(&["localhost"]).write_to(&dir.join("old"));
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    fs::copy(&old.cert, &cert).unwrap();
    fs::copy(&old.key, &key).unwrap();
    let data = dir.join("data");
    let d = Proc::serve(
        &data,
        &[
            "--listen",
            "rlogd://127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        dir.join("log"),
    );
    let addr = d.bound("rlogd");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let send = |ca: &std::path::Path, msg: &str| {
        let lg = Logger::start(
            Config::parse(&format!(
                "host = {host}\nport = {port}\nsock_type = rlogd\nssl = true\nsni_host = localhost\nmax_retry_times = 0\nssl_ca = {}",
                ca.display()
            ))
            .unwrap(),
        )
        .unwrap();
        lg.log(msg.as_bytes());
        lg.flush() > 0
    };
    assert!(send(&old.ca, "old cert"));
    // The certificate is renewed (another CA here) and rlogd told with SIGHUP.
    let new = pki::issue(&["localhost"]).write_to(&dir.join("new"));
    fs::copy(&new.cert, &cert).unwrap();
    fs::copy(&new.key, &key).unwrap();
    signal(&d, libc::SIGHUP);
    assert!(
        d.wait_log(|l| l.contains("SIGHUP: reloaded the TLS certificate")),
        "{}",
        d.log_text()
    );
    assert!(send(&new.ca, "new cert"));
    assert!(!send(&old.ca, "never"));
    assert!(
        d.wait_log(|l| l.contains("refused_tls=1")),
        "{}",
        d.log_text()
    );
    // A half-written renewal is not taken: the certificate in use stays.
    fs::write(&key, "not a key").unwrap();
    signal(&d, libc::SIGHUP);
    assert!(
        d.wait_log(|l| l.contains("kept the previous TLS setup")),
        "{}",
        d.log_text()
    );
    assert!(send(&new.ca, "still new"));
    assert_eq!(
        payloads(&data),
        vec![
            b"old cert".to_vec(),
            b"new cert".to_vec(),
            b"still new".to_vec()
        ]
    );
}

#[test]
fn the_follower_survives_hup_usr1_and_usr2() {
    let dir = TempDir::new("followsig");
    let (mdata, fdata) = (dir.join("master"), dir.join("follower"));
    let token = dir.join("token");
    fs::write(&token, "t1\n").unwrap();
    // The master takes any token; the follower sends one from its file.
    let m = Proc::serve(
        &mdata,
        &["--listen", "rlogd://127.0.0.1:0"],
        dir.join("mlog"),
    );
    let addr = m.bound("rlogd");
    let mut f = Proc::start(
        &[
            "follow",
            "--master",
            &format!("rlogd://{addr}"),
            "--data",
            fdata.to_str().unwrap(),
            "--token-file",
            token.to_str().unwrap(),
        ],
        dir.join("flog"),
    );
    assert!(
        f.wait_log(|l| l.contains("replicating from")),
        "{}",
        f.log_text()
    );
    signal(&f, libc::SIGUSR1);
    assert!(
        f.wait_log(|l| l.contains("SIGUSR1: following") && l.contains("at an empty store")),
        "{}",
        f.log_text()
    );
    signal(&f, libc::SIGUSR2);
    assert!(f.wait_log(|l| l.contains("SIGUSR2: following")));
    signal(&f, libc::SIGHUP);
    assert!(
        f.wait_log(|l| l.contains("SIGHUP: reloaded the token file")),
        "{}",
        f.log_text()
    );
    assert!(alive(&mut f), "{}", f.log_text());
    // Still replicating.
    send_batch(
        &addr,
        &batch_body(
            5,
            0,
            rlog::proto::format::now_micros(),
            0,
            &[b"after the signals"],
        ),
    );
    assert!(wait_until(Duration::from_secs(20), || payloads(&fdata)
        == vec![b"after the signals".to_vec()]));
    assert_eq!(f.term(), Some(0));
}
