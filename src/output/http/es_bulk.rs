//! Elasticsearch `_bulk` (`http_api = es_bulk`): each record is a document after an action
//! line with a deterministic `_id` (the record's id), so a resend stores it once. A 200 with
//! `"errors": true` is read item by item: 429 and 5xx items are retried, other 4xx items
//! dead-lettered, and a 409 on `create` (the document is already there: a resend) delivered.
//! The index is the URL's (`http://es:9200/logs/_bulk`).

use serde_json::Value;

use super::api::{Api, Records, Unencodable};
use super::client::Response;
use super::status::{Classes, Item, Verdict};
use crate::config::http::EsAction;

pub struct EsBulk {
    pub action: EsAction,
}

impl EsBulk {
    fn action_name(&self) -> &'static str {
        match self.action {
            EsAction::Create => "create",
            EsAction::Index => "index",
        }
    }
}

impl Api for EsBulk {
    fn content_type(&self) -> &str {
        "application/x-ndjson"
    }

    fn encode(&mut self, recs: &Records<'_>, out: &mut Vec<u8>) -> Result<(), Unencodable> {
        let action = self.action_name();
        for i in recs.range.clone() {
            out.extend_from_slice(b"{\"");
            out.extend_from_slice(action.as_bytes());
            out.extend_from_slice(b"\":{\"_id\":\"");
            out.extend_from_slice(recs.id(i).as_bytes());
            out.extend_from_slice(b"\"}}\n");
            let r = recs.batch.record(i).bytes.trim_ascii();
            if r.contains(&b'\n') {
                return Err(Unencodable {
                    index: i,
                    why: "es_bulk: a document must be one line of JSON (it holds a newline)".into(),
                });
            }
            out.extend_from_slice(r);
            out.push(b'\n');
        }
        Ok(())
    }

    fn classify(&self, resp: &Response, n: usize, classes: &Classes) -> Verdict {
        if !(200..300).contains(&resp.status) {
            return classes.classify(resp);
        }
        let v: Value = match serde_json::from_slice(&resp.body) {
            Ok(v) => v,
            Err(e) => {
                return Verdict::Retry {
                    why: format!(
                        "_bulk answered {} with a body that is not JSON: {e}",
                        resp.status
                    ),
                    after: None,
                }
            }
        };
        if v.get("errors") == Some(&Value::Bool(false)) {
            return Verdict::Delivered;
        }
        let Some(items) = v.get("items").and_then(Value::as_array) else {
            return Verdict::Retry {
                why: "_bulk answered errors without \"items\"".into(),
                after: None,
            };
        };
        let _ = n;
        Verdict::Items(items.iter().map(|it| self.item(it)).collect())
    }
}

impl EsBulk {
    /// One `items` entry: `{"create": {"status": 201, "error": {...}}}`.
    fn item(&self, it: &Value) -> Item {
        let Some((action, body)) = it.as_object().and_then(|o| o.iter().next()) else {
            return Item::Retry("_bulk: an item that is not an object".into());
        };
        // Not `as u16`: 65736 would have read as 200.
        let status = body
            .get("status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(0);
        let error = || {
            let e = body.get("error");
            let kind = e
                .and_then(|e| e.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let reason = e
                .and_then(|e| e.get("reason"))
                .and_then(Value::as_str)
                .unwrap_or("");
            format!("_bulk item {status} {kind}: {reason}")
        };
        match status {
            200..=299 => Item::Delivered,
            409 if action == "create" => Item::Delivered,
            429 | 500..=599 => Item::Retry(error()),
            400..=499 => Item::Refused(error()),
            _ => Item::Retry(error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::Buffer;

    #[test]
    fn action_lines_carry_the_record_ids() {
        let mut b = Buffer::default();
        b.first_seq = 16;
        b.push(b"{\"a\":1}\n", None);
        b.push(b"{\"a\":2}", None);
        let mut out = Vec::new();
        let mut api = EsBulk {
            action: EsAction::Create,
        };
        api.encode(
            &Records {
                batch: &b,
                range: 0..2,
                producer: 0xab,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"create\":{\"_id\":\"00000000000000bb\"}}\n{\"a\":1}\n\
             {\"create\":{\"_id\":\"00000000000000bc\"}}\n{\"a\":2}\n"
        );
    }

    /// The response of Elasticsearch's bulk API documentation (with errors), items in order.
    #[test]
    fn items_are_classified_one_by_one() {
        let body = br#"{"took":486,"errors":true,"items":[
          {"update":{"_index":"index1","_id":"5","status":404,"error":{"type":"document_missing_exception","reason":"[5]: document missing","index_uuid":"aAsFqTI0Tc2W0LCWgPNrOA","shard":"0","index":"index1"}}},
          {"create":{"_index":"index1","_id":"6","_version":1,"result":"created","status":201}},
          {"create":{"_index":"index1","_id":"7","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[7]: version conflict, document already exists"}}},
          {"index":{"_index":"index1","_id":"8","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}}
        ]}"#;
        let resp = Response {
            status: 200,
            reason: "OK".into(),
            headers: vec![],
            body: body.to_vec(),
        };
        let api = EsBulk {
            action: EsAction::Create,
        };
        match api.classify(&resp, 4, &Classes::default()) {
            Verdict::Items(items) => {
                assert!(
                    matches!(&items[0], Item::Refused(w) if w.contains("document_missing_exception"))
                );
                assert_eq!(items[1], Item::Delivered);
                assert_eq!(items[2], Item::Delivered);
                assert!(matches!(&items[3], Item::Retry(w) if w.contains("429")));
            }
            v => panic!("{v:?}"),
        }
        let ok = Response {
            body: br#"{"took":30,"errors":false,"items":[]}"#.to_vec(),
            ..resp
        };
        assert_eq!(
            api.classify(&ok, 4, &Classes::default()),
            Verdict::Delivered
        );
    }

    /// An item status past u16 was cast (`as u16`): 65736 read as 200, delivered. Now an
    /// unreadable status, retried like any other item without a known status.
    #[test]
    fn item_statuses_past_u16_are_not_truncated() {
        let resp = Response {
            status: 200,
            reason: "OK".into(),
            headers: vec![],
            body: br#"{"errors":true,"items":[{"create":{"status":65736}},{"create":{"status":65945}},{"index":{"status":201}}]}"#.to_vec(),
        };
        let api = EsBulk {
            action: EsAction::Create,
        };
        match api.classify(&resp, 3, &Classes::default()) {
            Verdict::Items(items) => {
                assert!(matches!(&items[0], Item::Retry(_)), "{:?}", items[0]);
                assert!(matches!(&items[1], Item::Retry(_)), "{:?}", items[1]);
                assert_eq!(items[2], Item::Delivered);
            }
            v => panic!("{v:?}"),
        }
    }
}
