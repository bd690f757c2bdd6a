//! Loki's push API (`http_api = loki`, `POST /loki/api/v1/push`, JSON): one stream with the
//! labels of `loki_labels`, each record a line with its `log` call's time (ns, as a string).
//! Loki answers 204; its 4xx (a line too old, too long, out of order) refuse the push, and
//! bisection finds the line.

use super::api::{now_ns, Api, Records, Unencodable};

pub struct Loki {
    pub labels: Vec<(String, String)>,
}

/// Appends `b` as a JSON string (invalid UTF-8 replaced, one trailing newline dropped).
pub fn json_string(out: &mut Vec<u8>, b: &[u8]) {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    let s = String::from_utf8_lossy(b);
    serde_json::to_writer(&mut *out, &*s).expect("writing to a Vec cannot fail");
}

impl Api for Loki {
    fn content_type(&self) -> &str {
        "application/json"
    }

    fn encode(&mut self, recs: &Records<'_>, out: &mut Vec<u8>) -> Result<(), Unencodable> {
        out.extend_from_slice(b"{\"streams\":[{\"stream\":{");
        for (i, (k, v)) in self.labels.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_string(out, k.as_bytes());
            out.push(b':');
            json_string(out, v.as_bytes());
        }
        out.extend_from_slice(b"},\"values\":[");
        let now = now_ns();
        for i in recs.range.clone() {
            if i > recs.range.start {
                out.push(b',');
            }
            out.extend_from_slice(format!("[\"{}\",", recs.time_ns(i, now)).as_bytes());
            json_string(out, recs.batch.record(i).bytes);
            out.push(b']');
        }
        out.extend_from_slice(b"]}]}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::Buffer;

    #[test]
    fn push_body_as_the_loki_docs_show() {
        let mut b = Buffer::default();
        b.push(b"fizzbuzz\n", Some(1_570_818_238_000_000));
        b.push(b"q\"\x01", Some(1));
        let mut out = Vec::new();
        Loki {
            labels: vec![("foo".into(), "bar2".into())],
        }
        .encode(
            &Records {
                batch: &b,
                range: 0..2,
                producer: 1,
            },
            &mut out,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"streams":[{"stream":{"foo":"bar2"},"values":[
                ["1570818238000000000","fizzbuzz"],["1000","q\"\u{1}"]]}]})
        );
    }
}
