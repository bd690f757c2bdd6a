//! `log-encoder = syslog [ARGS]`: a syslog header before each record, RFC 5424 (the default) or
//! RFC 3164 (`rfc3164`), for rsyslog, syslog-ng and Logstash's syslog input.
//!
//! ARGS are uWSGI-style `key=value` pairs separated by commas (`\,` and `\\` escape a comma and
//! a backslash inside a value); `rfc3164` and `rfc5424` stand alone:
//!
//! ```text
//! log-encoder = syslog facility=local0,severity=err,app=nginx,msgid=access
//! log-encoder = syslog:errors rfc3164,facility=daemon,severity=err
//! ```
//!
//! The header's time is the `rlog_log` call's, in local time with its UTC offset (5424:
//! `2026-12-07T10:00:00.123456+01:00`; 3164: `Dec  7 10:00:00`). The procid is the pid of the
//! process that logged, read again after a `fork()` (cached per fork generation).

use super::clock;

/// RFC 5424 or RFC 3164.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Rfc5424,
    Rfc3164,
}

/// A compiled `syslog` encoder.
#[derive(Debug, Clone)]
pub struct Syslog {
    pub flavor: Flavor,
    /// `<PRI>` as text, brackets included.
    pri: Vec<u8>,
    hostname: Vec<u8>,
    app: Vec<u8>,
    /// A fixed procid; `None`: the logging process's pid.
    procid: Option<Vec<u8>>,
    msgid: Vec<u8>,
    /// Structured data (5424), `-` when none.
    sd: Vec<u8>,
}

/// The worker-side state: the last second's date text and the pid of this fork generation.
#[derive(Debug, Default)]
pub struct SyslogState {
    sec: Option<i64>,
    /// 5424: `YYYY-MM-DDThh:mm:ss`; 3164: `Mmm dd hh:mm:ss`.
    date: Vec<u8>,
    /// 5424 only: `+hh:mm`.
    offset: Vec<u8>,
    pid: Option<(u64, Vec<u8>)>,
}

const FACILITIES: &[&str] = &[
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

const SEVERITIES: &[&str] = &[
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// The keys `syslog` takes, for messages.
const KEYS: &str = "rfc5424, rfc3164, facility=, severity=, hostname=, app=, procid=, msgid=, sd=";

/// Splits `args` at unescaped commas, undoing `\,` and `\\`.
fn split_args(args: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = args.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ (',' | '\\')) => cur.push(n),
                Some(n) => {
                    cur.push('\\');
                    cur.push(n);
                }
                None => return Err("a trailing \"\\\" escapes nothing".into()),
            },
            ',' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    Ok(out.into_iter().filter(|a| !a.trim().is_empty()).collect())
}

/// A facility or severity by name or number.
fn code(key: &str, v: &str, names: &[&str]) -> Result<u8, String> {
    let aliases: &[(&str, &str)] = &[
        ("error", "err"),
        ("warn", "warning"),
        ("panic", "emerg"),
        ("critical", "crit"),
        ("informational", "info"),
        ("emergency", "emerg"),
    ];
    let v = aliases.iter().find(|(a, _)| *a == v).map_or(v, |(_, n)| n);
    if let Some(i) = names.iter().position(|n| *n == v) {
        return Ok(i as u8);
    }
    match v.parse::<u8>() {
        Ok(n) if (n as usize) < names.len() => Ok(n),
        _ => Err(format!(
            "bad {key} \"{v}\": expected 0..{} or one of {}",
            names.len() - 1,
            names.join(" ")
        )),
    }
}

/// Checks a header field: printable US-ASCII without spaces (RFC 5424 PRINTUSASCII), at most
/// `max` bytes, not empty.
fn field(key: &str, v: &str, max: usize) -> Result<Vec<u8>, String> {
    if v.is_empty() {
        return Err(format!("{key} is empty (use \"-\" for none)"));
    }
    if v.len() > max {
        return Err(format!(
            "{key} \"{v}\" is {} bytes, RFC 5424 allows {max}",
            v.len()
        ));
    }
    if let Some(b) = v.bytes().find(|b| !(33..=126).contains(b)) {
        return Err(format!(
            "{key} \"{}\" holds byte 0x{b:02x}: only printable ASCII without spaces is allowed",
            v.escape_debug()
        ));
    }
    Ok(v.as_bytes().to_vec())
}

/// Checks RFC 5424 STRUCTURED-DATA: `-` or one or more `[ID NAME="VALUE" ...]`, with `\"`,
/// `\\` and `\]` escaped inside values.
fn structured_data(sd: &str) -> Result<Vec<u8>, String> {
    let bad = |why: &str| format!("bad sd \"{sd}\": {why}");
    if sd == "-" {
        return Ok(b"-".to_vec());
    }
    let b = sd.as_bytes();
    let name_byte = |c: u8| (33..=126).contains(&c) && !matches!(c, b'=' | b' ' | b']' | b'"');
    let mut i = 0;
    if b.is_empty() {
        return Err(bad("empty (use \"-\" for none)"));
    }
    while i < b.len() {
        if b[i] != b'[' {
            return Err(bad("each element starts with \"[\""));
        }
        i += 1;
        let start = i;
        while i < b.len() && name_byte(b[i]) {
            i += 1;
        }
        if i == start || i - start > 32 {
            return Err(bad(
                "an SD-ID of 1 to 32 printable characters must follow \"[\"",
            ));
        }
        loop {
            match b.get(i) {
                Some(b']') => {
                    i += 1;
                    break;
                }
                Some(b' ') => i += 1,
                _ => return Err(bad("expected \" NAME=\\\"VALUE\\\"\" or \"]\"")),
            }
            let start = i;
            while i < b.len() && name_byte(b[i]) {
                i += 1;
            }
            if i == start || i - start > 32 {
                return Err(bad("a PARAM-NAME of 1 to 32 printable characters"));
            }
            if b.get(i) != Some(&b'=') || b.get(i + 1) != Some(&b'"') {
                return Err(bad("a PARAM-NAME is followed by =\"VALUE\""));
            }
            i += 2;
            loop {
                match b.get(i) {
                    None => return Err(bad("a value is not closed by \"")),
                    Some(b'\\') => i += 2,
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b']') => return Err(bad("\"]\" inside a value must be escaped as \\]")),
                    Some(_) => i += 1,
                }
            }
        }
    }
    Ok(b.to_vec())
}

/// This host's name (`gethostname`), or `-` if it has none.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its whole length, which is passed; gethostname writes at
    // most that many bytes.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "-".into();
    }
    let n = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    clean(&buf[..n], 255)
}

/// The program's name: the file name of the running executable (`nginx`, `uwsgi`, `python3.11`).
fn program() -> String {
    let name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.as_encoded_bytes().to_vec()))
        .unwrap_or_default();
    clean(&name, 48)
}

/// `raw` made a valid header field: non-printable bytes and spaces become `_`, cut to `max`;
/// `-` when empty.
fn clean(raw: &[u8], max: usize) -> String {
    let s: String = raw
        .iter()
        .take(max)
        .map(|&c| {
            if (33..=126).contains(&c) {
                c as char
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

impl Syslog {
    /// Compiles the arguments of `log-encoder = syslog ARGS`.
    ///
    /// Errors: an unknown key, a bad facility or severity, a header field that is not printable
    /// ASCII or too long, bad structured data, `sd` with `rfc3164` — each naming the value.
    pub fn compile(args: &str) -> Result<Syslog, String> {
        let mut flavor = Flavor::Rfc5424;
        let mut facility = 1u8;
        let mut severity = 6u8;
        let mut host = None;
        let mut app = None;
        let mut procid = None;
        let mut msgid = b"-".to_vec();
        let mut sd = None;
        for arg in split_args(args)? {
            let arg = arg.trim();
            let (k, v) = match arg.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (arg, ""),
            };
            match (k, arg.contains('=')) {
                ("rfc5424", false) => flavor = Flavor::Rfc5424,
                ("rfc3164", false) => flavor = Flavor::Rfc3164,
                ("facility", true) => facility = code("facility", v, FACILITIES)?,
                ("severity", true) => severity = code("severity", v, SEVERITIES)?,
                ("hostname" | "host", true) => host = Some(field("hostname", v, 255)?),
                ("app" | "app-name" | "appname" | "tag", true) => app = Some(field("app", v, 48)?),
                ("procid" | "pid", true) => procid = Some(field("procid", v, 128)?),
                ("msgid", true) => msgid = field("msgid", v, 32)?,
                ("sd", true) => sd = Some(structured_data(v)?),
                _ => {
                    return Err(format!(
                        "syslog: unknown argument \"{arg}\" (known: {KEYS})"
                    ))
                }
            }
        }
        if flavor == Flavor::Rfc3164 {
            if sd.is_some() {
                return Err(
                    "syslog: \"sd\" (structured data) exists in RFC 5424 only, not with rfc3164"
                        .into(),
                );
            }
            if msgid != b"-" {
                return Err("syslog: \"msgid\" exists in RFC 5424 only, not with rfc3164".into());
            }
            // `APP[PROCID]: ` is the TAG: a receiver reads it up to the first ":" and the pid
            // between the first "[" and "]", so none of them may be inside a value.
            for (key, v) in [("app", &app), ("procid", &procid)] {
                if let Some(v) = v
                    .as_deref()
                    .filter(|v| v.iter().any(|c| b"[]:".contains(c)))
                {
                    return Err(format!(
                        "syslog: {key} \"{}\" holds \"[\", \"]\" or \":\", which would cut the rfc3164 tag",
                        String::from_utf8_lossy(v)
                    ));
                }
            }
        }
        let mut pri = b"<".to_vec();
        super::template::push_int(&mut pri, facility as i64 * 8 + severity as i64);
        pri.push(b'>');
        Ok(Syslog {
            flavor,
            pri,
            hostname: host.unwrap_or_else(|| hostname().into_bytes()),
            app: app.unwrap_or_else(|| {
                let mut p = program().into_bytes();
                if flavor == Flavor::Rfc3164 {
                    // The executable's name may hold what cuts a tag (see above).
                    p.iter_mut()
                        .filter(|c| b"[]:".contains(c))
                        .for_each(|c| *c = b'_');
                }
                p
            }),
            procid,
            msgid,
            sd: sd.unwrap_or_else(|| b"-".to_vec()),
        })
    }

    /// Whether the header shows time below the second (5424's microseconds).
    pub fn needs_subsecond(&self) -> bool {
        self.flavor == Flavor::Rfc5424
    }

    /// Appends the header and `input` (without one trailing newline) to `out`.
    pub fn render(&self, input: &[u8], time_us: i64, out: &mut Vec<u8>, st: &mut SyslogState) {
        let msg = input.strip_suffix(b"\n").unwrap_or(input);
        let sec = time_us.div_euclid(1_000_000);
        if st.sec != Some(sec) {
            self.date(sec, st);
        }
        let gen = crate::sync::fork_generation();
        if self.procid.is_none() && st.pid.as_ref().is_none_or(|(g, _)| *g != gen) {
            let mut p = Vec::new();
            // SAFETY: getpid has no preconditions.
            super::template::push_int(&mut p, unsafe { libc::getpid() } as i64);
            st.pid = Some((gen, p));
        }
        let procid: &[u8] = match (&self.procid, &st.pid) {
            (Some(p), _) => p,
            (None, Some((_, p))) => p,
            (None, None) => b"-",
        };
        out.extend_from_slice(&self.pri);
        match self.flavor {
            Flavor::Rfc5424 => {
                out.extend_from_slice(b"1 ");
                out.extend_from_slice(&st.date);
                let us = time_us.rem_euclid(1_000_000);
                out.push(b'.');
                let at = out.len();
                super::template::push_int(out, 1_000_000 + us);
                out.remove(at);
                out.extend_from_slice(&st.offset);
                for f in [&self.hostname[..], &self.app, procid, &self.msgid, &self.sd] {
                    out.push(b' ');
                    out.extend_from_slice(f);
                }
                if !msg.is_empty() {
                    out.push(b' ');
                    out.extend_from_slice(msg);
                }
            }
            Flavor::Rfc3164 => {
                out.extend_from_slice(&st.date);
                out.push(b' ');
                out.extend_from_slice(&self.hostname);
                out.push(b' ');
                out.extend_from_slice(&self.app);
                out.push(b'[');
                out.extend_from_slice(procid);
                out.extend_from_slice(b"]: ");
                out.extend_from_slice(msg);
            }
        }
    }

    /// Fills `st`'s date text (and offset) for `sec`, local time.
    fn date(&self, sec: i64, st: &mut SyslogState) {
        let tm = clock::local_tm(sec);
        let two = |out: &mut Vec<u8>, n: i32| {
            out.push(b'0' + (n / 10 % 10) as u8);
            out.push(b'0' + (n % 10) as u8);
        };
        st.date.clear();
        st.offset.clear();
        let d = &mut st.date;
        match self.flavor {
            Flavor::Rfc5424 => {
                super::template::push_int(d, tm.tm_year as i64 + 1900);
                d.push(b'-');
                two(d, tm.tm_mon + 1);
                d.push(b'-');
                two(d, tm.tm_mday);
                d.push(b'T');
                let off = tm.tm_gmtoff;
                let o = &mut st.offset;
                o.push(if off < 0 { b'-' } else { b'+' });
                let m = off.unsigned_abs() / 60;
                two(o, (m / 60) as i32);
                o.push(b':');
                two(o, (m % 60) as i32);
            }
            Flavor::Rfc3164 => {
                d.extend_from_slice(MONTHS[tm.tm_mon.clamp(0, 11) as usize]);
                d.push(b' ');
                d.push(if tm.tm_mday < 10 {
                    b' '
                } else {
                    b'0' + (tm.tm_mday / 10) as u8
                });
                d.push(b'0' + (tm.tm_mday % 10) as u8);
                d.push(b' ');
            }
        }
        two(d, tm.tm_hour);
        d.push(b':');
        two(d, tm.tm_min);
        d.push(b':');
        two(d, tm.tm_sec);
        st.sec = Some(sec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(s: &Syslog, msg: &[u8], t: i64) -> String {
        let mut out = Vec::new();
        s.render(msg, t, &mut out, &mut SyslogState::default());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc5424_header() {
        let s = Syslog::compile(
            "facility=local0,severity=err,hostname=web1,app=nginx,msgid=access,sd=[x@1 a=\"b\\]\"]",
        )
        .unwrap();
        let line = render(&s, b"hello\n", 1_700_000_000_000_123);
        let pid = std::process::id();
        // local0 (16) * 8 + err (3) = 131
        let re = regex::Regex::new(&format!(
            r#"^<131>1 \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.000123[+-]\d\d:\d\d web1 nginx {pid} access \[x@1 a="b\\\]"\] hello$"#
        ))
        .unwrap();
        assert!(re.is_match(&line), "{line}");
        let d = Syslog::compile("").unwrap();
        let line = render(&d, b"", 0);
        assert!(line.starts_with("<14>1 "), "{line}");
        assert!(line.ends_with(&format!(" {pid} - -")), "{line}");
    }

    #[test]
    fn rfc3164_header() {
        let s = Syslog::compile("rfc3164,facility=daemon,severity=warning,host=h,app=app,pid=7")
            .unwrap();
        let line = render(&s, b"m", 1_700_000_000_000_000);
        let re = regex::Regex::new(
            r"^<28>(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 1-3]\d \d\d:\d\d:\d\d h app\[7\]: m$",
        )
        .unwrap();
        assert!(re.is_match(&line), "{line}");
        assert!(!s.needs_subsecond());
    }

    #[test]
    fn bad_args_are_errors() {
        for (args, want) in [
            ("facility=local9", "bad facility \"local9\""),
            ("severity=8", "bad severity \"8\""),
            ("app=a b", "only printable ASCII"),
            ("msgid=", "msgid is empty"),
            ("colour=red", "unknown argument \"colour=red\""),
            ("rfc3164,sd=[a]", "RFC 5424 only"),
            ("sd=[a b]", "bad sd"),
            ("sd=[a b=\"x]\"]", "escaped"),
            ("msgid=0123456789012345678901234567890123", "allows 32"),
        ] {
            let e = Syslog::compile(args).unwrap_err();
            assert!(e.contains(want), "{args}: {e}");
        }
        assert!(Syslog::compile("sd=[a@1 k=\"v\\,w\"][b@2]").is_ok());
    }

    /// Found by the `syslog` fuzz target: `pid=b]m` wrote `app[b]m]: `, a tag that reads back
    /// as pid `b`; an app with ":" ends rsyslog's TAG early.
    #[test]
    fn rfc3164_tag_values_cannot_cut_the_tag() {
        for args in [
            "rfc3164,pid=b]m",
            "rfc3164,pid=[1",
            "rfc3164,app=a:b",
            "rfc3164,tag=a[1]",
        ] {
            let e = Syslog::compile(args).unwrap_err();
            assert!(e.contains("would cut the rfc3164 tag"), "{args}: {e}");
        }
        // RFC 5424 has fields, not a tag: the same values are fine there.
        assert!(Syslog::compile("pid=b]m,app=a:b").is_ok());
        assert_eq!(Syslog::compile("severity=error").unwrap().pri, b"<11>");
    }
}
