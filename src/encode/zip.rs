//! The `gzip` and `compress` encoders.
//!
//! `gzip` writes one gzip member with uWSGI's fixed header (`1f 8b 08`, no flags, mtime 0,
//! XFL 0, OS 3 = Unix), raw deflate at the default level, CRC-32 and length — so receivers see
//! the same header fields as from uWSGI. `compress` is zlib's `compress()`: a zlib stream
//! (`78 9c`, default level). The deflate bytes themselves may differ from zlib's (flate2's
//! backend); they decompress to identical bytes.

use std::io::Write;

use flate2::write::{DeflateEncoder, ZlibEncoder};
use flate2::{Compression, Crc};

/// uWSGI's gzip header (core/zlib.c `gzheader`).
pub const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];

/// Appends `input` gzipped to `out`.
///
/// Errors: `input` is empty (uWSGI sends an empty record then; rlog reports and counts it).
pub fn gzip(input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    if input.is_empty() {
        return Err("gzip: empty record, nothing to compress".into());
    }
    out.extend_from_slice(&GZIP_HEADER);
    let mut enc = DeflateEncoder::new(std::mem::take(out), Compression::default());
    enc.write_all(input).map_err(|e| format!("gzip: {e}"))?;
    *out = enc.finish().map_err(|e| format!("gzip: {e}"))?;
    let mut crc = Crc::new();
    crc.update(input);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    Ok(())
}

/// Appends `input` as a zlib stream (zlib `compress()`) to `out`.
///
/// Errors: `input` is empty (as for [`gzip`]).
pub fn compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    if input.is_empty() {
        return Err("compress: empty record, nothing to compress".into());
    }
    let mut enc = ZlibEncoder::new(std::mem::take(out), Compression::default());
    enc.write_all(input).map_err(|e| format!("compress: {e}"))?;
    *out = enc.finish().map_err(|e| format!("compress: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::{GzDecoder, ZlibDecoder};
    use std::io::Read;

    #[test]
    fn gzip_round_trip_and_header() {
        let mut out = b"pre".to_vec();
        gzip(b"hello hello hello\n", &mut out).unwrap();
        assert_eq!(&out[..3], b"pre");
        assert_eq!(&out[3..13], &GZIP_HEADER);
        let mut back = Vec::new();
        GzDecoder::new(&out[3..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, b"hello hello hello\n");
        assert!(gzip(b"", &mut Vec::new()).unwrap_err().contains("empty"));
    }

    #[test]
    fn compress_is_a_zlib_stream() {
        let mut out = Vec::new();
        compress(b"abcabcabc", &mut out).unwrap();
        assert_eq!(&out[..2], &[0x78, 0x9c]);
        let mut back = Vec::new();
        ZlibDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, b"abcabcabc");
        assert!(compress(b"", &mut Vec::new()).is_err());
    }
}
