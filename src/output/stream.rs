//! Plain stream transport (TCP, unix stream): a batch goes out as one contiguous write.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::time::Instant;

use super::socket::{peek, NoSigPipe, Peek};
use super::{Output, Resume, SendError};
use crate::buffer::Buffer;

pub struct Stream {
    sock: NoSigPipe,
    /// What a send that timed out part-way through a record had already written.
    resume: Resume,
}

impl Stream {
    pub fn new(sock: socket2::Socket) -> Stream {
        Stream {
            sock: NoSigPipe(sock),
            resume: Resume::default(),
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
                    let mut sink = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
                    match self.sock.0.recv_with_flags(&mut sink, libc::MSG_DONTWAIT) {
                        Ok(0) => return false,
                        Ok(_) => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                        Err(_) => return false,
                    }
                }
            }
        }
    }

    fn fds(&self) -> Vec<i32> {
        vec![self.sock.0.as_raw_fd()]
    }
}
