//! Request bodies: records `from..` of a batch laid out by the API, as many as the limits
//! allow — `max_batch_size` records, `max_batch_bytes` bytes after `compression = gzip` — and
//! the same records for the same batch every time, so a resend carries the same batch id.

use std::io::{self, Write};

use super::api::{Api, Records, Unencodable};
use crate::buffer::Buffer;
use crate::config::http::BodyCompression;

/// The bounds of one request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_records: usize,
    pub max_bytes: usize,
    pub compression: BodyCompression,
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
    /// `raw` compressed, when the body is.
    packed: Vec<u8>,
    compressed: bool,
}

/// Raw bytes per compressed byte assumed when choosing how many records to try first under
/// compression (the request is then shrunk until it fits).
fn assumed_ratio(c: BodyCompression) -> usize {
    match c {
        BodyCompression::None => 1,
        BodyCompression::Gzip => 8,
        BodyCompression::Lz4 => 4,
    }
}

/// Uncompressed bytes per ClickHouse compressed block (its own `max_compress_block_size`).
const LZ4_BLOCK: usize = 1 << 20;

/// Appends `raw` to `out` as ClickHouse's compressed blocks: per block of at most
/// [`LZ4_BLOCK`] bytes, a CityHash128 (v1.0.2) of the rest of the block (its 64-bit halves
/// swapped, little-endian, as ClickHouse lays out its `uint128`), method byte 0x82 (LZ4), the
/// block's compressed size with this 9-byte header and its uncompressed size (little-endian
/// `u32`s), then the LZ4 block.
pub fn clickhouse_lz4(raw: &[u8], out: &mut Vec<u8>) {
    for chunk in raw.chunks(LZ4_BLOCK) {
        let start = out.len();
        out.resize(
            start + 25 + lz4_flex::block::get_maximum_output_size(chunk.len()),
            0,
        );
        let n = lz4_flex::block::compress_into(chunk, &mut out[start + 25..])
            .expect("room for the largest LZ4 output");
        out.truncate(start + 25 + n);
        out[start + 16] = 0x82;
        out[start + 17..start + 21].copy_from_slice(&((9 + n) as u32).to_le_bytes());
        out[start + 21..start + 25].copy_from_slice(&(chunk.len() as u32).to_le_bytes());
        let h = cityhash_rs::cityhash_102_128(&out[start + 16..]);
        out[start..start + 16].copy_from_slice(&(h.rotate_left(64)).to_le_bytes());
    }
}

impl Body {
    /// The bytes to send.
    pub fn bytes(&self) -> &[u8] {
        if self.compressed {
            &self.packed
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
            let budget = limits
                .max_bytes
                .saturating_mul(assumed_ratio(limits.compression));
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
            self.compressed = limits.compression != BodyCompression::None;
            self.packed.clear();
            let size = match limits.compression {
                BodyCompression::None => self.raw.len(),
                BodyCompression::Gzip => {
                    let mut z = flate2::write::GzEncoder::new(
                        std::mem::take(&mut self.packed),
                        flate2::Compression::fast(),
                    );
                    z.write_all(&self.raw).map_err(BuildError::Io)?;
                    self.packed = z.finish().map_err(BuildError::Io)?;
                    self.packed.len()
                }
                BodyCompression::Lz4 => {
                    clickhouse_lz4(&self.raw, &mut self.packed);
                    self.packed.len()
                }
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
            compression: BodyCompression::None,
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
        let lz = Limits {
            compression: BodyCompression::Gzip,
            ..l
        };
        let endz = body.build(&mut api, &b, 10, 1, &lz).unwrap();
        assert!(body.bytes().len() <= 1000 && endz > end, "{endz} vs {end}");
        // The same records every time.
        assert_eq!(body.build(&mut api, &b, 10, 1, &lz).unwrap(), endz);
        // One record larger than the limit goes alone.
        let big = batch(3, 5000);
        assert_eq!(body.build(&mut api, &big, 0, 1, &l).unwrap(), 1);
    }

    /// ClickHouse's compressed blocks: each block's header, checksum and LZ4 data give back the
    /// body, and a body over a block's size is cut into blocks of 1 MiB. (That ClickHouse
    /// itself takes them: tests/clickhouse_delivery.rs.)
    #[test]
    fn clickhouse_lz4_blocks_unpack_to_the_body() {
        let raw: Vec<u8> = (0..3_000_000u32)
            .flat_map(|i| format!("{{\"i\":{i}}}\n").into_bytes())
            .take(LZ4_BLOCK * 2 + 12345)
            .collect();
        let mut out = b"kept".to_vec();
        clickhouse_lz4(&raw, &mut out);
        assert_eq!(&out[..4], b"kept");
        let (mut at, mut back, mut blocks) = (4, Vec::new(), 0);
        while at < out.len() {
            let block = &out[at..];
            assert_eq!(block[16], 0x82);
            let size = u32::from_le_bytes(block[17..21].try_into().unwrap()) as usize;
            let plain = u32::from_le_bytes(block[21..25].try_into().unwrap()) as usize;
            let h = cityhash_rs::cityhash_102_128(&block[16..16 + size]);
            assert_eq!(&block[..16], &h.rotate_left(64).to_le_bytes());
            let data = lz4_flex::block::decompress(&block[25..16 + size], plain).unwrap();
            assert!(data.len() <= LZ4_BLOCK);
            back.extend_from_slice(&data);
            at += 16 + size;
            blocks += 1;
        }
        assert_eq!(back, raw);
        assert_eq!(blocks, 3);
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
            compression: BodyCompression::None,
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
