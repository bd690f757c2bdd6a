//! The `gzip` and `compress` encoders.
//!
//! `gzip` writes one gzip member with uWSGI's fixed header (`1f 8b 08`, no flags, mtime 0,
//! XFL 0, OS 3 = Unix), raw deflate at the default level, CRC-32 and length — so receivers see
//! the same header fields as from uWSGI. `compress` is zlib's `compress()`: a zlib stream
//! (`78 9c`, default level). The deflate bytes themselves may differ from zlib's (flate2's
//! backend); they decompress to identical bytes.
//!
//! The worker keeps one deflate state per gzip/compress encoder and resets it per record (uWSGI
//! allocates and frees a zlib stream per message): most of the cost of compressing a short log
//! line is setting that state up.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// uWSGI's gzip header (core/zlib.c `gzheader`).
pub const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];

/// A deflate state at the default level: raw deflate for gzip, zlib-wrapped for compress.
pub fn deflate_state(zlib_header: bool) -> Compress {
    Compress::new(Compression::default(), zlib_header)
}

/// Appends `input`, deflated and finished, to `out`, reusing `z`.
fn deflate(z: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    z.reset();
    let start_in = z.total_in();
    out.reserve(input.len() + input.len() / 8 + 64);
    loop {
        let consumed = (z.total_in() - start_in) as usize;
        let status = z
            .compress_vec(&input[consumed..], out, FlushCompress::Finish)
            .map_err(|e| e.to_string())?;
        match status {
            Status::StreamEnd => return Ok(()),
            Status::Ok | Status::BufError => out.reserve(out.capacity().max(256)),
        }
    }
}

/// Appends `input` gzipped to `out`.
///
/// Errors: `input` is empty (uWSGI sends an empty record then; rlog reports and counts it).
pub fn gzip(z: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    if input.is_empty() {
        return Err("gzip: empty record, nothing to compress".into());
    }
    out.extend_from_slice(&GZIP_HEADER);
    deflate(z, input, out).map_err(|e| format!("gzip: {e}"))?;
    let mut crc = Crc::new();
    crc.update(input);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    Ok(())
}

/// Appends `input` as a zlib stream (zlib `compress()`) to `out`.
///
/// Errors: `input` is empty (as for [`gzip`]).
pub fn compress(z: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    if input.is_empty() {
        return Err("compress: empty record, nothing to compress".into());
    }
    deflate(z, input, out).map_err(|e| format!("compress: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::{GzDecoder, ZlibDecoder};
    use std::io::Read;

    #[test]
    fn gzip_round_trip_and_header() {
        let z = &mut deflate_state(false);
        for _ in 0..3 {
            let mut out = b"pre".to_vec();
            gzip(z, b"hello hello hello\n", &mut out).unwrap();
            assert_eq!(&out[..3], b"pre");
            assert_eq!(&out[3..13], &GZIP_HEADER);
            let mut back = Vec::new();
            GzDecoder::new(&out[3..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, b"hello hello hello\n");
        }
        assert!(gzip(z, b"", &mut Vec::new()).unwrap_err().contains("empty"));
        // incompressible input larger than the first reservation
        let big: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut out = Vec::new();
        gzip(z, &big, &mut out).unwrap();
        let mut back = Vec::new();
        GzDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, big);
    }

    #[test]
    fn compress_is_a_zlib_stream() {
        let z = &mut deflate_state(true);
        for _ in 0..2 {
            let mut out = Vec::new();
            compress(z, b"abcabcabc", &mut out).unwrap();
            assert_eq!(&out[..2], &[0x78, 0x9c]);
            let mut back = Vec::new();
            ZlibDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, b"abcabcabc");
        }
        assert!(compress(z, b"", &mut Vec::new()).is_err());
    }
}
