//! Helpers for the rlogd integration tests: run the real `rlogd` binary on 127.0.0.1 with its
//! own temp dir, find the ports it bound, read its store back, and clean up (kill what was
//! started) even when a test fails.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rlog::proto::format::Date;
use rlog::proto::frame::{self, Hello, Role};
use rlog::proto::reader::{self, DateReader, Record};

pub const BIN: &str = env!("CARGO_BIN_EXE_rlogd");

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("rlogd-test-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A running `rlogd` process; killed on drop.
pub struct Proc {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `rlogd ARGS...` with stderr going to `log`.
    pub fn start(args: &[&str], log: PathBuf) -> Proc {
        let err = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start rlogd");
        Proc {
            child: Some(child),
            log,
        }
    }

    /// Starts `rlogd serve --data DATA ARGS...` as `serve` does, with the files it writes
    /// limited to `max_file` bytes (`RLIMIT_FSIZE`, `SIGXFSZ` ignored): a write past the limit
    /// fails as it does on a full disk, without needing a small filesystem (or root) for it.
    pub fn serve_with_file_limit(data: &Path, args: &[&str], log: PathBuf, max_file: u64) -> Proc {
        use std::os::unix::process::CommandExt;
        let mut all = vec!["serve", "--data", data.to_str().unwrap()];
        all.extend_from_slice(args);
        let err = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err);
        // SAFETY: between fork and exec the closure calls only setrlimit(2) and signal(2),
        // both async-signal-safe, on values it owns.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: max_file,
                    rlim_max: max_file,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
        let p = Proc {
            child: Some(cmd.spawn().expect("start rlogd")),
            log,
        };
        assert!(
            p.wait_log(|s| s.contains("rlogd: serving")),
            "rlogd did not start:\n{}",
            p.log_text()
        );
        p
    }

    /// Waits (up to 20 s) for the process to exit; its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let c = self.child.as_mut()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Starts `rlogd serve --data DATA ARGS...` and waits until it serves.
    pub fn serve(data: &Path, args: &[&str], log: PathBuf) -> Proc {
        let before = fs::read_to_string(&log).map(|s| s.len()).unwrap_or(0);
        let mut all = vec!["serve", "--data", data.to_str().unwrap()];
        all.extend_from_slice(args);
        let p = Proc::start(&all, log);
        assert!(
            p.wait_log(|s| s[before..].contains("rlogd: serving")),
            "rlogd did not start:\n{}",
            p.log_text()
        );
        p
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to 20 s) until the log satisfies `pred`.
    pub fn wait_log(&self, pred: impl Fn(&str) -> bool) -> bool {
        wait_until(Duration::from_secs(20), || pred(&self.log_text()))
    }

    /// The address the last `listening on SCHEME://...` line says was bound.
    pub fn bound(&self, scheme: &str) -> String {
        self.bound_by(&format!("listening on {scheme}://"))
    }

    /// The address the last log line containing `what` says was bound.
    pub fn bound_by(&self, what: &str) -> String {
        let text = self.log_text();
        let scheme = what;
        let line = text
            .lines()
            .rev()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {scheme} listener in:\n{text}"));
        line.rsplit_once('(')
            .unwrap()
            .1
            .trim_end_matches(')')
            .to_string()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn term(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        // SAFETY: kill(2) on the pid of a child we started and have not reaped.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Every record of the store, date by date. A running daemon may be creating a date folder
/// right now: one without its index yet is skipped (the caller polls again).
pub fn records(data: &Path) -> Vec<(Date, Record)> {
    let mut out = Vec::new();
    for d in reader::list_dates(data).unwrap_or_default() {
        let Ok(mut r) = DateReader::open(data, d) else {
            continue;
        };
        for id in 0..r.count_on_disk().unwrap() {
            out.push((d, r.record(id).unwrap()));
        }
    }
    out
}

/// Payloads of every record.
pub fn payloads(data: &Path) -> Vec<Vec<u8>> {
    records(data).into_iter().map(|(_, r)| r.payload).collect()
}

/// Runs `rlogd ARGS` to completion: (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn verify(data: &Path) -> (i32, String) {
    let (code, out, err) = run(&["verify", "--data", data.to_str().unwrap()]);
    (code, out + &err)
}

/// Reads everything a peer sends until it closes (bounded by the socket timeout).
pub fn read_all(s: &mut impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = s.read_to_end(&mut v);
    v
}

/// The identity the SPEC promises: logged == sent + lost + spooled + buffered.
pub fn assert_identity(s: &rlog::rlog_stats) {
    assert_eq!(s.logged, s.sent + s.lost + s.spooled + s.buffered, "{s:?}");
}

/// The body of a BATCH frame: `msgs` as records of type `kind`, all timed at `time_us`, from
/// producer `producer` starting at sequence number `first_seq`, uncompressed.
pub fn batch_body<M: AsRef<[u8]>>(
    producer: u64,
    first_seq: u64,
    time_us: i64,
    kind: u16,
    msgs: &[M],
) -> Vec<u8> {
    let mut raw = Vec::new();
    for m in msgs {
        frame::batch_record(&mut raw, time_us, kind, m.as_ref());
    }
    let mut body = Vec::new();
    frame::batch_head(
        &mut body,
        producer,
        first_seq,
        msgs.len() as u32,
        frame::CODEC_NONE,
        raw.len() as u32,
    );
    body.extend_from_slice(&raw);
    body
}

/// Sends one BATCH of `msgs`, all timed at `time_us`, as producer `producer`.
pub fn send_dated(addr: &str, producer: u64, first_seq: u64, time_us: i64, msgs: &[Vec<u8>]) {
    send_batch(addr, &batch_body(producer, first_seq, time_us, 2, msgs));
}

/// Sends HELLO then one BATCH frame `body` as a producer; returns the (producer, next_seq)
/// rlogd acknowledged.
pub fn send_batch(addr: &str, body: &[u8]) -> (u64, u64) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let hello = Hello {
        version: frame::PROTOCOL,
        token: Vec::new(),
        role: Role::Producer,
    };
    frame::write_frame(&mut s, frame::HELLO, &hello.encode()).unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        frame::read_frame(&mut s, 1 << 20, &mut buf).unwrap(),
        frame::WELCOME
    );
    frame::write_frame(&mut s, frame::BATCH, body).unwrap();
    assert_eq!(
        frame::read_frame(&mut s, 1 << 20, &mut buf).unwrap(),
        frame::ACK
    );
    frame::decode_ack(&buf).unwrap()
}
