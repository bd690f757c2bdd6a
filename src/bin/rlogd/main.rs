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
mod limits;
mod metrics;
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
  rlogd serve  --data DIR --listen URL... [options]    collect and store (rlogd serve --help)
  rlogd follow --master rlogd://HOST:PORT --data DIR   replicate a collector's store
  rlogd cat    --data DIR [--date YYYYMMDD] [--from ID] [--type N] [--json]
  rlogd tail   --data DIR [--type N] [--json]
  rlogd verify --data DIR                              exit 0 sound, 1 damaged
  rlogd stats  --metrics HOST:PORT                     a running daemon's counters
  rlogd spool  DIR                                     what a librlog spool holds; exit 0 sound,
                                                       1 damaged
  rlogd --version
Each command takes --help; serve and follow also --config FILE (key = value lines).
";

const SERVE_HELP: &str = "usage: rlogd serve --data DIR --listen URL... [options]
  --config FILE            read options from FILE: one `key = value` a line (keys are these
                           options without the dashes, `listen = URL` repeatable, # comments);
                           an option given on the command line replaces the file's values
  --data DIR               the store
  --listen URL             repeatable: rlogd://HOST:PORT (librlog, followers), tcp://HOST:PORT
                           and unix:///path (newline-delimited or octet-counted lines),
                           udp://HOST:PORT (one datagram, one record)
  --replication URL        a separate rlogd:// listener for followers
  --token-file F           clients must send this token (re-read on SIGHUP)
  --tls-cert F --tls-key F every rlogd:// listener speaks TLS (re-read on SIGHUP)
  --retain-days N          keep the last N days
  --max-frame BYTES        largest frame accepted (default and maximum 16 MiB + 4 KiB)
  --file-size BYTES        rotate data files at this size (default 64 MiB)
  --seal-grace SECS        seal the open date this long after its end (default 60)
  --max-connections N      open connections at most (default 4096); a quarter is kept for
                           clients past their handshake
  --handshake-timeout SECS time for a whole rlogd:// handshake, TLS and HELLO (default 10)
  --idle-timeout SECS      a connection silent this long is closed (default 600)
  --max-buffered BYTES     memory for producers' frames being received or waiting for their
                           commit, all connections together (default 256 MiB)
  --log-file F             log there instead of stderr (reopened on SIGHUP)
  --metrics HOST:PORT      serve counters over HTTP: /metrics (Prometheus text), /health
signals: TERM, INT stop; HUP reloads the token file and TLS files and reopens the log file;
USR1, USR2 log the counters.
";

const FOLLOW_HELP: &str = "usage: rlogd follow --master rlogd://HOST:PORT --data DIR [options]
  --config FILE       read options from FILE (key = value lines, as for serve)
  --master URL        the collector's rlogd:// (or --replication) listener
  --data DIR          the copy
  --token-file F      the token to send (re-read on SIGHUP)
  --tls-ca F          speak TLS, trusting this CA;  --sni-host NAME: the name to verify
  --retain-days N     keep the last N days
  --max-frame BYTES   largest frame accepted (default and maximum 16 MiB + 4 KiB)
  --file-size BYTES   rotate data files at this size (default 64 MiB)
  --log-file F        log there instead of stderr (reopened on SIGHUP)
signals: TERM, INT stop; HUP reloads the token file and reopens the log file; USR1, USR2 log
where the copy is.
";

const CAT_HELP: &str =
    "usage: rlogd cat --data DIR [--date YYYYMMDD] [--from ID] [--type N] [--json]
  prints the records of a store (safe on a live store), one a line; --json adds date, id,
  time_us, type, and sender (\"203.0.113.5:514\", \"[2001:db8::1]:514\" or \"unix\") for
  records of tcp://, udp:// and unix:// senders
";

const TAIL_HELP: &str = "usage: rlogd tail --data DIR [--type N] [--json]
  prints records as they are stored, from now on
";

const VERIFY_HELP: &str = "usage: rlogd verify --data DIR
  checks every record and index entry of a store no daemon is writing; exit 0 sound, 1 damaged
";

const SPOOL_HELP: &str = "usage: rlogd spool DIR
  prints what the spool directory DIR of a librlog logger (its `spool` key) holds, per output
  and per process: live or dead (a dead one is adopted by the next process with that spool),
  records, bytes, oldest and newest, and a verify pass over every record's checksum. Reads
  only: nothing is changed, taken or locked. Exit 0 when every record verifies, 1 when some
  are damaged (the next process skips and counts them), 2 on a usage or I/O error.
";

const STATS_HELP: &str = "usage: rlogd stats --metrics HOST:PORT
  prints the counters of the daemon started with --metrics HOST:PORT
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

    /// As [`Args::parse`], then, with `--config FILE`, the options of FILE (`key = value`
    /// lines, `#` comments) for the names the command line does not give.
    fn parse_with_config(args: &[String], valued: &[&str], flags: &[&str]) -> Result<Args, String> {
        let mut all = valued.to_vec();
        all.push("config");
        let mut cli = Args::parse(args, &all, flags)?;
        let Some(path) = cli.one("config")?.map(str::to_string) else {
            return Ok(cli);
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read --config {path}: {e}"))?;
        let mut from_file = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = || format!("{path}:{}", n + 1);
            let (k, v) = match line.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (line, ""),
            };
            let k = k.trim_start_matches("--");
            // A value may be quoted: "a value" is `a value`.
            let v = match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(inner) => inner,
                None => v,
            };
            if flags.contains(&k) {
                if !v.is_empty() && v != "true" {
                    return Err(format!("{}: {k} takes no value", at()));
                }
            } else if !valued.contains(&k) {
                return Err(format!("{}: unknown option \"{k}\"", at()));
            } else if v.is_empty() {
                return Err(format!("{}: {k} needs a value (key = value)", at()));
            }
            if !cli.opts.iter().any(|(n, _)| n == k) {
                from_file.push((k.to_string(), v.to_string()));
            }
        }
        cli.opts.retain(|(n, _)| n != "config");
        from_file.append(&mut cli.opts);
        cli.opts = from_file;
        Ok(cli)
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
    let help = match cmd.as_str() {
        "serve" => SERVE_HELP,
        "follow" => FOLLOW_HELP,
        "cat" => CAT_HELP,
        "tail" => TAIL_HELP,
        "verify" => VERIFY_HELP,
        "stats" => STATS_HELP,
        "spool" => SPOOL_HELP,
        _ => USAGE,
    };
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        print!("{help}");
        return ExitCode::SUCCESS;
    }
    let r = match cmd.as_str() {
        "serve" => serve(rest),
        "follow" => follow(rest),
        "cat" => cat(rest),
        "tail" => tail(rest),
        "verify" => verify(rest),
        "stats" => stats(rest),
        "spool" => spool(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        "-V" | "--version" | "version" => {
            println!("rlogd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        other => Err(format!("unknown command \"{other}\"")),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            if commit::logging_to_file() {
                log(&e);
            }
            eprintln!("rlogd: {e}");
            if e.starts_with("unknown") || e.contains("required") || e.starts_with("unexpected") {
                eprint!("{help}");
            }
            ExitCode::from(2)
        }
    }
}

/// Blocks the signals rlogd handles (TERM, INT, HUP, USR1, USR2) in this thread and every
/// thread it starts later, so that they are taken synchronously with [`wait_signal`] — by
/// one thread, never by a handler interrupting another — and none of them kills the
/// process with its default action.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data that sigemptyset initialises; the calls only read and
    // write the set we own, and pthread_sigmask changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ] {
            libc::sigaddset(&mut set, sig);
        }
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

/// A signal's name, for log lines.
fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGUSR1 => "SIGUSR1".into(),
        libc::SIGUSR2 => "SIGUSR2".into(),
        n => format!("signal {n}"),
    }
}

/// Sends the log to `--log-file` when given.
fn setup_log(a: &Args) -> Result<Option<PathBuf>, String> {
    match a.one("log-file")? {
        Some(f) => {
            let p = PathBuf::from(f);
            commit::log_to_file(&p).map_err(|e| format!("cannot open --log-file {f}: {e}"))?;
            Ok(Some(p))
        }
        None => Ok(None),
    }
}

/// On SIGHUP: reopens the log file (logrotate moved it away). Returns what it did.
fn reopen_log_on_hup(done: &mut Vec<String>) {
    match commit::reopen_log() {
        Ok(true) => done.push("reopened the log file".into()),
        Ok(false) => {}
        Err(e) => done.push(format!(
            "cannot reopen the log file (still writing the old one): {e}"
        )),
    }
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

/// What SIGHUP re-reads in `serve`.
struct Reloadable {
    token_file: Option<String>,
    tls: Option<(String, String)>,
}

/// SIGHUP in `serve`: re-reads the token file and the TLS files (a file that cannot be read
/// keeps the old setting), reopens the log file.
fn reload(ctx: &Ctx, r: &Reloadable) {
    let mut done = Vec::new();
    reopen_log_on_hup(&mut done);
    if let Some(f) = &r.token_file {
        match server::read_token(f) {
            Ok(t) => {
                *ctx.token.lock() = Some(Arc::new(t));
                done.push(format!("reloaded the token file {f}"));
            }
            Err(e) => done.push(format!("{e}: kept the previous token")),
        }
    }
    if let Some((c, k)) = &r.tls {
        match net::server_tls(c, k) {
            Ok(cfg) => {
                *ctx.tls.lock() = Some(cfg);
                done.push(format!("reloaded the TLS certificate {c} and key {k}"));
            }
            Err(e) => done.push(format!("{e}: kept the previous TLS setup")),
        }
    }
    if done.is_empty() {
        done.push("nothing to reload".into());
    }
    log(&format!("SIGHUP: {}", done.join("; ")));
}

fn serve(args: &[String]) -> Result<ExitCode, String> {
    let a = Args::parse_with_config(
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
            "handshake-timeout",
            "idle-timeout",
            "max-buffered",
            "log-file",
            "metrics",
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
    let token_file = a.one("token-file")?.map(str::to_string);
    let token = token_file.as_deref().map(server::read_token).transpose()?;
    let tls_files = match (a.one("tls-cert")?, a.one("tls-key")?) {
        (Some(c), Some(k)) => Some((c.to_string(), k.to_string())),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    let tls = tls_files
        .as_ref()
        .map(|(c, k)| net::server_tls(c, k))
        .transpose()?;
    let retain_days = a.number("retain-days", 1u32, 100_000)?;
    let seal_grace = Duration::from_secs(a.number("seal-grace", 0u64, 86_400 * 365)?.unwrap_or(60));
    let settings = commit::Settings {
        seal_grace,
        retain_days,
    };
    let max_connections = a
        .number("max-connections", 1usize, 1 << 20)?
        .unwrap_or(4096);
    let handshake_timeout = Duration::from_secs_f64(
        a.number("handshake-timeout", 0.1f64, 3600.0)?
            .unwrap_or(10.0),
    );
    let idle_timeout = Duration::from_secs_f64(
        a.number("idle-timeout", 0.1f64, 86_400.0 * 7.0)?
            .unwrap_or(600.0),
    );
    let max_buffered = a
        .number("max-buffered", 1usize << 20, 1 << 40)?
        .unwrap_or(256 << 20);
    let metrics = a.one("metrics")?.map(str::to_string);
    let frame_limit = max_frame(&a)?;
    setup_log(&a)?;

    let sigs = block_signals();
    let store = commit::open_store(
        &data,
        store::Options {
            file_size: file_size(&a)?,
        },
    )
    .map_err(|e| format!("cannot open the store in {}: {e}", data.display()))?;
    if let (Some((date, _)), Some(v)) = (store.open_date(), store.open_version()) {
        if v < rlog::proto::format::VERSION {
            commit::log(&format!(
                "the open date {date} is store format version {v} (an older rlogd began it): plain senders' addresses are stored from the next date on"
            ));
        }
    }
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
        token: rlog::sync::Mutex::new(token.map(Arc::new)),
        tls: rlog::sync::Mutex::new(tls),
        max_frame: frame_limit,
        root: data.clone(),
        stopping: AtomicBool::new(false),
        inflight: AtomicUsize::new(0),
        slots: limits::Slots::new(max_connections),
        budget: limits::Budget::new(max_buffered, Duration::from_secs(20)),
        handshake_timeout,
        idle_timeout,
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
    if let Some(m) = &metrics {
        let bound = metrics::listen(m, ctx.clone())
            .map_err(|e| format!("cannot listen on --metrics {m}: {e}"))?;
        log(&format!("metrics on http://{bound}/metrics ({bound})"));
    }
    log(&format!(
        "serving {} (rlogd {})",
        data.display(),
        env!("CARGO_PKG_VERSION")
    ));
    let reloadable = Reloadable {
        token_file,
        tls: tls_files,
    };
    let sig = loop {
        match wait_signal(&sigs) {
            libc::SIGHUP => reload(&ctx, &reloadable),
            sig @ (libc::SIGUSR1 | libc::SIGUSR2) => log(&format!(
                "{}: {} open_connections={} buffered_bytes={}",
                signal_name(sig),
                ctx.counters.summary(),
                ctx.slots.open(),
                ctx.budget.used()
            )),
            sig => break sig,
        }
    };
    log(&format!(
        "{}: finishing the commit in progress",
        signal_name(sig)
    ));
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
    let a = Args::parse_with_config(
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
            "log-file",
        ],
        &[],
    )?;
    let master = match net::parse_url(a.required("master")?)? {
        Url::Rlogd(addr) => addr,
        u => return Err(format!("--master {u}: must be an rlogd:// URL")),
    };
    let data = PathBuf::from(a.required("data")?);
    let token_file = a.one("token-file")?.map(str::to_string);
    let token = token_file
        .as_deref()
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
    let settings = Arc::new(FollowSettings {
        master,
        data,
        token: rlog::sync::Mutex::new(token),
        tls,
        retain_days: a.number("retain-days", 1u32, 100_000)?,
        max_frame: max_frame(&a)?,
        file_size: file_size(&a)?,
    });
    setup_log(&a)?;
    let sigs = block_signals();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (stop, settings) = (stop.clone(), settings.clone());
        std::thread::spawn(move || loop {
            match wait_signal(&sigs) {
                libc::SIGHUP => {
                    let mut done = Vec::new();
                    reopen_log_on_hup(&mut done);
                    if let Some(f) = &token_file {
                        match server::read_token(f) {
                            Ok(t) => {
                                *settings.token.lock() = t;
                                done.push(format!(
                                    "reloaded the token file {f} (used from the next connection)"
                                ));
                            }
                            Err(e) => done.push(format!("{e}: kept the previous token")),
                        }
                    }
                    if done.is_empty() {
                        done.push("nothing to reload".into());
                    }
                    log(&format!("SIGHUP: {}", done.join("; ")));
                }
                sig @ (libc::SIGUSR1 | libc::SIGUSR2) => {
                    let at = match store::list_dates(&settings.data) {
                        Ok(d) => match d.last() {
                            Some(&date) => {
                                let n = DateReader::open(&settings.data, date)
                                    .and_then(|r| r.count_on_disk())
                                    .unwrap_or(0);
                                let state = if store::is_sealed(&settings.data, date) {
                                    "sealed"
                                } else {
                                    "open"
                                };
                                format!("{date}, {n} records, {state}")
                            }
                            None => "an empty store".into(),
                        },
                        Err(e) => format!("an unreadable store: {e}"),
                    };
                    log(&format!(
                        "{}: following {} at {at}",
                        signal_name(sig),
                        settings.master
                    ));
                }
                sig => {
                    log(&format!("{}: stopping", signal_name(sig)));
                    stop.store(true, Ordering::Release);
                    return;
                }
            }
        });
    }
    replication::follow(&settings, &stop)
        .map_err(|e| format!("cannot open the store in {}: {e}", settings.data.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// `rlogd stats`: asks a daemon's `--metrics` listener for its counters and prints them.
/// `rlogd spool DIR`: a librlog spool's contents, verified.
fn spool(args: &[String]) -> Result<ExitCode, String> {
    let [dir] = args else {
        return Err("usage: rlogd spool DIR".to_string());
    };
    let report = rlog::output::spool::inspect(std::path::Path::new(dir))
        .map_err(|e| format!("cannot read the spool {dir}: {e}"))?;
    print!("{report}");
    let sound = report
        .keys
        .iter()
        .flat_map(|k| &k.instances)
        .all(|i| i.verified());
    Ok(if sound {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn stats(args: &[String]) -> Result<ExitCode, String> {
    let a = Args::parse(args, &["metrics"], &[])?;
    let addr = a.required("metrics")?;
    let addr = addr
        .strip_prefix("http://")
        .unwrap_or(addr)
        .trim_end_matches("/metrics")
        .trim_end_matches('/');
    let body = metrics::get(addr, "/metrics")
        .map_err(|e| format!("cannot read the counters from {addr}: {e}"))?;
    let stdout = io::stdout();
    let mut w = stdout.lock();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        if let Some((name, v)) = line.split_once(' ') {
            let name = name.strip_prefix("rlogd_").unwrap_or(name);
            let name = name.strip_suffix("_total").unwrap_or(name);
            writeln!(w, "{name} {v}").map_err(out_err)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes one record as `cat` and `tail` print it.
fn print_record(w: &mut impl Write, date: Date, r: &Record, json: bool) -> io::Result<()> {
    if json {
        let mut s = Vec::with_capacity(r.payload.len() + 96);
        s.extend_from_slice(
            format!(
                "{{\"date\":\"{date}\",\"id\":{},\"time_us\":{},\"type\":{},",
                r.id, r.meta.time_us, r.meta.rtype
            )
            .as_bytes(),
        );
        // An address has no character JSON needs escaped.
        if let Some(sender) = &r.sender {
            s.extend_from_slice(format!("\"sender\":\"{sender}\",").as_bytes());
        }
        s.extend_from_slice(b"\"msg\":\"");
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
            let (n, v) = scan.map(|s| (s.entries, s.version)).unwrap_or((0, 0));
            println!("{d}: {n} records, {state}, format version {v}, ok");
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
