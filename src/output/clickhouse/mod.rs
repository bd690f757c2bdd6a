//! The `clickhouse://[USER:PASS@]HOST[:PORT]/DB.TABLE` output: each record one row of
//! `INSERT INTO DB.TABLE FORMAT JSONEachRow`, over ClickHouse's HTTP interface. It is the http
//! output (batches, gzip, the same records resent after a failure, bisection of a refused
//! request, `max_retry_time`) with ClickHouse's request ([`api`]), its reading of answers by
//! exception code ([`answer`]) and its defaults ([`default_settings`]). docs/CLICKHOUSE.md.

pub mod answer;
pub mod api;
pub mod target;

use std::io;
use std::time::Duration;

use crate::config::http::{ApiKind, BodyFraming, HttpSettings, Method};
use crate::config::Limits;
use crate::output::http::{self, Http};
use target::ClickHouseTarget;

/// Rows per insert at most, by default: ClickHouse wants few large inserts (each makes a part;
/// many small parts end in `TOO_MANY_PARTS`).
pub const MAX_BATCH_ROWS: usize = 10_000;

/// A clickhouse logger's http settings before the config's keys: gzip on, 10 000 rows per
/// insert.
pub fn default_settings() -> HttpSettings {
    HttpSettings {
        gzip: true,
        max_batch_size: MAX_BATCH_ROWS,
        ..HttpSettings::default()
    }
}

/// Bytes held that start a flush, in a config with a clickhouse logger (resty's 4 096 would
/// make an insert of some 20 rows): about 10 000 rows of 200 bytes.
pub const FLUSH_LIMIT: usize = 2 << 20;
/// Bytes held in memory before `log` drops, in a config with a clickhouse logger: above
/// [`FLUSH_LIMIT`], room for some 8 inserts while ClickHouse is slow or down.
pub const DROP_LIMIT: usize = 16 << 20;
/// The longest a row waits for its insert when few are logged.
pub const FLUSH_PERIOD: Duration = Duration::from_secs(1);

/// ClickHouse's batching for a config with a clickhouse logger: a flush at [`FLUSH_LIMIT`]
/// bytes or every second, `drop_limit` [`DROP_LIMIT`]; each only where the config (keys `seen`)
/// does not set it. The handle's limits: its other loggers flush alike.
pub fn batching_defaults(limits: &mut Limits, seen: &[&str]) {
    if !seen.contains(&"flush_limit") {
        limits.flush_limit = FLUSH_LIMIT;
    }
    if !seen.contains(&"drop_limit") {
        limits.drop_limit = DROP_LIMIT.max(limits.flush_limit.saturating_add(1));
    }
    if !seen.contains(&"periodic_flush") && !seen.contains(&"max_coalescing_delay") {
        limits.periodic_flush = Some(FLUSH_PERIOD);
    }
}

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

/// Connects to `t` for inserts laid out and read by [`api::ClickHouseApi`].
pub fn open(
    t: &ClickHouseTarget,
    settings: &HttpSettings,
    producer: u64,
    timeout: Duration,
    state: http::Shared,
) -> io::Result<Http> {
    let userinfo = t.user.as_ref().map(|(u, p)| format!("{u}:{p}"));
    Http::connect(
        &t.host,
        t.port,
        false,
        &t.request_path(),
        userinfo.as_deref(),
        settings,
        Box::new(api::ClickHouseApi),
        None,
        producer,
        timeout,
        state,
    )
}

#[cfg(test)]
mod tests {
    use crate::config::target::Target;
    use crate::config::Config;

    fn outputs(text: &str) -> Result<Vec<crate::config::OutputSpec>, String> {
        Config::parse(text).map(|c| c.outputs.outputs.clone())
    }

    #[test]
    fn a_clickhouse_logger_gets_clickhouse_s_defaults_and_the_http_keys() {
        let o = outputs("logger = clickhouse://u:p@127.0.0.1:8123/logs.t").unwrap();
        assert!(matches!(&o[0].target, Target::ClickHouse(t) if t.table == "t"));
        assert!(o[0].http.gzip);
        assert_eq!(o[0].http.max_batch_size, super::MAX_BATCH_ROWS);
        let c = Config::parse("logger = clickhouse://127.0.0.1:8123/logs.t").unwrap();
        assert_eq!(c.limits.flush_limit, super::FLUSH_LIMIT);
        assert_eq!(c.limits.drop_limit, super::DROP_LIMIT);
        assert_eq!(c.limits.periodic_flush, Some(super::FLUSH_PERIOD));
        let c = Config::parse(
            "logger = clickhouse://127.0.0.1:8123/logs.t\nflush_limit = 1000\n\
             max_coalescing_delay = 0.2",
        )
        .unwrap();
        assert_eq!(c.limits.flush_limit, 1000);
        assert_eq!(c.limits.drop_limit, super::DROP_LIMIT);
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
        assert!(!o[0].http.gzip);
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
