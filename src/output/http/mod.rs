//! The `http://` and `https://` output (SPEC §7): the driver's pending records go out as
//! batched HTTP/1.1 requests on a kept connection, each bounded by `max_batch_size` records and
//! `max_batch_bytes` bytes (after `compression = gzip`), each carrying `X-Rlog-Batch`, an id
//! that a resend of the same records carries again. The answer decides ([`status`]): delivered;
//! retried (honouring `Retry-After`); split (413); bisected until the refused record is found
//! (other 4xx), which the driver then dead-letters; or, from an API that answers record by
//! record, settled record by record ([`api`]). A batch retried longer than `max_retry_time` is
//! given up, record by record, each counted and dead-lettered with the reason.

pub mod api;
pub mod body;
pub mod client;
pub mod es_bulk;
pub mod loki;
pub mod otlp;
pub mod response;
pub mod status;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::tls::TlsSettings;
use super::{Failure, Output, SendError};
use crate::buffer::Buffer;
use crate::config::http::{ApiKind, BodyCompression, HttpSettings};
use crate::config::target::Target;
use crate::config::OutputSpec;
use api::Api;
use client::Conn;
use status::{Classes, Item, Verdict};

/// What outlives one connection of an output: when the oldest held record was first tried,
/// and the last request that failed (so its resend carries the same records and id).
#[derive(Debug, Default)]
pub struct RetryState {
    /// (sequence of the first record held, when a send of it was first tried).
    head: Option<(u64, Instant)>,
    /// (first sequence, records) of the last request that did not go through.
    last_failed: Option<(u64, usize)>,
    /// Records with a sequence below this were given up (`max_retry_time`).
    expired_below: u64,
    /// Records refused one by one since the endpoint last accepted one (see
    /// [`REFUSED_IN_A_ROW`]).
    refused_in_a_row: u32,
    /// The first record of the last request the endpoint accepted (its sequence, bytes and
    /// time): what a probe sends again to tell a refused record from a refusing endpoint.
    last_accepted: Option<(u64, Vec<u8>, Option<i64>)>,
    /// Refusals are not taken for the records' fault until then (no record was ever accepted
    /// to probe with; see [`REFUSED_IN_A_ROW`]).
    doubt_until: Option<Instant>,
    /// Records per request while requests time out: a slow endpoint (or link) that cannot
    /// take a whole batch within `timeout` gets smaller ones, halved at each timeout and
    /// doubled back at each delivery.
    timeout_cap: Option<usize>,
}

/// Records refused alone in a row, with none accepted in between, after which the output asks
/// whether it is the records or the endpoint: an endpoint that refuses everything (a wrong
/// path behind a proxy that answers 400, a client certificate nginx refuses with a 400 page)
/// would otherwise have bisection dead-letter every record. The question is a probe: the last
/// record the endpoint accepted, sent again alone (with `X-Rlog-Probe: 1`, and its own
/// `X-Rlog-Batch`, so a receiver that deduplicates keeps it once). Accepted: the records are
/// bad, bisection goes on. Refused: the endpoint refuses everything, and the records are kept
/// and retried slowly, with an error that says so. When the endpoint never accepted a record
/// there is nothing to ask with: the output pauses as slowly, then takes up to this many more
/// refusals for the records' fault, and so on.
pub const REFUSED_IN_A_ROW: u32 = 16;

/// How far a closing logger's deadline must be for the next body to be built while a request
/// is answered (building one takes milliseconds; its answer must not be read late for it).
const AHEAD_MARGIN: Duration = Duration::from_secs(1);

/// Shared between the driver and each connection it opens.
pub type Shared = Arc<Mutex<RetryState>>;

/// An http output: the connection, and how requests are built.
pub struct Http {
    conn: Conn,
    settings: HttpSettings,
    api: Box<dyn Api>,
    classes: Classes,
    /// The request line's target and the `Host` header's value.
    path: String,
    host_header: String,
    /// `Authorization: Basic ...` from the URL's userinfo.
    auth: Option<String>,
    producer: u64,
    state: Shared,
    notice: Option<String>,
    body: body::Body,
    /// Where the next body is built while the server answers the request in flight.
    spare: body::Body,
    /// The body built ahead in `spare`, if any (see [`Ahead`]).
    ahead: Option<Ahead>,
    head: Vec<u8>,
}

/// A request body built while the previous request was being answered: records `from..` of
/// the batch being sent under `limits`, and what building them gave. It is used only for a
/// request of the same `send` that starts at `from` under the same `limits` — building is a
/// function of those, so it is the body that request would build itself.
struct Ahead {
    from: usize,
    limits: body::Limits,
    built: Result<usize, body::BuildError>,
}

/// The builder for `settings.api`.
pub fn api_for(settings: &HttpSettings) -> Box<dyn Api> {
    match settings.api {
        ApiKind::Plain => Box::new(api::Plain {
            framing: settings.framing,
        }),
        ApiKind::EsBulk => Box::new(es_bulk::EsBulk {
            action: settings.es_action,
        }),
        ApiKind::Loki => Box::new(loki::Loki {
            labels: settings.loki_labels.clone(),
        }),
        ApiKind::Otlp => Box::new(otlp::Otlp),
    }
}

impl Http {
    /// Connects to `spec`'s http target (TLS with `tls`), bounded by `timeout`.
    pub fn open(
        spec: &OutputSpec,
        tls: Option<&TlsSettings>,
        producer: u64,
        timeout: Duration,
        state: Shared,
    ) -> io::Result<Http> {
        let Target::Http {
            host,
            port,
            path,
            userinfo,
            https,
        } = &spec.target
        else {
            return Err(io::Error::other("not an http target"));
        };
        Http::connect(
            host,
            *port,
            *https,
            path,
            userinfo.as_deref(),
            &spec.http,
            api_for(&spec.http),
            tls,
            producer,
            timeout,
            state,
        )
    }

    /// Connects to `host:port` for requests to `path` built by `api` (the ClickHouse output
    /// and others that speak their own API through this one use this).
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        host: &str,
        port: u16,
        https: bool,
        path: &str,
        userinfo: Option<&str>,
        settings: &HttpSettings,
        api: Box<dyn Api>,
        tls: Option<&TlsSettings>,
        producer: u64,
        timeout: Duration,
        state: Shared,
    ) -> io::Result<Http> {
        let conn = Conn::open(host, port, tls, timeout)?;
        let default_port = if https { 443 } else { 80 };
        let h = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let host_header = if port == default_port {
            h
        } else {
            format!("{h}:{port}")
        };
        Ok(Http {
            conn,
            classes: Classes {
                retry: settings.retry_statuses.clone(),
            },
            settings: settings.clone(),
            api,
            path: path.to_string(),
            host_header,
            auth: userinfo.map(|u| format!("Basic {}", body::base64(u.as_bytes()))),
            producer,
            state,
            notice: None,
            body: body::Body::default(),
            spare: body::Body::default(),
            ahead: None,
            head: Vec::new(),
        })
    }

    /// The request head for a body of `len` bytes carrying batch `id`.
    fn build_head(&mut self, len: usize, id: &str) {
        use std::io::Write as _;
        let s = &self.settings;
        let has = |name: &str| s.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let h = &mut self.head;
        h.clear();
        let _ = write!(
            h,
            "{} {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {len}\r\nX-Rlog-Batch: {id}\r\n",
            s.method.as_str(),
            self.path,
            self.host_header
        );
        if !has("content-type") {
            let ct = s
                .content_type
                .as_deref()
                .unwrap_or_else(|| self.api.content_type());
            let _ = write!(h, "Content-Type: {ct}\r\n");
        }
        if !has("user-agent") {
            h.extend_from_slice(b"User-Agent: rlog/0.1\r\n");
        }
        if let (Some(a), false) = (&self.auth, has("authorization")) {
            let _ = write!(h, "Authorization: {a}\r\n");
        }
        if s.compression == BodyCompression::Gzip {
            h.extend_from_slice(b"Content-Encoding: gzip\r\n");
        }
        for (n, v) in &s.headers {
            let _ = write!(h, "{n}: {v}\r\n");
        }
        h.extend_from_slice(b"\r\n");
    }

    /// The `max_retry_time` check: whether the records at the head of `batch` have been tried
    /// for too long; if so, how to give up the first of them.
    fn expired(&mut self, batch: &Buffer, now: Instant) -> Option<SendError> {
        let max = self.settings.max_retry_time?;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let first = batch.first_seq;
        if first < st.expired_below {
            return Some(SendError::reject(
                0,
                format!(
                    "given up after max_retry_time = {}s with the rest of its batch",
                    max.as_secs_f64()
                ),
            ));
        }
        match st.head {
            Some((seq, since)) if seq == first => {
                if now.duration_since(since) < max {
                    return None;
                }
                // The whole request that kept failing goes, one record at a time.
                let n = match st.last_failed {
                    Some((seq, n)) if seq == first => n,
                    _ => 1,
                };
                st.expired_below = first + n as u64;
                st.head = None;
                Some(SendError::reject(
                    0,
                    format!(
                        "not delivered within max_retry_time = {}s (tried since {:.1}s ago)",
                        max.as_secs_f64(),
                        now.duration_since(since).as_secs_f64()
                    ),
                ))
            }
            _ => {
                st.head = Some((first, now));
                None
            }
        }
    }

    fn note_failed(&self, first_seq: u64, n: usize) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.last_failed = Some((first_seq, n));
    }

    /// The number of records the first request should carry when it resends what failed last
    /// time (so that it carries the same id), if it does.
    fn resend_count(&self, first_seq: u64, available: usize) -> Option<usize> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match st.last_failed {
            Some((seq, n)) if seq == first_seq && n <= available => Some(n),
            _ => None,
        }
    }

    /// The bounds of the request that starts at record `done` of `batch` while requests
    /// carry at most `cap` records (a split or a bisection; `usize::MAX` otherwise).
    fn limits(&self, batch: &Buffer, done: usize, cap: usize) -> body::Limits {
        // Smaller requests while they time out (see `RetryState::timeout_cap`).
        let slow_cap = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .timeout_cap
            .unwrap_or(usize::MAX);
        let want = if cap == usize::MAX {
            self.resend_count(batch.first_seq + done as u64, batch.len() - done)
                .filter(|&n| n <= slow_cap)
        } else {
            None
        };
        body::Limits {
            max_records: want.unwrap_or(cap.min(slow_cap).min(self.settings.max_batch_size)),
            max_bytes: self.settings.max_batch_bytes,
            compression: self.settings.compression,
            exact: want.is_some(),
        }
    }

    fn retry(&self, done: usize, why: String, after: Option<Duration>) -> SendError {
        SendError {
            done,
            failure: Failure::Retry {
                error: io::Error::other(why),
                after,
                // The whole response was read: the connection can carry the resend.
                resume: self.conn_reusable(),
            },
        }
    }

    /// Sends `good` (a record the endpoint accepted, with its sequence and time) again, alone,
    /// marked `X-Rlog-Probe: 1`: whether the endpoint accepts it now. See [`REFUSED_IN_A_ROW`].
    fn probe(
        &mut self,
        good: (u64, Vec<u8>, Option<i64>),
        until: Option<Instant>,
    ) -> io::Result<bool> {
        let (seq, bytes, time) = good;
        let mut one = Buffer::default();
        one.first_seq = seq;
        one.push(&bytes, time);
        let limits = body::Limits {
            max_records: 1,
            max_bytes: usize::MAX,
            compression: self.settings.compression,
            exact: true,
        };
        match self
            .body
            .build(&mut *self.api, &one, 0, self.producer, &limits)
        {
            Ok(_) => {}
            Err(body::BuildError::Io(e)) => return Err(e),
            Err(body::BuildError::Unencodable(_)) => return Ok(false),
        }
        let id = batch_id(self.producer, seq, 1);
        self.build_head(self.body.bytes().len(), &id);
        // The marker goes just before the blank line that ends the head.
        let end = self.head.len() - 2;
        self.head
            .splice(end..end, b"X-Rlog-Probe: 1\r\n".iter().copied());
        let resp = self.conn.round_trip(&self.head, self.body.bytes(), until)?;
        Ok(match self.api.classify(&resp, 1, &self.classes) {
            Verdict::Delivered | Verdict::DeliveredWithNotice(_) => true,
            Verdict::Items(items) => items.iter().all(|i| matches!(i, Item::Delivered)),
            _ => false,
        })
    }

    fn conn_reusable(&self) -> bool {
        // `is_alive` (checked by the driver before reuse) looks at the socket itself.
        true
    }
}

/// A batch's id: its first record's identity and the record count, so that the same records
/// resent (or replayed from the spool) carry the same id.
pub fn batch_id(producer: u64, first_seq: u64, n: usize) -> String {
    format!("{}-{n}", super::record_id(producer, first_seq))
}

impl Output for Http {
    fn send(&mut self, batch: &Buffer, until: Option<Instant>) -> Result<(), SendError> {
        if let Some(e) = self.expired(batch, Instant::now()) {
            return Err(e);
        }
        let mut done = 0;
        // Records per request at most while a request is split (413) or bisected (4xx).
        let mut cap = usize::MAX;
        // A body built ahead belongs to the `send` that built it.
        self.ahead = None;
        while done < batch.len() {
            super::past(until).map_err(|e| SendError::retry(done, e))?;
            let first_seq = batch.first_seq + done as u64;
            let limits = self.limits(batch, done, cap);
            let built = match self.ahead.take() {
                Some(a) if a.from == done && a.limits == limits => {
                    std::mem::swap(&mut self.body, &mut self.spare);
                    a.built
                }
                _ => self
                    .body
                    .build(&mut *self.api, batch, done, self.producer, &limits),
            };
            let end = match built {
                Ok(end) => end,
                Err(body::BuildError::Unencodable(u)) if u.index == done => {
                    return Err(SendError::reject(done, u.why))
                }
                Err(body::BuildError::Unencodable(u)) => {
                    // Send what comes before the bad record; it is refused at its turn.
                    cap = u.index - done;
                    continue;
                }
                Err(body::BuildError::Io(e)) => return Err(SendError::retry(done, e)),
            };
            let n = end - done;
            let id = batch_id(self.producer, first_seq, n);
            self.build_head(self.body.bytes().len(), &id);
            let resp = match self
                .conn
                .write_request(&self.head, self.body.bytes(), until)
            {
                Ok(()) => {
                    // While the server takes this request in, the next body is built: the one
                    // the next request uses if this one is delivered whole. Not when a closing
                    // logger's deadline is near: the answer must be read before it, or a
                    // request the server stored would be counted undelivered and sent again.
                    let near = until.is_some_and(|u| {
                        u.saturating_duration_since(Instant::now()) < AHEAD_MARGIN
                    });
                    if end < batch.len() && !near {
                        let limits = self.limits(batch, end, cap);
                        let built =
                            self.spare
                                .build(&mut *self.api, batch, end, self.producer, &limits);
                        self.ahead = Some(Ahead {
                            from: end,
                            limits,
                            built,
                        });
                    }
                    self.conn.read_response(until)
                }
                Err(e) => Err(e),
            };
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    self.note_failed(first_seq, n);
                    if n > 1
                        && matches!(
                            e.kind(),
                            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                        )
                    {
                        // Too much to move within `timeout` at the rate the endpoint takes
                        // it: smaller requests next (what it stored meanwhile, if it did, is
                        // a duplicate its X-Rlog-Batch lets it drop).
                        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                        st.timeout_cap = Some(n / 2);
                        st.last_failed = None;
                    }
                    return Err(SendError::retry(done, e));
                }
            };
            let verdict = self.api.classify(&resp, n, &self.classes);
            if let Verdict::Delivered | Verdict::DeliveredWithNotice(_) = verdict {
                // The endpoint accepts what it is given: remember a record it took.
                let r = batch.record(done);
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.refused_in_a_row = 0;
                st.last_accepted = Some((first_seq, r.bytes.to_vec(), r.time_us));
                st.timeout_cap = st
                    .timeout_cap
                    .map(|c| c.saturating_mul(2))
                    .filter(|&c| c < self.settings.max_batch_size);
            } else if let Verdict::Items(_) = verdict {
                self.state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .refused_in_a_row = 0;
            }
            match verdict {
                Verdict::Delivered => done = end,
                Verdict::DeliveredWithNotice(text) => {
                    self.notice = Some(text);
                    done = end;
                }
                Verdict::Retry { why, after } => {
                    self.note_failed(first_seq, n);
                    return Err(self.retry(done, why, after));
                }
                Verdict::TooLarge { why } if n == 1 => return Err(SendError::reject(done, why)),
                Verdict::Refused { why } if n == 1 => {
                    let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                    if st.refused_in_a_row >= REFUSED_IN_A_ROW {
                        let known_good = st.last_accepted.clone();
                        drop(st);
                        if let Some(good) = known_good {
                            match self.probe(good, until) {
                                Ok(true) => {
                                    // The endpoint takes a record it took before: this one
                                    // is refused for what it is.
                                    self.state
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .refused_in_a_row = 1;
                                    return Err(SendError::reject(done, why));
                                }
                                Ok(false) => {}
                                Err(e) => return Err(SendError::retry(done, e)),
                            }
                        } else {
                            // Nothing was ever accepted to ask with: wait (a flush does not cut
                            // the wait short), then take up to REFUSED_IN_A_ROW more refusals
                            // for the records' fault. A burst of bad records costs a pause; an
                            // endpoint that refuses everything gets its records dead-lettered
                            // slowly, with this error.
                            let now = Instant::now();
                            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                            match st.doubt_until {
                                Some(t) if now >= t => {
                                    st.doubt_until = None;
                                    st.refused_in_a_row = 1;
                                    return Err(SendError::reject(done, why));
                                }
                                Some(_) => {}
                                None => st.doubt_until = Some(now + status::SLOW_RETRY),
                            }
                        }
                        self.note_failed(first_seq, n);
                        let why = format!(
                            "{why}; the last {REFUSED_IN_A_ROW} records were each refused alone \
                             and a record the endpoint accepted before is refused too: it \
                             refuses everything (its address, or the client certificate?), so \
                             the records are kept and retried every {}s rather than \
                             dead-lettered",
                            status::SLOW_RETRY.as_secs()
                        );
                        return Err(self.retry(done, why, Some(status::SLOW_RETRY)));
                    }
                    st.refused_in_a_row += 1;
                    return Err(SendError::reject(done, why));
                }
                Verdict::TooLarge { .. } | Verdict::Refused { .. } => cap = n / 2,
                Verdict::Items(items) => {
                    if items.len() != n {
                        self.note_failed(first_seq, n);
                        return Err(self.retry(
                            done,
                            format!(
                                "the server answered {} items for a request of {n} records",
                                items.len()
                            ),
                            None,
                        ));
                    }
                    for (i, item) in items.into_iter().enumerate() {
                        match item {
                            Item::Delivered => {}
                            Item::Retry(why) => {
                                self.note_failed(first_seq + i as u64, n - i);
                                return Err(self.retry(done + i, why, None));
                            }
                            Item::Refused(why) => return Err(SendError::reject(done + i, why)),
                        }
                    }
                    done = end;
                }
            }
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.head = None;
        st.last_failed = None;
        Ok(())
    }

    fn is_alive(&mut self) -> bool {
        let k = self.settings.keepalive;
        !k.is_zero() && self.conn.last_used.elapsed() < k && self.conn.is_alive()
    }

    fn take_notice(&mut self) -> Option<String> {
        self.notice.take()
    }

    fn fds(&self) -> Vec<i32> {
        self.conn.fds()
    }
}
