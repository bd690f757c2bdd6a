//! Debian's rsyslogd for the syslog and RELP tests: run in the foreground (`-n`) with its own
//! config, work directory and pid file, imtcp and imrelp on free 127.0.0.1 ports, every message
//! written to one file with a template that prints each parsed header field. Stopped by pid
//! (SIGTERM, or SIGKILL for faults), and killed on drop even when a test fails.
#![allow(dead_code)]

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The output template: one line per message, `key=value` fields separated by `\t`.
const TEMPLATE: &str = "host=%hostname%\\tapp=%app-name%\\tprocid=%procid%\\tmsgid=%msgid%\\t\
sd=%structured-data%\\tpri=%pri%\\ttime=%timereported:::date-rfc3339%\\tmsg=%msg%\\n";

/// How rsyslog queues what imrelp/imtcp take before the file action writes it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Queue {
    /// rsyslog's default: an in-memory main queue (a RELP `200 OK` means "in this queue").
    Memory,
    /// `queue.type="Direct"` on the ruleset: the message is written to the file before imrelp
    /// answers (a SIGKILL loses nothing that was acknowledged).
    Direct,
}

/// imrelp over TLS (`tls="on"`): which library librelp uses, the files, and how it checks the
/// client's certificate.
#[derive(Clone, Debug)]
pub struct RelpTls {
    /// `tls.tlslib`: `gnutls` (librelp's default) or `openssl`.
    pub lib: &'static str,
    /// `tls.caCert`, `tls.myCert`, `tls.myPrivKey`: the CA the client's certificate must be
    /// signed by, the server's certificate and key; none: anonymous TLS.
    pub files: Option<(PathBuf, PathBuf, PathBuf)>,
    /// `tls.authMode`: `certvalid` or `name` (`fingerprint` takes SHA1 fingerprints); empty:
    /// not set.
    pub auth_mode: &'static str,
    /// `tls.permittedPeer`: the names (`name`) or fingerprints allowed.
    pub permitted: Vec<String>,
}

pub struct Rsyslog {
    pub dir: PathBuf,
    pub tcp_port: u16,
    pub relp_port: u16,
    pub out: PathBuf,
    queue: Queue,
    tz: Option<String>,
    relp_tls: Option<RelpTls>,
    child: Option<Child>,
}

/// Ports for its inputs: never one a server of this test process had (see
/// `common::fresh_port`).
fn free_port() -> u16 {
    crate::common::fresh_port()
}

pub fn have_rsyslogd() -> bool {
    Path::new("/usr/sbin/rsyslogd").exists()
        && Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/imrelp.so").exists()
}

impl Rsyslog {
    /// Starts rsyslogd in a fresh directory named after `name`, with `TZ` = `tz` if given.
    pub fn start(name: &str, queue: Queue, tz: Option<&str>) -> Rsyslog {
        Rsyslog::start_with(name, queue, tz, None)
    }

    /// Starts rsyslogd with its imrelp input over TLS (in-memory queue).
    pub fn start_relp_tls(name: &str, tls: RelpTls) -> Rsyslog {
        Rsyslog::start_with(name, Queue::Memory, None, Some(tls))
    }

    fn start_with(
        name: &str,
        queue: Queue,
        tz: Option<&str>,
        relp_tls: Option<RelpTls>,
    ) -> Rsyslog {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("rlog-rsyslog-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut r = Rsyslog {
            out: dir.join("out.log"),
            dir,
            tcp_port: free_port(),
            relp_port: free_port(),
            queue,
            tz: tz.map(str::to_string),
            relp_tls,
            child: None,
        };
        r.write_conf();
        r.spawn();
        r
    }

    fn write_conf(&self) {
        let d = self.dir.display();
        let queue = match self.queue {
            Queue::Memory => "",
            Queue::Direct => " queue.type=\"Direct\"",
        };
        let (module, input) = match &self.relp_tls {
            None => (String::new(), String::new()),
            Some(t) => {
                let peers = t
                    .permitted
                    .iter()
                    .map(|p| format!("\"{p}\""))
                    .collect::<Vec<_>>()
                    .join(",");
                let peers = if peers.is_empty() {
                    String::new()
                } else {
                    format!(" tls.permittedPeer=[{peers}]")
                };
                let files = match &t.files {
                    Some((ca, cert, key)) => format!(
                        " tls.caCert=\"{}\" tls.myCert=\"{}\" tls.myPrivKey=\"{}\"",
                        ca.display(),
                        cert.display(),
                        key.display()
                    ),
                    None => String::new(),
                };
                let mode = if t.auth_mode.is_empty() {
                    String::new()
                } else {
                    format!(" tls.authMode=\"{}\"", t.auth_mode)
                };
                (
                    format!(" tls.tlslib=\"{}\"", t.lib),
                    format!(" tls=\"on\"{files}{mode}{peers}"),
                )
            }
        };
        let conf = format!(
            "global(workDirectory=\"{d}\" maxMessageSize=\"256k\")\n\
             module(load=\"imtcp\")\n\
             module(load=\"imrelp\"{module})\n\
             template(name=\"fields\" type=\"string\" string=\"{TEMPLATE}\")\n\
             ruleset(name=\"out\"{queue}) {{\n\
               action(type=\"omfile\" file=\"{out}\" template=\"fields\")\n\
             }}\n\
             input(type=\"imtcp\" port=\"{tcp}\" address=\"127.0.0.1\" ruleset=\"out\")\n\
             input(type=\"imrelp\" port=\"{relp}\" address=\"127.0.0.1\" ruleset=\"out\" maxDataSize=\"200k\"{input})\n",
            out = self.out.display(),
            tcp = self.tcp_port,
            relp = self.relp_port,
        );
        fs::write(self.dir.join("rsyslog.conf"), conf).unwrap();
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("/usr/sbin/rsyslogd");
        cmd.arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(fs::File::create(self.dir.join("stdout")).unwrap())
            .stderr(fs::File::create(self.dir.join("stderr")).unwrap());
        if let Some(tz) = &self.tz {
            cmd.env("TZ", tz);
        }
        let _ = fs::remove_file(self.dir.join("rsyslogd.pid"));
        self.child = Some(cmd.spawn().expect("start rsyslogd"));
        // Up once both inputs accept connections (a bare connect to imrelp only makes it log a
        // session without an open).
        let deadline = Instant::now() + Duration::from_secs(30);
        for port in [self.tcp_port, self.relp_port] {
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!(
                        "rsyslogd exited ({st}): {}",
                        fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "rsyslogd did not listen on {port}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Sends `sig` (SIGSTOP, SIGCONT: a server that hangs and comes back).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGKILL, waited for.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, waited for (rsyslog shuts down its inputs: RELP sessions get `serverclose`).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// Starts again with the same config, ports, work directory and output file.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill first");
        self.spawn();
    }

    /// The lines written so far.
    /// The lines written so far (bytes that are not UTF-8 replaced, so that one such line
    /// does not hide the others).
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&fs::read(&self.out).unwrap_or_default())
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits (60 s at most) until `pred` holds for the lines written; returns them.
    pub fn wait_lines(&self, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let l = self.lines();
            if pred(&l) || Instant::now() > deadline {
                return l;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some() && self.pid() > 0
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill9();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// One output line's fields.
pub fn fields(line: &str) -> std::collections::HashMap<String, String> {
    line.split('\t')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Rsyslog {
    /// What rsyslogd wrote to stderr (its own errors, e.g. imrelp's TLS errors).
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }
}
