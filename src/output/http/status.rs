//! What an HTTP status says about the records of a request (SPEC §7): 2xx delivered; 408, 425,
//! 429 and 5xx (not 501) retried, honouring `Retry-After`; 413 too large (split); 401 and 403
//! retried slowly (a fixed credential must not have cost the logs), and so are a wrong URL's
//! 404, 405, 501 and redirects (rlog follows none): every record would be refused alike; any
//! other 4xx refuses some record (bisection finds it). `retry_statuses` replaces the list of
//! statuses retried with backoff.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::client::Response;

/// The shortest pause after a status that a person has to fix (credentials, URL).
pub const SLOW_RETRY: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// What a response says about the records of the request it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every record was taken.
    Delivered,
    /// Every record was taken, but the server said some were dropped without saying which
    /// (OTLP `partialSuccess`): reported, not retried.
    DeliveredWithNotice(String),
    /// Nothing was taken; try again later (not before `after`, if the server said so).
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// The request is too large (413): send fewer records.
    TooLarge { why: String },
    /// Some record of the request is refused for good: find it by sending fewer.
    Refused { why: String },
    /// The server answered record by record, in order (`_bulk`): one entry per record.
    Items(Vec<Item>),
}

/// One record's fate in a response that answers record by record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Delivered,
    /// Not taken now: resend it (and what follows).
    Retry(String),
    /// Refused for good: dead-lettered.
    Refused(String),
}

/// The status classes of one output (`retry_statuses`).
#[derive(Debug, Clone, Default)]
pub struct Classes {
    pub retry: Option<Vec<u16>>,
}

impl Classes {
    /// Whether `status` is retried with backoff.
    pub fn retried(&self, status: u16) -> bool {
        match &self.retry {
            Some(list) => list.contains(&status),
            None => {
                matches!(status, 408 | 425 | 429) || ((500..600).contains(&status) && status != 501)
            }
        }
    }

    /// The verdict of `resp` by its status alone.
    pub fn classify(&self, resp: &Response) -> Verdict {
        let s = resp.status;
        let why = || describe(resp);
        if (200..300).contains(&s) {
            return Verdict::Delivered;
        }
        if self.retried(s) {
            return Verdict::Retry {
                why: why(),
                after: retry_after(resp),
            };
        }
        match s {
            413 => Verdict::TooLarge { why: why() },
            401 | 403 => Verdict::Retry {
                why: format!("{}: check the credentials; retried every {}s meanwhile", why(), SLOW_RETRY.as_secs()),
                after: Some(retry_after(resp).unwrap_or_default().max(SLOW_RETRY)),
            },
            404 | 405 | 501 | 300..=399 => Verdict::Retry {
                why: format!(
                    "{}{}: every record would be refused alike, so none is given up: check the URL and method; retried every {}s meanwhile",
                    why(),
                    resp.header("location").map(|l| format!(" (to {l}: rlog follows no redirect)")).unwrap_or_default(),
                    SLOW_RETRY.as_secs()
                ),
                after: Some(SLOW_RETRY),
            },
            400..=499 => Verdict::Refused { why: why() },
            _ => Verdict::Retry {
                why: why(),
                after: retry_after(resp),
            },
        }
    }
}

/// `HTTP 503 Service Unavailable: BODY` (the body's start).
pub fn describe(resp: &Response) -> String {
    let body = resp.body_text(200);
    if body.is_empty() {
        format!("HTTP {} {}", resp.status, resp.reason)
    } else {
        format!("HTTP {} {}: {body}", resp.status, resp.reason)
    }
}

/// The response's `Retry-After`: seconds, or an HTTP date (at most 10 minutes away).
pub fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp.header("retry-after")?.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = http_date(v)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        Duration::from_secs(at.saturating_sub(now))
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form
/// RFC 9110 requires senders to use.
pub fn http_date(v: &str) -> Option<u64> {
    let mut it = v.split_whitespace();
    let _weekday = it.next()?;
    let day: u64 = it.next()?.parse().ok()?;
    let month = match it.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    // Four digits (RFC 9110's `year = 4DIGIT`): no arithmetic below can overflow.
    let year = it
        .next()
        .filter(|y| y.len() == 4 && y.bytes().all(|c| c.is_ascii_digit()))?;
    let year: i64 = year.parse().ok()?;
    let mut hms = it.next()?.split(':').map(|x| x.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if it.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = crate::civil::days_from_civil(year, month, day as u32);
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)]) -> Response {
        Response {
            status,
            reason: "R".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }

    #[test]
    fn classes() {
        let c = Classes::default();
        assert_eq!(c.classify(&resp(204, &[])), Verdict::Delivered);
        for s in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert!(
                matches!(c.classify(&resp(s, &[])), Verdict::Retry { .. }),
                "{s}"
            );
        }
        assert!(matches!(
            c.classify(&resp(413, &[])),
            Verdict::TooLarge { .. }
        ));
        assert!(matches!(
            c.classify(&resp(400, &[])),
            Verdict::Refused { .. }
        ));
        assert!(matches!(
            c.classify(&resp(422, &[])),
            Verdict::Refused { .. }
        ));
        for s in [401, 403, 404, 501, 301] {
            match c.classify(&resp(s, &[])) {
                Verdict::Retry { after, .. } => assert!(after.unwrap() >= SLOW_RETRY, "{s}"),
                v => panic!("{s}: {v:?}"),
            }
        }
        let c = Classes {
            retry: Some(vec![400]),
        };
        assert!(matches!(c.classify(&resp(400, &[])), Verdict::Retry { .. }));
        // A 5xx left out of the list is still not refused (nothing is given up for a server error).
        assert!(matches!(c.classify(&resp(503, &[])), Verdict::Retry { .. }));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let r = resp(429, &[("retry-after", "7")]);
        assert_eq!(retry_after(&r), Some(Duration::from_secs(7)));
        assert_eq!(http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(http_date("Sun, 06 Nov 1994 08:49:37 UTC"), None);
        let r = resp(503, &[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(retry_after(&r), Some(Duration::ZERO));
        let r = resp(503, &[("retry-after", "99999")]);
        assert_eq!(retry_after(&r), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&resp(503, &[("retry-after", "soon")])), None);
    }

    /// Years past what i64 day arithmetic holds overflowed (a panic with overflow checks, a
    /// wrapped date without): an IMF-fixdate's year has four digits.
    #[test]
    fn dates_with_huge_years_are_not_dates() {
        for year in [
            "9223372036854775807",
            "100000000000000",
            "922337203685477",
            "10000",
            "-1",
        ] {
            let v = format!("Sun, 06 Nov {year} 08:49:37 GMT");
            assert_eq!(http_date(&v), None, "{v}");
        }
        assert_eq!(
            http_date("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(253_402_300_799)
        );
        assert_eq!(http_date("Sat, 01 Jan 0000 00:00:00 GMT"), None);
    }
}
