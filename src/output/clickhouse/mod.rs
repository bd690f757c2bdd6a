//! The `clickhouse[s]://[USER:PASS@]HOST[:PORT]/DB.TABLE` output: each record one row of
//! `INSERT INTO DB.TABLE FORMAT JSONEachRow`, over ClickHouse's HTTP interface. It is the http
//! output (batches, gzip, the same records resent after a failure, bisection of a refused
//! request, `max_retry_time`) with ClickHouse's request ([`api`]), its reading of answers by
//! exception code ([`answer`]); its target syntax and defaults are config's
//! (`config::clickhouse`). docs/CLICKHOUSE.md.

pub mod answer;
pub mod api;

use std::io;
use std::time::Duration;

use crate::config::clickhouse::ClickHouseTarget;
use crate::config::http::HttpSettings;
use crate::output::http::{self, Http};
use crate::output::tls::TlsSettings;

/// Connects to `t` (over TLS with `tls`, for `clickhouses://`) for inserts laid out and read by
/// [`api::ClickHouseApi`].
pub fn open(
    t: &ClickHouseTarget,
    settings: &HttpSettings,
    tls: Option<&TlsSettings>,
    producer: u64,
    timeout: Duration,
    state: http::Shared,
) -> io::Result<Http> {
    let userinfo = t.user.as_ref().map(|(u, p)| format!("{u}:{p}"));
    Http::connect(
        &t.host,
        t.port,
        t.tls,
        &t.request_path(settings.compression),
        userinfo.as_deref(),
        settings,
        Box::new(api::ClickHouseApi),
        tls,
        producer,
        timeout,
        state,
    )
}
