//! The `rlogd://` transport: batches go to rlogd in length-prefixed frames with this worker's
//! producer id and each message's sequence number, and count as delivered only when rlogd
//! acknowledges them — which it does after they are `fsync`ed. A batch that was stored but
//! whose acknowledgement was lost is resent by the worker and dropped by rlogd as a duplicate,
//! so every message is stored exactly once.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socket2::Socket;

use super::socket::{connect_tcp, NoSigPipe};
use super::tls::Stream;
use super::{Output, SendError};
use crate::buffer::Buffer;
use crate::config::RlogdSettings;
use crate::output::tls::{Tls, TlsSettings};
use crate::proto::frame::{self, FrameError, Hello, Role};

/// Message bytes per frame: large enough for group commit to pay off, small enough to keep
/// the memory of both sides bounded.
const FRAME_TARGET: usize = 1 << 20;
/// Frames sent before waiting for the first acknowledgement.
const WINDOW: usize = 8;

/// A connection to rlogd, past its handshake.
pub struct Rlogd {
    stream: Stream,
    /// The same socket, to look at it without reading (`is_alive`).
    probe: Socket,
    producer: u64,
    record_type: u16,
    compress: bool,
    /// Largest frame the server accepts.
    max_frame: usize,
    out: Vec<u8>,
    body: Vec<u8>,
}

/// rlogd's refusal, worded by rlogd (kind `Other`, so resty's error string carries it).
fn refused(body: &[u8]) -> io::Error {
    io::Error::other(format!("rlogd refused: {}", String::from_utf8_lossy(body)))
}

fn protocol(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn frame_err(e: FrameError) -> io::Error {
    match e {
        FrameError::Io(e) => e,
        e => protocol(format!("bad frame from rlogd: {e}")),
    }
}

/// Why a batch frame could not be encoded.
enum Encode {
    /// A record larger than this server's frame limit: it can never be sent.
    TooLarge(String),
    Io(io::Error),
}

impl Rlogd {
    /// Connects, runs TLS if configured, and says HELLO (with the token). Errors: connect or
    /// handshake failures; rlogd's refusal (`rlogd refused: wrong token`).
    pub fn connect_to(
        host: &str,
        port: u16,
        tls: Option<&TlsSettings>,
        settings: &RlogdSettings,
        timeout: Duration,
        producer: u64,
    ) -> io::Result<Rlogd> {
        let sock = connect_tcp(host, port, timeout)?;
        let probe = sock.try_clone()?;
        let stream = match tls {
            None => Stream::Plain(NoSigPipe(sock)),
            Some(t) => Stream::Tls(Box::new(Tls::handshake(sock, t, timeout)?.into_stream())),
        };
        let mut r = Rlogd {
            stream,
            probe,
            producer,
            record_type: settings.record_type,
            compress: settings.compress,
            max_frame: frame::DEFAULT_MAX_FRAME,
            out: Vec::new(),
            body: Vec::new(),
        };
        let hello = Hello {
            version: frame::PROTOCOL,
            token: settings.token.clone(),
            role: Role::Producer,
        };
        frame::write_frame(&mut r.stream, frame::HELLO, &hello.encode())?;
        match frame::read_frame(&mut r.stream, frame::DEFAULT_MAX_FRAME, &mut r.body)
            .map_err(frame_err)?
        {
            frame::WELCOME => {
                let (_, max) = frame::decode_welcome(&r.body).map_err(protocol)?;
                r.max_frame = (max as usize).clamp(4096, frame::DEFAULT_MAX_FRAME);
            }
            frame::ERROR => return Err(refused(&r.body)),
            k => {
                return Err(protocol(format!(
                    "expected WELCOME from rlogd, got frame kind {k}"
                )))
            }
        }
        // An acknowledgement waits for an fsync: give it more than a plain send.
        r.probe
            .set_read_timeout(Some(timeout.max(Duration::from_secs(5))))?;
        Ok(r)
    }

    /// Encodes records `from..` of `batch` into one BATCH frame in `self.out`; returns the
    /// index just past the last record included. Errors: a record that cannot fit any frame.
    fn encode(&mut self, batch: &Buffer, from: usize) -> Result<usize, Encode> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let limit = FRAME_TARGET.min(self.max_frame - 64);
        self.out.clear();
        let at = frame::begin_frame(&mut self.out, frame::BATCH);
        let head = self.out.len();
        frame::batch_head(&mut self.out, 0, 0, 0, frame::CODEC_NONE, 0);
        let mut end = from;
        while end < batch.len() {
            let r = batch.record(end);
            let size = frame::BATCH_RECORD_HEAD + r.bytes.len();
            if end > from && self.out.len() + size > limit {
                break;
            }
            if self.out.len() + size > self.max_frame - 16
                || r.bytes.len() > crate::proto::format::MAX_PAYLOAD
            {
                return Err(Encode::TooLarge(format!(
                    "a message of {} bytes exceeds rlogd's frame limit",
                    r.bytes.len()
                )));
            }
            frame::batch_record(
                &mut self.out,
                r.time_us.unwrap_or(now),
                self.record_type,
                r.bytes,
            );
            end += 1;
        }
        let records_at = head + frame::BATCH_HEAD;
        let raw_len = (self.out.len() - records_at) as u32;
        let mut codec = frame::CODEC_NONE;
        if self.compress {
            let mut z = flate2::write::ZlibEncoder::new(
                Vec::with_capacity(raw_len as usize / 2),
                flate2::Compression::fast(),
            );
            z.write_all(&self.out[records_at..]).map_err(Encode::Io)?;
            let z = z.finish().map_err(Encode::Io)?;
            // Only when it helps (and the frame stays within the limit, which it then does).
            if z.len() < raw_len as usize {
                self.out.truncate(records_at);
                self.out.extend_from_slice(&z);
                codec = frame::CODEC_ZLIB;
            }
        }
        let mut h = Vec::with_capacity(frame::BATCH_HEAD);
        frame::batch_head(
            &mut h,
            self.producer,
            batch.first_seq + from as u64,
            (end - from) as u32,
            codec,
            raw_len,
        );
        self.out[head..records_at].copy_from_slice(&h);
        frame::end_frame(&mut self.out, at);
        Ok(end)
    }

    /// Reads one acknowledgement and checks it is the one expected.
    fn read_ack(&mut self, next_seq: u64) -> io::Result<()> {
        match frame::read_frame(&mut self.stream, 4096, &mut self.body).map_err(frame_err)? {
            frame::ACK => {
                let (p, n) = frame::decode_ack(&self.body).map_err(protocol)?;
                if p != self.producer || n != next_seq {
                    return Err(protocol(format!(
                        "rlogd acknowledged sequence {n} of producer {p:x}, expected {next_seq} of {:x}",
                        self.producer
                    )));
                }
                Ok(())
            }
            frame::ERROR => Err(io::Error::other(format!(
                "rlogd: {}",
                String::from_utf8_lossy(&self.body)
            ))),
            k => Err(protocol(format!(
                "expected ACK from rlogd, got frame kind {k}"
            ))),
        }
    }
}

impl Output for Rlogd {
    fn send(&mut self, batch: &Buffer, until: Option<Instant>) -> Result<(), SendError> {
        // Frames in flight: (records of the batch acknowledged once it is, its next sequence).
        let mut window: VecDeque<(usize, u64)> = VecDeque::new();
        let mut acked = 0usize;
        let mut sent = 0usize;
        let fail = SendError::retry;
        while sent < batch.len() || !window.is_empty() {
            super::past(until).map_err(|e| fail(acked, e))?;
            if sent < batch.len() && window.len() < WINDOW {
                let end = match self.encode(batch, sent) {
                    Ok(end) => end,
                    Err(Encode::Io(e)) => return Err(fail(acked, e)),
                    Err(Encode::TooLarge(why)) => {
                        // Record `sent` exceeds this server's frame limit. What is in flight
                        // is acknowledged first, so the driver knows exactly which record it
                        // gives up on.
                        while let Some((end, next_seq)) = window.pop_front() {
                            self.read_ack(next_seq).map_err(|e| fail(acked, e))?;
                            acked = end;
                        }
                        return Err(SendError::reject(acked, why));
                    }
                };
                self.stream
                    .write_all(&self.out)
                    .map_err(|e| fail(acked, e))?;
                window.push_back((end, batch.first_seq + end as u64));
                sent = end;
                continue;
            }
            let (end, next_seq) = window.pop_front().expect("window is not empty");
            self.read_ack(next_seq).map_err(|e| fail(acked, e))?;
            acked = end;
        }
        Ok(())
    }

    fn is_alive(&mut self) -> bool {
        // rlogd speaks only when spoken to: anything unasked for is its goodbye.
        self.stream.is_idle(&self.probe)
    }

    fn fds(&self) -> Vec<i32> {
        let mut v = vec![self.probe.as_raw_fd()];
        match &self.stream {
            Stream::Plain(s) => v.push(s.0.as_raw_fd()),
            Stream::Tls(s) => v.push(s.sock.0.as_raw_fd()),
        }
        v
    }
}
