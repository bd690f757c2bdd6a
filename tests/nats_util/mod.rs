//! Helpers for the NATS tests: run Debian's `nats-server` with JetStream on 127.0.0.1 (its own
//! store dir, a free port, a pid file), stop it by pid (SIGTERM or SIGKILL), and talk to its
//! JetStream API with a few lines of raw protocol: create a stream, read its message count and
//! every message it holds.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("rlog-nats-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
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

/// A port for a nats-server: never one a server of this test process had (a restart test
/// stops its server and starts it again on the same port; see `common::fresh_port`).
pub fn free_port() -> u16 {
    crate::common::fresh_port()
}

/// Polls `f` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// A running `nats-server -js`; killed on drop.
pub struct NatsServer {
    pub port: u16,
    dir: PathBuf,
    pub extra: Vec<String>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a JetStream server on 127.0.0.1:`port` storing in `dir/store`, with `extra`
    /// arguments, and waits until it answers.
    pub fn start(dir: &Path, port: u16, extra: &[&str]) -> NatsServer {
        let mut s = NatsServer {
            port,
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        s.restart();
        s
    }

    /// Starts it again (same port, same store).
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("nats.log"))
            .unwrap();
        let port = self.port.to_string();
        let store = self.dir.join("store");
        let pid = self.dir.join("nats.pid");
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port, "-sd"])
            .arg(&store)
            .arg("-P")
            .arg(&pid)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server (Debian package nats-server) must be installed");
        self.child = Some(child);
        let ok = wait_until(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok_and(|mut c| {
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let mut b = [0u8; 4];
                c.read_exact(&mut b).is_ok() && &b == b"INFO"
            })
        });
        assert!(ok, "nats-server did not start: {}", self.log());
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("nats.log")).unwrap_or_default()
    }

    fn signal(&mut self, sig: i32) {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        unsafe { libc::kill(child.id() as i32, sig) };
        let _ = child.wait();
    }

    /// SIGTERM, and waits for the exit.
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// SIGKILL, and waits for the exit.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal(libc::SIGKILL);
        }
    }
}

/// A plain NATS client for the JetStream API: requests and their replies.
pub struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
    next: u64,
}

impl Client {
    pub fn connect(port: u16, connect_extra: &str) -> std::io::Result<Client> {
        let w = TcpStream::connect(("127.0.0.1", port))?;
        w.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut c = Client {
            r: BufReader::new(w.try_clone()?),
            w,
            next: 0,
        };
        let mut line = String::new();
        c.r.read_line(&mut line)?;
        assert!(line.starts_with("INFO"), "{line}");
        write!(
            c.w,
            "CONNECT {{\"verbose\":false,\"headers\":true,\"no_responders\":true{connect_extra}}}\r\nPING\r\nSUB _INBOX.test.* 1\r\n"
        )?;
        loop {
            line.clear();
            c.r.read_line(&mut line)?;
            if line.starts_with("PONG") {
                return Ok(c);
            }
            if line.starts_with("-ERR") {
                return Err(std::io::Error::other(line));
            }
        }
    }

    /// Sends every request, then reads every reply (in order of the requests).
    pub fn requests(&mut self, reqs: &[(String, Vec<u8>)]) -> std::io::Result<Vec<Vec<u8>>> {
        let base = self.next;
        let mut out = Vec::new();
        for (i, (subj, body)) in reqs.iter().enumerate() {
            write!(
                out,
                "PUB {subj} _INBOX.test.{} {}\r\n",
                base + i as u64,
                body.len()
            )?;
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
        }
        self.next += reqs.len() as u64;
        self.w.write_all(&out)?;
        let mut replies: Vec<Option<Vec<u8>>> = vec![None; reqs.len()];
        let mut got = 0;
        let mut line = String::new();
        while got < reqs.len() {
            line.clear();
            if self.r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l == "PING" {
                self.w.write_all(b"PONG\r\n")?;
                continue;
            }
            let parts: Vec<&str> = l.split(' ').collect();
            let (subject, total, head) = match parts[0] {
                "MSG" => (
                    parts[1],
                    parts[parts.len() - 1].parse::<usize>().unwrap(),
                    0,
                ),
                "HMSG" => (
                    parts[1],
                    parts[parts.len() - 1].parse::<usize>().unwrap(),
                    parts[parts.len() - 2].parse::<usize>().unwrap(),
                ),
                _ => continue,
            };
            let mut body = vec![0u8; total + 2];
            self.r.read_exact(&mut body)?;
            body.truncate(total);
            let n: u64 = subject.rsplit('.').next().unwrap().parse().unwrap();
            if n >= base && n - base < reqs.len() as u64 {
                let headers = &body[..head];
                if headers.starts_with(b"NATS/1.0 503") {
                    replies[(n - base) as usize] = Some(b"no responders".to_vec());
                } else {
                    replies[(n - base) as usize] = Some(body[head..].to_vec());
                }
                got += 1;
            }
        }
        Ok(replies.into_iter().map(Option::unwrap).collect())
    }

    pub fn request(&mut self, subject: &str, body: &str) -> std::io::Result<String> {
        let r = self.requests(&[(subject.to_string(), body.as_bytes().to_vec())])?;
        Ok(String::from_utf8_lossy(&r[0]).into_owned())
    }
}

/// Creates stream `name` on `subjects` with more config (`"max_msg_size":300`, ...), retrying
/// while JetStream starts up.
pub fn create_stream(port: u16, name: &str, subjects: &[&str], extra: &str) {
    let subjects: Vec<String> = subjects.iter().map(|s| format!("\"{s}\"")).collect();
    let body = format!(
        "{{\"name\":\"{name}\",\"subjects\":[{}],\"storage\":\"file\"{extra}}}",
        subjects.join(",")
    );
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(30), || {
        match Client::connect(port, "")
            .and_then(|mut c| c.request(&format!("$JS.API.STREAM.CREATE.{name}"), &body))
        {
            Ok(r) if r.contains("\"config\"") => true,
            Ok(r) => {
                last = r;
                false
            }
            Err(e) => {
                last = e.to_string();
                false
            }
        }
    });
    assert!(ok, "cannot create stream {name}: {last}");
}

fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn string_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let end = text[at..].find('"')?;
    Some(&text[at..at + end])
}

/// The stream's message count and last sequence.
pub fn stream_state(port: u16, name: &str) -> (u64, u64) {
    let mut c = Client::connect(port, "").unwrap();
    let r = c
        .request(&format!("$JS.API.STREAM.INFO.{name}"), "")
        .unwrap();
    let state = &r[r.find("\"state\"").unwrap_or_else(|| panic!("{r}"))..];
    (
        number_after(state, "messages").unwrap(),
        number_after(state, "last_seq").unwrap(),
    )
}

/// One message of a stream.
pub struct Stored {
    pub data: Vec<u8>,
    pub headers: Vec<u8>,
}

/// Every message the stream holds, by sequence.
pub fn stream_messages(port: u16, name: &str) -> Vec<Stored> {
    let (_, last) = stream_state(port, name);
    let mut c = Client::connect(port, "").unwrap();
    let mut out = Vec::new();
    let subject = format!("$JS.API.STREAM.MSG.GET.{name}");
    let mut seq = 1;
    while seq <= last {
        let end = (seq + 2000).min(last + 1);
        let reqs: Vec<(String, Vec<u8>)> = (seq..end)
            .map(|s| (subject.clone(), format!("{{\"seq\":{s}}}").into_bytes()))
            .collect();
        for r in c.requests(&reqs).unwrap() {
            let r = String::from_utf8(r).unwrap();
            if r.contains("\"error\"") {
                // A sequence with no message (deleted): not stored.
                assert!(r.contains("10037"), "{r}");
                continue;
            }
            out.push(Stored {
                data: base64(string_after(&r, "data").unwrap_or("")),
                headers: base64(string_after(&r, "hdrs").unwrap_or("")),
            });
        }
        seq = end;
    }
    out
}

fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|&b| b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c) << (18 - 6 * i);
        }
        out.push((acc >> 16) as u8);
        if chunk.len() > 2 {
            out.push((acc >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(acc as u8);
        }
    }
    out
}
