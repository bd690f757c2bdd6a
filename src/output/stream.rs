//! Plain stream transport (TCP, unix stream): a batch goes out as one contiguous write.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::Instant;

use super::socket::{peek, NoSigPipe, Peek};
use super::{Output, Resume, SendError};
use crate::buffer::Buffer;

pub struct Stream {
    sock: NoSigPipe,
    /// What a send that timed out part-way through a record had already written.
    resume: Resume,
    /// What the collector said on this log stream, to report once (an rlogd:// port answers
    /// plain lines with a line saying where they go).
    said: Option<String>,
    told: bool,
}

impl Stream {
    pub fn new(sock: socket2::Socket) -> Stream {
        Stream {
            sock: NoSigPipe(sock),
            resume: Resume::default(),
            said: None,
            told: false,
        }
    }

    /// Keeps the first line of text the collector sent, to report it.
    fn heard(&mut self, bytes: &[u8]) {
        if self.told || self.said.is_some() {
            return;
        }
        let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = &line[..line.len().min(300)];
        if !line.is_empty()
            && line
                .iter()
                .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            self.said = Some(format!(
                "the collector answered on a log stream: \"{}\" (is this the right port, and its protocol?)",
                String::from_utf8_lossy(line)
            ));
        }
    }
}

/// Writes all of `data`, counting progress so a failure can say how much got through.
/// Each write is bounded by the socket's send timeout; the whole stops at `until`.
pub fn write_counted(
    w: &mut impl Write,
    data: &[u8],
    written: &mut usize,
    until: Option<Instant>,
) -> io::Result<()> {
    while *written < data.len() {
        super::past(until)?;
        match w.write(&data[*written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Output for Stream {
    fn send(&mut self, batch: &Buffer, until: Option<Instant>) -> Result<(), SendError> {
        let start = self.resume.start(batch);
        let mut written = start;
        let result = write_counted(&mut self.sock, batch.data(), &mut written, until);
        self.resume
            .settle(batch, result, written, written, written > start)
    }

    fn is_alive(&mut self) -> bool {
        loop {
            match peek(&self.sock.0) {
                Peek::Idle => return true,
                Peek::Closed => return false,
                // A collector has nothing to say on a log stream; read and discard it so the
                // receive buffer cannot fill up.
                Peek::Data => {
                    let mut sink = [0u8; 4096];
                    match (&self.sock.0).read(&mut sink) {
                        Ok(0) => return false,
                        Ok(n) => {
                            self.heard(&sink[..n]);
                            continue;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                        Err(_) => return false,
                    }
                }
            }
        }
    }

    fn take_notice(&mut self) -> Option<String> {
        let said = self.said.take()?;
        self.told = true;
        Some(said)
    }

    fn fds(&self) -> Vec<i32> {
        vec![self.sock.0.as_raw_fd()]
    }
}
