//! A date folder of a store, as `rlogd cat`/`tail` and a master serving followers read it: the
//! index file and a data file, damaged in any way (torn, truncated, overwritten).
//!
//! Input: a u16 length, then that many bytes of index file, then the data file (`data000000`).
//! Invariants: reading every record either returns it checked (CRC, header matching its index
//! entry) or an error; never a panic, and never a record that differs from what its entry says.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rlog::proto::format::{self, Date};
use rlog::proto::reader::DateReader;

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        // fuzz/run.sh sets RLOG_FUZZ_TMP to a directory it removes afterwards.
        let base = match std::env::var_os("RLOG_FUZZ_TMP") {
            Some(d) => PathBuf::from(d),
            None if std::path::Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
            None => std::env::temp_dir(),
        };
        let root = base.join(format!("rlog-fuzz-store-{}", std::process::id()));
        std::fs::create_dir_all(root.join("20260101")).unwrap();
        root
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = u16::from_le_bytes([data[0], data[1]]) as usize;
    let rest = &data[2..];
    let (index, body) = rest.split_at(n.min(rest.len()));
    // The headers are usually right (a damaged header is refused at open, which the format
    // target covers): prepend them unless the input asks otherwise (its first bit).
    let (mut idx, mut dat) = (Vec::new(), Vec::new());
    if data[0] & 1 == 0 {
        idx.extend_from_slice(&format::index_header());
        dat.extend_from_slice(&format::data_header());
    }
    idx.extend_from_slice(index);
    dat.extend_from_slice(body);
    let dir = root().join("20260101");
    std::fs::write(dir.join("index"), &idx).unwrap();
    std::fs::write(dir.join("data000000"), &dat).unwrap();

    let date = Date::parse("20260101").unwrap();
    let Ok(mut r) = DateReader::open(root(), date) else {
        return;
    };
    let count = r.count_on_disk().unwrap();
    for id in 0..count.min(64) {
        if let Ok(rec) = r.record(id) {
            let e = r.entry(id).unwrap();
            let prefix = rec.sender.map_or(0, |s| s.encoded_len());
            assert_eq!(prefix + rec.payload.len(), e.len as usize);
            assert_eq!(rec.sender.is_some(), e.flags & format::FLAG_SENDER != 0);
            assert_eq!(
                (rec.meta.rtype, rec.meta.producer, rec.meta.seq),
                (e.rtype, e.producer, e.seq)
            );
        }
    }
    // Ids past the end, as a follower's position could name them.
    for id in [count, count + 1, u64::MAX / 64, u64::MAX] {
        assert!(r.entry(id).is_err());
    }
});
