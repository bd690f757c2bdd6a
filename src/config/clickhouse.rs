//! `clickhouse[s]://[USER:PASS@]HOST[:PORT]/DB.TABLE` loggers: where the rows go and the `INSERT`
//! that puts them there; their http settings' defaults and the keys they refuse; the handle's
//! batching when a config has one. The output itself is `output::clickhouse`.

use std::time::Duration;

use super::http::{ApiKind, Batching, BodyCompression, BodyFraming, HttpSettings, Method};
use super::percent::percent_decode;

/// ClickHouse's HTTP port when the target names none.
pub const DEFAULT_PORT: u16 = 8123;

/// ClickHouse's HTTPS port (`https_port`) when a `clickhouses://` target names none.
pub const DEFAULT_TLS_PORT: u16 = 8443;

/// A parsed `clickhouse://` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseTarget {
    /// `USER:PASS` (percent-decoded), sent as HTTP basic authentication.
    pub user: Option<(String, String)>,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub table: String,
    /// `clickhouses://`: over TLS (ClickHouse's `https_port`, ClickHouse Cloud).
    pub tls: bool,
}

/// Whether `name` is a plain ClickHouse identifier (what the target accepts for DB and TABLE):
/// letters, digits and `_`, not starting with a digit.
fn identifier(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Percent-encodes a URL query value (everything but RFC 3986's unreserved characters).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl ClickHouseTarget {
    /// Parses what follows `clickhouse://` (`clickhouses://` with `tls`).
    ///
    /// Errors: no host, a bad port, no `/DB.TABLE`, a database or table name that is not a
    /// plain identifier, a bad `%`-escape in the credentials.
    pub fn parse(rest: &str, tls: bool) -> Result<ClickHouseTarget, String> {
        let scheme = if tls { "clickhouses" } else { "clickhouse" };
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("expected {scheme}://[USER:PASS@]HOST[:PORT]/DB.TABLE"))?;
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((cred, hp)) => {
                let (u, p) = cred
                    .split_once(':')
                    .ok_or("credentials must be USER:PASS@")?;
                (Some((percent_decode(u)?, percent_decode(p)?)), hp)
            }
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| format!("bad port \"{p}\""))?,
            ),
            _ => (hostport, if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("no host".into());
        }
        let (database, table) = path
            .split_once('.')
            .ok_or("expected /DB.TABLE after the host")?;
        for (what, name) in [("database", database), ("table", table)] {
            if !identifier(name) {
                return Err(format!(
                    "{what} name \"{name}\" must be letters, digits and _ (not starting with a digit)"
                ));
            }
        }
        Ok(ClickHouseTarget {
            user,
            host: host.to_string(),
            port,
            database: database.to_string(),
            table: table.to_string(),
            tls,
        })
    }

    /// The statement each request runs; its rows are the request's body.
    pub fn insert(&self) -> String {
        format!(
            "INSERT INTO `{}`.`{}` FORMAT JSONEachRow",
            self.database, self.table
        )
    }

    /// The request target: `/?query=` and the URL-encoded `INSERT`.
    /// The request's path and query; with `lz4` bodies ClickHouse is told to decompress them.
    pub fn request_path(&self, compression: BodyCompression) -> String {
        let decompress = if compression == BodyCompression::Lz4 {
            "&decompress=1"
        } else {
            ""
        };
        format!("/?query={}{decompress}", url_encode(&self.insert()))
    }
}

impl std::fmt::Display for ClickHouseTarget {
    /// The target without its password (for messages and labels).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://",
            if self.tls {
                "clickhouses"
            } else {
                "clickhouse"
            }
        )?;
        if let Some((u, _)) = &self.user {
            write!(f, "{u}:***@")?;
        }
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{host}:{}/{}.{}", self.port, self.database, self.table)
    }
}

/// Rows per insert at most, by default: ClickHouse wants few large inserts (each makes a part;
/// many small parts end in `TOO_MANY_PARTS`).
pub const MAX_BATCH_ROWS: usize = 100_000;

/// Bytes per insert at most (after gzip), by default: the rows bind first.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// A clickhouse logger's http settings before the config's keys: ClickHouse's own LZ4 blocks
/// (what clickhouse-client sends: cheap to make and to unpack, where gzip cost rlog and the
/// server most of their time on a fast link; BENCHMARKS.md), up to
/// [`MAX_BATCH_ROWS`] rows and [`MAX_BATCH_BYTES`] per insert. Each insert costs the server a
/// part whatever its size: a million rows took it half the CPU in inserts of 100 000 rows that
/// they took in inserts of 10 000 (BENCHMARKS.md).
pub fn default_settings() -> HttpSettings {
    HttpSettings {
        compression: BodyCompression::Lz4,
        max_batch_size: MAX_BATCH_ROWS,
        max_batch_bytes: MAX_BATCH_BYTES,
        ..HttpSettings::default()
    }
}

/// ClickHouse's batching for a config with a clickhouse logger: a flush at 2 MiB held (about
/// 10 000 rows of 200 bytes), or every second; 64 MiB held in memory before `log` drops, room
/// for three inserts of 100 000 rows of 200 bytes while ClickHouse is slow or down. Inserts
/// grow towards [`MAX_BATCH_ROWS`] when rows come faster than one insert a round takes.
pub const BATCHING: Batching = Batching {
    flush_limit: 2 << 20,
    drop_limit: 64 << 20,
    period: Duration::from_secs(1),
};

/// Checks that no key was given that a clickhouse logger would ignore (the request's method,
/// media type, framing and API are ClickHouse's).
///
/// Errors: the key, for logger `label`.
pub fn check_settings(s: &HttpSettings, label: &str) -> Result<(), String> {
    let plain = HttpSettings::default();
    let ignored = [
        ("http_api", s.api != ApiKind::Plain),
        ("framing", s.framing != BodyFraming::Newline),
        ("method", s.method != Method::Post),
        ("content_type", s.content_type.is_some()),
        ("loki_labels", !s.loki_labels.is_empty()),
        ("es_action", s.es_action != plain.es_action),
    ];
    match ignored.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(format!(
            "{label}: \"{key}\" does not apply to a clickhouse:// logger (it sends INSERT ... FORMAT JSONEachRow); set it as NAME.{key} for the http logger it is meant for"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_credentials_host_port_database_and_table() {
        let t =
            ClickHouseTarget::parse("writer:s%40cret@127.0.0.1:8124/logs.events", false).unwrap();
        assert_eq!(t.user, Some(("writer".into(), "s@cret".into())));
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8124));
        assert_eq!((t.database.as_str(), t.table.as_str()), ("logs", "events"));
        assert_eq!(
            t.request_path(BodyCompression::None),
            "/?query=INSERT%20INTO%20%60logs%60.%60events%60%20FORMAT%20JSONEachRow"
        );
        assert!(t
            .request_path(BodyCompression::Lz4)
            .ends_with("FORMAT%20JSONEachRow&decompress=1"));
        assert_eq!(
            t.to_string(),
            "clickhouse://writer:***@127.0.0.1:8124/logs.events"
        );
        let t = ClickHouseTarget::parse("ch.example/db.t", true).unwrap();
        assert_eq!((t.port, t.tls), (DEFAULT_TLS_PORT, true));
        assert_eq!(t.to_string(), "clickhouses://ch.example:8443/db.t");
        let t = ClickHouseTarget::parse("ch.example/db.t", false).unwrap();
        assert_eq!((t.port, t.user), (DEFAULT_PORT, None));
        let t = ClickHouseTarget::parse("[::1]:9/db.t", false).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
    }

    #[test]
    fn refuses_what_would_not_be_one_table() {
        for bad in [
            "127.0.0.1:8123",
            "127.0.0.1:8123/",
            "127.0.0.1:8123/logs",
            "127.0.0.1:8123/logs.ev-ents",
            "127.0.0.1:8123/logs.a.b",
            "127.0.0.1:8123/1db.t",
            "127.0.0.1:8123/logs.t`;DROP",
            "127.0.0.1:0/db.t",
            "127.0.0.1:x/db.t",
            ":8123/db.t",
            "user@127.0.0.1/db.t",
            "u:%zz@127.0.0.1/db.t",
        ] {
            assert!(ClickHouseTarget::parse(bad, false).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod config_tests {
    use super::BodyCompression;
    use crate::config::target::Target;
    use crate::config::Config;

    fn outputs(text: &str) -> Result<Vec<crate::config::OutputSpec>, String> {
        Config::parse(text).map(|c| c.outputs.outputs.clone())
    }

    #[test]
    fn a_drop_limit_set_below_the_batching_flush_limit_is_accepted() {
        // Only drop_limit set, below the 256 KiB (http) or 2 MiB (clickhouse) flush_limit the
        // config never asked for: valid before http loggers batched by default, valid now.
        for (logger, drop) in [
            ("http://127.0.0.1:9/in", 100_000usize),
            ("clickhouse://127.0.0.1:8123/logs.t", 1 << 20),
            ("http://127.0.0.1:9/in", 1),
        ] {
            let c = Config::parse(&format!("logger = {logger}\ndrop_limit = {drop}"))
                .unwrap_or_else(|e| panic!("{logger}, drop_limit {drop}: {e}"));
            assert_eq!(c.limits.drop_limit, drop);
            assert!(c.limits.flush_limit < drop, "{:?}", c.limits);
        }
        // Both set and contradictory: still the resty error.
        assert_eq!(
            Config::parse("logger = http://127.0.0.1:9/in\nflush_limit = 10\ndrop_limit = 10")
                .unwrap_err(),
            "\"flush_limit\" should be < \"drop_limit\""
        );
    }

    #[test]
    fn an_http_logger_batches_by_default_and_clickhouse_s_batching_wins() {
        use crate::config::http::BATCHING as HTTP;
        let c = Config::parse("logger = http://127.0.0.1:9/in").unwrap();
        assert_eq!(
            (
                c.limits.flush_limit,
                c.limits.drop_limit,
                c.limits.periodic_flush
            ),
            (HTTP.flush_limit, HTTP.drop_limit, Some(HTTP.period))
        );
        // What the config sets stays; a drop_limit left alone stays above a raised flush_limit.
        let c = Config::parse(
            "logger = http://127.0.0.1:9/in
flush_limit = 33554432
periodic_flush = 0",
        )
        .unwrap();
        assert_eq!(c.limits.flush_limit, 32 << 20);
        assert_eq!(c.limits.drop_limit, (32 << 20) + 1);
        assert_eq!(c.limits.periodic_flush, None);
        let c = Config::parse(
            "logger = http://127.0.0.1:9/in
logger = clickhouse://127.0.0.1:8123/logs.t",
        )
        .unwrap();
        assert_eq!(c.limits.flush_limit, super::BATCHING.flush_limit);
        // resty's keys alone keep resty's limits.
        let c = Config::parse(
            "host = 127.0.0.1
port = 9",
        )
        .unwrap();
        assert_eq!((c.limits.flush_limit, c.limits.drop_limit), (4096, 1 << 20));
    }

    #[test]
    fn a_clickhouse_logger_gets_clickhouse_s_defaults_and_the_http_keys() {
        let o = outputs("logger = clickhouse://u:p@127.0.0.1:8123/logs.t").unwrap();
        assert!(matches!(&o[0].target, Target::ClickHouse(t) if t.table == "t"));
        assert_eq!(o[0].http.compression, BodyCompression::Lz4);
        assert_eq!(o[0].http.max_batch_size, super::MAX_BATCH_ROWS);
        let c = Config::parse("logger = clickhouse://127.0.0.1:8123/logs.t").unwrap();
        assert_eq!(c.limits.flush_limit, super::BATCHING.flush_limit);
        assert_eq!(c.limits.drop_limit, super::BATCHING.drop_limit);
        assert_eq!(c.limits.periodic_flush, Some(super::BATCHING.period));
        let c = Config::parse(
            "logger = clickhouse://127.0.0.1:8123/logs.t\nflush_limit = 1000\n\
             max_coalescing_delay = 0.2",
        )
        .unwrap();
        assert_eq!(c.limits.flush_limit, 1000);
        assert_eq!(c.limits.drop_limit, super::BATCHING.drop_limit);
        assert_eq!(
            c.limits.periodic_flush,
            Some(std::time::Duration::from_millis(200))
        );
        let c = Config::parse("logger = tcp://127.0.0.1:9\n").unwrap();
        assert_eq!(c.limits.flush_limit, 4096, "other configs keep resty's");
        assert_eq!(
            o[0].label(),
            "logger clickhouse://u:***@127.0.0.1:8123/logs.t"
        );
        let o = outputs(
            "logger = ch clickhouse://127.0.0.1:8123/logs.t\nlog-route = ch .\n\
             max_batch_size = 500\nch.compression = none\nch.max_retry_time = 60",
        )
        .unwrap();
        assert_eq!(o[0].http.max_batch_size, 500);
        assert_eq!(o[0].http.compression, BodyCompression::None);
        // Handle-wide, for an unnamed logger too; and harmless where nothing compresses.
        let unnamed =
            outputs("logger = clickhouse://127.0.0.1:8123/logs.t\ncompression = none").unwrap();
        assert_eq!(unnamed[0].http.compression, BodyCompression::None);
        // lz4 is ClickHouse's: handle-wide or per logger for clickhouse loggers, refused for
        // an http one.
        let lz4 =
            outputs("logger = clickhouse://127.0.0.1:8123/logs.t\ncompression = gzip\n").unwrap();
        assert_eq!(lz4[0].http.compression, BodyCompression::Gzip);
        let lz4 = outputs(
            "logger = ch clickhouse://127.0.0.1:8123/logs.t\nlog-route = ch .\n\
             compression = gzip\nch.compression = lz4",
        )
        .unwrap();
        assert_eq!(lz4[0].http.compression, BodyCompression::Lz4);
        let e = outputs("logger = http://127.0.0.1:9/in\ncompression = lz4").unwrap_err();
        assert!(e.contains("is ClickHouse's own compression"), "{e}");
        // Per logger too: an http logger beside a clickhouse one.
        let e = outputs(
            "logger = clickhouse://127.0.0.1:8123/logs.t\nlogger = web http://127.0.0.1:9/in\n\
             log-route = web x\nweb.compression = lz4",
        )
        .unwrap_err();
        assert!(
            e.contains("compression = lz4 is ClickHouse's own compression"),
            "{e}"
        );
        assert_eq!(
            outputs("logger = tcp://127.0.0.1:9\ncompression = none")
                .unwrap()
                .len(),
            1
        );
        let c = Config::parse("host = 127.0.0.1\nport = 9\nsock_type = rlogd\ncompression = none");
        assert!(!c.unwrap().outputs.outputs[0].rlogd.compress);
        assert_eq!(
            o[0].http.max_retry_time,
            Some(std::time::Duration::from_secs(60))
        );
    }

    #[test]
    fn keys_a_clickhouse_logger_would_ignore_are_init_errors() {
        let e = outputs(
            "logger = ch clickhouse://127.0.0.1:8123/logs.t\nlog-route = ch .\nch.method = PUT",
        )
        .unwrap_err();
        assert!(
            e.contains("\"method\" does not apply to a clickhouse:// logger"),
            "{e}"
        );
        let e = outputs("logger = clickhouse://127.0.0.1:8123/logs\n").unwrap_err();
        assert!(e.contains("expected /DB.TABLE"), "{e}");
        assert!(e.contains("clickhouse://127.0.0.1:8123/logs"), "{e}");
    }
}
