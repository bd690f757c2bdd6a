//! ClickHouse's HTTP interface as a request builder of the http output: each record is one
//! `JSONEachRow` row of the body (the http output batches, gzips, resends the same records
//! after a failure, and bisects a refused request); the answer is read by ClickHouse's
//! exception code ([`super::answer`]).

use super::answer::{classify, Answer};
use crate::output::http::api::{trim_json, Api, Records, Unencodable};
use crate::output::http::client::Response;
use crate::output::http::status::{retry_after, Classes, Verdict, SLOW_RETRY};

/// The `JSONEachRow` body of an `INSERT` and the reading of its answer.
pub struct ClickHouseApi;

/// Why `record` cannot be one row, if it cannot: ClickHouse would take an empty record as no
/// row and a record with a line break inside as two, and the counts would lie.
fn not_one_row(record: &[u8]) -> Option<&'static str> {
    if record.is_empty() {
        Some("an empty record is no row")
    } else if !(record.starts_with(b"{") && record.ends_with(b"}")) {
        Some("a row must be one JSON object, {...} (use a json encoder)")
    } else if record.contains(&b'\n') {
        Some("a row must be on one line: the record has a line break inside")
    } else {
        None
    }
}

impl Api for ClickHouseApi {
    fn content_type(&self) -> &str {
        // ClickHouse reads the format from the query; this names the body for proxies.
        "application/x-ndjson"
    }

    fn encode(&mut self, recs: &Records<'_>, out: &mut Vec<u8>) -> Result<(), Unencodable> {
        for i in recs.range.clone() {
            let row = trim_json(recs.batch.record(i).bytes);
            if let Some(why) = not_one_row(row) {
                return Err(Unencodable {
                    index: i,
                    why: format!("clickhouse: {why}"),
                });
            }
            out.extend_from_slice(row);
            out.push(b'\n');
        }
        Ok(())
    }

    fn classify(&self, resp: &Response, _n: usize, _classes: &Classes) -> Verdict {
        let code = resp.header("x-clickhouse-exception-code");
        match classify(resp.status, code, &resp.body) {
            Answer::Stored => Verdict::Delivered,
            Answer::Transient(why) => Verdict::Retry {
                why,
                after: retry_after(resp),
            },
            // The http output halves the request until the row is alone, then refuses it
            // (the driver dead-letters it and sends the rest).
            Answer::BadRow { why, .. } if resp.status == 413 => Verdict::TooLarge { why },
            Answer::BadRow { why, .. } => Verdict::Refused { why },
            Answer::Refused(why) => Verdict::Retry {
                why: format!(
                    "{why}: the rows are kept; retried every {}s meanwhile",
                    SLOW_RETRY.as_secs()
                ),
                after: Some(retry_after(resp).unwrap_or_default().max(SLOW_RETRY)),
            },
        }
    }
}
