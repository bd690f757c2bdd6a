//! What JetStream's reply to a publish says: stored (perhaps as a duplicate), no stream
//! listens on the subject, or one of its API errors, sorted by what rlog does about it.

use super::json::{self, Value};
use super::proto;

/// JetStream's `err_code` for a message larger than the stream's `max_msg_size`.
pub const MESSAGE_TOO_LARGE: u64 = 10054;
/// `err_code`s that say the stream cannot store now but may later: insufficient resources,
/// memory or storage, and a store failure (a stream full with `discard: new`).
const NO_ROOM: &[u64] = &[10023, 10028, 10047, 10077];

/// The meaning of one reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Ack {
    /// The stream stored the message (`duplicate`: it had it already, by its Nats-Msg-Id).
    Stored { duplicate: bool },
    /// No one listens on the subject (status 503): no stream takes it, or JetStream is down.
    NoResponders,
    /// The stream will never take this message (10054): the record is refused for good.
    TooLarge(String),
    /// The stream has no room now: retry after a pause.
    NoRoom(String),
    /// Any other refusal or an unexpected reply, worded for the error text.
    Other(String),
}

/// Reads a reply to a publish: its header block (empty for a plain MSG) and its payload.
pub fn read(headers: &[u8], payload: &[u8]) -> Ack {
    if let Some((code, text)) = proto::status(headers) {
        return match code {
            503 => Ack::NoResponders,
            _ => Ack::Other(format!("status {code} {text}").trim_end().to_string()),
        };
    }
    let v = match json::parse(payload) {
        Ok(v) => v,
        Err(e) => {
            return Ack::Other(format!(
                "an acknowledgement that is not JSON ({e}): {}",
                String::from_utf8_lossy(&payload[..payload.len().min(200)])
            ))
        }
    };
    if let Some(err) = v.get("error") {
        let code = err.get("err_code").and_then(Value::as_u64).unwrap_or(0);
        let status = err.get("code").and_then(Value::as_u64).unwrap_or(0);
        let description = err
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("no description");
        let why = format!("{description} (JetStream error {code}, status {status})");
        return if code == MESSAGE_TOO_LARGE {
            Ack::TooLarge(why)
        } else if NO_ROOM.contains(&code) {
            Ack::NoRoom(why)
        } else {
            Ack::Other(why)
        };
    }
    match (
        v.get("stream").and_then(Value::as_str),
        v.get("seq").and_then(Value::as_u64),
    ) {
        (Some(_), Some(_)) => Ack::Stored {
            duplicate: v.get("duplicate").and_then(Value::as_bool).unwrap_or(false),
        },
        _ => Ack::Other(format!(
            "a reply that is no acknowledgement: {}",
            String::from_utf8_lossy(&payload[..payload.len().min(200)])
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_replies() {
        assert_eq!(
            read(b"", br#"{"stream":"L","seq":3}"#),
            Ack::Stored { duplicate: false }
        );
        assert_eq!(
            read(b"", br#"{"stream":"L","seq":3,"duplicate":true}"#),
            Ack::Stored { duplicate: true }
        );
        assert_eq!(read(b"NATS/1.0 503\r\n\r\n", b""), Ack::NoResponders);
        match read(b"", br#"{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}"#) {
            Ack::TooLarge(w) => assert_eq!(
                w,
                "message size exceeds maximum allowed (JetStream error 10054, status 400)"
            ),
            a => panic!("{a:?}"),
        }
        assert!(matches!(
            read(b"", br#"{"error":{"code":500,"err_code":10047,"description":"insufficient storage resources available"}}"#),
            Ack::NoRoom(_)
        ));
        assert!(matches!(
            read(b"", br#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}"#),
            Ack::NoRoom(_)
        ));
        match read(b"", br#"{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"}}"#) {
            Ack::Other(w) => assert!(w.starts_with("expected stream does not match"), "{w}"),
            a => panic!("{a:?}"),
        }
        assert!(matches!(read(b"", b"not json"), Ack::Other(_)));
        assert!(matches!(read(b"", b"{}"), Ack::Other(_)));
        assert!(matches!(
            read(b"NATS/1.0 408 Request Timeout\r\n\r\n", b""),
            Ack::Other(_)
        ));
    }
}
