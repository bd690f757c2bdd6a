//! Request bodies: records `from..` of a batch laid out by the API, as many as the limits
//! allow — `max_batch_size` records, `max_batch_bytes` bytes after `compression = gzip` — and
//! the same records for the same batch every time, so a resend carries the same batch id.

use std::io::{self, Write};

use super::api::{Api, Records, Unencodable};
use crate::buffer::Buffer;

/// The bounds of one request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_records: usize,
    pub max_bytes: usize,
    pub gzip: bool,
    /// Exactly `max_records` records (a resend of a request that failed), whatever the bytes.
    pub exact: bool,
}

/// Why no body was built.
#[derive(Debug)]
pub enum BuildError {
    /// A record the API cannot lay out.
    Unencodable(Unencodable),
    /// Compression failed.
    Io(io::Error),
}

/// A body under construction, its buffers kept from one request to the next.
#[derive(Default)]
pub struct Body {
    raw: Vec<u8>,
    gz: Vec<u8>,
    gzipped: bool,
}

/// Raw bytes per compressed byte assumed when choosing how many records to try first under
/// gzip (the request is then shrunk until it fits).
const GZIP_RATIO: usize = 8;

impl Body {
    /// The bytes to send.
    pub fn bytes(&self) -> &[u8] {
        if self.gzipped {
            &self.gz
        } else {
            &self.raw
        }
    }

    /// Lays out records `from..end` of `batch` and returns `end`: as many as `limits` allow,
    /// at least one (a record larger than `max_bytes` goes alone).
    pub fn build(
        &mut self,
        api: &mut dyn Api,
        batch: &Buffer,
        from: usize,
        producer: u64,
        limits: &Limits,
    ) -> Result<usize, BuildError> {
        let avail = batch.len() - from;
        let mut n = limits.max_records.min(avail).max(1);
        if !limits.exact {
            let budget = if limits.gzip {
                limits.max_bytes.saturating_mul(GZIP_RATIO)
            } else {
                limits.max_bytes
            };
            let mut bytes = 0usize;
            let mut k = 0;
            while k < n {
                let size = batch.record(from + k).bytes.len() + 1;
                if k > 0 && bytes + size > budget {
                    break;
                }
                bytes += size;
                k += 1;
            }
            n = k.max(1);
        }
        loop {
            self.raw.clear();
            let recs = Records {
                batch,
                range: from..from + n,
                producer,
            };
            api.encode(&recs, &mut self.raw)
                .map_err(BuildError::Unencodable)?;
            self.gzipped = limits.gzip;
            let size = if limits.gzip {
                self.gz.clear();
                let mut z = flate2::write::GzEncoder::new(
                    std::mem::take(&mut self.gz),
                    flate2::Compression::fast(),
                );
                z.write_all(&self.raw).map_err(BuildError::Io)?;
                self.gz = z.finish().map_err(BuildError::Io)?;
                self.gz.len()
            } else {
                self.raw.len()
            };
            if size <= limits.max_bytes || n == 1 || limits.exact {
                return Ok(from + n);
            }
            // Shrink in proportion, a little more, and by one record at least.
            let scaled = (n as u128 * limits.max_bytes as u128 * 95 / 100 / size as u128) as usize;
            n = scaled.clamp(1, n - 1);
        }
    }
}

/// Standard base64 with padding (for `Authorization: Basic`).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(A[(v >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::http::BodyFraming;
    use crate::output::http::api::Plain;

    fn batch(n: usize, size: usize) -> Buffer {
        let mut b = Buffer::default();
        for i in 0..n {
            let r = format!("{{\"i\":{i},\"p\":\"{}\"}}", "x".repeat(size));
            b.push(r.as_bytes(), None);
        }
        b
    }

    #[test]
    fn base64_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn limits_bound_records_and_bytes() {
        let b = batch(100, 90);
        let mut api = Plain {
            framing: BodyFraming::Newline,
        };
        let mut body = Body::default();
        let l = Limits {
            max_records: 30,
            max_bytes: 1 << 20,
            gzip: false,
            exact: false,
        };
        assert_eq!(body.build(&mut api, &b, 0, 1, &l).unwrap(), 30);
        let l = Limits {
            max_records: 1000,
            max_bytes: 1000,
            ..l
        };
        let end = body.build(&mut api, &b, 10, 1, &l).unwrap();
        assert!(body.bytes().len() <= 1000 && end > 10, "{end}");
        // With gzip the limit is on compressed bytes: more records fit.
        let lz = Limits { gzip: true, ..l };
        let endz = body.build(&mut api, &b, 10, 1, &lz).unwrap();
        assert!(body.bytes().len() <= 1000 && endz > end, "{endz} vs {end}");
        // The same records every time.
        assert_eq!(body.build(&mut api, &b, 10, 1, &lz).unwrap(), endz);
        // One record larger than the limit goes alone.
        let big = batch(3, 5000);
        assert_eq!(body.build(&mut api, &big, 0, 1, &l).unwrap(), 1);
    }

    #[test]
    fn json_array_refuses_what_is_not_json() {
        let mut b = Buffer::default();
        b.push(b"{\"a\":1}\n", None);
        b.push(b"[2]", None);
        b.push(b"not json", None);
        let mut api = Plain {
            framing: BodyFraming::JsonArray,
        };
        let mut body = Body::default();
        let l = Limits {
            max_records: 10,
            max_bytes: 1 << 20,
            gzip: false,
            exact: false,
        };
        match body.build(&mut api, &b, 0, 1, &l) {
            Err(BuildError::Unencodable(u)) => assert_eq!(u.index, 2),
            r => panic!("{:?}", r.map(|_| ())),
        }
        let mut two = Buffer::default();
        two.push(b"{\"a\":1}\n", None);
        two.push(b"[2]", None);
        body.build(&mut api, &two, 0, 1, &l).unwrap();
        assert_eq!(body.bytes(), b"[{\"a\":1},[2]]");
    }
}
