//! The keys of `http://` and `https://` loggers, under Kong http-log's names (`method`,
//! `content_type`, `keepalive`, `header`, `max_batch_size`, `max_batch_bytes`,
//! `max_retry_time`, ...) and rlog's own (`framing`, `compression`, `retry_statuses`,
//! `http_api`, `loki_labels`, `es_action`). Each applies handle-wide to every http logger, or as
//! `NAME.key` to one; on a config without an http logger it is an init error.

use std::time::Duration;

use super::{Entry, Limits};

/// The request method (Kong http-log's `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Patch,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

/// How records are laid out in a request body (`framing` on an http logger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// NDJSON: each record then `\n` (unless it ends with one). The default.
    Newline,
    /// `[r1,r2,...]`, Kong http-log's batch body: each record must be a JSON value.
    JsonArray,
    /// Records back to back.
    None,
}

/// Which API the requests speak (`http_api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKind {
    /// The body is the records, framed; the status says it all.
    Plain,
    /// Elasticsearch `_bulk`.
    EsBulk,
    /// Loki's push API (JSON).
    Loki,
    /// OTLP/HTTP logs (JSON).
    Otlp,
}

/// The `_bulk` action line (`es_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EsAction {
    /// `create`: a record already stored (a resend) answers 409, counted delivered.
    Create,
    /// `index`: a resend overwrites the same `_id`.
    Index,
}

/// The handle's flush and drop limits when a logger sends batches (an http or clickhouse
/// one) and the config does not set them: resty's 4 096-byte `flush_limit` would make a request
/// of some 20 lines, each a request head, a response and a wake of the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    pub flush_limit: usize,
    pub drop_limit: usize,
    /// `periodic_flush`: the longest a record waits for its batch when few are logged.
    pub period: Duration,
}

impl Batching {
    /// Sets each limit the config (keys `seen`) does not set. The limits are the handle's: its
    /// other loggers flush alike.
    pub fn apply(&self, limits: &mut Limits, seen: &[&str]) {
        if !seen.contains(&"flush_limit") {
            limits.flush_limit = if seen.contains(&"drop_limit") {
                // A drop_limit the config sets below this flush_limit: a flush at half of it,
                // not an error about a key the config never set.
                self.flush_limit.min(limits.drop_limit / 2)
            } else {
                self.flush_limit
            };
        }
        if !seen.contains(&"drop_limit") {
            limits.drop_limit = self.drop_limit.max(limits.flush_limit.saturating_add(1));
        }
        if !seen.contains(&"periodic_flush") && !seen.contains(&"max_coalescing_delay") {
            limits.periodic_flush = Some(self.period);
        }
    }
}

/// An http(s) logger's batching: a request per 256 KiB held (some 1 300 lines of 200 bytes)
/// or per second (Kong's `max_coalescing_delay` default), and 16 MiB held in memory before
/// `log` drops (Kong's queue holds 10 000 entries by default; a `spool` takes what does not
/// fit while the endpoint is down).
pub const BATCHING: Batching = Batching {
    flush_limit: 256 << 10,
    drop_limit: 16 << 20,
    period: Duration::from_secs(1),
};

/// How an http logger compresses its request bodies (`compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCompression {
    None,
    /// `Content-Encoding: gzip`.
    Gzip,
    /// ClickHouse's own compressed blocks (LZ4 with a CityHash128 checksum each, as
    /// clickhouse-client sends them), which its HTTP interface takes with `decompress=1`:
    /// clickhouse loggers only.
    Lz4,
}

/// One http logger's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub method: Method,
    /// `content_type`; `None`: the framing's or the API's own.
    pub content_type: Option<String>,
    /// How long a kept connection may stay idle before it is closed (Kong's `keepalive`, ms).
    pub keepalive: Duration,
    /// `header = Name: value`, in order.
    pub headers: Vec<(String, String)>,
    /// Records per request at most.
    pub max_batch_size: usize,
    /// Body bytes per request at most (after compression); a single larger record goes alone.
    pub max_batch_bytes: usize,
    /// How long one batch may be retried before it is given up (dead-lettered); `None`: keep
    /// trying.
    pub max_retry_time: Option<Duration>,
    /// `compression`: how request bodies are compressed.
    pub compression: BodyCompression,
    /// `retry_statuses`: the statuses retried instead of the default list.
    pub retry_statuses: Option<Vec<u16>>,
    pub framing: BodyFraming,
    pub api: ApiKind,
    /// `loki_labels = k=v,k=v`: the stream labels of Loki pushes.
    pub loki_labels: Vec<(String, String)>,
    pub es_action: EsAction,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            method: Method::Post,
            content_type: None,
            keepalive: Duration::from_secs(60),
            headers: Vec::new(),
            max_batch_size: 10_000,
            max_batch_bytes: 1 << 20,
            max_retry_time: None,
            compression: BodyCompression::None,
            retry_statuses: None,
            framing: BodyFraming::Newline,
            api: ApiKind::Plain,
            loki_labels: Vec::new(),
            es_action: EsAction::Create,
        }
    }
}

/// Keys only http loggers take (handle-wide or `NAME.key`). `compression` and `framing` are
/// shared with other kinds and handled where they are.
pub const HTTP_ONLY: &[&str] = &[
    "method",
    "content_type",
    "keepalive",
    "header",
    "max_batch_size",
    "max_batch_bytes",
    "max_retry_time",
    "retry_statuses",
    "http_api",
    "loki_labels",
    "es_action",
];

fn bad(e: &Entry, expected: &str) -> String {
    format!(
        "invalid \"{}\" at line {}: expected {expected}, got \"{}\"",
        e.key, e.line, e.value
    )
}

fn seconds(e: &Entry) -> Result<f64, String> {
    match e.value.parse::<f64>() {
        Ok(x) if (0.0..1e9).contains(&x) => Ok(x),
        _ => Err(bad(e, "a number of seconds >= 0")),
    }
}

/// A header name: an HTTP token.
fn token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Headers rlog writes itself: setting them would make the request malformed.
const OWN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "content-encoding",
    "x-rlog-batch",
];

impl HttpSettings {
    /// Applies key `key` (`method`, `max_batch_size`, ...; without a logger's prefix) from
    /// entry `e`.
    ///
    /// Errors: a bad value, naming the key and the line.
    pub fn apply(&mut self, key: &str, e: &Entry) -> Result<(), String> {
        let v = e.value.as_str();
        match key {
            "method" => {
                self.method = match v.to_ascii_uppercase().as_str() {
                    "POST" => Method::Post,
                    "PUT" => Method::Put,
                    "PATCH" => Method::Patch,
                    _ => return Err(bad(e, "POST, PUT or PATCH")),
                }
            }
            "content_type" => {
                if v.is_empty() || v.bytes().any(|b| b.is_ascii_control()) {
                    return Err(bad(e, "a media type such as application/json"));
                }
                self.content_type = Some(v.to_string());
            }
            "keepalive" => {
                let ms = v
                    .parse::<u64>()
                    .map_err(|_| bad(e, "a whole number of ms >= 0"))?;
                self.keepalive = Duration::from_millis(ms);
            }
            "header" => {
                let (name, value) = v.split_once(':').ok_or_else(|| bad(e, "\"Name: value\""))?;
                let (name, value) = (name.trim(), value.trim());
                if !token(name) {
                    return Err(bad(e, "\"Name: value\" with a valid header name"));
                }
                if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                    return Err(bad(e, "a header value without control characters"));
                }
                if OWN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    return Err(format!(
                        "invalid \"{}\" at line {}: rlog writes the {name} header itself",
                        e.key, e.line
                    ));
                }
                self.headers.push((name.to_string(), value.to_string()));
            }
            "max_batch_size" => {
                self.max_batch_size = match v.parse::<usize>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(bad(e, "a whole number of records >= 1")),
                }
            }
            "max_batch_bytes" => {
                self.max_batch_bytes = match v.parse::<usize>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(bad(e, "a whole number of bytes >= 1")),
                }
            }
            "max_retry_time" => {
                let s = seconds(e)?;
                self.max_retry_time = (s > 0.0).then(|| Duration::from_secs_f64(s));
            }
            "compression" => {
                self.compression = match v {
                    "gzip" => BodyCompression::Gzip,
                    "lz4" => BodyCompression::Lz4,
                    "none" => BodyCompression::None,
                    _ => return Err(bad(
                        e,
                        "\"gzip\" or \"none\" for an http logger (\"lz4\" for a clickhouse one)",
                    )),
                }
            }
            "framing" => {
                self.framing = match v {
                    "newline" => BodyFraming::Newline,
                    "json_array" => BodyFraming::JsonArray,
                    "none" => BodyFraming::None,
                    _ => {
                        return Err(bad(
                            e,
                            "\"newline\", \"json_array\" or \"none\" for an http logger",
                        ))
                    }
                }
            }
            "retry_statuses" => {
                let mut list = Vec::new();
                for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    match s.parse::<u16>() {
                        Ok(n) if (100..=599).contains(&n) => list.push(n),
                        _ => return Err(bad(e, "a comma-separated list of statuses 100-599")),
                    }
                }
                self.retry_statuses = Some(list);
            }
            "http_api" => {
                self.api = match v {
                    "none" | "plain" => ApiKind::Plain,
                    "es_bulk" => ApiKind::EsBulk,
                    "loki" => ApiKind::Loki,
                    "otlp" => ApiKind::Otlp,
                    _ => return Err(bad(e, "\"es_bulk\", \"loki\", \"otlp\" or \"none\"")),
                }
            }
            "loki_labels" => {
                let mut labels = Vec::new();
                for kv in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let (k, val) = kv
                        .split_once('=')
                        .ok_or_else(|| bad(e, "labels as name=value,name=value"))?;
                    let k = k.trim();
                    let ok = !k.is_empty()
                        && !k.starts_with(|c: char| c.is_ascii_digit())
                        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if !ok {
                        return Err(bad(e, "label names of letters, digits and _"));
                    }
                    labels.push((k.to_string(), val.trim().to_string()));
                }
                if labels.is_empty() {
                    return Err(bad(e, "at least one label name=value"));
                }
                self.loki_labels = labels;
            }
            "es_action" => {
                self.es_action = match v {
                    "create" => EsAction::Create,
                    "index" => EsAction::Index,
                    _ => return Err(bad(e, "\"create\" or \"index\"")),
                }
            }
            _ => unreachable!("only http keys reach HttpSettings::apply"),
        }
        Ok(())
    }

    /// Checks the settings together, for logger `label`.
    ///
    /// Errors: `json_array` or `none` framing with an API that lays out its own body;
    /// `compression = lz4`, which is ClickHouse's. For plain http loggers (a clickhouse
    /// logger's settings are `clickhouse::check_settings`').
    pub fn check(&self, label: &str) -> Result<(), String> {
        if self.api != ApiKind::Plain && self.framing == BodyFraming::JsonArray {
            return Err(format!(
                "{label}: framing = json_array does not apply with http_api: the API lays out its own body"
            ));
        }
        if self.compression == BodyCompression::Lz4 {
            return Err(format!(
                "{label}: compression = lz4 is ClickHouse's own compression, for clickhouse loggers; an http logger takes \"gzip\" or \"none\""
            ));
        }
        if self.api == ApiKind::Loki && self.loki_labels.is_empty() {
            return Err(format!(
                "{label}: http_api = loki needs \"loki_labels\" (Loki refuses a stream without labels), e.g. loki_labels = job=nginx"
            ));
        }
        Ok(())
    }
}

/// `max_coalescing_delay`: seconds a record may wait for a batch to fill (Kong's name for
/// rlog's `periodic_flush`).
///
/// Errors: a value that is not a number of seconds from 0.001.
pub fn coalescing_delay(e: &Entry) -> Result<Duration, String> {
    let s = seconds(e)?;
    if s < 0.001 {
        return Err(bad(e, "a number of seconds >= 0.001"));
    }
    Ok(Duration::from_secs_f64(s))
}

/// `initial_retry_delay` and `max_retry_delay`: Kong's seconds.
///
/// Errors: below 1 ms (a tight retry loop), or not a number.
pub fn retry_delay(e: &Entry) -> Result<Duration, String> {
    let s = seconds(e)?;
    if s < 0.001 {
        return Err(bad(e, "a number of seconds >= 0.001"));
    }
    Ok(Duration::from_secs_f64(s))
}
