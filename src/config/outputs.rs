//! The outputs of a config: a plain config's one (`host`/`port`/`path`), or every `logger` line
//! of a uWSGI-style config (and the `host`/`port`/`path` keys) as one [`OutputSpec`] — name,
//! target, limits, encoder chain, framing — with the `log-route` lines as a [`Router`] over
//! them. Plain data, built once at init; the worker's pipeline and drivers run them.
//!
//! Per-logger overrides: `NAME.KEY = VALUE` sets one of `drop_limit timeout max_retry_times
//! retry_interval pool_size framing` for the named logger only; without a prefix those keys
//! (and `framing`) apply to every logger. The rlogd keys `token token_file type compression`
//! work the same way for `rlogd://` loggers: handle-wide they apply to every rlogd logger,
//! `NAME.KEY` to one; on a logger that is not rlogd they are an init error. So do the NATS keys
//! (`nats_user nats_password nats_token nats_window nats_ack_timeout`) for `nats://` loggers.
//! `relp_window` works the same way for `relp://` loggers.

use super::clickhouse;
use super::http::{self, Batching, HttpSettings, HTTP_ONLY};
use super::nats::{NatsBase, NatsSettings, NATS_KEYS};
use super::route::{Route, Router};
use super::target::{parse_logger, LoggerSpec, Target};
use super::{Endpoint, Entry, Limits, RlogdSettings};
use crate::encode::framing::Framing;
use crate::encode::{Chain, Encoder, EncoderSpec};
use crate::output::relp::RelpSettings;

/// TLS for a stream output, as configured: checked when parsed, built (roots and keys read)
/// when the logger starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// The name the server's certificate must carry (SNI): `sni_host`, else the host.
    pub server_name: String,
    pub verify: bool,
    /// `ssl_ca`: PEM file of the CA(s) to trust; the system's roots when absent.
    pub ca: Option<String>,
    /// The config line of `ssl_ca`, for its errors (plain configs).
    pub ca_line: Option<usize>,
    /// `ssl_cert` and `ssl_key`: the client certificate chain and its key (PEM files), for
    /// servers that ask for one (mutual TLS).
    pub client: Option<(String, String)>,
}

/// One output of the handle: where it delivers and how it encodes.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    /// `None`: an unnamed (default) logger.
    pub name: Option<String>,
    pub target: Target,
    /// Raw bytes before each record (`socket:...,TEXT`).
    pub prefix: Vec<u8>,
    /// The handle's limits with this logger's overrides. `drop_limit` bounds the encoded bytes
    /// this sink holds; `flush_limit`, `periodic_flush` and `max_buffer_reuse` are the handle's.
    pub limits: Limits,
    pub chain: Chain,
    /// For stream targets.
    pub framing: Framing,
    /// TLS for stream targets (`tls://`, `rlogds://`, or `ssl = true` on the `host`/`path`
    /// logger).
    pub tls: Option<TlsOptions>,
    /// Token, record type and compression, for rlogd targets (unused by the others).
    pub rlogd: RlogdSettings,
    /// Request settings, for http targets (unused by the others).
    pub http: HttpSettings,
    /// Credentials and pacing, for NATS targets (unused by the others).
    pub nats: NatsSettings,
    /// TLS for a `nats://` server that requires it (its INFO says `tls_required`), built only
    /// then; `tls` is for a target that requires it itself.
    pub tls_on_demand: Option<TlsOptions>,
    /// The window, for relp targets (unused by the others).
    pub relp: RelpSettings,
}

impl OutputSpec {
    /// The logger's name for messages: its name, or its target for an unnamed one.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("logger \"{n}\""),
            None => format!("logger {}", self.target_text()),
        }
    }

    /// Whether each record travels with its `log` call's time: rlogd stores it, Loki and OTLP
    /// send it.
    pub fn keeps_time(&self) -> bool {
        use super::http::ApiKind;
        self.target.is_rlogd()
            || (self.target.is_http() && matches!(self.http.api, ApiKind::Loki | ApiKind::Otlp))
    }

    /// The target as a `logger` line names it (`tls://` and `rlogds://` with TLS), an IPv6 host
    /// in brackets, secrets masked.
    pub fn target_text(&self) -> String {
        // A TLS target is kept in its plain form with `tls` set (`tls://` and `ssl = true`
        // alike): shown in its TLS form, which Target's Display writes.
        let shown = match (&self.target, &self.tls) {
            (Target::Tcp { host, port }, Some(_)) => Target::Tls {
                host: host.clone(),
                port: *port,
            },
            (Target::Rlogd { host, port }, Some(_)) => Target::RlogdTls {
                host: host.clone(),
                port: *port,
            },
            (Target::Relp { host, port }, Some(_)) => Target::RelpTls {
                host: host.clone(),
                port: *port,
            },
            (
                Target::Nats {
                    host,
                    port,
                    subject,
                },
                Some(_),
            ) => Target::NatsTls {
                host: host.clone(),
                port: *port,
                subject: subject.clone(),
            },
            (t, _) => return t.to_string(),
        };
        shown.to_string()
    }
}

/// Every output of a handle and the routes between them.
#[derive(Debug)]
pub struct OutputSet {
    pub outputs: Vec<OutputSpec>,
    pub router: Router,
}

impl OutputSet {
    /// Whether the set is one output that takes each message as it was logged: no route, no
    /// encoder, no prefix, no framing. The worker then hands the messages over as they are
    /// (as for a resty config), with no routing nor per-copy accounting.
    pub fn passes_through(&self) -> bool {
        match self.outputs.as_slice() {
            [o] => {
                self.router.sends_all_to(0)
                    && o.chain.is_empty()
                    && o.prefix.is_empty()
                    && o.framing == Framing::None
            }
            _ => false,
        }
    }

    /// A plain config's one output: `endpoint` with the handle's limits, no encoder, no route.
    pub fn single(
        endpoint: Endpoint,
        limits: Limits,
        tls: Option<TlsOptions>,
        rlogd: RlogdSettings,
    ) -> OutputSet {
        let target = match endpoint {
            Endpoint::Tcp { host, port } => Target::Tcp { host, port },
            Endpoint::Udp { host, port } => Target::Udp { host, port },
            Endpoint::Unix { path } => Target::UnixStream { path },
            Endpoint::Rlogd { host, port } => Target::Rlogd { host, port },
        };
        OutputSet {
            outputs: vec![OutputSpec {
                name: None,
                target,
                prefix: Vec::new(),
                limits,
                chain: Chain::default(),
                framing: Framing::None,
                tls,
                rlogd,
                http: HttpSettings::default(),
                nats: NatsSettings::default(),
                tls_on_demand: None,
                relp: RelpSettings::default(),
            }],
            router: Router::new(&[], &[None]).expect("no routes"),
        }
    }

    /// Whether some encoder of some sink needs the `log` call's time, or some sink is rlogd
    /// (which stores each record's time).
    pub fn needs_time(&self) -> bool {
        self.outputs
            .iter()
            .any(|s| s.chain.needs_time() || s.keeps_time())
    }

    /// Whether some encoder needs the time below the second (`${micros}`, `${millis}`,
    /// msgpack `micros`), or some sink is rlogd (it stores microseconds).
    pub fn needs_subsecond(&self) -> bool {
        self.outputs
            .iter()
            .any(|s| s.chain.needs_subsecond() || s.keeps_time())
    }
}

/// The TLS keys of the handle, applied to `tls://` loggers and to the `host`/`path` logger.
#[derive(Debug, Clone, Default)]
pub struct TlsBase {
    pub ssl: bool,
    pub ssl_verify: bool,
    pub sni_host: Option<String>,
    pub ssl_ca: Option<String>,
    /// `ssl_cert` and `ssl_key`, for mutual TLS.
    pub client: Option<(String, String)>,
}

/// The handle-wide rlogd keys (`token`/`token_file`, `type`, `compression`), for rlogd loggers.
#[derive(Debug, Clone, Default)]
pub struct RlogdBase {
    pub settings: RlogdSettings,
    /// The first of these keys in the config (key, line), to name it when no logger is rlogd.
    pub first_key: Option<(String, usize)>,
}

/// Keys a logger may override with `NAME.KEY`, with the http loggers' (`HTTP_ONLY`) and the NATS
/// loggers' (`NATS_KEYS`).
const OVERRIDABLE: &[&str] = &[
    "drop_limit",
    "timeout",
    "max_retry_times",
    "retry_interval",
    "pool_size",
    "framing",
    "token",
    "token_file",
    "type",
    "compression",
    "initial_retry_delay",
    "max_retry_delay",
    "relp_window",
];

/// Overridable keys that only rlogd loggers take (`compression` is rlogd's or http's).
const RLOGD_ONLY: &[&str] = &["token", "token_file", "type"];

/// Whether `key` may follow `NAME.`.
fn overridable(key: &str) -> bool {
    OVERRIDABLE.contains(&key) || HTTP_ONLY.contains(&key) || NATS_KEYS.contains(&key)
}

/// Overridable keys that only relp loggers take.
const RELP_ONLY: &[&str] = &["relp_window"];

/// The uWSGI-style lines of a config, collected while `Config::parse` walks it.
#[derive(Debug, Default)]
pub struct UwsgiKeys {
    loggers: Vec<(LoggerSpec, usize)>,
    encoders: Vec<EncoderSpec>,
    routes: Vec<Route>,
    framing: Option<Framing>,
    /// The handle-wide `framing` line, for http loggers (which also take `json_array`).
    framing_entry: Option<Entry>,
    /// `relp_window` for every relp logger, and its line.
    relp_window: Option<(usize, usize)>,
    /// (logger name, key, entry)
    overrides: Vec<(String, String, Entry)>,
    /// The handle-wide http keys, and the first of them (key, line) to name it when no logger
    /// is http.
    http: HttpSettings,
    http_first: Option<(String, usize)>,
    /// The bare NATS keys.
    nats: NatsBase,
    /// The handle-wide http keys in order, to apply them over a clickhouse logger's defaults.
    http_entries: Vec<(String, Entry)>,
}

impl UwsgiKeys {
    /// Takes `e` if it is one of these keys: `Ok(true)` taken, `Ok(false)` not one of them.
    ///
    /// Errors: a bad value, naming the key and line.
    pub fn take(&mut self, e: &Entry) -> Result<bool, String> {
        let at = |msg: String| format!("{msg} (\"{}\" at line {})", e.key, e.line);
        match e.key.as_str() {
            "logger" => self
                .loggers
                .push((parse_logger(&e.value).map_err(at)?, e.line)),
            "log_encoder" => self.encoders.push(Encoder::parse(&e.value).map_err(at)?),
            "log_route" => self.routes.push(Route::parse(&e.value).map_err(at)?),
            "framing" => {
                self.framing_entry = Some(e.clone());
                if e.value != "json_array" {
                    self.framing = Some(Framing::parse(&e.value).map_err(at)?);
                }
            }
            "compression" if e.value == "none" => {
                // Handle-wide `compression = none` turns gzip off for http loggers, and asks
                // for nothing when there are none (see `Config::parse`).
                self.http.apply("compression", e)?;
                self.http_entries
                    .push(("compression".to_string(), e.clone()));
            }
            k if HTTP_ONLY.contains(&k)
                || (k == "compression" && (e.value == "gzip" || e.value == "lz4")) =>
            {
                self.http.apply(k, e)?;
                self.http_first.get_or_insert((k.to_string(), e.line));
                self.http_entries.push((k.to_string(), e.clone()));
            }
            _ if self.nats.take(e)? => {}
            "relp_window" => self.relp_window = Some((relp_window(e)?, e.line)),
            k => {
                let Some((name, key)) = k.split_once('.') else {
                    return Ok(false);
                };
                if !overridable(key) {
                    return Err(format!(
                        "\"{k}\" at line {}: a logger can override only {}, {}, {} (the other keys apply to the whole handle)",
                        e.line,
                        OVERRIDABLE.join(", "),
                        HTTP_ONLY.join(", "),
                        NATS_KEYS.join(", ")
                    ));
                }
                self.overrides
                    .push((name.to_string(), key.to_string(), e.clone()));
            }
        }
        Ok(true)
    }

    /// Whether any uWSGI-style key was given.
    pub fn is_used(&self) -> bool {
        !self.loggers.is_empty()
            || !self.encoders.is_empty()
            || !self.routes.is_empty()
            || self.framing_entry.is_some()
            || self.relp_window.is_some()
            || !self.overrides.is_empty()
            || self.http_first.is_some()
            || self.nats.first_key.is_some()
    }

    pub fn has_loggers(&self) -> bool {
        !self.loggers.is_empty()
    }

    /// The batching defaults of the handle's `logger` lines: ClickHouse's when one is a
    /// `clickhouse://` logger, else http's when one is an `http(s)://` logger.
    pub fn batching(&self) -> Option<Batching> {
        let any = |f: fn(&Target) -> bool| self.loggers.iter().any(|(l, _)| f(&l.target));
        if any(|t| matches!(t, Target::ClickHouse(_))) {
            Some(clickhouse::BATCHING)
        } else if any(|t| matches!(t, Target::Http { .. })) {
            Some(http::BATCHING)
        } else {
            None
        }
    }

    /// Builds the sinks: the `host`/`port`/`path` logger first (when `base` is given), then the
    /// `logger` lines in order.
    ///
    /// Errors: a duplicate logger name, an override or encoder naming an unknown logger, a route
    /// to an unknown logger, framing on a datagram or rlogd logger, an rlogd key for a logger
    /// that is not rlogd (or handle-wide with no rlogd logger), bad per-logger limits or rlogd
    /// settings, TLS setup.
    pub fn build(
        self,
        base: Option<Endpoint>,
        limits: &Limits,
        tb: &TlsBase,
        rb: &RlogdBase,
    ) -> Result<OutputSet, String> {
        let framing = self.framing.unwrap_or_default();
        let mut sinks = Vec::new();
        if let Some(ep) = base {
            let (target, tls) = match ep {
                Endpoint::Udp { host, port } => {
                    if tb.ssl {
                        return Err("\"ssl\" is not supported with \"sock_type\" \"udp\"".into());
                    }
                    (Target::Udp { host, port }, None)
                }
                Endpoint::Tcp { host, port } => {
                    let tls = tb.ssl.then(|| tls_for(tb, &host)).transpose()?;
                    (Target::Tcp { host, port }, tls)
                }
                Endpoint::Unix { path } => {
                    let tls = if tb.ssl {
                        if tb.sni_host.is_none() && tb.ssl_verify {
                            return Err("\"sni_host\" is required for \"ssl\" over a unix socket while \"ssl_verify\" is on".into());
                        }
                        Some(tls_for(tb, "")?)
                    } else {
                        None
                    };
                    (Target::UnixStream { path }, tls)
                }
                Endpoint::Rlogd { host, port } => {
                    let tls = tb.ssl.then(|| tls_for(tb, &host)).transpose()?;
                    (Target::Rlogd { host, port }, tls)
                }
            };
            sinks.push(OutputSpec {
                name: None,
                target,
                prefix: Vec::new(),
                limits: limits.clone(),
                chain: Chain::for_logger(&self.encoders, None),
                framing,
                tls,
                rlogd: rb.settings.clone(),
                http: HttpSettings::default(),
                nats: NatsSettings::default(),
                tls_on_demand: None,
                relp: RelpSettings::default(),
            });
        } else if tb.ssl {
            return Err("\"ssl\" applies to the \"host\"/\"path\" logger; use tls://HOST:PORT or rlogds://HOST:PORT in \"logger\" lines".into());
        }
        for (spec, line) in self.loggers {
            if let Some(n) = &spec.name {
                if sinks
                    .iter()
                    .any(|s: &OutputSpec| s.name.as_deref() == Some(n))
                {
                    return Err(format!("duplicate logger name \"{n}\" at line {line}"));
                }
            }
            let mut tls_on_demand = None;
            let (target, tls) = match spec.target {
                Target::Tls { host, port } => {
                    let tls = tls_for(tb, &host)?;
                    (Target::Tcp { host, port }, Some(tls))
                }
                Target::RlogdTls { host, port } => {
                    let tls = tls_for(tb, &host)?;
                    (Target::Rlogd { host, port }, Some(tls))
                }
                Target::RelpTls { host, port } => {
                    let tls = tls_for(tb, &host)?;
                    (Target::Relp { host, port }, Some(tls))
                }
                t @ Target::Http { https: true, .. } => {
                    let Target::Http { host, .. } = &t else {
                        unreachable!()
                    };
                    let tls = tls_for(tb, host)?;
                    (t, Some(tls))
                }
                Target::ClickHouse(c) if c.tls => {
                    let tls = tls_for(tb, &c.host)?;
                    (Target::ClickHouse(c), Some(tls))
                }
                Target::NatsTls {
                    host,
                    port,
                    subject,
                } => {
                    let tls = tls_for(tb, &host)?;
                    let t = Target::Nats {
                        host,
                        port,
                        subject,
                    };
                    (t, Some(tls))
                }
                Target::Nats {
                    host,
                    port,
                    subject,
                } => {
                    tls_on_demand = Some(tls_for(tb, &host)?);
                    let t = Target::Nats {
                        host,
                        port,
                        subject,
                    };
                    (t, None)
                }
                t => (t, None),
            };
            let mut http = self.http.clone();
            if let Target::ClickHouse(_) = target {
                // ClickHouse's defaults, then the handle-wide keys over them.
                http = clickhouse::default_settings();
                for (k, e) in &self.http_entries {
                    http.apply(k, e)?;
                }
            } else if target.is_http() {
                if let Some(e) = &self.framing_entry {
                    // The handle-wide framing is the http loggers' too when it is one of theirs.
                    if e.value != "octet" && e.value != "octet-counting" {
                        http.apply("framing", e)?;
                    }
                }
            }
            sinks.push(OutputSpec {
                chain: Chain::for_logger(&self.encoders, spec.name.as_deref()),
                name: spec.name,
                target,
                prefix: spec.prefix,
                limits: limits.clone(),
                framing,
                tls,
                rlogd: rb.settings.clone(),
                http,
                nats: self.nats.settings.clone(),
                tls_on_demand,
                relp: RelpSettings {
                    window: self
                        .relp_window
                        .map_or(crate::output::relp::DEFAULT_WINDOW, |w| w.0),
                },
            });
        }
        if tb.ssl_ca.is_some()
            && sinks
                .iter()
                .all(|s| s.tls.is_none() && s.tls_on_demand.is_none())
        {
            return Err(
                "\"ssl_ca\" needs \"ssl = true\" or a tls://, rlogds://, relps://, https://, clickhouses:// or nats:// logger"
                    .into(),
            );
        }
        if tb.client.is_some() && sinks.iter().all(|s| s.tls.is_none()) {
            return Err(
                "\"ssl_cert\" needs \"ssl = true\" or a tls://, rlogds://, relps://, https:// or clickhouses:// logger"
                    .into(),
            );
        }
        let lz4 = self
            .http_entries
            .iter()
            .find(|(k, e)| k == "compression" && e.value == "lz4");
        if let Some((_, e)) = lz4 {
            if !sinks
                .iter()
                .any(|s| matches!(s.target, Target::ClickHouse(_)))
            {
                return Err(format!(
                    "\"compression = lz4\" at line {} is ClickHouse's own compression: it needs a clickhouse:// logger (http loggers take \"gzip\", rlogd ones \"zlib\")",
                    e.line
                ));
            }
        }
        if let Some((k, line)) = &self.http_first {
            if !sinks.iter().any(|s| s.target.is_http()) {
                return Err(format!(
                    "\"{k}\" at line {line} needs an http:// or https:// logger"
                ));
            }
        }
        if let Some((k, line)) = &self.nats.first_key {
            if !sinks.iter().any(|s| s.target.is_nats()) {
                return Err(format!(
                    "\"{k}\" at line {line} needs a nats://HOST:PORT/SUBJECT logger"
                ));
            }
        }
        if let Some((k, line)) = &rb.first_key {
            if !sinks.iter().any(|s| s.target.is_rlogd()) {
                return Err(format!(
                    "\"{k}\" at line {line} needs \"sock_type = rlogd\" or an rlogd:// logger"
                ));
            }
        }
        if let Some((_, line)) = self.relp_window {
            if !sinks.iter().any(|s| s.target.is_relp()) {
                return Err(format!(
                    "\"relp_window\" at line {line} needs a relp:// logger"
                ));
            }
        }
        for (name, key, e) in &self.overrides {
            let Some(s) = sinks
                .iter_mut()
                .find(|s| s.name.as_deref() == Some(name.as_str()))
            else {
                return Err(format!(
                    "\"{}\" at line {}: no logger is named \"{name}\"",
                    e.key, e.line
                ));
            };
            if RLOGD_ONLY.contains(&key.as_str()) && !s.target.is_rlogd() {
                return Err(format!(
                    "\"{}\" at line {}: {} is not an rlogd logger; \"{key}\" applies to rlogd://HOST:PORT loggers only",
                    e.key,
                    e.line,
                    s.label()
                ));
            }
            if HTTP_ONLY.contains(&key.as_str()) && !s.target.is_http() {
                return Err(format!(
                    "\"{}\" at line {}: {} is not an http logger; \"{key}\" applies to http[s]:// loggers only",
                    e.key,
                    e.line,
                    s.label()
                ));
            }
            if RELP_ONLY.contains(&key.as_str()) && !s.target.is_relp() {
                return Err(format!(
                    "\"{}\" at line {}: {} is not a relp logger; \"{key}\" applies to relp://HOST:PORT loggers only",
                    e.key,
                    e.line,
                    s.label()
                ));
            }
            if NATS_KEYS.contains(&key.as_str()) && !s.target.is_nats() {
                return Err(format!(
                    "\"{}\" at line {}: {} is not a NATS logger; \"{key}\" applies to nats://HOST:PORT/SUBJECT loggers only",
                    e.key,
                    e.line,
                    s.label()
                ));
            }
            if key == "compression" && !s.target.is_http() && !s.target.is_rlogd() {
                return Err(format!(
                    "\"{}\" at line {}: {} is neither an rlogd nor an http logger; \"compression\" applies to those only",
                    e.key,
                    e.line,
                    s.label()
                ));
            }
            if key == "framing" && s.target.is_nats() {
                return Err(format!(
                    "\"{}\" at line {}: framing does not apply to {}: each record is one NATS message",
                    e.key,
                    e.line,
                    s.label()
                ));
            }
            if key == "framing" && s.target.is_relp() {
                return Err(format!(
                    "\"{}\" at line {}: framing does not apply to {}: RELP frames and acknowledges each record itself",
                    e.key,
                    e.line,
                    s.label()
                ));
            }
            if key == "framing" && s.target.is_rlogd() {
                return Err(format!(
                    "\"{}\" at line {}: framing does not apply to {}: rlogd frames and acknowledges each record itself",
                    e.key,
                    e.line,
                    s.label()
                ));
            }
            if key.starts_with("token")
                && self.overrides.iter().any(|(n, k, o)| {
                    n == name && k.starts_with("token") && k != key && o.line < e.line
                })
            {
                return Err(format!(
                    "\"{name}.token\" and \"{name}.token_file\" exclude each other (line {})",
                    e.line
                ));
            }
            apply_override(s, key, e)?;
        }
        for enc in &self.encoders {
            if let Some(l) = &enc.logger {
                if !sinks.iter().any(|s| s.name.as_deref() == Some(l.as_str())) {
                    return Err(format!(
                        "log-encoder \"{}\": no logger is named \"{l}\"",
                        enc.text
                    ));
                }
            }
        }
        for s in &sinks {
            if let Target::ClickHouse(_) = s.target {
                clickhouse::check_settings(&s.http, &s.label())?;
            } else if s.target.is_http() {
                s.http.check(&s.label())?;
            } else if self
                .framing_entry
                .as_ref()
                .is_some_and(|e| e.value == "json_array")
                && !self
                    .overrides
                    .iter()
                    .any(|(n, k, _)| k == "framing" && s.name.as_deref() == Some(n.as_str()))
                && !s.target.is_datagram()
                && !s.target.is_rlogd()
            {
                return Err(format!(
                    "{}: framing = json_array applies to http loggers; {} takes none, newline or octet",
                    s.label(),
                    s.target
                ));
            }
            if s.target.is_datagram() && s.framing != Framing::None {
                if self.framing.is_some()
                    && !self
                        .overrides
                        .iter()
                        .any(|(n, k, _)| k == "framing" && s.name.as_deref() == Some(n.as_str()))
                {
                    // The handle-wide framing is for stream loggers; datagrams keep none.
                    continue;
                }
                return Err(format!(
                    "{}: framing applies to stream loggers (tcp, tls, unix); {} sends one datagram per record",
                    s.label(),
                    s.target
                ));
            }
        }
        for s in &mut sinks {
            // Datagrams carry one record each; rlogd frames its records itself. The handle-wide
            // framing is for the stream loggers.
            if s.target.is_datagram()
                || s.target.is_rlogd()
                || s.target.is_http()
                || s.target.is_nats()
                || s.target.is_relp()
            {
                // http loggers lay out their bodies themselves (`HttpSettings::framing`).
                s.framing = Framing::None;
            } else if self.framing.is_none()
                && !self
                    .overrides
                    .iter()
                    .any(|(n, k, _)| k == "framing" && s.name.as_deref() == Some(n.as_str()))
                && s.chain.has_syslog()
            {
                // RFC 6587 octet counting: what rsyslog, syslog-ng and Logstash expect of
                // syslog over a stream, and safe for messages with newlines in them.
                s.framing = Framing::Octet;
            } else if self.framing.is_none()
                && !self
                    .overrides
                    .iter()
                    .any(|(n, k, _)| k == "framing" && s.name.as_deref() == Some(n.as_str()))
                && !s.chain.is_empty()
                && s.chain.binary_encoder().is_none()
            {
                // A text encoder (json, format, prefix...) on a stream with no framing given:
                // one record a line, or its records would run together into one (`newline`
                // adds nothing to a record that already ends with one, as `nl` makes it).
                s.framing = Framing::Newline;
            }
            if s.framing == Framing::Newline {
                if let Some(enc) = s.chain.binary_encoder() {
                    return Err(format!(
                        "{}: framing = newline cannot delimit {enc} records, which may hold \
                         newline bytes themselves: use framing = octet",
                        s.label()
                    ));
                }
            }
            if s.target.is_nats() {
                s.nats.check().map_err(|e| format!("{}: {e}", s.label()))?;
            }
            if s.limits.drop_limit == 0 {
                return Err(format!(
                    "{}: invalid \"drop_limit\": it must be above 0",
                    s.label()
                ));
            }
        }
        let names: Vec<Option<String>> = sinks.iter().map(|s| s.name.clone()).collect();
        let router = Router::new(&self.routes, &names)?;
        Ok(OutputSet {
            outputs: sinks,
            router,
        })
    }
}

fn tls_for(tb: &TlsBase, host: &str) -> Result<TlsOptions, String> {
    let t = TlsOptions {
        server_name: tb.sni_host.clone().unwrap_or_else(|| host.to_string()),
        verify: tb.ssl_verify,
        ca: tb.ssl_ca.clone(),
        ca_line: None,
        client: tb.client.clone(),
    };
    crate::output::tls::check(&t.server_name, t.verify, t.ca.as_deref())?;
    if let Some((cert, key)) = &t.client {
        crate::output::tls::check_client(cert, key)?;
    }
    Ok(t)
}

/// `relp_window = N`: 1 to 1000000 transactions in flight.
fn relp_window(e: &Entry) -> Result<usize, String> {
    match e.value.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid \"{}\" at line {}: expected 1..1000000 transactions, got \"{}\"",
            e.key, e.line, e.value
        )),
    }
}

fn apply_override(s: &mut OutputSpec, key: &str, e: &Entry) -> Result<(), String> {
    let l = &mut s.limits;
    match key {
        "drop_limit" => l.drop_limit = super::whole(e)? as usize,
        "timeout" => l.timeout = super::timeout(e)?,
        "max_retry_times" => {
            l.max_retry_times = u32::try_from(super::whole(e)?)
                .map_err(|_| format!("invalid \"{}\" at line {}", e.key, e.line))?
        }
        "retry_interval" => l.retry_interval = super::millis(e)?,
        "pool_size" => l.pool_size = super::whole(e)? as usize,
        "framing" if s.target.is_http() => s.http.apply(key, e)?,
        "framing" => {
            s.framing = Framing::parse(&e.value)
                .map_err(|m| format!("{m} (\"{}\" at line {})", e.key, e.line))?
        }
        "token" | "token_file" => s.rlogd.token = super::token_value(e)?,
        "type" => s.rlogd.record_type = super::record_type(e)?,
        "compression" if s.target.is_http() => s.http.apply(key, e)?,
        "compression" => s.rlogd.compress = super::compression(e)?,
        "initial_retry_delay" => l.retry_interval = super::http::retry_delay(e)?,
        "max_retry_delay" => l.max_retry_delay = Some(super::http::retry_delay(e)?),
        k if HTTP_ONLY.contains(&k) => s.http.apply(k, e)?,
        k if NATS_KEYS.contains(&k) => s.nats.apply(k, e)?,
        "relp_window" => s.relp.window = relp_window(e)?,
        _ => unreachable!("checked against OVERRIDABLE"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::target::Target;
    use crate::config::Config;
    use crate::encode::framing::Framing;

    fn set(text: &str) -> std::sync::Arc<super::OutputSet> {
        Config::parse(text).unwrap().outputs
    }

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err()
    }

    #[test]
    fn loggers_encoders_routes() {
        let s = set("logger = socket:127.0.0.1:1717\nlogger = errors tcp://127.0.0.1:9\n\
                     log-encoder = json {\"t\":${unix},\"m\":\"${msg}\"}\nlog-encoder = gzip:errors\n\
                     log-route = errors ERROR\nframing = octet\nerrors.timeout = 250\ndrop_limit = 5000");
        assert_eq!(s.outputs.len(), 2);
        assert!(s.needs_time());
        assert_eq!(s.outputs[1].name.as_deref(), Some("errors"));
        assert_eq!(s.outputs[1].limits.timeout.as_millis(), 250);
        assert_eq!(s.outputs[0].limits.timeout.as_millis(), 1000);
        assert_eq!(s.outputs[1].limits.drop_limit, 5000);
        assert_eq!(s.outputs[0].framing, Framing::None);
        assert_eq!(s.outputs[1].framing, Framing::Octet);
        let mut out = Vec::new();
        s.router.route(b"an ERROR", &mut out);
        assert_eq!(out, vec![1]);
        s.router.route(b"fine", &mut out);
        assert_eq!(out, vec![0]);
        let c = Config::parse("logger = socket:127.0.0.1:1717\nlog-encoder = prefix x").unwrap();
        assert!(!c.needs_time);
    }

    #[test]
    fn host_port_is_a_default_logger_too() {
        let s = set("host = 127.0.0.1\nport = 9\nlog-encoder = nl\nlogger = socket:/tmp/x.sock");
        assert_eq!(s.outputs.len(), 2);
        assert!(s.outputs[0].name.is_none() && s.outputs[1].name.is_none());
        let mut out = Vec::new();
        s.router.route(b"m", &mut out);
        assert_eq!(out, vec![0, 1]);
    }

    #[test]
    fn errors() {
        assert!(err("logger = socket:127.0.0.1:1\nlog-route = ghost x")
            .contains("unknown logger \"ghost\""));
        assert!(err("logger = socket:127.0.0.1:1\nlog-encoder = gzip:ghost")
            .contains("no logger is named \"ghost\""));
        assert!(
            err("logger = a socket:127.0.0.1:1\nlogger = a socket:127.0.0.1:2")
                .contains("duplicate logger name")
        );
        assert!(
            err("logger = a socket:127.0.0.1:1\na.flush_limit = 3").contains("can override only")
        );
        assert!(err("logger = a socket:127.0.0.1:1\nb.timeout = 3")
            .contains("no logger is named \"b\""));
        assert!(err("logger = a socket:127.0.0.1:1\na.framing = octet")
            .contains("framing applies to stream"));
        assert!(
            err("logger = a socket:127.0.0.1:1\na.timeout = 0").contains("invalid \"a.timeout\"")
        );
        assert!(err("log-encoder = gzip").starts_with("no logging server configured"));
        assert!(err("logger = file:/x").contains("unsupported target"));
        assert!(err("logger = socket:127.0.0.1:1\nlog-encoder = json ${x}").contains("line 2"));
        assert!(err("logger = socket:127.0.0.1:1\nframing = lines").contains("\"framing\""));
        assert!(err("logger = socket:127.0.0.1:1\nssl_ca = /x.pem")
            .contains("needs \"ssl = true\" or a tls://"));
        assert!(err("logger = socket:127.0.0.1:1\nssl = true").contains("use tls://"));
        // handle-wide framing is for streams: datagram loggers keep one record per datagram
        assert!(Config::parse("logger = socket:127.0.0.1:1\nframing = octet").is_ok());
    }

    #[test]
    fn binary_records_are_refused_newline_framing() {
        for enc in ["gzip", "compress", "msgpack msg"] {
            let e = err(&format!(
                "logger = tcp://127.0.0.1:9\nlog-encoder = {enc}\nlog-encoder = nl\nframing = newline"
            ));
            let name = enc.split(' ').next().unwrap();
            assert!(
                e.contains(&format!("framing = newline cannot delimit {name} records"))
                    && e.ends_with("use framing = octet"),
                "{e}"
            );
        }
        // Per logger: only the logger whose chain is binary, and only on a stream.
        let e = err("logger = z tcp://127.0.0.1:9\nlogger = t tcp://127.0.0.1:8\nlog-route = z .\n\
                     log-route = t .\nlog-encoder = gzip:z\nz.framing = newline\nt.framing = newline");
        assert!(e.starts_with("logger \"z\": framing = newline"), "{e}");
        set(
            "logger = z tcp://127.0.0.1:9\nlogger = t tcp://127.0.0.1:8\nlog-route = z .\n\
             log-route = t .\nlog-encoder = gzip:z\nz.framing = octet\nt.framing = newline",
        );
        set("logger = socket:127.0.0.1:9\nlog-encoder = gzip\nframing = newline");
    }

    #[test]
    fn rlogd_loggers_and_their_keys() {
        let s = set(
            "host = 127.0.0.1\nport = 5170\nsock_type = rlogd\ntype = 3\ntoken = t0\n\
                     logger = rlogd://127.0.0.1:5171\nlogger = audit rlogd://127.0.0.1:5172\n\
                     audit.type = 9\naudit.compression = zlib\naudit.token = t1\n\
                     logger = plain tcp://127.0.0.1:9\nframing = octet\nlog-encoder = prefix x\n\
                     log-route = audit ^A\nlog-route = plain ^P",
        );
        assert_eq!(s.outputs.len(), 4);
        assert!(s.needs_time() && s.needs_subsecond());
        let (base, unnamed, audit, plain) =
            (&s.outputs[0], &s.outputs[1], &s.outputs[2], &s.outputs[3]);
        assert!(base.target.is_rlogd() && unnamed.target.is_rlogd() && audit.target.is_rlogd());
        assert_eq!(base.label(), "logger rlogd://127.0.0.1:5170");
        assert_eq!(
            (base.rlogd.record_type, &base.rlogd.token[..]),
            (3, &b"t0"[..])
        );
        assert_eq!(unnamed.rlogd.record_type, 3);
        assert!(!unnamed.rlogd.compress);
        assert_eq!(
            (
                audit.rlogd.record_type,
                audit.rlogd.compress,
                &audit.rlogd.token[..]
            ),
            (9, true, &b"t1"[..])
        );
        // handle-wide framing is for streams: rlogd frames its records itself
        assert_eq!(audit.framing, Framing::None);
        assert_eq!(plain.framing, Framing::Octet);
        let c = Config::parse("logger = rlogd://127.0.0.1:1").unwrap();
        assert!(c.needs_time && !c.coarse_time);
    }

    #[test]
    fn rlogd_errors() {
        assert!(err("logger = rlogd://127.0.0.1").contains("HOST:PORT"));
        assert!(err("logger = a tcp://127.0.0.1:1\na.type = 3")
            .contains("\"a.type\" at line 2: logger \"a\" is not an rlogd logger"));
        assert!(err("logger = a udp://127.0.0.1:1\na.token = x")
            .contains("applies to rlogd://HOST:PORT loggers only"));
        assert_eq!(
            err("logger = tcp://127.0.0.1:1\ntype = 3"),
            "\"type\" at line 2 needs \"sock_type = rlogd\" or an rlogd:// logger"
        );
        assert!(err("logger = a rlogd://127.0.0.1:1\na.framing = octet")
            .contains("\"a.framing\" at line 2: framing does not apply to logger \"a\""));
        assert!(err("logger = a rlogd://127.0.0.1:1\na.type = 65536")
            .starts_with("invalid \"a.type\" at line 2"));
        assert!(err("logger = a rlogd://127.0.0.1:1\na.compression = lz4")
            .starts_with("invalid \"a.compression\" at line 2"));
        assert!(
            err("logger = a rlogd://127.0.0.1:1\na.token = x\na.token_file = /nonexistent")
                .contains("exclude each other")
        );
        assert!(
            err("logger = a rlogd://127.0.0.1:1\na.token_file = /nonexistent")
                .contains("cannot read \"a.token_file\"")
        );
        assert!(
            err("path = /x\nsock_type = rlogd\nlogger = rlogd://127.0.0.1:1")
                .contains("needs \"host\"/\"port\"")
        );
        assert!(err("logger = rlogd://127.0.0.1:1\nssl = true").contains("rlogds://"));
        assert!(
            err("logger = rlogds://127.0.0.1:1\nssl_ca = /nonexistent/ca.pem").contains("ca.pem")
        );
    }

    #[test]
    fn nats_loggers_and_their_keys() {
        let s = set("logger = nats://127.0.0.1:4222/logs\nlogger = audit nats+tls://n.example:4222/audit\n\
                     logger = plain tcp://127.0.0.1:9\nnats_window = 64\nnats_user = u\nnats_password = p\n\
                     audit.nats_ack_timeout = 250\naudit.nats_window = 8\nframing = octet\n\
                     log-route = audit ^A\nlog-route = plain ^P");
        let (base, audit, plain) = (&s.outputs[0], &s.outputs[1], &s.outputs[2]);
        assert!(base.target.is_nats() && audit.target.is_nats() && !plain.target.is_nats());
        assert_eq!(base.nats.window, 64);
        assert_eq!(base.nats.ack_timeout.as_millis(), 5000);
        assert_eq!(base.nats.user.as_deref(), Some("u"));
        assert_eq!(
            (audit.nats.window, audit.nats.ack_timeout.as_millis()),
            (8, 250)
        );
        assert!(base.tls.is_none() && base.tls_on_demand.is_some());
        assert!(audit.tls.is_some());
        assert_eq!(audit.label(), "logger \"audit\"");
        assert_eq!(base.label(), "logger nats://127.0.0.1:4222/logs");
        assert_eq!(audit.target_text(), "nats+tls://n.example:4222/audit");
        assert_eq!(base.framing, Framing::None);
        assert_eq!(plain.framing, Framing::Octet);
        assert!(!s.needs_time());
    }

    #[test]
    fn nats_errors() {
        assert_eq!(
            err("logger = tcp://127.0.0.1:1\nnats_window = 3"),
            "\"nats_window\" at line 2 needs a nats://HOST:PORT/SUBJECT logger"
        );
        assert!(err("logger = a tcp://127.0.0.1:1\na.nats_token = x").contains(
            "\"a.nats_token\" at line 2: logger \"a\" is not a NATS logger; \"nats_token\" applies to nats://HOST:PORT/SUBJECT loggers only"
        ));
        assert!(err("logger = a nats://127.0.0.1:1/x\na.framing = octet")
            .contains("framing does not apply to logger \"a\""));
        assert!(err("logger = a nats://127.0.0.1:1/x\nnats_window = 0")
            .starts_with("invalid \"nats_window\" at line 2"));
        assert!(
            err("logger = a nats://127.0.0.1:1/x\na.nats_ack_timeout = 0")
                .starts_with("invalid \"a.nats_ack_timeout\" at line 2")
        );
        assert!(err("logger = a nats://127.0.0.1:1/x\nnats_user = u")
            .contains("logger \"a\": \"nats_user\" needs \"nats_password\""));
        assert!(err(
            "logger = a nats://127.0.0.1:1/x\nnats_token = t\na.nats_user = u\na.nats_password = p"
        )
        .contains("exclude each other"));
        assert!(err("logger = nats://127.0.0.1:1/a.*").contains("wildcard"));
    }

    #[test]
    fn syslog_makes_octet_counting_the_stream_default() {
        let s = set("logger = tcp://127.0.0.1:9\nlogger = u udp://127.0.0.1:9\nlogger = n tcp://127.0.0.1:8\n\
                     log-route = u .\nlog-route = n .\nlog-encoder = syslog:u\nlog-encoder = syslog\n\
                     n.framing = newline");
        assert_eq!(s.outputs[0].framing, Framing::Octet);
        assert_eq!(s.outputs[1].framing, Framing::None);
        assert_eq!(s.outputs[2].framing, Framing::Newline);
        assert!(s.needs_time() && s.needs_subsecond());
        let s = set("logger = tcp://127.0.0.1:9\nlog-encoder = syslog rfc3164");
        assert_eq!(s.outputs[0].framing, Framing::Octet);
        assert!(s.needs_time() && !s.needs_subsecond());
        assert!(
            err("logger = tcp://127.0.0.1:9\nlog-encoder = syslog severity=loud")
                .contains("line 2")
        );
    }

    #[test]
    fn relp_loggers_and_their_window() {
        let s = set(
            "logger = relp://127.0.0.1:2514\nlogger = a relp://127.0.0.1:2515\n\
                     log-route = a .\nrelp_window = 16\na.relp_window = 4\nframing = octet",
        );
        assert_eq!(s.outputs[0].relp.window, 16);
        assert_eq!(s.outputs[1].relp.window, 4);
        assert_eq!(s.outputs[0].framing, Framing::None);
        assert_eq!(
            set("logger = relp://127.0.0.1:2514").outputs[0].relp.window,
            128
        );
        assert_eq!(
            err("logger = tcp://127.0.0.1:1\nrelp_window = 3"),
            "\"relp_window\" at line 2 needs a relp:// logger"
        );
        assert!(err("logger = a tcp://127.0.0.1:1\na.relp_window = 3")
            .contains("\"a.relp_window\" at line 2: logger \"a\" is not a relp logger"));
        assert!(err("logger = a relp://127.0.0.1:1\na.framing = octet")
            .contains("framing does not apply to logger \"a\": RELP"));
        assert!(err("logger = relp://127.0.0.1:1\nrelp_window = 0")
            .starts_with("invalid \"relp_window\" at line 2"));
    }

    #[test]
    fn relps_is_relp_with_tls() {
        let s = set("logger = a relps://127.0.0.1:6514\nlog-route = a .\na.relp_window = 8");
        let o = &s.outputs[0];
        assert_eq!(
            o.target,
            Target::Relp {
                host: "127.0.0.1".into(),
                port: 6514
            }
        );
        assert!(o.tls.is_some());
        assert_eq!(o.relp.window, 8);
        assert_eq!(o.target_text(), "relps://127.0.0.1:6514");
        assert!(set("logger = relp://127.0.0.1:2514").outputs[0]
            .tls
            .is_none());
    }

    #[test]
    fn only_a_lone_output_that_takes_messages_as_they_are_passes_through() {
        for (text, plain) in [
            ("logger = http://127.0.0.1:9/in", true),
            ("logger = tcp://127.0.0.1:9", true),
            ("logger = clickhouse://127.0.0.1:8123/logs.t", true),
            (
                "logger = tcp://127.0.0.1:9\nlog-encoder = json {\"m\":\"${msg}\"}",
                false,
            ),
            ("logger = tcp://127.0.0.1:9\nframing = newline", false),
            ("logger = socket:127.0.0.1:9,tag", false),
            ("logger = a tcp://127.0.0.1:9\nlog-route = a .", false),
            (
                "logger = tcp://127.0.0.1:9\nlogger = tcp://127.0.0.1:10",
                false,
            ),
        ] {
            assert_eq!(set(text).passes_through(), plain, "{text}");
        }
    }
}
