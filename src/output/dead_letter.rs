//! Dead letters (`dead_letter = PATH`, SPEC §6): the records an output refused for good, kept
//! as JSON lines `{"time":…, "output":…, "reason":…, "record":…}` so that a person can see
//! them, fix what was wrong and send them again. `record_b64` replaces `record` when the bytes
//! are not UTF-8. Each line is one `write` on a file opened with `O_APPEND`, so the workers of
//! a prefork server can share one file without tearing each other's lines.
//!
//! Written by the worker (and the drivers' threads), never by a `log` call.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use base64::Engine;

use crate::civil;
use crate::encode::clock::now_micros;
use crate::encode::template::json_escape;

/// The dead-letter file of a logger.
#[derive(Debug)]
pub struct DeadLetters {
    path: String,
    file: Mutex<Appender>,
}

/// The file, and whether a write left a torn line at its end that could not be cut off.
#[derive(Debug)]
struct Appender {
    file: File,
    torn: bool,
}

impl DeadLetters {
    /// Opens (creates, mode 0600) `path` for appending.
    ///
    /// Errors: the file cannot be opened for writing; the message names it.
    pub fn open(path: &str) -> Result<DeadLetters, String> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| format!("cannot open \"dead_letter\" file {path}: {e}"))?;
        Ok(DeadLetters {
            path: path.to_string(),
            file: Mutex::new(Appender { file, torn: false }),
        })
    }

    /// Appends `record`, refused by `output` for `reason`. A failed write is returned for the
    /// logger to report (the record is counted lost and rejected all the same).
    pub fn write(&self, output: &str, reason: &str, record: &[u8]) -> Result<(), String> {
        let mut line = line(now_micros(), output, reason, record);
        let mut a = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if a.torn {
            // A torn line is left at the end: this one starts on a line of its own.
            line.insert(0, b'\n');
        }
        let mut written = 0;
        while written < line.len() {
            match a.file.write(&line[written..]) {
                Ok(0) => {
                    return Err(self.torn(&mut a, written, io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.torn(&mut a, written, e)),
            }
        }
        a.torn = false;
        Ok(())
    }

    /// A write failed after `written` bytes of its line (a full disk): the torn line is cut
    /// off when it is the file's last (no other process appended after it), else the next line
    /// starts with a newline, so that a torn line never swallows the next record.
    fn torn(&self, a: &mut Appender, written: usize, e: io::Error) -> String {
        if written > 0 {
            let end = a.file.stream_position().ok();
            let len = a.file.metadata().ok().map(|m| m.len());
            let cut = match (end, len) {
                (Some(end), Some(len)) if end == len && end >= written as u64 => {
                    a.file.set_len(end - written as u64).is_ok()
                }
                _ => false,
            };
            a.torn = !cut;
        }
        self.failed(e)
    }

    fn failed(&self, e: io::Error) -> String {
        format!(
            "cannot write to \"dead_letter\" file {}: {e}; the refused record is not kept",
            self.path
        )
    }
}

/// Keeps `record`, refused by `output` for `why`, in `dead` when there is a dead-letter file;
/// returns what to add to the error that reports the refusal.
pub fn keep(dead: Option<&DeadLetters>, output: &str, why: &str, record: &[u8]) -> String {
    match dead.map(|d| d.write(output, why, record)) {
        None => String::new(),
        Some(Ok(())) => " (kept in the dead letters)".into(),
        Some(Err(e)) => format!("; {e}"),
    }
}

/// One dead letter as a JSON line.
fn line(time_us: i64, output: &str, reason: &str, record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + reason.len() + 96);
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(civil::rfc3339_us(time_us).as_bytes());
    out.extend_from_slice(b"\",\"output\":\"");
    json_escape(output.as_bytes(), &mut out);
    out.extend_from_slice(b"\",\"reason\":\"");
    json_escape(reason.as_bytes(), &mut out);
    match std::str::from_utf8(record) {
        Ok(text) => {
            out.extend_from_slice(b"\",\"record\":\"");
            json_escape(text.as_bytes(), &mut out);
        }
        Err(_) => {
            out.extend_from_slice(b"\",\"record_b64\":\"");
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(record)
                    .as_bytes(),
            );
        }
    }
    out.extend_from_slice(b"\"}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json() {
        let l = line(0, "logger \"a\"", "HTTP 400: bad \"x\"", b"m\n\x01");
        assert_eq!(
            String::from_utf8(l).unwrap(),
            "{\"time\":\"1970-01-01T00:00:00.000000Z\",\"output\":\"logger \\\"a\\\"\",\
             \"reason\":\"HTTP 400: bad \\\"x\\\"\",\"record\":\"m\\n\\u0001\"}\n"
        );
        let l = line(0, "o", "r", b"\xff\x00");
        assert!(String::from_utf8(l)
            .unwrap()
            .contains("\"record_b64\":\"/wA=\""));
    }

    #[test]
    fn appends_and_reports() {
        let dir = std::env::temp_dir().join(format!("rlog-dl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("dead.jsonl");
        let d = DeadLetters::open(p.to_str().unwrap()).unwrap();
        d.write("o", "r1", b"one").unwrap();
        d.write("o", "r2", b"two").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text
            .lines()
            .nth(1)
            .unwrap()
            .ends_with("\"record\":\"two\"}"));
        let e = DeadLetters::open(dir.join("no/such/dir").to_str().unwrap()).unwrap_err();
        assert!(e.starts_with("cannot open \"dead_letter\" file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
