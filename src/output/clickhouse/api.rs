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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::Buffer;
    use crate::config::http::BodyCompression;
    use crate::output::http::body::{Body, Limits};

    fn batch(rows: &[&[u8]]) -> Buffer {
        let mut b = Buffer::default();
        for r in rows {
            b.push(r, None);
        }
        b
    }

    #[test]
    fn each_record_is_one_line_of_the_body() {
        let b = batch(&[b"{\"a\":1}", b"{\"a\":2}\n", b"  {\"a\":3}  "]);
        let mut out = Vec::new();
        let recs = Records {
            batch: &b,
            range: 0..3,
            producer: 7,
        };
        ClickHouseApi.encode(&recs, &mut out).unwrap();
        assert_eq!(out, b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
    }

    #[test]
    fn a_record_that_is_not_one_row_is_refused_unsent() {
        for (bad, why) in [
            (&b""[..], "empty"),
            (b"plain text", "one JSON object"),
            (b"[1,2]", "one JSON object"),
            (b"{\"a\":1}\n{\"a\":2}", "line break"),
        ] {
            let b = batch(&[b"{\"ok\":1}", bad]);
            let recs = Records {
                batch: &b,
                range: 0..2,
                producer: 7,
            };
            let e = ClickHouseApi.encode(&recs, &mut Vec::new()).unwrap_err();
            assert_eq!(e.index, 1);
            assert!(e.why.contains(why), "{}", e.why);
        }
    }

    #[test]
    fn the_same_records_make_the_same_compressed_body() {
        // What lets a Replicated table drop a resent insert: same rows, same bytes.
        let rows: Vec<Vec<u8>> = (0..5000)
            .map(|i| format!("{{\"id\":{i},\"msg\":\"row {i}\"}}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = rows.iter().map(|r| &r[..]).collect();
        let b = batch(&refs);
        for (compression, magic) in [
            (BodyCompression::Gzip, &b"\x1f\x8b"[..]),
            (BodyCompression::Lz4, &b"\x82"[..]),
        ] {
            let limits = Limits {
                max_records: 3000,
                max_bytes: 1 << 20,
                compression,
                exact: false,
            };
            let (mut one, mut two) = (Body::default(), Body::default());
            let end1 = one.build(&mut ClickHouseApi, &b, 0, 7, &limits).unwrap();
            let end2 = two.build(&mut ClickHouseApi, &b, 0, 7, &limits).unwrap();
            assert_eq!(end1, 3000);
            assert_eq!(end1, end2);
            assert_eq!(one.bytes(), two.bytes());
            let at = if compression == BodyCompression::Lz4 {
                16
            } else {
                0
            };
            assert_eq!(&one.bytes()[at..at + magic.len()], magic);
        }
    }
}
