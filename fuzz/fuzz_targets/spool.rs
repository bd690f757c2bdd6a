//! The disk spool's adoption and replay (src/output/spool/): what a process that was killed,
//! crashed or exited left on disk, damaged in any way, taken over by the next process.
//!
//! Input: a record count (low 4 bits of the first byte), the records (a length byte, then the
//! bytes), then damage operations of 4 bytes each: what to hit (segment byte, ledger byte,
//! segment truncation), a 16-bit offset, a value. The records are appended through the real
//! writer (`OutputSpool::append`), the spool is dropped with them undelivered (as by an exit
//! with the collector down), the damage is done to its files, then a new `OutputSpool::open`
//! adopts them and every record is read and committed.
//! Invariants: no panic, no hang; every record replayed is one that was appended, with its id
//! and bytes (never garbage); without damage, all of them, in order.
#![no_main]

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rlog::output::spool::{OutputSpool, SpoolOptions, SpoolRecord, SyncMode};

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        // fuzz/run.sh sets RLOG_FUZZ_TMP to a directory it removes afterwards.
        let base = match std::env::var_os("RLOG_FUZZ_TMP") {
            Some(d) => PathBuf::from(d),
            None if std::path::Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
            None => std::env::temp_dir(),
        };
        base.join(format!("rlog-fuzz-spool-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let mut recs: Vec<Vec<u8>> = Vec::new();
    for _ in 0..(first & 15) {
        let Some((&len, r)) = rest.split_first() else {
            break;
        };
        let len = (len as usize).min(r.len());
        recs.push(r[..len].to_vec());
        rest = &r[len..];
    }
    let damage = rest;

    let root = root();
    let _ = fs::remove_dir_all(root);
    let opts = SpoolOptions {
        sync: SyncMode::None,
        segment_bytes: 1024,
        ..SpoolOptions::default()
    };
    let dead_dir = {
        let mut s = OutputSpool::open(root, "out", opts).unwrap();
        let batch: Vec<SpoolRecord<'_>> = recs
            .iter()
            .enumerate()
            .map(|(i, b)| SpoolRecord { counted: true,
                id: 1000 + i as u64,
                time_us: (i % 2 == 0).then_some(i as i64),
                bytes: b,
            })
            .collect();
        if !batch.is_empty() {
            s.append(&batch).unwrap();
        }
        s.dir().to_path_buf()
        // Dropped here: undelivered records stay for the next process.
    };

    // The damage, to the files the dead instance left.
    let mut segs: Vec<PathBuf> = fs::read_dir(&dead_dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "seg"))
                .collect()
        })
        .unwrap_or_default();
    segs.sort();
    let damaged = !damage.is_empty();
    for op in damage.chunks_exact(4).take(16) {
        let off = u16::from_le_bytes([op[1], op[2]]) as u64;
        let file = match op[0] % 3 {
            0 | 2 if !segs.is_empty() => segs[op[0] as usize / 3 % segs.len()].clone(),
            1 => dead_dir.join("ledger"),
            _ => continue,
        };
        let Ok(f) = fs::OpenOptions::new().write(true).open(&file) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if op[0] % 3 == 2 {
            let _ = f.set_len(off.min(len));
        } else if len > 0 {
            let _ = f.write_all_at(&[op[3]], off % len);
        }
    }

    // The next process adopts and replays.
    let mut s = OutputSpool::open(root, "out", opts).unwrap();
    let mut got = Vec::new();
    let mut out = Vec::new();
    for _ in 0..1000 {
        out.clear();
        match s.read(7, 4096, &mut out) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => break,
        }
        s.commit(out.len()).unwrap();
        got.extend(out.drain(..));
    }
    for r in &got {
        let i =
            r.id.checked_sub(1000)
                .expect("an id that was never appended") as usize;
        assert!(i < recs.len(), "id {} was never appended", r.id);
        assert_eq!(
            r.bytes, recs[i],
            "record {} replayed with other bytes",
            r.id
        );
    }
    if !damaged {
        let ids: Vec<u64> = got.iter().map(|r| r.id).collect();
        let want: Vec<u64> = (0..recs.len() as u64).map(|i| 1000 + i).collect();
        assert_eq!(ids, want);
    }
    drop(s);
});
