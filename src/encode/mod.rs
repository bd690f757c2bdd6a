//! uWSGI 2.0 log encoders: `prefix suffix nl gzip compress format json msgpack`, parsed from
//! `log-encoder = NAME[:LOGGER] ARGS` lines at init and run as a chain on the worker thread.
//!
//! Each encoder's output is the next one's input, as in uWSGI; `${msg}` in a later `format` is
//! the previous encoder's output. A chain is compiled once ([`Encoder::parse`]); running it
//! ([`Chain::encode`]) allocates nothing once its scratch buffers have grown.

pub mod clock;
pub mod framing;
pub mod msgpack;
pub mod syslog;
pub mod template;
pub mod zip;

use template::{Mode, Template};

/// One compiled encoder.
#[derive(Debug, Clone)]
pub enum Encoder {
    Prefix(Vec<u8>),
    Suffix(Vec<u8>),
    Nl,
    Gzip,
    Compress,
    Format(Template),
    Json(Template),
    Msgpack(msgpack::Msgpack),
    Syslog(Box<syslog::Syslog>),
}

/// A `log-encoder` line: the encoder and the logger it is limited to, if any.
#[derive(Debug, Clone)]
pub struct EncoderSpec {
    /// `Some(name)` for `NAME:LOGGER`: runs only for that named logger.
    pub logger: Option<String>,
    pub encoder: Encoder,
    /// The line's text, for messages.
    pub text: String,
}

impl Encoder {
    /// Parses a `log-encoder` value, uWSGI's way: the name runs to the first space (the rest,
    /// without that one space, is the argument), and `NAME:LOGGER` limits it to a named logger.
    ///
    /// Errors: an unknown encoder, an encoder given no argument that needs one, a bad template
    /// or msgpack list — each naming the value.
    pub fn parse(value: &str) -> Result<EncoderSpec, String> {
        let (head, args) = match value.split_once(' ') {
            Some((h, a)) => (h, a),
            None => (value, ""),
        };
        let (name, logger) = match head.split_once(':') {
            Some((n, l)) if !l.is_empty() => (n, Some(l.to_string())),
            Some((n, _)) => (n, None),
            None => (head, None),
        };
        let ctx = |e: String| format!("log-encoder \"{value}\": {e}");
        let no_args = |enc: Encoder| {
            if args.is_empty() {
                Ok(enc)
            } else {
                Err(ctx(format!("\"{name}\" takes no argument, got \"{args}\"")))
            }
        };
        let encoder = match name {
            "prefix" => Encoder::Prefix(args.as_bytes().to_vec()),
            "suffix" => Encoder::Suffix(args.as_bytes().to_vec()),
            "nl" => no_args(Encoder::Nl)?,
            "gzip" => no_args(Encoder::Gzip)?,
            "compress" => no_args(Encoder::Compress)?,
            // uWSGI takes these without a template and then turns every message into an empty
            // record: never what the line meant, so it is refused here.
            "format" | "json" if args.is_empty() => {
                return Err(ctx(format!(
                    "\"{name}\" needs a template, e.g. {}",
                    if name == "json" {
                        "json {\"msg\":\"${msg}\"}"
                    } else {
                        "format [${strftime:%H:%M:%S}] ${msg}"
                    }
                )))
            }
            "format" => Encoder::Format(Template::compile(args).map_err(ctx)?),
            "json" => Encoder::Json(Template::compile(args).map_err(ctx)?),
            "msgpack" => Encoder::Msgpack(msgpack::Msgpack::compile(args).map_err(ctx)?),
            "syslog" => Encoder::Syslog(Box::new(syslog::Syslog::compile(args).map_err(ctx)?)),
            _ => {
                return Err(ctx(format!(
                    "unknown encoder \"{name}\" (known: prefix suffix nl gzip compress format json msgpack syslog)"
                )))
            }
        };
        if let Some(l) = &logger {
            if !l.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(ctx(format!(
                    "bad logger name \"{l}\": letters and digits only"
                )));
            }
        }
        Ok(EncoderSpec {
            logger,
            encoder,
            text: value.to_string(),
        })
    }

    /// Whether this encoder needs the time of the `log` call.
    pub fn needs_time(&self) -> bool {
        match self {
            Encoder::Format(t) | Encoder::Json(t) => t.needs_time(),
            Encoder::Msgpack(m) => m.needs_time(),
            Encoder::Syslog(_) => true,
            _ => false,
        }
    }

    /// Whether this encoder needs the time below the second.
    pub fn needs_subsecond(&self) -> bool {
        match self {
            Encoder::Format(t) | Encoder::Json(t) => t.needs_subsecond(),
            Encoder::Msgpack(m) => m.needs_subsecond(),
            Encoder::Syslog(s) => s.needs_subsecond(),
            _ => false,
        }
    }

    /// Appends `input` encoded to `out`; `state` is this encoder's worker-side state (deflate
    /// stream, strftime caches), created on first use.
    ///
    /// Errors: `gzip`/`compress` of an empty record; a strftime text longer than
    /// [`clock::MAX_TEXT`].
    pub fn apply(
        &self,
        input: &[u8],
        time_us: i64,
        out: &mut Vec<u8>,
        state: &mut EncState,
    ) -> Result<(), String> {
        match self {
            Encoder::Prefix(p) => {
                out.extend_from_slice(p);
                out.extend_from_slice(input);
            }
            Encoder::Suffix(s) => {
                out.extend_from_slice(input);
                out.extend_from_slice(s);
            }
            Encoder::Nl => {
                out.extend_from_slice(input);
                out.push(b'\n');
            }
            Encoder::Gzip => zip::gzip(state.deflate(false), input, out)?,
            Encoder::Compress => zip::compress(state.deflate(true), input, out)?,
            Encoder::Format(t) => t.render(Mode::Raw, input, time_us, out, state.clocks())?,
            Encoder::Json(t) => t.render(Mode::Json, input, time_us, out, state.clocks())?,
            Encoder::Msgpack(m) => m.render(input, time_us, out, state.clocks())?,
            Encoder::Syslog(s) => s.render(input, time_us, out, state.syslog()),
        }
        Ok(())
    }
}

/// The encoders one logger runs, in order.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    encoders: Vec<Encoder>,
}

/// One encoder's worker-side state: kept by the worker, never shared, so encoding takes no lock
/// (and a `fork()` cannot leave one held).
#[derive(Default)]
pub enum EncState {
    #[default]
    Empty,
    /// The stream and whether it writes a zlib header (compress) or raw deflate (gzip).
    Deflate(Box<flate2::Compress>, bool),
    Clocks(Vec<clock::ClockCache>),
    Syslog(syslog::SyslogState),
}

impl std::fmt::Debug for EncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncState::Empty => f.write_str("Empty"),
            EncState::Deflate(_, zlib) => f.debug_tuple("Deflate").field(zlib).finish(),
            EncState::Clocks(c) => f.debug_tuple("Clocks").field(&c.len()).finish(),
            EncState::Syslog(s) => f.debug_tuple("Syslog").field(s).finish(),
        }
    }
}

impl EncState {
    fn deflate(&mut self, zlib_header: bool) -> &mut flate2::Compress {
        if !matches!(self, EncState::Deflate(_, z) if *z == zlib_header) {
            *self = EncState::Deflate(Box::new(zip::deflate_state(zlib_header)), zlib_header);
        }
        match self {
            EncState::Deflate(z, _) => z,
            _ => unreachable!("set above"),
        }
    }

    fn syslog(&mut self) -> &mut syslog::SyslogState {
        if !matches!(self, EncState::Syslog(_)) {
            *self = EncState::Syslog(syslog::SyslogState::default());
        }
        match self {
            EncState::Syslog(s) => s,
            _ => unreachable!("set above"),
        }
    }

    fn clocks(&mut self) -> &mut Vec<clock::ClockCache> {
        if !matches!(self, EncState::Clocks(_)) {
            *self = EncState::Clocks(Vec::new());
        }
        match self {
            EncState::Clocks(c) => c,
            _ => unreachable!("set above"),
        }
    }
}

/// The worker-side state of one [`Chain`]: reusable buffers and each encoder's state. One
/// `Scratch` serves one chain (its states follow that chain's encoders by position).
#[derive(Debug, Default)]
pub struct Scratch {
    a: Vec<u8>,
    b: Vec<u8>,
    states: Vec<EncState>,
}

impl Chain {
    /// The chain of the logger named `logger` (`None`: an unnamed logger): every encoder without
    /// a logger name, plus those naming this logger, in config order — uWSGI's rule.
    pub fn for_logger(specs: &[EncoderSpec], logger: Option<&str>) -> Chain {
        Chain {
            encoders: specs
                .iter()
                .filter(|s| match (&s.logger, logger) {
                    (None, _) => true,
                    (Some(want), Some(name)) => want == name,
                    (Some(_), None) => false,
                })
                .map(|s| s.encoder.clone())
                .collect(),
        }
    }

    /// The first encoder in the chain whose records are binary and may hold any byte, newline
    /// included (`gzip`, `compress`, `msgpack`): such records need octet framing on a stream.
    pub fn binary_encoder(&self) -> Option<&'static str> {
        self.encoders.iter().find_map(|e| match e {
            Encoder::Gzip => Some("gzip"),
            Encoder::Compress => Some("compress"),
            Encoder::Msgpack(_) => Some("msgpack"),
            _ => None,
        })
    }

    /// Whether the chain has a `syslog` encoder: its records want RFC 6587 octet counting on a
    /// stream.
    pub fn has_syslog(&self) -> bool {
        self.encoders
            .iter()
            .any(|e| matches!(e, Encoder::Syslog(_)))
    }

    pub fn is_empty(&self) -> bool {
        self.encoders.is_empty()
    }

    pub fn needs_time(&self) -> bool {
        self.encoders.iter().any(Encoder::needs_time)
    }

    pub fn needs_subsecond(&self) -> bool {
        self.encoders.iter().any(Encoder::needs_subsecond)
    }

    /// Runs the chain over `msg` (logged at `time_us`, 0 when time is not captured) and returns
    /// the encoded record, which lives in `scratch` until the next call. `scratch` must be this
    /// chain's own (see [`Scratch`]).
    ///
    /// Errors: the first encoder error (see [`Encoder::apply`]), or an empty result.
    pub fn encode<'s>(
        &self,
        msg: &'s [u8],
        time_us: i64,
        scratch: &'s mut Scratch,
    ) -> Result<&'s [u8], String> {
        if self.encoders.is_empty() {
            return Ok(msg);
        }
        let Scratch { a, b, states } = scratch;
        if states.len() != self.encoders.len() {
            states.clear();
            states.resize_with(self.encoders.len(), EncState::default);
        }
        a.clear();
        self.encoders[0].apply(msg, time_us, a, &mut states[0])?;
        for (e, st) in self.encoders[1..].iter().zip(&mut states[1..]) {
            b.clear();
            e.apply(a, time_us, b, st)?;
            std::mem::swap(a, b);
        }
        // An empty record would be sent as nothing on a stream (and counted as delivered) or
        // as an empty datagram: the message is reported as not sent instead (SPEC §3).
        if a.is_empty() {
            return Err("the encoders turned the message into an empty record".to_string());
        }
        Ok(a.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(lines: &[&str], logger: Option<&str>) -> Chain {
        let specs: Vec<_> = lines.iter().map(|l| Encoder::parse(l).unwrap()).collect();
        Chain::for_logger(&specs, logger)
    }

    fn run(c: &Chain, msg: &[u8]) -> Vec<u8> {
        let mut s = Scratch::default();
        c.encode(msg, 0, &mut s).unwrap().to_vec()
    }

    #[test]
    fn parse_like_uwsgi() {
        let s = Encoder::parse("prefix i am gzip encoded").unwrap();
        assert!(matches!(&s.encoder, Encoder::Prefix(p) if p == b"i am gzip encoded"));
        assert!(s.logger.is_none());
        let s = Encoder::parse("prefix:errors  two spaces").unwrap();
        assert_eq!(s.logger.as_deref(), Some("errors"));
        assert!(matches!(&s.encoder, Encoder::Prefix(p) if p == b" two spaces"));
        let s = Encoder::parse("gzip:secondlogger").unwrap();
        assert_eq!(s.logger.as_deref(), Some("secondlogger"));
        assert!(
            matches!(Encoder::parse("prefix").unwrap().encoder, Encoder::Prefix(p) if p.is_empty())
        );
        assert!(Encoder::parse("rot13")
            .unwrap_err()
            .contains("unknown encoder \"rot13\""));
        assert!(Encoder::parse("gzip 9")
            .unwrap_err()
            .contains("takes no argument"));
        assert!(Encoder::parse("json {${nope}}")
            .unwrap_err()
            .contains("${nope}"));
        for bare in ["json", "format", "json:errors", "json "] {
            let e = Encoder::parse(bare).unwrap_err();
            assert!(e.contains("needs a template, e.g."), "{bare}: {e}");
        }
        assert!(Encoder::parse("prefix:a-b x")
            .unwrap_err()
            .contains("bad logger name"));
    }

    #[test]
    fn chains_apply_in_order_and_by_logger() {
        let lines = ["prefix [A] ", "suffix:errors  [E]", "format <${msg}>", "nl"];
        assert_eq!(run(&chain(&lines, None), b"hi\n"), b"<[A] hi>\n");
        assert_eq!(
            run(&chain(&lines, Some("errors")), b"hi"),
            b"<[A] hi [E]>\n"
        );
        assert_eq!(run(&chain(&lines, Some("other")), b"hi"), b"<[A] hi>\n");
        assert_eq!(run(&Chain::default(), b"raw"), b"raw");
        assert!(chain(&["json ${unix}"], None).needs_time());
        assert!(!chain(&["json ${unix}"], Some("x")).is_empty());
        assert!(chain(&["json:x ${unix}"], None).is_empty());
    }

    #[test]
    fn encoder_errors_surface() {
        let c = chain(&["gzip"], None);
        let mut s = Scratch::default();
        assert!(c.encode(b"", 0, &mut s).unwrap_err().contains("empty"));
        let c = chain(&["prefix x", "gzip"], None);
        assert!(c.encode(b"", 0, &mut s).is_ok());
        // "\n" without its newline is empty: no empty record goes out.
        let c = chain(&["format ${msg}"], None);
        assert!(c
            .encode(b"\n", 0, &mut s)
            .unwrap_err()
            .contains("empty record"));
        assert_eq!(c.encode(b"x\n", 0, &mut s).unwrap(), b"x");
    }
}
