//! The ledger of one instance directory: how far its segments have been delivered, written
//! crash-atomically as two checksummed slots that are overwritten in turn.
//!
//! A slot (64 bytes, at offset 0 or 64):
//!
//! ```text
//! magic "RLLG" | version u32 | generation u64 | segment u64 | offset u64 | zeros | crc32c u32 (last 4)
//! ```
//!
//! `(segment, offset)`: every record in a segment numbered below `segment`, and every record of
//! segment `segment` before byte `offset`, is delivered. The slot with a valid CRC and the highest
//! generation wins. A write goes to the other slot than the current one, so a write torn by a
//! crash leaves the previous position readable. Both slots bad (or no file) means "nothing is
//! known to be delivered": everything still on disk is delivered again (duplicates, never loss).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

const SLOT: usize = 64;
const MAGIC: [u8; 4] = *b"RLLG";
const VERSION: u32 = 1;

/// A delivered position: see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub seg: u64,
    pub off: u64,
}

/// What was found in a ledger file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LedgerState {
    /// A valid slot.
    Ok(Pos),
    /// The file exists but was never written (a fresh instance).
    Empty,
    /// No ledger file.
    Missing,
    /// The file has bytes but no valid slot.
    Corrupt,
}

/// An open ledger file.
pub(crate) struct Ledger {
    file: File,
    generation: u64,
}

fn encode(generation: u64, pos: Pos) -> [u8; SLOT] {
    let mut s = [0u8; SLOT];
    s[0..4].copy_from_slice(&MAGIC);
    s[4..8].copy_from_slice(&VERSION.to_le_bytes());
    s[8..16].copy_from_slice(&generation.to_le_bytes());
    s[16..24].copy_from_slice(&pos.seg.to_le_bytes());
    s[24..32].copy_from_slice(&pos.off.to_le_bytes());
    let crc = crc32c::crc32c(&s[..SLOT - 4]);
    s[SLOT - 4..].copy_from_slice(&crc.to_le_bytes());
    s
}

fn decode(s: &[u8]) -> Option<(u64, Pos)> {
    if s.len() < SLOT || s[0..4] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(s[SLOT - 4..SLOT].try_into().unwrap());
    if crc32c::crc32c(&s[..SLOT - 4]) != crc
        || u32::from_le_bytes(s[4..8].try_into().unwrap()) != VERSION
    {
        return None;
    }
    let generation = u64::from_le_bytes(s[8..16].try_into().unwrap());
    let seg = u64::from_le_bytes(s[16..24].try_into().unwrap());
    let off = u64::from_le_bytes(s[24..32].try_into().unwrap());
    Some((generation, Pos { seg, off }))
}

/// Reads the ledger at `path` without changing it (also used by `inspect`).
pub(crate) fn read_state(path: &Path) -> LedgerState {
    match std::fs::read(path) {
        Ok(bytes) => state_of(&bytes).1,
        Err(e) if e.kind() == io::ErrorKind::NotFound => LedgerState::Missing,
        Err(_) => LedgerState::Corrupt,
    }
}

fn state_of(bytes: &[u8]) -> (u64, LedgerState) {
    if bytes.iter().all(|&b| b == 0) {
        return (0, LedgerState::Empty);
    }
    let a = decode(bytes.get(..SLOT).unwrap_or(&[]));
    let b = decode(bytes.get(SLOT..2 * SLOT).unwrap_or(&[]));
    match (a, b) {
        (Some(a), Some(b)) => {
            let best = if a.0 >= b.0 { a } else { b };
            (best.0, LedgerState::Ok(best.1))
        }
        (Some(x), None) | (None, Some(x)) => (x.0, LedgerState::Ok(x.1)),
        (None, None) => (0, LedgerState::Corrupt),
    }
}

impl Ledger {
    /// Opens (creating it if missing) the ledger at `path` and reads its state.
    pub(crate) fn open(path: &Path) -> io::Result<(Ledger, LedgerState)> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let mut bytes = vec![0u8; 2 * SLOT];
        let n = read_up_to(&file, &mut bytes)?;
        let (generation, mut state) = state_of(&bytes[..n]);
        if !existed {
            state = LedgerState::Missing;
        }
        Ok((Ledger { file, generation }, state))
    }

    /// Writes `pos` into the older slot; with `sync`, fdatasyncs it before returning.
    pub(crate) fn write(&mut self, pos: Pos, sync: bool) -> io::Result<()> {
        let generation = self.generation + 1;
        let slot = (generation % 2) * SLOT as u64;
        self.file.write_all_at(&encode(generation, pos), slot)?;
        self.generation = generation;
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// fdatasyncs what was written.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

fn read_up_to(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
