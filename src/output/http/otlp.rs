//! OTLP/HTTP logs in JSON (`http_api = otlp`, `POST /v1/logs`): one resource, one scope
//! (`rlog`), each record a log record whose body is the record as a string, with its `log`
//! call's time. A 200 whose `partialSuccess` says records were rejected is reported (the
//! collector does not say which, and the spec says not to retry them).

use serde_json::Value;

use super::api::{now_ns, Api, Records, Unencodable};
use super::client::Response;
use super::loki::json_string;
use super::status::{Classes, Verdict};

pub struct Otlp;

impl Api for Otlp {
    fn content_type(&self) -> &str {
        "application/json"
    }

    fn encode(&mut self, recs: &Records<'_>, out: &mut Vec<u8>) -> Result<(), Unencodable> {
        out.extend_from_slice(
            b"{\"resourceLogs\":[{\"resource\":{\"attributes\":[]},\"scopeLogs\":[{\"scope\":{\"name\":\"rlog\"},\"logRecords\":[",
        );
        let now = now_ns();
        for i in recs.range.clone() {
            if i > recs.range.start {
                out.push(b',');
            }
            let t = recs.time_ns(i, now);
            out.extend_from_slice(
                format!("{{\"timeUnixNano\":\"{t}\",\"observedTimeUnixNano\":\"{now}\",\"body\":{{\"stringValue\":")
                    .as_bytes(),
            );
            json_string(out, recs.batch.record(i).bytes);
            out.extend_from_slice(b"}}");
        }
        out.extend_from_slice(b"]}]}]}");
        Ok(())
    }

    fn classify(&self, resp: &Response, n: usize, classes: &Classes) -> Verdict {
        if !(200..300).contains(&resp.status) {
            return classes.classify(resp);
        }
        let Ok(v) = serde_json::from_slice::<Value>(&resp.body) else {
            return Verdict::Delivered;
        };
        let Some(p) = v.get("partialSuccess") else {
            return Verdict::Delivered;
        };
        // int64 in OTLP/JSON is a string; accept a number too.
        let rejected = match p.get("rejectedLogRecords") {
            Some(Value::String(s)) => s.parse::<u64>().unwrap_or(0),
            Some(Value::Number(x)) => x.as_u64().unwrap_or(0),
            _ => 0,
        };
        let msg = p.get("errorMessage").and_then(Value::as_str).unwrap_or("");
        if rejected == 0 {
            return if msg.is_empty() {
                Verdict::Delivered
            } else {
                Verdict::DeliveredWithNotice(format!("OTLP collector: {msg}"))
            };
        }
        Verdict::DeliveredWithNotice(format!(
            "OTLP collector rejected {rejected} of {n} log records (it does not say which; they are counted sent): {msg}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_success_is_reported() {
        let resp = Response {
            status: 200,
            reason: "OK".into(),
            headers: vec![],
            body: br#"{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"too old"}}"#
                .to_vec(),
        };
        match Otlp.classify(&resp, 5, &Classes::default()) {
            Verdict::DeliveredWithNotice(m) => {
                assert!(m.contains("rejected 2 of 5") && m.contains("too old"))
            }
            v => panic!("{v:?}"),
        }
        let ok = Response {
            body: b"{}".to_vec(),
            ..resp
        };
        assert_eq!(
            Otlp.classify(&ok, 5, &Classes::default()),
            Verdict::Delivered
        );
    }
}
