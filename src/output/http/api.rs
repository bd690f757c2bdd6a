//! Request builders: how an http output lays out the records of a request and reads what the
//! server answered. [`Plain`] sends the records framed (`framing = newline | json_array |
//! none`) and goes by the status alone; the APIs of `http_api` (Elasticsearch `_bulk`, Loki,
//! OTLP) and ClickHouse's HTTP interface implement [`Api`] too.

use std::ops::Range;

use super::client::Response;
use super::status::{Classes, Verdict};
use crate::buffer::Buffer;
use crate::config::http::BodyFraming;

/// Records `range` of `batch`, as one request carries them. Record `i` of the batch has
/// sequence `batch.first_seq + i`; with the output's `producer` that names it for good within
/// the process ([`Records::id`]).
pub struct Records<'a> {
    pub batch: &'a Buffer,
    pub range: Range<usize>,
    pub producer: u64,
}

impl Records<'_> {
    /// Record `i`'s (an index into the batch) stable id ([`crate::output::record_id`]). A
    /// resend of the record, a replay from the spool included, carries the same id, so a server
    /// that keys on it stores it once.
    pub fn id(&self, i: usize) -> String {
        crate::output::record_id(self.producer, self.batch.first_seq + i as u64)
    }

    /// Record `i`'s time in ns since the epoch: the `log` call's when it was taken, else now.
    pub fn time_ns(&self, i: usize, now_ns: i128) -> i128 {
        match self.batch.record(i).time_us {
            Some(us) => us as i128 * 1000,
            None => now_ns,
        }
    }
}

/// The current time in ns since the epoch.
pub fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// A record that cannot be laid out in a body (a `json_array` record that is not JSON): it is
/// refused for good (dead-lettered); `index` is its index in the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unencodable {
    pub index: usize,
    pub why: String,
}

/// One API an http output speaks.
pub trait Api: Send {
    /// The body's media type, when `content_type` does not say.
    fn content_type(&self) -> &str;

    /// Appends the (uncompressed) body carrying `recs` to `out`.
    ///
    /// Errors: the first record that cannot be carried; nothing is sent then, the records
    /// before it go in a request of their own.
    fn encode(&mut self, recs: &Records<'_>, out: &mut Vec<u8>) -> Result<(), Unencodable>;

    /// What `resp` says about the `n` records of the request it answers. The default goes by
    /// the status (`classes`); an API whose server answers record by record, or within a 200,
    /// reads the body.
    fn classify(&self, resp: &Response, n: usize, classes: &Classes) -> Verdict {
        let _ = n;
        classes.classify(resp)
    }
}

/// The records themselves, framed (`framing`).
pub struct Plain {
    pub framing: BodyFraming,
}

impl Api for Plain {
    fn content_type(&self) -> &str {
        match self.framing {
            BodyFraming::Newline => "application/x-ndjson",
            BodyFraming::JsonArray => "application/json",
            BodyFraming::None => "application/octet-stream",
        }
    }

    fn encode(&mut self, recs: &Records<'_>, out: &mut Vec<u8>) -> Result<(), Unencodable> {
        match self.framing {
            BodyFraming::Newline => {
                for i in recs.range.clone() {
                    let r = recs.batch.record(i).bytes;
                    out.extend_from_slice(r);
                    if !r.ends_with(b"\n") {
                        out.push(b'\n');
                    }
                }
            }
            BodyFraming::None => {
                for i in recs.range.clone() {
                    out.extend_from_slice(recs.batch.record(i).bytes);
                }
            }
            BodyFraming::JsonArray => {
                out.push(b'[');
                for i in recs.range.clone() {
                    let r = trim_json(recs.batch.record(i).bytes);
                    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(r) {
                        return Err(Unencodable {
                            index: i,
                            why: format!(
                                "framing = json_array: the record is not a JSON value ({e})"
                            ),
                        });
                    }
                    if i > recs.range.start {
                        out.push(b',');
                    }
                    out.extend_from_slice(r);
                }
                out.push(b']');
            }
        }
        Ok(())
    }
}

/// A record without the whitespace (a trailing newline) around its JSON.
pub fn trim_json(r: &[u8]) -> &[u8] {
    r.trim_ascii()
}
