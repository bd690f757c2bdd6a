//! rlogd: the collector that stores logs by date, the follower that replicates a collector's
//! store, and the tools that read a store back (`cat`, `tail`) and check it (`verify`).
//!
//! The collector's modules are here, outside the library a host process loads:
//!
//! ```text
//! producers ─ rlogd:// tcp:// udp:// unix:// ─▶ server.rs ─▶ commit.rs (group commit) ─▶ store.rs
//!                                                                 │ publishes what is durable
//! followers ◀──────────── rlogd:// ─ replication.rs (master) ◀────┘   rlog::proto::reader reads it back
//! ```
//!
//! `net.rs` has listener URLs, TLS and the connection type; the wire frames and the on-disk
//! format are the library's (`rlog::proto`), shared with the client side. This file parses
//! the command line.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod commit;
mod net;
mod replication;
mod server;
mod store;

use commit::{log, Counters, Ctx, Shared};
use net::Url;
use replication::FollowSettings;
use rlog::proto::format::Date;
use rlog::proto::frame::DEFAULT_MAX_FRAME;
use rlog::proto::reader::{DateReader, Record};
use server::Roles;
use store::scan_date;

const USAGE: &str = "usage:
  rlogd serve  --data DIR --listen URL... [--replication URL] [--token-file F]
               [--tls-cert F --tls-key F] [--retain-days N] [--max-frame BYTES]
               [--file-size BYTES] [--seal-grace SECS] [--max-connections N]
               URL: rlogd://HOST:PORT  tcp://HOST:PORT  udp://HOST:PORT  unix:///path
  rlogd follow --master rlogd://HOST:PORT --data DIR [--token-file F] [--tls-ca F]
               [--sni-host NAME] [--retain-days N] [--max-frame BYTES] [--file-size BYTES]
  rlogd cat    --data DIR [--date YYYYMMDD] [--from ID] [--type N] [--json]
  rlogd tail   --data DIR [--type N] [--json]
  rlogd verify --data DIR
";

/// Parsed `--name value` options of one command.
struct Args {
    opts: Vec<(String, String)>,
}

impl Args {
    /// Parses `args` allowing the options in `valued` (take a value) and `flags` (do not).
    fn parse(args: &[String], valued: &[&str], flags: &[&str]) -> Result<Args, String> {
        let mut opts = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            let Some(name) = a.strip_prefix("--") else {
                return Err(format!("unexpected argument \"{a}\""));
            };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (name, None),
            };
            if flags.contains(&name) {
                if inline.is_some() {
                    return Err(format!("--{name} takes no value"));
                }
                opts.push((name.to_string(), String::new()));
            } else if valued.contains(&name) {
                let v = match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        args.get(i)
                            .cloned()
                            .ok_or_else(|| format!("--{name} needs a value"))?
                    }
                };
                opts.push((name.to_string(), v));
            } else {
                return Err(format!("unknown option --{name}"));
            }
            i += 1;
        }
        Ok(Args { opts })
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.opts
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The single value of `name`. Errors: given more than once.
    fn one(&self, name: &str) -> Result<Option<&str>, String> {
        let v = self.all(name);
        if v.len() > 1 {
            return Err(format!("--{name} may be given only once"));
        }
        Ok(v.first().copied())
    }

    fn required(&self, name: &str) -> Result<&str, String> {
        self.one(name)?
            .ok_or_else(|| format!("--{name} is required"))
    }

    fn flag(&self, name: &str) -> bool {
        self.opts.iter().any(|(n, _)| n == name)
    }

    fn number<T>(&self, name: &str, min: T, max: T) -> Result<Option<T>, String>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        match self.one(name)? {
            None => Ok(None),
            Some(v) => match v.parse::<T>() {
                Ok(n) if n >= min && n <= max => Ok(Some(n)),
                _ => Err(format!(
                    "--{name}: expected a number from {min} to {max}, got \"{v}\""
                )),
            },
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let r = match cmd.as_str() {
        "serve" => serve(rest),
        "follow" => follow(rest),
        "cat" => cat(rest),
        "tail" => tail(rest),
        "verify" => verify(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => Err(format!("unknown command \"{other}\"")),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rlogd: {e}");
            if e.starts_with("unknown") || e.contains("required") || e.starts_with("unexpected") {
                eprint!("{USAGE}");
            }
            ExitCode::from(2)
        }
    }
}

/// Blocks SIGTERM and SIGINT in this thread and every thread it starts later, so that they
/// can be taken synchronously with [`wait_signal`].
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data that sigemptyset initialises; the calls only read and
    // write the set we own, and pthread_sigmask changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for one of the blocked signals; returns its number.
fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is an initialised signal set and `sig` a valid out pointer.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn file_size(a: &Args) -> Result<u64, String> {
    Ok(
        a.number("file-size", store::MIN_FILE_SIZE, store::MAX_FILE_SIZE)?
            .unwrap_or(store::Options::default().file_size),
    )
}

fn max_frame(a: &Args) -> Result<usize, String> {
    Ok(a.number("max-frame", 4096usize, DEFAULT_MAX_FRAME)?
        .unwrap_or(DEFAULT_MAX_FRAME))
}

fn serve(args: &[String]) -> Result<ExitCode, String> {
    let a = Args::parse(
        args,
        &[
            "data",
            "listen",
            "replication",
            "token-file",
            "tls-cert",
            "tls-key",
            "retain-days",
            "max-frame",
            "file-size",
            "seal-grace",
            "max-connections",
        ],
        &[],
    )?;
    let data = PathBuf::from(a.required("data")?);
    let listens = a.all("listen");
    if listens.is_empty() {
        return Err("--listen is required (at least one)".into());
    }
    let urls = listens
        .iter()
        .map(|u| net::parse_url(u))
        .collect::<Result<Vec<_>, _>>()?;
    let replication = a.one("replication")?.map(net::parse_url).transpose()?;
    if let Some(u) = &replication {
        if !matches!(u, Url::Rlogd(_)) {
            return Err(format!("--replication {u}: must be an rlogd:// URL"));
        }
    }
    let token = a.one("token-file")?.map(server::read_token).transpose()?;
    let tls = match (a.one("tls-cert")?, a.one("tls-key")?) {
        (Some(c), Some(k)) => Some(net::server_tls(c, k)?),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    let retain_days = a.number("retain-days", 1u32, 100_000)?;
    let seal_grace = Duration::from_secs(a.number("seal-grace", 0u64, 86_400 * 365)?.unwrap_or(60));
    let settings = commit::Settings {
        seal_grace,
        retain_days,
    };
    let max_connections = a
        .number("max-connections", 1usize, 1 << 20)?
        .unwrap_or(4096);
    let frame_limit = max_frame(&a)?;

    let sigs = block_signals();
    let store = commit::open_store(
        &data,
        store::Options {
            file_size: file_size(&a)?,
        },
    )
    .map_err(|e| format!("cannot open the store in {}: {e}", data.display()))?;
    // Bounded in batches: with the frame limit, it bounds the memory of what waits to be committed.
    let (tx, rx) = crossbeam_channel::bounded(64);
    let shared = Arc::new(Shared::default());
    let counters = Arc::new(Counters::default());
    let committer = {
        let (shared, counters) = (shared.clone(), counters.clone());
        std::thread::Builder::new()
            .name("rlogd commit".into())
            .spawn(move || commit::run(store, rx, shared, counters, settings))
            .map_err(|e| e.to_string())?
    };
    let ctx = Arc::new(Ctx {
        tx: tx.clone(),
        shared,
        counters,
        token,
        tls,
        max_frame: frame_limit,
        root: data.clone(),
        stopping: AtomicBool::new(false),
        inflight: AtomicUsize::new(0),
        connections: AtomicUsize::new(0),
        max_connections,
    });
    let ingest_roles = if replication.is_some() {
        Roles::ProducersOnly
    } else {
        Roles::Both
    };
    for u in &urls {
        let bound = server::listen(u, ctx.clone(), ingest_roles)
            .map_err(|e| format!("cannot listen on {u}: {e}"))?;
        log(&format!("listening on {u} ({bound})"));
    }
    if let Some(u) = &replication {
        let bound = server::listen(u, ctx.clone(), Roles::FollowersOnly)
            .map_err(|e| format!("cannot listen on {u}: {e}"))?;
        log(&format!("replication on {u} ({bound})"));
    }
    log(&format!("serving {}", data.display()));
    let sig = wait_signal(&sigs);
    log(&format!("signal {sig}: finishing the commit in progress"));
    ctx.stopping.store(true, Ordering::Release);
    let _ = tx.send(commit::Msg::Stop);
    let _ = committer.join();
    let deadline = Instant::now() + Duration::from_secs(5);
    while ctx.inflight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    log(&format!("stopped ({})", ctx.counters.summary()));
    Ok(ExitCode::SUCCESS)
}

fn follow(args: &[String]) -> Result<ExitCode, String> {
    let a = Args::parse(
        args,
        &[
            "master",
            "data",
            "token-file",
            "tls-ca",
            "sni-host",
            "retain-days",
            "max-frame",
            "file-size",
        ],
        &[],
    )?;
    let master = match net::parse_url(a.required("master")?)? {
        Url::Rlogd(addr) => addr,
        u => return Err(format!("--master {u}: must be an rlogd:// URL")),
    };
    let data = PathBuf::from(a.required("data")?);
    let token = a
        .one("token-file")?
        .map(server::read_token)
        .transpose()?
        .unwrap_or_default();
    let tls = match a.one("tls-ca")? {
        Some(ca) => {
            let host = match a.one("sni-host")? {
                Some(h) => h.to_string(),
                None => net::split_host_port(&master).0,
            };
            Some(rlog::output::tls::settings(&host, true, Some(ca))?)
        }
        None => None,
    };
    let settings = FollowSettings {
        master,
        data,
        token,
        tls,
        retain_days: a.number("retain-days", 1u32, 100_000)?,
        max_frame: max_frame(&a)?,
        file_size: file_size(&a)?,
    };
    let sigs = block_signals();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let sig = wait_signal(&sigs);
            log(&format!("signal {sig}: stopping"));
            stop.store(true, Ordering::Release);
        });
    }
    replication::follow(&settings, &stop)
        .map_err(|e| format!("cannot open the store in {}: {e}", settings.data.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// Writes one record as `cat` and `tail` print it.
fn print_record(w: &mut impl Write, date: Date, r: &Record, json: bool) -> io::Result<()> {
    if json {
        let mut s = Vec::with_capacity(r.payload.len() + 96);
        s.extend_from_slice(
            format!(
                "{{\"date\":\"{date}\",\"id\":{},\"time_us\":{},\"type\":{},\"msg\":\"",
                r.id, r.meta.time_us, r.meta.rtype
            )
            .as_bytes(),
        );
        // The library's escaper: always valid JSON (invalid UTF-8 becomes U+FFFD).
        rlog::encode::template::json_escape(&r.payload, &mut s);
        s.extend_from_slice(b"\"}\n");
        w.write_all(&s)
    } else {
        w.write_all(&r.payload)?;
        if r.payload.last() != Some(&b'\n') {
            w.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// Stops quietly when stdout is a closed pipe (`rlogd cat | head`).
fn out_err(e: io::Error) -> String {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    e.to_string()
}

fn data_dir(a: &Args) -> Result<PathBuf, String> {
    let d = PathBuf::from(a.required("data")?);
    if !d.is_dir() {
        return Err(format!("--data {}: not a directory", d.display()));
    }
    Ok(d)
}

fn cat(args: &[String]) -> Result<ExitCode, String> {
    let a = Args::parse(args, &["data", "date", "from", "type"], &["json"])?;
    let data = data_dir(&a)?;
    let only = a.one("date")?.map(Date::parse).transpose()?;
    let from = a.number("from", 0u64, u64::MAX)?.unwrap_or(0);
    let rtype = a.number("type", 0u16, u16::MAX)?;
    let json = a.flag("json");
    let dates = match only {
        Some(d) => vec![d],
        None => store::list_dates(&data).map_err(|e| e.to_string())?,
    };
    let stdout = io::stdout();
    let mut w = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    for (i, &date) in dates.iter().enumerate() {
        let mut r = DateReader::open(&data, date).map_err(|e| format!("{date}: {e}"))?;
        let n = r.count_on_disk().map_err(|e| e.to_string())?;
        let start = if i == 0 { from } else { 0 };
        for id in start..n {
            let rec = r.record(id).map_err(|e| e.to_string())?;
            if rtype.is_some_and(|t| t != rec.meta.rtype) {
                continue;
            }
            print_record(&mut w, date, &rec, json).map_err(out_err)?;
        }
    }
    w.flush().map_err(out_err)?;
    Ok(ExitCode::SUCCESS)
}

fn tail(args: &[String]) -> Result<ExitCode, String> {
    let a = Args::parse(args, &["data", "type"], &["json"])?;
    let data = data_dir(&a)?;
    let rtype = a.number("type", 0u16, u16::MAX)?;
    let json = a.flag("json");
    // Start at the end of the newest date: print only what arrives from now on.
    let mut at: Option<(Date, u64)> =
        match store::list_dates(&data).map_err(|e| e.to_string())?.last() {
            Some(&d) => Some((
                d,
                DateReader::open(&data, d)
                    .and_then(|r| r.count_on_disk())
                    .map_err(|e| e.to_string())?,
            )),
            None => None,
        };
    let stdout = io::stdout();
    loop {
        let mut printed = false;
        if let Some((date, next)) = at.as_mut() {
            if let Ok(mut r) = DateReader::open(&data, *date) {
                let n = r.count_on_disk().map_err(|e| e.to_string())?;
                let mut w = stdout.lock();
                while *next < n {
                    // An entry the writer has not finished committing may fail its check:
                    // try it again on the next round.
                    let Ok(rec) = r.record(*next) else { break };
                    if rtype.is_none_or(|t| t == rec.meta.rtype) {
                        print_record(&mut w, *date, &rec, json).map_err(out_err)?;
                        printed = true;
                    }
                    *next += 1;
                }
                w.flush().map_err(out_err)?;
            }
        }
        // Move to a newer date once the current one is finished (or gone).
        let dates = store::list_dates(&data).map_err(|e| e.to_string())?;
        let newer = dates
            .iter()
            .copied()
            .find(|d| at.is_none_or(|(c, _)| *d > c));
        if let Some(d) = newer {
            let done = match at {
                Some((c, n)) => {
                    store::is_sealed(&data, c)
                        && DateReader::open(&data, c)
                            .and_then(|r| r.count_on_disk())
                            .map(|total| n >= total)
                            .unwrap_or(true)
                }
                None => true,
            };
            if done {
                at = Some((d, 0));
                continue;
            }
        }
        if !printed {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn verify(args: &[String]) -> Result<ExitCode, String> {
    let a = Args::parse(args, &["data"], &[])?;
    let data = data_dir(&a)?;
    let dates = store::list_dates(&data).map_err(|e| e.to_string())?;
    let mut damaged = false;
    for (i, &d) in dates.iter().enumerate() {
        let dir = data.join(d.to_string());
        let mut problems = Vec::new();
        let scan = match scan_date(&dir, 0) {
            Ok(s) => {
                problems.extend(s.problems.iter().cloned());
                Some(s)
            }
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        };
        if i + 1 < dates.len() && !store::is_sealed(&data, d) {
            problems.push(format!(
                "{}: not sealed, but a newer date exists",
                dir.display()
            ));
        }
        let state = if store::is_sealed(&data, d) {
            "sealed"
        } else {
            "open"
        };
        if problems.is_empty() {
            let n = scan.map(|s| s.entries).unwrap_or(0);
            println!("{d}: {n} records, {state}, ok");
        } else {
            damaged = true;
            for p in problems {
                println!("{d}: DAMAGED: {p}");
            }
        }
    }
    if dates.is_empty() {
        println!("{}: empty store", data.display());
    }
    Ok(if damaged {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
