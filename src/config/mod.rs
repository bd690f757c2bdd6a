//! Config text -> typed [`Config`].
//!
//! The language is the SPEC's (§3): one `key = value` per line, `#`/`;` comments, double-quoted
//! values with `\" \\ \n \t` escapes, `_` and `-` interchangeable in keys. Validation errors keep
//! lua-resty-logger-socket's wording so its users recognise them; errors about a particular line
//! name that line. Nothing is ignored silently: an unknown key is an error.

pub mod clickhouse;
pub mod http;
pub mod nats;
pub mod outputs;
mod percent;
pub mod route;
pub mod target;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use outputs::{OutputSet, OutputSpec, TlsOptions};
use outputs::{RlogdBase, TlsBase, UwsgiKeys};

/// Where one logger delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP stream (`host`/`port`, `sock_type = tcp`).
    Tcp { host: String, port: u16 },
    /// One UDP datagram per message (`sock_type = udp`).
    Udp { host: String, port: u16 },
    /// A unix stream socket (`path`).
    Unix { path: String },
    /// rlogd's acknowledged protocol (`sock_type = rlogd` with `host`/`port`, or
    /// `logger = rlogd://HOST:PORT`): a batch counts as sent once rlogd has stored it durably.
    Rlogd { host: String, port: u16 },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } => write!(f, "tcp://{}", target::join_host(host, *port)),
            Endpoint::Udp { host, port } => write!(f, "udp://{}", target::join_host(host, *port)),
            Endpoint::Unix { path } => write!(f, "unix://{path}"),
            Endpoint::Rlogd { host, port } => {
                write!(f, "rlogd://{}", target::join_host(host, *port))
            }
        }
    }
}

/// The buffer and delivery limits of lua-resty-logger-socket, with its defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// A flush starts when buffered bytes + the new message `>=` this.
    pub flush_limit: usize,
    /// A message is dropped when bytes held (in flight included) + the message `>` this.
    pub drop_limit: usize,
    /// Connect, send, TLS handshake, and exit-flush timeout.
    pub timeout: Duration,
    /// Retries after a failed connect, and after a failed send.
    pub max_retry_times: u32,
    /// The first pause before a retry; later pauses double, up to [`Limits::max_backoff`].
    pub retry_interval: Duration,
    /// Connections kept open between flushes; 0 closes the connection after every flush.
    pub pool_size: usize,
    /// Flushes before the buffers' memory is released and allocated anew.
    pub max_buffer_reuse: u64,
    /// Flush at least this often when anything is buffered.
    pub periodic_flush: Option<Duration>,
    /// `max_retry_delay` (Kong's name): the longest pause between retries, instead of
    /// [`Limits::max_backoff`]'s default.
    pub max_retry_delay: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            flush_limit: 4096,
            drop_limit: 1_048_576,
            timeout: Duration::from_millis(1000),
            max_retry_times: 3,
            retry_interval: Duration::from_millis(100),
            pool_size: 10,
            max_buffer_reuse: 10_000,
            periodic_flush: None,
            max_retry_delay: None,
        }
    }
}

impl Limits {
    /// The longest pause between two retries: 32 × `retry_interval`, at most 10 s (but never
    /// less than `retry_interval` itself).
    pub fn max_backoff(&self) -> Duration {
        if let Some(cap) = self.max_retry_delay {
            return cap.max(self.retry_interval);
        }
        (self.retry_interval * 32)
            .min(Duration::from_secs(10))
            .max(self.retry_interval)
    }

    /// The longest one delivery can take with these limits: every connect and send attempt of
    /// resty's nested retry loops timing out, plus every pause between them.
    pub fn longest_delivery(&self) -> Duration {
        let r = self.max_retry_times.min(64) + 1;
        let attempt = self.timeout * 3; // connect + handshake + send
        let pauses = self.max_backoff() * r;
        let connect_loop = attempt * r + pauses;
        (connect_loop * r + pauses + Duration::from_secs(1)).min(Duration::from_secs(3600))
    }

    /// The pause before retry number `n` (0-based): `retry_interval × 2^n`, capped.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32 << n.min(16);
        self.retry_interval
            .saturating_mul(factor)
            .min(self.max_backoff())
    }
}

/// A parsed, validated configuration: plain data. Nothing is connected, loaded or started
/// while parsing; TLS roots and keys are read when the logger starts (`Logger::start`), which
/// reports their errors as init errors.
#[derive(Debug, Clone)]
pub struct Config {
    pub limits: Limits,
    /// Where messages go: one output for a plain `host`/`port`/`path` config; the `logger`
    /// lines (and the `host`/`port`/`path` logger) with their encoders and routes for a
    /// uWSGI-style one.
    pub outputs: Arc<OutputSet>,
    /// Whether `log` records the call's time with each message (some encoder needs it, and
    /// rlogd stores it with each record).
    pub needs_time: bool,
    /// Whether seconds are enough (no `${micros}`/`${millis}`/msgpack `micros`): `log` then reads
    /// the kernel's coarse clock (a few ns, up to one tick behind) instead of the precise one.
    pub coarse_time: bool,
    /// uWSGI-style keys were used (`logger`, `log-encoder`, `log-route`, `framing`,
    /// `NAME.key`): each output bounds what it holds by its own `drop_limit`, and messages name
    /// the output. A plain config keeps lua-resty-logger-socket's semantics and wording.
    pub uwsgi_style: bool,
    /// `spool`: undeliverable records go to disk, replayed in order, adopted after a crash.
    pub spool: Option<SpoolConfig>,
    /// `dead_letter`: the file that keeps records an output refused for good.
    pub dead_letter: Option<String>,
}

/// `spool_mode`: when records go to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolMode {
    /// What the output could not deliver after `max_retry_times`, and what queues behind it
    /// while the output is down.
    Overflow,
    /// Every batch, before it is sent (write-ahead).
    Always,
}

/// `spool_sync`: when what is on disk is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolSync {
    /// A batch counts as spooled only once fsynced.
    Batch,
    /// fsync at most this often.
    Interval(Duration),
    /// Left to the kernel.
    None,
}

/// The `spool*` keys: a disk queue per output for what cannot be delivered now (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// `spool`: the directory (created 0700 when missing).
    pub dir: String,
    pub mode: SpoolMode,
    /// `spool_max_bytes`: cap on the bytes this logger keeps on disk.
    pub max_bytes: u64,
    pub sync: SpoolSync,
}

/// Settings only the `rlogd` endpoint uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RlogdSettings {
    /// Sent in the handshake; rlogd started with `--token-file` refuses a wrong one.
    pub token: Vec<u8>,
    /// The record type stored with every message (go-remote-log's DataType).
    pub record_type: u16,
    /// `compression = zlib`: batches travel zlib-compressed (rlogd stores them uncompressed).
    pub compress: bool,
}

/// One `key = value` line of the config text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Normalised key: `-` replaced by `_`.
    pub key: String,
    pub value: String,
    /// 1-based line number.
    pub line: usize,
}

/// Splits config text into entries: comments and blank lines dropped, quotes and escapes
/// resolved, keys normalised. Only ASCII blanks are trimmed: a value that ends in a no-break
/// or other Unicode space keeps it (a `suffix` encoder's text is bytes to send). Errors name the
/// line.
pub fn entries(text: &str) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim_ascii();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let Some((k, v)) = trimmed.split_once('=') else {
            return Err(format!(
                "bad line {line}: expected \"key = value\", got \"{trimmed}\""
            ));
        };
        let key = k.trim_ascii().replace('-', "_");
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err(format!("bad line {line}: bad key \"{}\"", k.trim_ascii()));
        }
        let v = v.trim_ascii();
        if let Some(i) = comment_after_value(v) {
            let shown = k.trim_ascii();
            let comment = &v[i..];
            let value = v[..i].trim_ascii_end();
            let quoted = v.replace('\\', "\\\\").replace('"', "\\\"");
            return Err(format!(
                "bad line {line}: a comment needs a line of its own, \"{comment}\" would be part of the value of \"{shown}\": write \"{shown} = {value}\" with the comment on the line above, or quote the value if the \"#\" belongs to it: {shown} = \"{quoted}\""
            ));
        }
        let value = unquote(v).map_err(|e| format!("bad line {line}: {e}"))?;
        out.push(Entry { key, value, line });
    }
    Ok(out)
}

/// Where an unquoted value has what reads as a trailing comment: a `#` first, or after a blank
/// (`host = 127.0.0.1 # collector`). The value is the rest of the line, as in uWSGI's ini files,
/// while nginx (and most of what rlog's users write) takes `#` there as a comment; neither
/// reading is made silently (see [`entries`]): such a line is an error that says both fixes.
fn comment_after_value(v: &str) -> Option<usize> {
    if v.starts_with('"') {
        return None;
    }
    let b = v.as_bytes();
    (0..b.len()).find(|&i| b[i] == b'#' && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t'))
}

/// Resolves a value that starts with `"`: the text up to the closing quote, with escapes.
fn unquote(v: &str) -> Result<String, String> {
    let Some(inner) = v.strip_prefix('"') else {
        return Ok(v.to_string());
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let rest: String = chars.collect();
                if rest.trim_ascii().starts_with('#') {
                    return Err(format!(
                        "a comment needs a line of its own: move \"{}\" to the line above",
                        rest.trim_ascii()
                    ));
                }
                if !rest.trim_ascii().is_empty() {
                    return Err(format!(
                        "unexpected text after the closing quote: \"{rest}\""
                    ));
                }
                return Ok(out);
            }
            '\\' => match chars.next() {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => {
                    return Err(format!("unknown escape \"\\{other}\" in a quoted value"))
                }
                None => return Err("unterminated quoted value".to_string()),
            },
            c => out.push(c),
        }
    }
    Err("unterminated quoted value".to_string())
}

/// Keys that may appear more than once.
const REPEATABLE: &[&str] = &["logger", "log_encoder", "log_route", "header"];

impl Config {
    /// Whether the handle's one output takes the caller's messages as they were logged (a
    /// plain `host`/`port`/`path` config, or a lone `logger` line without route, encoder,
    /// prefix or framing): no routing, no per-copy accounting; what the handle counts (its
    /// drops at `drop_limit` among them) is that output's.
    pub fn delivers_directly(&self) -> bool {
        !self.uwsgi_style || self.outputs.passes_through()
    }

    /// Where this handle sends, for messages about it: its loggers' targets as a config names
    /// them (`tcp://h:p`, `tls://h:p`, `socket:/path`, ...), comma-separated.
    pub fn describe_target(&self) -> String {
        self.outputs
            .outputs
            .iter()
            .map(|s| s.target_text())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Parses and validates config text.
    ///
    /// Errors: the SPEC's resty-worded messages (`invalid "flush_limit"`, `"port" out of range
    /// 0~65535`, ...), followed by the line they concern where there is one.
    pub fn parse(text: &str) -> Result<Config, String> {
        let entries = entries(text)?;
        let mut seen: Vec<&str> = Vec::new();
        let mut limits = Limits::default();
        let mut host: Option<String> = None;
        let mut port: Option<u16> = None;
        let mut path: Option<String> = None;
        let mut udp = false;
        let mut ssl = false;
        let mut ssl_verify = true;
        let mut sni_host: Option<String> = None;
        let mut ssl_ca: Option<(String, usize)> = None;
        let mut ssl_cert: Option<String> = None;
        let mut ssl_key: Option<String> = None;
        let mut uwsgi = UwsgiKeys::default();
        let mut rlogd_proto = false;
        let mut rlogd = RlogdSettings::default();
        // The first rlogd-only key seen, to report it when the endpoint is not rlogd.
        let mut rlogd_key: Option<(String, usize)> = None;
        let mut spool = SpoolKeys::default();
        let mut dead_letter = None;

        for e in &entries {
            let key = e.key.as_str();
            if seen.contains(&key) && !REPEATABLE.contains(&key) && !key.ends_with(".header") {
                return Err(format!(
                    "duplicate key \"{key}\" at line {}: it may be set only once",
                    e.line
                ));
            }
            seen.push(key);
            let v = e.value.as_str();
            let at = |msg: &str| format!("{msg} at line {}", e.line);
            match key {
                "host" => host = Some(host_value(e)?),
                "port" => port = Some(parse_port(e)?),
                "path" => {
                    let p = nonempty(e, "\"path\" must be a string")?;
                    target::check_unix_path(&p)
                        .map_err(|m| format!("invalid \"path\" at line {}: {m}", e.line))?;
                    path = Some(p);
                }
                "sock_type" => {
                    (udp, rlogd_proto) = match v {
                        "tcp" => (false, false),
                        "udp" => (true, false),
                        "rlogd" => (false, true),
                        _ => {
                            return Err(at("\"sock_type\" must be \"tcp\" or \"udp\"")
                                + ": rlog also takes \"rlogd\"")
                        }
                    }
                }
                "token" | "token_file" => {
                    if seen
                        .iter()
                        .filter(|k| **k == "token" || **k == "token_file")
                        .count()
                        > 1
                    {
                        return Err(at("\"token\" and \"token_file\" exclude each other"));
                    }
                    let token = token_value(e)?;
                    rlogd.token = token;
                    rlogd_key.get_or_insert((key.to_string(), e.line));
                }
                "type" => {
                    rlogd.record_type = record_type(e)?;
                    rlogd_key.get_or_insert((key.to_string(), e.line));
                }
                // gzip for http and clickhouse loggers, lz4 (ClickHouse's blocks) for clickhouse ones.
                "compression" if v == "gzip" || v == "lz4" => {
                    uwsgi.take(e)?;
                }
                "compression" if v == "none" => {
                    // No compression, for every logger that compresses (rlogd's is off by
                    // default; clickhouse loggers send LZ4 blocks unless told not to).
                    rlogd.compress = false;
                    uwsgi.take(e)?;
                }
                "compression" => {
                    rlogd.compress = compression(e)?;
                    rlogd_key.get_or_insert((key.to_string(), e.line));
                }
                "flush_limit" => limits.flush_limit = whole(e)? as usize,
                "drop_limit" => limits.drop_limit = whole(e)? as usize,
                "timeout" => limits.timeout = timeout(e)?,
                "max_retry_times" => {
                    limits.max_retry_times =
                        u32::try_from(whole(e)?).map_err(|_| at("invalid \"max_retry_times\""))?
                }
                "retry_interval" => {
                    if seen.contains(&"initial_retry_delay") {
                        return Err(at("\"initial_retry_delay\" is Kong's name (in seconds) for \"retry_interval\" (in ms): set one of them"));
                    }
                    limits.retry_interval = millis(e)?
                }
                "pool_size" => limits.pool_size = whole(e)? as usize,
                "max_buffer_reuse" => limits.max_buffer_reuse = whole(e)?,
                "periodic_flush" => {
                    if seen.contains(&"max_coalescing_delay") {
                        return Err(at("\"max_coalescing_delay\" is Kong's name for \"periodic_flush\": set one of them"));
                    }
                    let secs = decimal(e)?;
                    // A shorter period would have the worker spin (at 1e-12 it is zero: a
                    // flush "due" at every look, 100 % of a core while idle).
                    if secs > 0.0 && secs < 0.001 {
                        return Err(invalid(e, "0 (off) or a number of seconds >= 0.001"));
                    }
                    limits.periodic_flush = (secs > 0.0).then(|| Duration::from_secs_f64(secs));
                }
                "ssl" => ssl = boolean(e)?,
                "ssl_verify" => ssl_verify = boolean(e)?,
                "sni_host" => sni_host = Some(nonempty(e, "\"sni_host\" must be a string")?),
                "ssl_ca" => ssl_ca = Some((nonempty(e, "\"ssl_ca\" must be a file name")?, e.line)),
                "dead_letter" => {
                    dead_letter = Some(nonempty(e, "\"dead_letter\" must be a file name")?)
                }
                "ssl_cert" => ssl_cert = Some(nonempty(e, "\"ssl_cert\" must be a file name")?),
                "ssl_key" => ssl_key = Some(nonempty(e, "\"ssl_key\" must be a file name")?),
                "max_coalescing_delay" => {
                    if seen.contains(&"periodic_flush") {
                        return Err(at("\"max_coalescing_delay\" is Kong's name for \"periodic_flush\": set one of them"));
                    }
                    limits.periodic_flush = Some(http::coalescing_delay(e)?);
                }
                "initial_retry_delay" => {
                    if seen.contains(&"retry_interval") {
                        return Err(at("\"initial_retry_delay\" is Kong's name (in seconds) for \"retry_interval\" (in ms): set one of them"));
                    }
                    limits.retry_interval = http::retry_delay(e)?;
                }
                "max_retry_delay" => limits.max_retry_delay = Some(http::retry_delay(e)?),
                _ if spool.take(e)? => {}
                _ if uwsgi.take(e)? => {}
                k => return Err(format!("unknown key \"{k}\" at line {}", e.line)),
            }
        }

        let has_base = (host.is_some() && port.is_some()) || path.is_some();
        if uwsgi.is_used() && (has_base || uwsgi.has_loggers()) {
            if let Some(batching) = uwsgi.batching() {
                batching.apply(&mut limits, &seen);
            }
            let base = if has_base {
                let ep = match (host, port, path) {
                    (Some(host), Some(port), _) if rlogd_proto => Endpoint::Rlogd { host, port },
                    (_, _, Some(_)) if rlogd_proto => {
                        return Err("\"sock_type\" \"rlogd\" needs \"host\"/\"port\"".to_string())
                    }
                    (Some(host), Some(port), _) if udp => Endpoint::Udp { host, port },
                    (Some(host), Some(port), _) => Endpoint::Tcp { host, port },
                    (_, _, Some(_)) if udp => {
                        return Err("\"sock_type\" \"udp\" needs \"host\"/\"port\": \"path\" is a unix stream socket"
                            .to_string())
                    }
                    (_, _, Some(path)) => Endpoint::Unix { path },
                    _ => unreachable!("has_base"),
                };
                Some(ep)
            } else {
                None
            };
            if limits.flush_limit >= limits.drop_limit {
                return Err("\"flush_limit\" should be < \"drop_limit\"".to_string());
            }
            let tls_base = TlsBase {
                ssl,
                ssl_verify,
                sni_host,
                ssl_ca: ssl_ca.map(|(f, _)| f),
                client: client_cert(ssl_cert, ssl_key)?,
            };
            let rlogd_base = RlogdBase {
                settings: rlogd,
                first_key: rlogd_key,
            };
            let set = uwsgi.build(base, &limits, &tls_base, &rlogd_base)?;
            return Ok(Config {
                needs_time: set.needs_time(),
                coarse_time: !set.needs_subsecond(),
                limits,
                outputs: Arc::new(set),
                uwsgi_style: true,
                spool: spool.finish()?,
                dead_letter,
            });
        }

        let endpoint = match (host, port, path) {
            (Some(host), Some(port), _) if rlogd_proto => Endpoint::Rlogd { host, port },
            (_, _, Some(_)) if rlogd_proto => {
                return Err("\"sock_type\" \"rlogd\" needs \"host\"/\"port\"".to_string())
            }
            (Some(host), Some(port), _) if udp => Endpoint::Udp { host, port },
            (Some(host), Some(port), _) => Endpoint::Tcp { host, port },
            (_, _, Some(_)) if udp => return Err(
                "\"sock_type\" \"udp\" needs \"host\"/\"port\": \"path\" is a unix stream socket"
                    .to_string(),
            ),
            (_, _, Some(path)) => Endpoint::Unix { path },
            (host, port, _) => {
                let mut e =
                    "no logging server configured. \"host\"/\"port\" or \"path\" is required."
                        .to_string();
                match (host, port) {
                    (Some(_), None) => e.push_str(" (\"host\" is set, \"port\" is missing)"),
                    (None, Some(_)) => e.push_str(" (\"port\" is set, \"host\" is missing)"),
                    _ => {}
                }
                return Err(e);
            }
        };

        if let Some((k, line)) = rlogd_key {
            if !rlogd_proto {
                return Err(format!(
                    "\"{k}\" at line {line} needs \"sock_type = rlogd\" or an rlogd:// logger"
                ));
            }
        }

        if limits.flush_limit >= limits.drop_limit {
            return Err("\"flush_limit\" should be < \"drop_limit\"".to_string());
        }

        let tls = if ssl {
            let server_name = match (&sni_host, &endpoint) {
                (Some(sni), _) => sni.clone(),
                (None, Endpoint::Tcp { host, .. }) => host.clone(),
                (None, Endpoint::Rlogd { host, .. }) => host.clone(),
                (None, Endpoint::Udp { .. }) => String::new(),
                (None, Endpoint::Unix { .. }) => String::new(),
            };
            if matches!(endpoint, Endpoint::Udp { .. }) {
                return Err("\"ssl\" is not supported with \"sock_type\" \"udp\"".to_string());
            }
            if server_name.is_empty() && ssl_verify {
                return Err(
                    "\"sni_host\" is required for \"ssl\" over a unix socket while \"ssl_verify\" is on"
                        .to_string(),
                );
            }
            let (ca, ca_line) = ssl_ca.map_or((None, None), |(f, l)| (Some(f), Some(l)));
            crate::output::tls::check(&server_name, ssl_verify, ca.as_deref()).map_err(|e| {
                match ca_line {
                    Some(line) => format!("{e} (\"ssl_ca\" at line {line})"),
                    None => e,
                }
            })?;
            let client = client_cert(ssl_cert, ssl_key)?;
            if let Some((cert, key)) = &client {
                crate::output::tls::check_client(cert, key)?;
            }
            Some(TlsOptions {
                server_name,
                verify: ssl_verify,
                ca,
                ca_line,
                client,
            })
        } else {
            if let Some((_, line)) = ssl_ca {
                return Err(format!("\"ssl_ca\" at line {line} needs \"ssl = true\""));
            }
            if ssl_cert.is_some() || ssl_key.is_some() {
                return Err("\"ssl_cert\"/\"ssl_key\" need \"ssl = true\"".to_string());
            }
            None
        };

        let needs_time = rlogd_proto;
        let set = OutputSet::single(endpoint, limits.clone(), tls, rlogd);
        Ok(Config {
            limits,
            outputs: Arc::new(set),
            needs_time,
            coarse_time: false,
            uwsgi_style: false,
            spool: spool.finish()?,
            dead_letter,
        })
    }
}

/// `ssl_cert` and `ssl_key` together, or neither.
///
/// Errors: one without the other.
fn client_cert(
    cert: Option<String>,
    key: Option<String>,
) -> Result<Option<(String, String)>, String> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        (Some(_), None) => {
            Err("\"ssl_cert\" needs \"ssl_key\" (the client certificate's private key)".into())
        }
        (None, Some(_)) => Err("\"ssl_key\" needs \"ssl_cert\" (the client certificate)".into()),
    }
}

/// The `spool*` keys as `Config::parse` meets them.
#[derive(Debug, Default)]
struct SpoolKeys {
    dir: Option<String>,
    mode: Option<SpoolMode>,
    max_bytes: Option<u64>,
    sync: Option<SpoolSync>,
    interval: Option<Duration>,
    /// The line of the first spool key, to name it in errors.
    first_line: Option<usize>,
}

impl SpoolKeys {
    /// Takes `e` if it is a spool key: `Ok(true)` taken, `Ok(false)` not one.
    ///
    /// Errors: a bad value, naming the key and the line.
    fn take(&mut self, e: &Entry) -> Result<bool, String> {
        match e.key.as_str() {
            "spool" => self.dir = Some(nonempty(e, "\"spool\" must be a directory")?),
            "spool_mode" => {
                self.mode = Some(match e.value.as_str() {
                    "overflow" => SpoolMode::Overflow,
                    "always" => SpoolMode::Always,
                    _ => return Err(invalid(e, "\"overflow\" or \"always\"")),
                })
            }
            "spool_max_bytes" => {
                let n = whole(e)?;
                if n == 0 {
                    return Err(invalid(e, "a number of bytes above 0"));
                }
                self.max_bytes = Some(n);
            }
            "spool_sync" => {
                self.sync = Some(match e.value.as_str() {
                    "batch" => SpoolSync::Batch,
                    "interval" => SpoolSync::Interval(Duration::ZERO),
                    "none" => SpoolSync::None,
                    _ => return Err(invalid(e, "\"batch\", \"interval\" or \"none\"")),
                })
            }
            "spool_sync_interval" => {
                let d = millis(e)?;
                if d < Duration::from_millis(1) {
                    return Err(invalid(e, "a number of ms >= 1"));
                }
                self.interval = Some(d);
            }
            _ => return Ok(false),
        }
        self.first_line.get_or_insert(e.line);
        Ok(true)
    }

    /// The spool settings, or `None` without a `spool` key.
    ///
    /// Errors: another spool key without `spool`; `spool_sync_interval` without
    /// `spool_sync = interval`.
    fn finish(self) -> Result<Option<SpoolConfig>, String> {
        let Some(dir) = self.dir else {
            return match self.first_line {
                Some(line) => Err(format!(
                    "the spool key at line {line} needs \"spool = DIRECTORY\""
                )),
                None => Ok(None),
            };
        };
        let sync = match (self.sync, self.interval) {
            (Some(SpoolSync::Interval(_)), d) => {
                SpoolSync::Interval(d.unwrap_or(Duration::from_millis(500)))
            }
            (_, Some(_)) => {
                return Err("\"spool_sync_interval\" needs \"spool_sync = interval\"".to_string())
            }
            (s, None) => s.unwrap_or(SpoolSync::Batch),
        };
        Ok(Some(SpoolConfig {
            dir,
            mode: self.mode.unwrap_or(SpoolMode::Overflow),
            max_bytes: self.max_bytes.unwrap_or(1 << 30),
            sync,
        }))
    }
}

/// `token = TEXT` or `token_file = FILE` (the file's bytes without trailing newlines).
///
/// Errors: an empty value, an unreadable or empty file, naming the line.
pub(crate) fn token_value(e: &Entry) -> Result<Vec<u8>, String> {
    if e.key.ends_with("token") {
        return Ok(nonempty(e, &format!("\"{}\" must be a string", e.key))?.into_bytes());
    }
    let file = nonempty(e, &format!("\"{}\" must be a file name", e.key))?;
    let mut t = std::fs::read(&file)
        .map_err(|err| format!("cannot read \"{}\" {file}: {err} at line {}", e.key, e.line))?;
    while t.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        t.pop();
    }
    if t.is_empty() {
        return Err(format!("\"{}\" {file} is empty at line {}", e.key, e.line));
    }
    Ok(t)
}

/// `type = N`: rlogd's record type, 0..65535.
pub(crate) fn record_type(e: &Entry) -> Result<u16, String> {
    u16::try_from(whole(e)?).map_err(|_| invalid(e, "a whole number from 0 to 65535"))
}

/// `compression = zlib | none`.
pub(crate) fn compression(e: &Entry) -> Result<bool, String> {
    match e.value.as_str() {
        "zlib" => Ok(true),
        "none" => Ok(false),
        _ => Err(invalid(e, "\"zlib\" or \"none\"")),
    }
}

fn nonempty(e: &Entry, msg: &str) -> Result<String, String> {
    if e.value.is_empty() {
        Err(format!("{msg} at line {}: the value is empty", e.line))
    } else {
        Ok(e.value.clone())
    }
}

/// `host`: a host name or an IP address. A port, a URL or brackets in it would only fail later,
/// on the worker thread, as a name that does not resolve: each is an init error that says what
/// to write instead.
fn host_value(e: &Entry) -> Result<String, String> {
    let h = nonempty(e, "\"host\" must be a string")?;
    if !h.contains([':', '[', ']', '/']) || h.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(h);
    }
    let at = format!("\"host\" at line {}", e.line);
    let (scheme, rest) = match h.split_once("://") {
        Some((s, r)) => (Some(s), r.trim_end_matches('/')),
        None => (None, h.as_str()),
    };
    // HOST:PORT or [V6]:PORT (with the port) or [V6] (without).
    let split = if let Some(r) = rest.strip_prefix('[') {
        match r.split_once(']') {
            Some((v6, "")) => Some((v6, None)),
            Some((v6, p)) => p.strip_prefix(':').map(|p| (v6, Some(p))),
            None => None,
        }
    } else {
        rest.rsplit_once(':')
            .filter(|(host, _)| !host.contains(':'))
            .map(|(host, p)| (host, Some(p)))
    };
    let advice = match split {
        Some((host, Some(p))) if !host.is_empty() && p.parse::<u16>().is_ok() => {
            format!("write host = {host} and port = {p}")
        }
        Some((host, None)) if host.parse::<std::net::Ipv6Addr>().is_ok() => {
            format!("write the IPv6 address without brackets: host = {host}")
        }
        _ if scheme.is_none() && h.starts_with('/') => {
            return Err(format!(
                "{at} must be a host name or an IP address, got \"{h}\": a unix socket goes in \"path\""
            ))
        }
        _ if scheme.is_none() => {
            return Err(format!(
                "{at} must be a host name or an IP address, got \"{h}\""
            ))
        }
        _ => String::new(),
    };
    Err(match scheme {
        Some(_) => format!(
            "{at} must be a host name or an IP address, not a URL (\"{h}\"){}{advice}, or give the URL as a target: logger = {h}",
            if advice.is_empty() { "" } else { ": " }
        ),
        None => format!("{at} must not include a port (\"{h}\"): the port goes in \"port\": {advice}"),
    })
}

fn parse_port(e: &Entry) -> Result<u16, String> {
    let n: i64 = e
        .value
        .parse()
        .map_err(|_| format!("\"port\" must be a number at line {}", e.line))?;
    u16::try_from(n).map_err(|_| format!("\"port\" out of range 0~65535 at line {}", e.line))
}

fn invalid(e: &Entry, expected: &str) -> String {
    format!(
        "invalid \"{}\" at line {}: expected {expected}, got \"{}\"",
        e.key, e.line, e.value
    )
}

/// A non-negative whole number.
pub(crate) fn whole(e: &Entry) -> Result<u64, String> {
    e.value
        .parse::<u64>()
        .map_err(|_| invalid(e, "a whole number >= 0"))
}

/// A non-negative decimal number.
fn decimal(e: &Entry) -> Result<f64, String> {
    match e.value.parse::<f64>() {
        Ok(x) if (0.0..1e9).contains(&x) => Ok(x),
        _ => Err(invalid(e, "a number >= 0")),
    }
}

/// The shortest `retry_interval`, in ms. A failed batch is kept and retried until it is
/// delivered, each pause doubling from `retry_interval` up to 32 times it: from 0 the pauses stay
/// 0 and the worker connects in a tight loop (12 000 connects in 0.1 s, a core at 100 %); from
/// 1 ms they reach 32 ms, about 30 connects a second while the collector is down.
pub const MIN_RETRY_INTERVAL_MS: f64 = 1.0;

/// `retry_interval` (and `NAME.retry_interval`): milliseconds, decimals allowed, at least
/// [`MIN_RETRY_INTERVAL_MS`]. Below that it is an init error, as `timeout = 0` is, rather than a
/// value silently raised.
pub(crate) fn millis(e: &Entry) -> Result<Duration, String> {
    let ms = decimal(e)?;
    if ms < MIN_RETRY_INTERVAL_MS {
        return Err(invalid(
            e,
            "a number of ms >= 1 (a pause of 0 would retry in a tight loop while the collector is down)",
        ));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

/// A socket timeout in milliseconds (`timeout`, `NAME.timeout`): above 0, and at least 1 µs,
/// the kernel's resolution — a shorter one would round to zero, which the kernel takes as no
/// timeout at all.
pub(crate) fn timeout(e: &Entry) -> Result<Duration, String> {
    let ms = decimal(e)?;
    if ms == 0.0 {
        return Err(format!(
            "invalid \"{}\" at line {}: it must be above 0 ms",
            e.key, e.line
        ));
    }
    let t = Duration::from_secs_f64(ms / 1000.0);
    if t < Duration::from_micros(1) {
        return Err(invalid(
            e,
            "a number of ms >= 0.001 (1 µs, the smallest socket timeout)",
        ));
    }
    Ok(t)
}

pub(crate) fn boolean(e: &Entry) -> Result<bool, String> {
    match e.value.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Ok(true),
        "false" | "off" | "no" | "0" => Ok(false),
        _ => Err(format!(
            "\"{}\" must be a boolean value at line {}: expected true or false, got \"{}\"",
            e.key, e.line, e.value
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err()
    }

    /// A plain config's one output, as the endpoint its keys named.
    fn endpoint(c: &Config) -> Endpoint {
        assert_eq!(c.outputs.outputs.len(), 1);
        match c.outputs.outputs[0].target.clone() {
            target::Target::Tcp { host, port } => Endpoint::Tcp { host, port },
            target::Target::Udp { host, port } => Endpoint::Udp { host, port },
            target::Target::UnixStream { path } => Endpoint::Unix { path },
            target::Target::Rlogd { host, port } => Endpoint::Rlogd { host, port },
            t => panic!("not a plain config's target: {t}"),
        }
    }

    #[test]
    fn defaults_are_resty_defaults() {
        let c = Config::parse("host = 127.0.0.1\nport = 5140").unwrap();
        assert_eq!(c.limits, Limits::default());
        assert_eq!(
            endpoint(&c),
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 5140
            }
        );
        assert!(c.outputs.outputs[0].tls.is_none());
    }

    #[test]
    fn targets_are_described_as_a_config_names_them() {
        let d = |t: &str| Config::parse(t).unwrap().describe_target();
        assert_eq!(d("host = h\nport = 1"), "tcp://h:1");
        assert_eq!(
            d("host = h\nport = 1\nssl = true\nssl_verify = false"),
            "tls://h:1"
        );
        assert_eq!(
            d("host = h\nport = 1\nsock_type = rlogd\nssl = true\nssl_verify = false"),
            "rlogds://h:1"
        );
        assert_eq!(
            d("logger = socket:/s\nlogger = tls://h:2\nssl_verify = false"),
            "socket:/s, tls://h:2"
        );
    }

    #[test]
    fn only_ascii_blanks_are_trimmed() {
        let e = entries("  log_encoder = suffix |\u{a0}\u{2003}\t\nhost =\u{a0}h ").unwrap();
        assert_eq!(e[0].value, "suffix |\u{a0}\u{2003}");
        assert_eq!(e[1].value, "\u{a0}h");
        // A carriage return inside quotes is kept (the bindings write CRLF suffixes so).
        let e = entries("log_encoder = \"suffix \r\\n\"\r\nport = 1").unwrap();
        assert_eq!(e[0].value, "suffix \r\n");
        assert_eq!(e[1].value, "1");
    }

    #[test]
    fn dashes_underscores_spaces_and_comments() {
        let c = Config::parse(
            "# comment\n; another\n\nhost=h\nport =1\nflush-limit= 10\n drop_limit = 20 \nperiodic-flush = 0.5\n",
        )
        .unwrap();
        assert_eq!(c.limits.flush_limit, 10);
        assert_eq!(c.limits.drop_limit, 20);
        assert_eq!(c.limits.periodic_flush, Some(Duration::from_millis(500)));
        for tiny in ["1e-12", "0.0009"] {
            assert_eq!(
                err(&format!("path=/x\nperiodic_flush={tiny}")),
                format!("invalid \"periodic_flush\" at line 2: expected 0 (off) or a number of seconds >= 0.001, got \"{tiny}\"")
            );
        }
        let c = Config::parse("path=/x\nperiodic_flush=0.001").unwrap();
        assert_eq!(c.limits.periodic_flush, Some(Duration::from_millis(1)));
        let c = Config::parse("path=/x\nperiodic_flush=0").unwrap();
        assert_eq!(c.limits.periodic_flush, None);
    }

    #[test]
    fn quoted_values_keep_spaces_and_escapes() {
        let e = entries("a = \"  x \\\"y\\\" \\\\ \\n\\t \"").unwrap();
        assert_eq!(e[0].value, "  x \"y\" \\ \n\t ");
        assert!(entries("a = \"open").unwrap_err().contains("unterminated"));
        assert!(entries("a = \"x\" y")
            .unwrap_err()
            .contains("after the closing quote"));
        assert!(entries("a = \"\\q\"")
            .unwrap_err()
            .contains("unknown escape"));
    }

    #[test]
    fn resty_error_strings() {
        assert!(err("host=h\nport=70000").starts_with("\"port\" out of range 0~65535"));
        assert!(err("host=h\nport=-1").starts_with("\"port\" out of range 0~65535"));
        assert!(err("host=h\nport=x").starts_with("\"port\" must be a number"));
        assert!(err("host=h\nport=1\nsock_type=sctp")
            .starts_with("\"sock_type\" must be \"tcp\" or \"udp\""));
        for key in [
            "flush_limit",
            "drop_limit",
            "timeout",
            "max_retry_times",
            "retry_interval",
            "pool_size",
            "max_buffer_reuse",
            "periodic_flush",
        ] {
            let e = err(&format!("host=h\nport=1\n{key} = -3"));
            assert!(
                e.starts_with(&format!("invalid \"{key}\" at line 3")),
                "{e}"
            );
        }
        assert!(err("host=h\nport=1\nssl=maybe").starts_with("\"ssl\" must be a boolean value"));
        assert!(err("host=h\nport=1\nssl_verify=2")
            .starts_with("\"ssl_verify\" must be a boolean value"));
        assert_eq!(
            err("flush_limit=1"),
            "no logging server configured. \"host\"/\"port\" or \"path\" is required."
        );
        assert!(err("host=h").starts_with(&err("flush_limit=1")));
        assert!(err("port=1").starts_with(&err("flush_limit=1")));
        assert_eq!(
            err("path=/x\nflush_limit=10\ndrop_limit=10"),
            "\"flush_limit\" should be < \"drop_limit\""
        );
    }

    #[test]
    fn unknown_keys_bad_lines_and_duplicates_name_the_line() {
        assert_eq!(
            err("path=/x\nflush_limt=1"),
            "unknown key \"flush_limt\" at line 2"
        );
        assert!(err("path=/x\njust words").starts_with("bad line 2"));
        assert!(err("path=/x\npath=/y").starts_with("duplicate key \"path\" at line 2"));
        assert!(err("path=/x\ntimeout=0").starts_with("invalid \"timeout\""));
    }

    /// Was: `host = 127.0.0.1 # collector` was taken as the host "127.0.0.1 # collector" and
    /// failed later, on the worker, as a name that does not resolve.
    #[test]
    fn a_comment_after_a_value_is_an_error_that_says_both_fixes() {
        let e = err("host = 127.0.0.1 # collector\nport = 5140");
        assert_eq!(
            e,
            "bad line 1: a comment needs a line of its own, \"# collector\" would be part of the value of \"host\": write \"host = 127.0.0.1\" with the comment on the line above, or quote the value if the \"#\" belongs to it: host = \"127.0.0.1 # collector\""
        );
        assert!(err("path = /x\nflush_limit = 10\t# bytes").starts_with("bad line 2: a comment"));
        assert!(
            err("path = /x\nlog-encoder = prefix [app] #1").starts_with("bad line 2: a comment")
        );
        assert!(err("path = /x\nsni_host = # none").starts_with("bad line 2: a comment"));
        let e = err("path = /x\nlog-encoder = \"prefix x\"  # the app");
        assert_eq!(
            e,
            "bad line 2: a comment needs a line of its own: move \"# the app\" to the line above"
        );
        // The suggested quoting keeps the value as it was written, quotes and backslashes too.
        let e = err("path = /x\nlog-encoder = format \"${msg}\" \\ #1");
        assert!(
            e.ends_with("log-encoder = \"format \\\"${msg}\\\" \\\\ #1\""),
            "{e}"
        );
        // Quoted, the "#" is the value's; without a blank before it, it is too.
        let e =
            entries("log-encoder = \"prefix [app] #1 \"\nlog-route = a x#y\n  # c\n; c").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].value, "prefix [app] #1 ");
        assert_eq!(e[1].value, "a x#y");
    }

    /// docs/RLOGD.md's config examples, copied verbatim, are accepted.
    #[test]
    fn the_rlogd_doc_examples_parse() {
        let doc = include_str!("../../docs/RLOGD.md");
        let mut blocks = 0;
        // Fenced blocks, line by line: a fence opens (with or without a language) and the next
        // fence closes.
        let mut block: Option<String> = None;
        for line in doc.lines() {
            match (&mut block, line.trim_start().starts_with("```")) {
                (None, true) => block = Some(String::new()),
                (Some(b), true) => {
                    if b.contains("sock_type = rlogd") || b.contains("logger = rlogd://") {
                        Config::parse(b).unwrap_or_else(|e| panic!("{e}\n--- in:\n{b}"));
                        blocks += 1;
                    }
                    block = None;
                }
                (Some(b), false) => {
                    b.push_str(line);
                    b.push('\n');
                }
                (None, false) => {}
            }
        }
        assert!(blocks >= 2, "{blocks} examples found");
    }

    /// Was: `host = "127.0.0.1:25140"` gave "no logging server configured", and with `port` set
    /// a DNS error at the first connect.
    #[test]
    fn a_port_in_host_says_where_it_goes() {
        assert_eq!(
            err("host = \"127.0.0.1:25140\""),
            "\"host\" at line 1 must not include a port (\"127.0.0.1:25140\"): the port goes in \"port\": write host = 127.0.0.1 and port = 25140"
        );
        assert!(err("port = 1\nhost = logs.example.com:514")
            .ends_with("write host = logs.example.com and port = 514"));
        assert!(err("host = [::1]:5140").ends_with("write host = ::1 and port = 5140"));
        assert!(err("host = [::1]\nport = 1").ends_with("without brackets: host = ::1"));
        assert_eq!(
            err("host = tcp://127.0.0.1:5140/"),
            "\"host\" at line 1 must be a host name or an IP address, not a URL (\"tcp://127.0.0.1:5140/\"): write host = 127.0.0.1 and port = 5140, or give the URL as a target: logger = tcp://127.0.0.1:5140/"
        );
        assert!(err("host = /run/log.sock").ends_with("a unix socket goes in \"path\""));
        assert!(err("host = a:b:c\nport = 1").ends_with("got \"a:b:c\""));
        // IPv6 addresses and names are hosts.
        for ok in [
            "::1",
            "fe80::1",
            "2001:db8::5",
            "localhost",
            "127.0.0.1",
            "logs.example.com",
        ] {
            let c = Config::parse(&format!("host = {ok}\nport = 9")).unwrap();
            assert_eq!(
                endpoint(&c),
                Endpoint::Tcp {
                    host: ok.into(),
                    port: 9
                }
            );
        }
        // Only one of host/port: resty's words, then which one is missing.
        assert_eq!(
            err("host = 127.0.0.1"),
            "no logging server configured. \"host\"/\"port\" or \"path\" is required. (\"host\" is set, \"port\" is missing)"
        );
        assert!(err("port = 1").ends_with("(\"port\" is set, \"host\" is missing)"));
    }

    /// Was: `retry_interval = 0` was accepted and the worker reconnected in a tight loop (12 000
    /// connects in 0.1 s) while the collector was down.
    #[test]
    fn retry_interval_below_one_ms_is_an_error() {
        for v in ["0", "0.0", "0.5", "1e-9"] {
            assert_eq!(
                err(&format!("path = /x\nretry_interval = {v}")),
                format!("invalid \"retry_interval\" at line 2: expected a number of ms >= 1 (a pause of 0 would retry in a tight loop while the collector is down), got \"{v}\"")
            );
        }
        let e = err("logger = a tcp://127.0.0.1:1\nlog-route = a .\na.retry_interval = 0");
        assert!(
            e.starts_with("invalid \"a.retry_interval\" at line 3: expected a number of ms >= 1"),
            "{e}"
        );
        let c = Config::parse("path = /x\nretry_interval = 1").unwrap();
        assert_eq!(c.limits.retry_interval, Duration::from_millis(1));
        assert_eq!(c.limits.max_backoff(), Duration::from_millis(32));
    }

    #[test]
    fn a_timeout_below_one_microsecond_is_an_error_not_no_timeout() {
        // socket2 truncates a timeout to whole microseconds; {0, 0} is "no timeout" to the kernel.
        let e = err("path=/x\ntimeout=0.0005");
        assert_eq!(
            e,
            "invalid \"timeout\" at line 2: expected a number of ms >= 0.001 (1 µs, the smallest socket timeout), got \"0.0005\""
        );
        assert!(err("path=/x\ntimeout=1e-300").contains(">= 0.001"));
        assert_eq!(
            err("path=/x\ntimeout=0.0"),
            "invalid \"timeout\" at line 2: it must be above 0 ms"
        );
        let c = Config::parse("path=/x\ntimeout=0.001").unwrap();
        assert_eq!(c.limits.timeout, Duration::from_micros(1));
        let c = Config::parse("path=/x\ntimeout=0.25").unwrap();
        assert_eq!(c.limits.timeout, Duration::from_micros(250));
        // The per-logger override is checked the same way.
        let e = err("logger = a tcp://127.0.0.1:1\nlog-route = a .\na.timeout = 0.0009");
        assert!(
            e.starts_with("invalid \"a.timeout\" at line 3: expected a number of ms >= 0.001"),
            "{e}"
        );
        let c = Config::parse("logger = a tcp://127.0.0.1:1\nlog-route = a .\na.timeout = 0.001")
            .unwrap();
        assert_eq!(
            c.outputs.outputs[0].limits.timeout,
            Duration::from_micros(1)
        );
    }

    #[test]
    fn a_path_longer_than_sun_path_is_an_error() {
        let fits = format!("/{}", "s".repeat(106));
        let c = Config::parse(&format!("path={fits}")).unwrap();
        assert_eq!(endpoint(&c), Endpoint::Unix { path: fits.clone() });
        assert_eq!(
            err(&format!("flush_limit=10\npath={fits}s")),
            "invalid \"path\" at line 2: unix socket path is too long: 108 bytes, the limit is 107 (sun_path holds 108 with the NUL)"
        );
        // The same with uWSGI-style loggers, for the path logger and for logger lines.
        assert!(err(&format!("path={fits}ss\nlogger = tcp://127.0.0.1:1"))
            .contains("109 bytes, the limit is 107"));
        assert!(err(&format!("logger = unix://{fits}s")).ends_with(
            "108 bytes, the limit is 107 (sun_path holds 108 with the NUL) (\"logger\" at line 1)"
        ));
    }

    #[test]
    fn endpoints() {
        let c = Config::parse("host=::1\nport=9\nsock_type=udp").unwrap();
        assert_eq!(
            endpoint(&c),
            Endpoint::Udp {
                host: "::1".into(),
                port: 9
            }
        );
        let c = Config::parse("path=/tmp/s").unwrap();
        assert_eq!(
            endpoint(&c),
            Endpoint::Unix {
                path: "/tmp/s".into()
            }
        );
        assert!(err("path=/tmp/s\nsock_type=udp").contains("needs \"host\""));
        assert!(err("host=h\nport=1\nsock_type=udp\nssl=true").contains("not supported"));
        assert!(err("host=h\nport=1\nssl_ca=/x").contains("needs \"ssl = true\""));
        assert!(err("host=h\nport=1\nssl=true\nssl_ca=/nonexistent/ca.pem").contains("ssl_ca"));
    }

    #[test]
    fn rlogd_endpoint_and_keys() {
        let c =
            Config::parse("host=127.0.0.1\nport=5\nsock_type=rlogd\ntoken=s3cret\ntype=7").unwrap();
        assert_eq!(
            endpoint(&c),
            Endpoint::Rlogd {
                host: "127.0.0.1".into(),
                port: 5
            }
        );
        assert_eq!(c.outputs.outputs[0].rlogd.token, b"s3cret");
        assert_eq!(c.outputs.outputs[0].rlogd.record_type, 7);
        assert!(!c.outputs.outputs[0].rlogd.compress);
        assert!(
            Config::parse("host=h\nport=1\nsock_type=rlogd\ncompression=zlib")
                .unwrap()
                .outputs
                .outputs[0]
                .rlogd
                .compress
        );
        assert!(err("host=h\nport=1\nsock_type=rlogd\ncompression=lz4")
            .starts_with("\"compression = lz4\" at line 4 is ClickHouse's own compression"));
        assert!(err("host=h\nport=1\nsock_type=rlogd\ncompression=lz5")
            .starts_with("invalid \"compression\" at line 4"));
        assert!(c.needs_time);
        assert_eq!(
            err("host=h\nport=1\ntype=3"),
            "\"type\" at line 3 needs \"sock_type = rlogd\" or an rlogd:// logger"
        );
        assert!(err("host=h\nport=1\nsock_type=rlogd\ntype=70000")
            .starts_with("invalid \"type\" at line 4"));
        assert!(err("path=/x\nsock_type=rlogd").contains("needs \"host\"/\"port\""));
        assert!(
            err("host=h\nport=1\nsock_type=rlogd\ntoken=a\ntoken_file=/x")
                .contains("exclude each other")
        );
        assert!(
            err("host=h\nport=1\nsock_type=rlogd\ntoken_file=/nonexistent")
                .contains("cannot read \"token_file\"")
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let l = Limits::default();
        assert_eq!(l.backoff(0), Duration::from_millis(100));
        assert_eq!(l.backoff(1), Duration::from_millis(200));
        assert_eq!(l.backoff(3), Duration::from_millis(800));
        assert_eq!(l.backoff(30), Duration::from_millis(3200));
    }
}
