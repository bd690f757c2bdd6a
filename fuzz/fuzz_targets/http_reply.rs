//! What the http outputs read in an answer, past the HTTP framing: the status classes with
//! `Retry-After` (seconds or an HTTP date), Elasticsearch `_bulk` replies item by item, OTLP
//! `partialSuccess`, ClickHouse exception codes and texts (`Code: N`, the
//! `X-ClickHouse-Exception-Code` header, `(at row N)`).
//!
//! Input: two bytes of status (mod 1000), one byte of flags, then a header value up to a NUL
//! byte (used as `Retry-After` and as the exception-code header), then the body.
//!
//! Invariants: no panic; a 2xx is never retried or refused by its status; a `Retry-After` is
//! honoured for 10 minutes at most; an HTTP date read is one that writes back to the same
//! second; `_bulk` gives one verdict per item of `items` (counted by serde_json, independently)
//! and calls an item delivered only if its status is 2xx (or 409 on `create`); OTLP never
//! refuses a 2xx; ClickHouse stores only on a 2xx without an exception code, names a row only
//! as `(at row N)` says it, and its message is one line.
#![no_main]

use std::mem::discriminant;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rlog::config::http::EsAction;
use rlog::output::clickhouse::answer::{self, Answer};
use rlog::output::http::api::Api;
use rlog::output::http::es_bulk::EsBulk;
use rlog::output::http::otlp::Otlp;
use rlog::output::http::response::Response;
use rlog::output::http::status::{http_date, retry_after, Classes, Item, Verdict};
use serde_json::Value;

/// `secs` since the epoch as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn imf_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[m as usize - 1],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = u16::from_le_bytes([data[0], data[1]]) % 1000;
    let flags = data[2];
    let rest = &data[3..];
    let (hv, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&b""[..], rest),
    };
    let hv = String::from_utf8_lossy(hv).trim().to_string();
    let mut headers = Vec::new();
    if flags & 1 != 0 {
        headers.push(("retry-after".to_string(), hv.clone()));
    }
    if flags & 2 != 0 {
        headers.push(("location".to_string(), hv.clone()));
    }
    let resp = Response {
        status,
        reason: "R".into(),
        headers,
        body: body.to_vec(),
    };
    let n = (flags >> 4) as usize;

    // HTTP dates: what is read writes back to the same second.
    if let Some(t) = http_date(&hv) {
        assert_eq!(http_date(&imf_date(t)), Some(t), "{hv:?} -> {t}");
    }
    if let Some(d) = retry_after(&resp) {
        assert!(d <= Duration::from_secs(600));
    }

    // The status classes, with and without a retry_statuses list.
    let lists = [
        Classes::default(),
        Classes {
            retry: Some(vec![status, 400]),
        },
    ];
    for classes in &lists {
        let v = classes.classify(&resp);
        if (200..300).contains(&status) {
            assert_eq!(v, Verdict::Delivered);
        }
        if let Verdict::Retry { after: Some(a), .. } = &v {
            assert!(*a <= Duration::from_secs(600), "{a:?}");
        }
        if status >= 500 && status != 501 {
            assert!(matches!(v, Verdict::Retry { .. }), "{status}: {v:?}");
        }
    }

    // Elasticsearch _bulk.
    let json: Option<Value> = serde_json::from_slice(body).ok();
    for action in [EsAction::Create, EsAction::Index] {
        let api = EsBulk { action };
        let v = api.classify(&resp, n, &Classes::default());
        if !(200..300).contains(&status) {
            // The same class (a date's Retry-After may have moved a second meanwhile).
            assert_eq!(
                discriminant(&v),
                discriminant(&Classes::default().classify(&resp))
            );
            continue;
        }
        match &v {
            Verdict::Delivered => assert!(
                json.as_ref()
                    .is_some_and(|j| j.get("errors") == Some(&Value::Bool(false))),
                "delivered without \"errors\": false"
            ),
            Verdict::Items(items) => {
                let all = json
                    .as_ref()
                    .and_then(|j| j.get("items"))
                    .and_then(Value::as_array)
                    .expect("items without an items array");
                assert_eq!(items.len(), all.len());
                for (item, it) in items.iter().zip(all) {
                    if *item != Item::Delivered {
                        continue;
                    }
                    let (key, inner) = it
                        .as_object()
                        .and_then(|o| o.iter().next())
                        .expect("an item delivered that is not an object");
                    let st = inner.get("status").and_then(Value::as_u64);
                    assert!(
                        matches!(st, Some(200..=299)) || (st == Some(409) && key == "create"),
                        "item delivered with status {st:?}: {it}"
                    );
                }
            }
            Verdict::Retry { .. } => {}
            other => panic!("_bulk 2xx gave {other:?}"),
        }
    }

    // OTLP partialSuccess: a 2xx is delivered, perhaps with a notice.
    let v = Otlp.classify(&resp, n, &Classes::default());
    if (200..300).contains(&status) {
        assert!(matches!(
            v,
            Verdict::Delivered | Verdict::DeliveredWithNotice(_)
        ));
    } else {
        // The same class (a date's Retry-After may have moved a second meanwhile).
        assert_eq!(
            discriminant(&v),
            discriminant(&Classes::default().classify(&resp))
        );
    }

    // ClickHouse.
    for header in [None, Some(hv.as_str())] {
        let a = answer::classify(status, header, body);
        let code_in_header = header.and_then(|h| h.trim().parse::<u32>().ok()).is_some();
        if matches!(a, Answer::Stored) {
            assert!((200..300).contains(&status) && !code_in_header);
        }
        let why = match &a {
            Answer::Stored => continue,
            Answer::Transient(w) | Answer::Refused(w) => w,
            Answer::BadRow { why, row } => {
                if let Some(r) = row {
                    assert!(*r >= 1);
                    let text = String::from_utf8_lossy(body);
                    let said = text.split("(at row ").skip(1).any(|t| {
                        let n = t.bytes().take_while(u8::is_ascii_digit).count();
                        t[..n].parse::<usize>().ok() == Some(*r)
                    });
                    assert!(said, "row {r} from {text:?}");
                }
                why
            }
        };
        assert!(!why.chars().any(char::is_control), "{why:?}");
        assert!(why.chars().count() <= 400, "{} chars", why.chars().count());
    }
    if let Some((code, text)) = answer::exception(body) {
        let s = String::from_utf8_lossy(body);
        assert!(s.contains("Code: "), "code {code} without \"Code: \"");
        assert!(text.len() <= s.len());
    }
});
