//! How records are delimited on a stream transport (`framing = none | newline | octet`), so a
//! receiver can split a TCP/unix/TLS stream back into records even when they are binary
//! (gzip, msgpack).
//!
//! - `none`: records back to back, as given (the default; right for text ending in `nl`).
//! - `newline`: a `\n` after each record that does not already end with one (RFC 6587
//!   non-transparent framing; only for records without inner newlines).
//! - `octet`: `LEN SP RECORD`, LEN the record's byte count in decimal (RFC 6587 octet counting);
//!   safe for any bytes.
//!
//! Datagram transports carry one record per datagram and need no framing.

/// A framing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    #[default]
    None,
    Newline,
    Octet,
}

impl Framing {
    /// Parses `none`, `newline` or `octet`.
    ///
    /// Errors: any other value, naming it.
    pub fn parse(v: &str) -> Result<Framing, String> {
        match v {
            "none" => Ok(Framing::None),
            "newline" => Ok(Framing::Newline),
            "octet" | "octet-counting" => Ok(Framing::Octet),
            _ => Err(format!(
                "invalid \"framing\": expected none, newline or octet, got \"{v}\""
            )),
        }
    }

    /// Appends `record`, framed, to `out`.
    pub fn frame(self, record: &[u8], out: &mut Vec<u8>) {
        match self {
            Framing::None => out.extend_from_slice(record),
            Framing::Newline => {
                out.extend_from_slice(record);
                if !record.ends_with(b"\n") {
                    out.push(b'\n');
                }
            }
            Framing::Octet => {
                crate::encode::template::push_int(out, record.len() as i64);
                out.push(b' ');
                out.extend_from_slice(record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(f: Framing, recs: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in recs {
            f.frame(r, &mut out);
        }
        out
    }

    #[test]
    fn modes() {
        assert_eq!(framed(Framing::None, &[b"a", b"b\n"]), b"ab\n");
        assert_eq!(framed(Framing::Newline, &[b"a", b"b\n", b""]), b"a\nb\n\n");
        assert_eq!(framed(Framing::Octet, &[b"a\nb", b""]), b"3 a\nb0 ");
        assert_eq!(Framing::parse("octet").unwrap(), Framing::Octet);
        assert!(Framing::parse("lf").unwrap_err().contains("\"lf\""));
    }
}
