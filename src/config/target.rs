//! `logger = [NAME] TARGET`: the loggers of uWSGI-style configs and where each one delivers.
//!
//! The name rule is uWSGI's: when the value has a space and everything before it is letters and
//! digits, that word is the logger's name. Targets: `socket:HOST:PORT[,TEXT]` (UDP, one datagram
//! per record, TEXT sent raw before each — uWSGI's socket logger), `socket:/path[,TEXT]` (unix
//! datagram), `udp://HOST:PORT`, `tcp://HOST:PORT`, `unix:///path` (unix stream),
//! `tls://HOST:PORT`, `rlogd://HOST:PORT` (rlogd's acknowledged protocol) and `rlogds://HOST:PORT`
//! (the same over TLS, as `tls://` is TCP over TLS), `nats://HOST:PORT/SUBJECT` (NATS JetStream
//! publishes, acknowledged) and `nats+tls://HOST:PORT/SUBJECT` (the same, TLS required),
//! `relp://HOST:PORT` (RELP to rsyslog's imrelp) and `relps://HOST:PORT` (the same over TLS),
//! `clickhouse://[USER:PASS@]HOST[:PORT]/DB.TABLE` (rows into a ClickHouse table over the http
//! output).

use std::fmt;

use super::clickhouse::ClickHouseTarget;
use super::percent::percent_decode;

/// Where a logger delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One UDP datagram per record.
    Udp {
        host: String,
        port: u16,
    },
    /// One unix datagram per record.
    UnixDgram {
        path: String,
    },
    Tcp {
        host: String,
        port: u16,
    },
    Tls {
        host: String,
        port: u16,
    },
    UnixStream {
        path: String,
    },
    /// rlogd's acknowledged, deduplicated protocol (`rlogd://`); TLS when the sink has TLS
    /// settings (`rlogds://`, or `ssl = true` on the `host`/`port` logger).
    Rlogd {
        host: String,
        port: u16,
    },
    /// `rlogds://`: rlogd over TLS. `SinkSet` building turns it into `Rlogd` with TLS settings.
    RlogdTls {
        host: String,
        port: u16,
    },
    /// `http://` or `https://` (`https`): batched requests to `path` (query included).
    Http {
        https: bool,
        host: String,
        port: u16,
        /// The request target: the URL's path and query (`/` at least).
        path: String,
        /// `USER:PASS` from the URL, sent as Basic authorization.
        userinfo: Option<String>,
    },
    /// NATS JetStream: each record one message published to `subject`, delivered once the
    /// stream acknowledges it. TLS when the sink has TLS settings (`nats+tls://`) or when the
    /// server requires it.
    Nats {
        host: String,
        port: u16,
        subject: String,
    },
    /// `nats+tls://`: TLS whatever the server says. `SinkSet` building turns it into `Nats`
    /// with TLS settings.
    NatsTls {
        host: String,
        port: u16,
        subject: String,
    },
    /// RELP to rsyslog's imrelp: each record acknowledged. TLS when the sink has TLS settings
    /// (`relps://`).
    Relp {
        host: String,
        port: u16,
    },
    /// `relps://`: RELP over TLS (imrelp's `tls="on"`). `SinkSet` building turns it into `Relp`
    /// with TLS settings.
    RelpTls {
        host: String,
        port: u16,
    },
    /// `clickhouse://`: `INSERT ... FORMAT JSONEachRow` requests through the http output.
    ClickHouse(ClickHouseTarget),
}

impl Target {
    /// Datagram targets carry one record per datagram; stream targets need framing.
    pub fn is_datagram(&self) -> bool {
        matches!(self, Target::Udp { .. } | Target::UnixDgram { .. })
    }

    /// rlogd targets frame, number and acknowledge records themselves.
    pub fn is_rlogd(&self) -> bool {
        matches!(self, Target::Rlogd { .. } | Target::RlogdTls { .. })
    }

    /// http and https targets batch records into requests (and so do clickhouse targets,
    /// which ride on the http output and take its keys).
    pub fn is_http(&self) -> bool {
        matches!(self, Target::Http { .. } | Target::ClickHouse(_))
    }

    /// NATS targets carry each record as one message, acknowledged.
    pub fn is_nats(&self) -> bool {
        matches!(self, Target::Nats { .. } | Target::NatsTls { .. })
    }

    /// RELP targets frame and acknowledge each record themselves.
    pub fn is_relp(&self) -> bool {
        matches!(self, Target::Relp { .. } | Target::RelpTls { .. })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Udp { host, port } => write!(f, "udp://{}", join_host(host, *port)),
            Target::UnixDgram { path } => write!(f, "socket:{path}"),
            Target::Tcp { host, port } => write!(f, "tcp://{}", join_host(host, *port)),
            Target::Tls { host, port } => write!(f, "tls://{}", join_host(host, *port)),
            Target::UnixStream { path } => write!(f, "unix://{path}"),
            Target::Rlogd { host, port } => write!(f, "rlogd://{}", join_host(host, *port)),
            Target::RlogdTls { host, port } => write!(f, "rlogds://{}", join_host(host, *port)),
            Target::Http {
                https,
                host,
                port,
                path,
                userinfo,
            } => {
                let scheme = if *https { "https" } else { "http" };
                // The password is not shown in messages.
                let user = match userinfo {
                    Some(u) => format!("{}:***@", u.split(':').next().unwrap_or("")),
                    None => String::new(),
                };
                write!(
                    f,
                    "{scheme}://{user}{}{}",
                    join_host(host, *port),
                    masked_query(path)
                )
            }
            Target::Nats {
                host,
                port,
                subject,
            } => write!(f, "nats://{}/{subject}", join_host(host, *port)),
            Target::NatsTls {
                host,
                port,
                subject,
            } => write!(f, "nats+tls://{}/{subject}", join_host(host, *port)),
            Target::Relp { host, port } => write!(f, "relp://{}", join_host(host, *port)),
            Target::RelpTls { host, port } => write!(f, "relps://{}", join_host(host, *port)),
            Target::ClickHouse(t) => write!(f, "{t}"),
        }
    }
}

/// `path` with the value of each query parameter shown as `***`: queries carry API keys and
/// tokens (`?api_key=...`), and this text goes into messages, dead letters and the spool's
/// directory names.
fn masked_query(path: &str) -> String {
    let Some((p, q)) = path.split_once('?') else {
        return path.to_string();
    };
    let params: Vec<String> = q
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) => format!("{k}=***"),
            None => kv.to_string(),
        })
        .collect();
    format!("{p}?{}", params.join("&"))
}

/// A `logger` line's value as errors show it: a URL's password as `***` (its user alone too,
/// which NATS would read as a token), and each query value as `***`.
fn masked_value(value: &str) -> String {
    let Some(i) = value.find("://") else {
        return value.to_string();
    };
    let (head, rest) = value.split_at(i + 3);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((u, h)) => match u.split_once(':') {
            Some((user, _)) => format!("{user}:***@{h}"),
            None => format!("***@{h}"),
        },
        None => authority.to_string(),
    };
    format!("{head}{authority}{}", masked_query(path))
}

/// `HOST:PORT`, with brackets around an IPv6 host.
pub(crate) fn join_host(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The longest unix socket path the kernel takes: `sun_path` is 108 bytes, NUL included.
pub(crate) const MAX_UNIX_PATH: usize = 107;

/// Checks that `path` fits in `sun_path`; a longer one would make every connect fail.
///
/// Errors: the path's length and the limit.
pub(crate) fn check_unix_path(path: &str) -> Result<(), String> {
    if path.len() > MAX_UNIX_PATH {
        return Err(format!(
            "unix socket path is too long: {} bytes, the limit is {MAX_UNIX_PATH} (sun_path holds {} with the NUL)",
            path.len(),
            MAX_UNIX_PATH + 1
        ));
    }
    Ok(())
}

/// One parsed `logger` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerSpec {
    /// `None` for an unnamed (default) logger.
    pub name: Option<String>,
    pub target: Target,
    /// Raw bytes sent before each record (`socket:...,TEXT`).
    pub prefix: Vec<u8>,
}

/// Parses a `logger` value.
///
/// Errors: an unknown target type, a bad address or port — naming the value.
pub fn parse_logger(value: &str) -> Result<LoggerSpec, String> {
    let ctx = |e: &str| format!("logger \"{}\": {e}", masked_value(value));
    let (name, target) = match value.split_once(' ') {
        Some((n, t)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            (Some(n.to_string()), t.trim_start())
        }
        _ => (None, value),
    };
    let mut prefix = Vec::new();
    let target = if let Some(rest) = target.strip_prefix("socket:") {
        let (addr, text) = match rest.split_once(',') {
            Some((a, t)) => (a, Some(t)),
            None => (rest, None),
        };
        if let Some(t) = text {
            prefix = t.as_bytes().to_vec();
        }
        if addr.contains(':') {
            let (host, port) = host_port(addr).map_err(|e| ctx(&e))?;
            Target::Udp { host, port }
        } else if addr.is_empty() {
            return Err(ctx("\"socket:\" needs HOST:PORT or a socket path"));
        } else {
            check_unix_path(addr).map_err(|e| ctx(&e))?;
            Target::UnixDgram {
                path: addr.to_string(),
            }
        }
    } else if let Some(rest) = target.strip_prefix("udp://") {
        let (host, port) = host_port(rest).map_err(|e| ctx(&e))?;
        Target::Udp { host, port }
    } else if let Some(rest) = target.strip_prefix("tcp://") {
        let (host, port) = host_port(rest).map_err(|e| ctx(&e))?;
        Target::Tcp { host, port }
    } else if let Some(rest) = target.strip_prefix("tls://") {
        let (host, port) = host_port(rest).map_err(|e| ctx(&e))?;
        Target::Tls { host, port }
    } else if let Some(rest) = target.strip_prefix("rlogd://") {
        let (host, port) = host_port(rest).map_err(|e| ctx(&e))?;
        Target::Rlogd { host, port }
    } else if let Some(rest) = target.strip_prefix("rlogds://") {
        let (host, port) = host_port(rest).map_err(|e| ctx(&e))?;
        Target::RlogdTls { host, port }
    } else if let Some(rest) = target.strip_prefix("http://") {
        http_url(rest, false).map_err(|e| ctx(&e))?
    } else if let Some(rest) = target.strip_prefix("https://") {
        http_url(rest, true).map_err(|e| ctx(&e))?
    } else if let Some(rest) = target.strip_prefix("nats://") {
        let (host, port, subject) = nats_address(rest).map_err(|e| ctx(&e))?;
        Target::Nats {
            host,
            port,
            subject,
        }
    } else if let Some(rest) = target.strip_prefix("nats+tls://") {
        let (host, port, subject) = nats_address(rest).map_err(|e| ctx(&e))?;
        Target::NatsTls {
            host,
            port,
            subject,
        }
    } else if let Some(rest) = target.strip_prefix("relp://") {
        let (host, port) = host_port(rest).map_err(|e| ctx(&e))?;
        Target::Relp { host, port }
    } else if let Some(rest) = target.strip_prefix("relps://") {
        let (host, port) = host_port(rest).map_err(|e| ctx(&e))?;
        Target::RelpTls { host, port }
    } else if let Some(rest) = target.strip_prefix("clickhouse://") {
        Target::ClickHouse(ClickHouseTarget::parse(rest, false).map_err(|e| ctx(&e))?)
    } else if let Some(rest) = target.strip_prefix("clickhouses://") {
        Target::ClickHouse(ClickHouseTarget::parse(rest, true).map_err(|e| ctx(&e))?)
    } else if let Some(path) = target.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(ctx(
                "\"unix://\" needs an absolute path (unix:///run/log.sock)",
            ));
        }
        check_unix_path(path).map_err(|e| ctx(&e))?;
        Target::UnixStream {
            path: path.to_string(),
        }
    } else {
        return Err(ctx(
            "unsupported target (supported: socket:HOST:PORT[,TEXT], socket:/path[,TEXT], udp://HOST:PORT, tcp://HOST:PORT, tls://HOST:PORT, unix:///path, rlogd://HOST:PORT, rlogds://HOST:PORT, http[s]://[USER:PASS@]HOST[:PORT]/PATH, nats://HOST:PORT/SUBJECT, nats+tls://HOST:PORT/SUBJECT, relp://HOST:PORT, relps://HOST:PORT, clickhouse://[USER:PASS@]HOST[:PORT]/DB.TABLE)",
        ));
    };
    Ok(LoggerSpec {
        name,
        target,
        prefix,
    })
}

/// `[USER:PASS@]HOST[:PORT][/PATH[?QUERY]]`, after `http://` or `https://`.
fn http_url(rest: &str, https: bool) -> Result<Target, String> {
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    if path.contains('#') {
        return Err(format!(
            "a fragment (\"#...\") is not sent to a server: \"{}\"",
            masked_query(&path)
        ));
    }
    if path
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b >= 0x80)
    {
        return Err(format!(
            "the path \"{}\" has spaces, control or non-ASCII characters: percent-encode them",
            masked_query(&path)
        ));
    }
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => {
            if !u.contains(':') {
                return Err("credentials in the URL must be USER:PASS".to_string());
            }
            (Some(percent_decode(u)?), h)
        }
        None => (None, authority),
    };
    let default = if https { 443 } else { 80 };
    let has_port = if let Some(r) = hostport.strip_prefix('[') {
        r.contains("]:")
    } else {
        hostport.contains(':')
    };
    let (host, port) = if has_port {
        host_port(hostport)?
    } else {
        let h = hostport.trim_start_matches('[').trim_end_matches(']');
        if h.is_empty() {
            return Err(format!("bad address \"{hostport}\": the host is missing"));
        }
        (h.to_string(), default)
    };
    Ok(Target::Http {
        https,
        host,
        port,
        path,
        userinfo,
    })
}

/// `HOST:PORT/SUBJECT` of a NATS target.
fn nats_address(s: &str) -> Result<(String, u16, String), String> {
    let (addr, subject) = s
        .split_once('/')
        .ok_or_else(|| format!("bad address \"{s}\": expected HOST:PORT/SUBJECT"))?;
    if addr.contains('@') {
        return Err(
            "credentials are not taken in a NATS URL: set nats_user and nats_password, \
                    or nats_token"
                .to_string(),
        );
    }
    let (host, port) = host_port(addr)?;
    super::nats::check_subject(subject)?;
    Ok((host, port, subject.to_string()))
}

/// `HOST:PORT` or `[V6]:PORT`.
fn host_port(s: &str) -> Result<(String, u16), String> {
    if s.contains('@') {
        // Not echoed: what precedes the `@` is a password or a token.
        return Err("credentials (USER:PASS@) are not taken in this target's address".to_string());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| format!("bad address \"{s}\": expected [HOST]:PORT"))?;
        (h, p)
    } else {
        s.rsplit_once(':')
            .ok_or_else(|| format!("bad address \"{s}\": expected HOST:PORT"))?
    };
    if host.is_empty() {
        return Err(format!("bad address \"{s}\": the host is missing"));
    }
    if port.is_empty() {
        return Err(format!("bad address \"{s}\": the port is missing"));
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        let hint = match port.find(|c: char| !c.is_ascii_digit()) {
            Some(i) if i > 0 && port[i..].starts_with('/') => {
                format!(
                    ": a socket target takes no path, write \"{host}:{}\"",
                    &port[..i]
                )
            }
            _ => String::new(),
        };
        return Err(format!(
            "bad port \"{port}\" in \"{s}\": expected a number 0~65535{hint}"
        ));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("\"port\" out of range 0~65535 in \"{s}\""))?;
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_target_s_error_shows_no_password_token_nor_query_value() {
        // Config errors reach stderr, nginx's error log and Python exceptions.
        for value in [
            "http://bob:s3cret@127.0.0.1:notaport/in",
            "http://bob:s3cret@127.0.0.1:99999/in?api_key=KEY42",
            "a http://bob:s3cret@127.0.0.1:9/in?api_key=KEY42#frag",
            "https://bob:s3cret@127.0.0.1:9/a b?api_key=KEY42",
            "http://bob:s3cr%zzet@127.0.0.1:9/in",
            "clickhouse://bob:s3cret@127.0.0.1:8123/nodot",
            "clickhouse://bob:s3cr%zzet@127.0.0.1:8123/db.t",
            "clickhouse://bob:s3cret@127.0.0.1:x/db.t",
            "nats://bob:s3cret@127.0.0.1:4222/subj",
            "nats+tls://bob:s3cret@127.0.0.1:4222/subj",
            "nats://TOKEN42@127.0.0.1:4222/subj",
            "tcp://bob:s3cret@127.0.0.1:9",
            "rlogds://bob:s3cret@127.0.0.1:9",
            "relp://TOKEN42@127.0.0.1:9",
        ] {
            let e = parse_logger(value).expect_err(value);
            for secret in ["s3cr", "KEY42", "TOKEN42"] {
                assert!(!e.contains(secret), "{value}: {e}");
            }
            assert!(e.starts_with("logger \""), "{value}: {e}");
        }
        // The user stays, to say which target.
        let e = parse_logger("http://bob:s3cret@127.0.0.1:notaport/in").unwrap_err();
        assert!(e.contains("bob:***@"), "{e}");
    }

    #[test]
    fn uwsgi_forms() {
        let l = parse_logger("socket:127.0.0.1:1717").unwrap();
        assert_eq!(l.name, None);
        assert_eq!(
            l.target,
            Target::Udp {
                host: "127.0.0.1".into(),
                port: 1717
            }
        );
        let l = parse_logger("secondlogger socket:127.0.0.1:1717,i am text ").unwrap();
        assert_eq!(l.name.as_deref(), Some("secondlogger"));
        assert_eq!(l.prefix, b"i am text ");
        let l = parse_logger("socket:/run/log.sock").unwrap();
        assert_eq!(
            l.target,
            Target::UnixDgram {
                path: "/run/log.sock".into()
            }
        );
        assert!(l.target.is_datagram());
    }

    #[test]
    fn url_forms() {
        assert_eq!(
            parse_logger("e tcp://[::1]:9").unwrap().target,
            Target::Tcp {
                host: "::1".into(),
                port: 9
            }
        );
        assert_eq!(
            parse_logger("tls://example.org:6514").unwrap().target,
            Target::Tls {
                host: "example.org".into(),
                port: 6514
            }
        );
        assert_eq!(
            parse_logger("unix:///tmp/s").unwrap().target,
            Target::UnixStream {
                path: "/tmp/s".into()
            }
        );
        assert_eq!(
            parse_logger("udp://h:1").unwrap().target,
            Target::Udp {
                host: "h".into(),
                port: 1
            }
        );
        let l = parse_logger("audit rlogd://127.0.0.1:5170").unwrap();
        assert_eq!(l.name.as_deref(), Some("audit"));
        assert_eq!(
            l.target,
            Target::Rlogd {
                host: "127.0.0.1".into(),
                port: 5170
            }
        );
        assert!(l.target.is_rlogd() && !l.target.is_datagram());
        assert_eq!(l.target.to_string(), "rlogd://127.0.0.1:5170");
        assert_eq!(
            parse_logger("rlogds://[::1]:5170").unwrap().target,
            Target::RlogdTls {
                host: "::1".into(),
                port: 5170
            }
        );
    }

    #[test]
    fn http_urls() {
        let l = parse_logger("k https://u%40x:p%3Aw@logs.example:8443/a/b?x=1").unwrap();
        assert_eq!(l.name.as_deref(), Some("k"));
        assert_eq!(
            l.target,
            Target::Http {
                https: true,
                host: "logs.example".into(),
                port: 8443,
                path: "/a/b?x=1".into(),
                userinfo: Some("u@x:p:w".into()),
            }
        );
        assert_eq!(
            l.target.to_string(),
            "https://u@x:***@logs.example:8443/a/b?x=***"
        );
        let t = parse_logger("http://h").unwrap().target;
        assert_eq!(t.to_string(), "http://h:80/");
        let t = parse_logger("http://[::1]?q").unwrap().target;
        assert_eq!(t.to_string(), "http://[::1]:80/?q");
        assert!(parse_logger("http://u@h/")
            .unwrap_err()
            .contains("USER:PASS"));
        assert!(parse_logger("http://h/a b")
            .unwrap_err()
            .contains("percent-encode"));
        assert!(parse_logger("http:///x")
            .unwrap_err()
            .contains("host is missing"));
        assert!(parse_logger("http://h:99999/")
            .unwrap_err()
            .contains("out of range"));
    }

    #[test]
    fn nats_forms() {
        let l = parse_logger("events nats://127.0.0.1:4222/logs.app").unwrap();
        assert_eq!(l.name.as_deref(), Some("events"));
        assert_eq!(
            l.target,
            Target::Nats {
                host: "127.0.0.1".into(),
                port: 4222,
                subject: "logs.app".into()
            }
        );
        assert!(l.target.is_nats() && !l.target.is_rlogd());
        assert_eq!(l.target.to_string(), "nats://127.0.0.1:4222/logs.app");
        let l = parse_logger("nats+tls://[::1]:4222/x").unwrap();
        assert_eq!(l.target.to_string(), "nats+tls://[::1]:4222/x");
        assert!(parse_logger("nats://h:4222")
            .unwrap_err()
            .contains("HOST:PORT/SUBJECT"));
        assert!(parse_logger("nats://h:4222/")
            .unwrap_err()
            .contains("subject is missing"));
        assert!(parse_logger("nats://h:4222/a.>")
            .unwrap_err()
            .contains("wildcard"));
        assert!(parse_logger("nats://h/a")
            .unwrap_err()
            .contains("HOST:PORT"));
    }

    #[test]
    fn unix_paths_longer_than_sun_path_are_refused() {
        let fits = format!("/{}", "p".repeat(MAX_UNIX_PATH - 1));
        let long = format!("/{}", "p".repeat(MAX_UNIX_PATH));
        assert_eq!(fits.len(), 107);
        for form in ["socket:", "unix://"] {
            assert!(parse_logger(&format!("{form}{fits}")).is_ok(), "{form}");
            let e = parse_logger(&format!("{form}{long}")).unwrap_err();
            assert!(
                e.ends_with(
                    "unix socket path is too long: 108 bytes, the limit is 107 (sun_path holds 108 with the NUL)"
                ),
                "{e}"
            );
            assert!(e.starts_with(&format!("logger \"{form}/ppp")), "{e}");
        }
        // The TEXT after the comma of socket:/path,TEXT is not part of the path.
        let l = parse_logger(&format!("socket:{fits},{}", "t".repeat(200))).unwrap();
        assert_eq!(l.target, Target::UnixDgram { path: fits });
    }

    #[test]
    fn errors_name_the_value() {
        assert!(parse_logger("file:/tmp/x")
            .unwrap_err()
            .contains("unsupported target"));
        assert!(parse_logger("tcp://h:99999")
            .unwrap_err()
            .contains("out of range"));
        assert!(parse_logger("tcp://h").unwrap_err().contains("HOST:PORT"));
        assert!(parse_logger("unix://rel").unwrap_err().contains("absolute"));
        assert!(parse_logger("socket:").unwrap_err().contains("socket:"));
        assert!(parse_logger("rlogd://h").unwrap_err().contains("HOST:PORT"));
        assert!(parse_logger("relp://h").unwrap_err().contains("HOST:PORT"));
        let l = parse_logger("audit relp://127.0.0.1:2514").unwrap();
        assert_eq!(l.name.as_deref(), Some("audit"));
        assert!(l.target.is_relp() && !l.target.is_datagram() && !l.target.is_rlogd());
        assert_eq!(l.target.to_string(), "relp://127.0.0.1:2514");
        let l = parse_logger("relps://[::1]:6514").unwrap();
        assert_eq!(
            l.target,
            Target::RelpTls {
                host: "::1".into(),
                port: 6514
            }
        );
        assert!(l.target.is_relp());
        assert_eq!(l.target.to_string(), "relps://[::1]:6514");
        assert!(parse_logger("relps://h").unwrap_err().contains("HOST:PORT"));
        assert!(parse_logger("rlogd://:5")
            .unwrap_err()
            .contains("host is missing"));
        assert!(parse_logger("rlogds://h:70000")
            .unwrap_err()
            .contains("out of range"));
        // Was: every bad port was "out of range", a trailing "/" or a word included.
        assert_eq!(
            parse_logger("tcp://127.0.0.1:5140/").unwrap_err(),
            "logger \"tcp://127.0.0.1:5140/\": bad port \"5140/\" in \"127.0.0.1:5140/\": expected a number 0~65535: a socket target takes no path, write \"127.0.0.1:5140\""
        );
        assert_eq!(
            parse_logger("udp://h:syslog").unwrap_err(),
            "logger \"udp://h:syslog\": bad port \"syslog\" in \"h:syslog\": expected a number 0~65535"
        );
        assert!(parse_logger("tcp://h:")
            .unwrap_err()
            .ends_with("the port is missing"));
        assert!(parse_logger("a-b socket:h:1")
            .unwrap_err()
            .contains("unsupported"));
    }
}
