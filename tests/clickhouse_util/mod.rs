//! A real ClickHouse server for the integration tests: Debian's `clickhouse-server` (18.16) run
//! as a daemon on 127.0.0.1 with its own temp dir, free ports, a config and users written here,
//! and a pid file; stopped by that pid (SIGTERM, or SIGKILL for faults) and restarted on the
//! same directory and ports. Queries go over ClickHouse's HTTP interface with a small client
//! here (no dependency). It starts in about 0.15 s and holds about 50 MB here, so each test
//! file runs one server and every test uses a table of its own.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub const SERVER: &str = "/usr/sbin/clickhouse-server";

/// The user with a password (for the authentication tests).
pub const USER: &str = "writer";
pub const PASSWORD: &str = "s3cret";

/// A running (or stopped) clickhouse-server; killed and its directory removed on drop.
pub struct ClickHouse {
    pub dir: PathBuf,
    pub http_port: u16,
    pub tcp_port: u16,
    /// Its `https_port`, when started with a certificate ([`ClickHouse::start_tls`]).
    pub https_port: Option<u16>,
    /// The certificate and key files it serves HTTPS with.
    tls: Option<(PathBuf, PathBuf)>,
    pid: Option<i32>,
}

/// An HTTP answer: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `pid` still runs (a zombie does not).
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn config_xml(dir: &Path, http: u16, tcp: u16, https: Option<(u16, &Path, &Path)>) -> String {
    let d = dir.display();
    // ClickHouse's HTTPS interface: its own OpenSSL settings (no client certificates).
    let https = https.map_or(String::new(), |(port, cert, key)| {
        format!(
            "<https_port>{port}</https_port>\n  <openSSL><server>\
             <certificateFile>{}</certificateFile><privateKeyFile>{}</privateKeyFile>\
             <verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile>\
             <disableProtocols>sslv2,sslv3</disableProtocols></server></openSSL>",
            cert.display(),
            key.display()
        )
    });
    format!(
        r#"<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>{d}/server.log</log>
    <errorlog>{d}/server.err.log</errorlog>
    <console>0</console>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  {https}
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709</mark_cache_size>
  <uncompressed_cache_size>8388608</uncompressed_cache_size>
  <max_concurrent_queries>32</max_concurrent_queries>
</yandex>
"#
    )
}

/// users.xml with `writer`'s password `password`.
fn users_xml(password: &str) -> String {
    USERS_XML.replace(
        "<password>s3cret</password>",
        &format!("<password>{password}</password>"),
    )
}

const USERS_XML: &str = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile><quota>default</quota>
    </default>
    <writer>
      <password>s3cret</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile><quota>default</quota>
    </writer>
  </users>
  <quotas><default></default></quotas>
</yandex>
"#;

impl ClickHouse {
    /// Starts a server in a fresh temp dir on free ports (new ports if another process took
    /// them between choosing and binding), and creates database `logs`.
    pub fn start(name: &str) -> ClickHouse {
        Self::start_with(name, None)
    }

    /// As `start`, with ClickHouse's HTTPS interface too (`https_port`), serving `cert` and
    /// `key` (PEM files).
    pub fn start_tls(name: &str, cert: &Path, key: &Path) -> ClickHouse {
        Self::start_with(name, Some((cert.to_path_buf(), key.to_path_buf())))
    }

    fn start_with(name: &str, tls: Option<(PathBuf, PathBuf)>) -> ClickHouse {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("rlog-clickhouse-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("users.xml"), users_xml(PASSWORD)).unwrap();
        let mut ch = ClickHouse {
            dir,
            http_port: 0,
            tcp_port: 0,
            https_port: None,
            tls,
            pid: None,
        };
        for attempt in 0.. {
            ch.http_port = free_port();
            ch.tcp_port = free_port();
            ch.https_port = ch.tls.as_ref().map(|_| free_port());
            let https = ch
                .https_port
                .zip(ch.tls.as_ref())
                .map(|(p, (c, k))| (p, c.as_path(), k.as_path()));
            fs::write(
                ch.dir.join("config.xml"),
                config_xml(&ch.dir, ch.http_port, ch.tcp_port, https),
            )
            .unwrap();
            if ch.launch() {
                break;
            }
            assert!(
                attempt < 3,
                "clickhouse-server did not start: {}",
                ch.log_tail()
            );
        }
        ch.query("CREATE DATABASE IF NOT EXISTS logs").unwrap();
        ch
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("clickhouse.pid")
    }

    /// Runs the daemon and waits until `/ping` answers; false if it exited or never answered.
    fn launch(&mut self) -> bool {
        let _ = fs::remove_file(self.pid_file());
        let status = Command::new(SERVER)
            .arg("--daemon")
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .arg(format!("--pid-file={}", self.pid_file().display()))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run clickhouse-server");
        assert!(status.success(), "clickhouse-server --daemon: {status}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.pid.is_none() {
                self.pid = fs::read_to_string(self.pid_file())
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
            }
            if let Some(pid) = self.pid {
                if !alive(pid) {
                    self.pid = None;
                    return false;
                }
                if self.ping() {
                    return true;
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The end of the server's error log, for failure messages.
    pub fn log_tail(&self) -> String {
        let s = fs::read_to_string(self.dir.join("server.err.log")).unwrap_or_default();
        s.lines().rev().take(10).collect::<Vec<_>>().join("\n")
    }

    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    /// Whether `GET /ping` answers `Ok.`.
    pub fn ping(&self) -> bool {
        matches!(request(self.http_port, "GET", "/ping", &[], b""), Ok(r) if r.body == "Ok.\n")
    }

    /// Stops the server by its pid with `signal` and waits until it is gone and its HTTP port
    /// refuses connections.
    fn signal_and_wait(&mut self, signal: i32) {
        if let Some(pid) = self.pid.take() {
            // SAFETY: a plain kill(2) of the daemon this harness started (its pid file).
            unsafe { libc::kill(pid, signal) };
            let deadline = Instant::now() + Duration::from_secs(60);
            while alive(pid) {
                assert!(
                    Instant::now() < deadline,
                    "clickhouse-server {pid} did not exit"
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Graceful stop (SIGTERM).
    pub fn stop(&mut self) {
        self.signal_and_wait(libc::SIGTERM);
    }

    /// A crash (SIGKILL).
    pub fn kill9(&mut self) {
        self.signal_and_wait(libc::SIGKILL);
    }

    /// Starts it again on the same directory and ports.
    pub fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.launch() {
            assert!(
                Instant::now() < deadline,
                "clickhouse-server did not restart: {}",
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Gives user `writer` the password `password`: ClickHouse rereads users.xml by itself
    /// within seconds (poll with `query_as`).
    pub fn set_password(&self, user: &str, password: &str) {
        assert_eq!(user, USER, "only {USER} has a password");
        let path = self.dir.join("users.xml");
        let before = fs::metadata(&path).unwrap().modified().unwrap();
        let tmp = self.dir.join("users.xml.new");
        fs::write(&tmp, users_xml(password)).unwrap();
        // 18.16 compares modification times in whole seconds: a file rewritten within the
        // second it was read would never be read again.
        let f = fs::File::options().write(true).open(&tmp).unwrap();
        f.set_modified(before + Duration::from_secs(2)).unwrap();
        drop(f);
        fs::rename(&tmp, &path).unwrap();
    }

    /// Runs `sql` (POSTed as the body); Ok(answer) on 200, Err(status and body) otherwise.
    pub fn query(&self, sql: &str) -> Result<String, String> {
        self.query_as(None, sql)
    }

    /// As `query`, as `(user, password)` when given.
    pub fn query_as(&self, user: Option<(&str, &str)>, sql: &str) -> Result<String, String> {
        let mut headers = Vec::new();
        if let Some((u, p)) = user {
            headers.push(format!("X-ClickHouse-User: {u}"));
            headers.push(format!("X-ClickHouse-Key: {p}"));
        }
        let r = request(self.http_port, "POST", "/", &headers, sql.as_bytes())
            .map_err(|e| format!("request failed: {e}"))?;
        if r.status == 200 {
            Ok(r.body)
        } else {
            Err(format!("{}: {}", r.status, r.body))
        }
    }

    /// POSTs `body` with `query` in the URL (an INSERT), as `headers` say.
    pub fn insert(&self, query: &str, headers: &[String], body: &[u8]) -> std::io::Result<Reply> {
        request(
            self.http_port,
            "POST",
            &format!("/?query={}", url_encode(query)),
            headers,
            body,
        )
    }

    /// Creates `logs.NAME` (MergeTree) with the columns the tests log into.
    pub fn create_table(&self, name: &str) {
        self.query(&format!(
            "CREATE TABLE logs.{name} (id UInt64, msg String) ENGINE = MergeTree ORDER BY id"
        ))
        .unwrap();
    }

    /// Rows in `logs.NAME`.
    pub fn count(&self, table: &str) -> u64 {
        self.query(&format!("SELECT count() FROM logs.{table}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// `(id, msg)` rows of `logs.NAME`, ordered by id.
    pub fn rows(&self, table: &str) -> Vec<(u64, String)> {
        let out = self
            .query(&format!(
                "SELECT id, msg FROM logs.{table} ORDER BY id FORMAT TabSeparated"
            ))
            .unwrap();
        out.lines()
            .map(|l| {
                let (id, msg) = l.split_once('\t').unwrap();
                (id.parse().unwrap(), msg.to_string())
            })
            .collect()
    }

    /// Waits (up to `secs`) until `logs.NAME` holds at least `n` rows; returns the count.
    pub fn wait_count(&self, table: &str, n: u64, secs: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let c = self.count(table);
            if c >= n || Instant::now() > deadline {
                return c;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.kill9();
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Percent-encodes a query string value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); the body of the answer
/// de-chunked.
pub fn request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[String],
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut rest = &raw[split + 4..];
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        let mut out = Vec::new();
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| std::io::Error::other("bad chunk"))?;
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        out
    } else {
        rest.to_vec()
    };
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}
