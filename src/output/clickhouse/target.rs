//! `clickhouse://[USER:PASS@]HOST[:PORT]/DB.TABLE`: where the rows go, and the `INSERT` that
//! puts them there.

/// ClickHouse's HTTP port when the target names none.
pub const DEFAULT_PORT: u16 = 8123;

/// A parsed `clickhouse://` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseTarget {
    /// `USER:PASS` (percent-decoded), sent as HTTP basic authentication.
    pub user: Option<(String, String)>,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub table: String,
}

/// Whether `name` is a plain ClickHouse identifier (what the target accepts for DB and TABLE):
/// letters, digits and `_`, not starting with a digit.
fn identifier(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `%XX` escapes decoded (for a user or password with `:`, `@` or `/` in it).
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape in \"{s}\""))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("\"{s}\" is not UTF-8 once %-decoded"))
}

/// Percent-encodes a URL query value (everything but RFC 3986's unreserved characters).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl ClickHouseTarget {
    /// Parses what follows `clickhouse://`.
    ///
    /// Errors: no host, a bad port, no `/DB.TABLE`, a database or table name that is not a
    /// plain identifier, a bad `%`-escape in the credentials.
    pub fn parse(rest: &str) -> Result<ClickHouseTarget, String> {
        let (authority, path) = rest
            .split_once('/')
            .ok_or("expected clickhouse://[USER:PASS@]HOST[:PORT]/DB.TABLE")?;
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((cred, hp)) => {
                let (u, p) = cred
                    .split_once(':')
                    .ok_or("credentials must be USER:PASS@")?;
                (Some((percent_decode(u)?, percent_decode(p)?)), hp)
            }
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| format!("bad port \"{p}\""))?,
            ),
            _ => (hostport, DEFAULT_PORT),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("no host".into());
        }
        let (database, table) = path
            .split_once('.')
            .ok_or("expected /DB.TABLE after the host")?;
        for (what, name) in [("database", database), ("table", table)] {
            if !identifier(name) {
                return Err(format!(
                    "{what} name \"{name}\" must be letters, digits and _ (not starting with a digit)"
                ));
            }
        }
        Ok(ClickHouseTarget {
            user,
            host: host.to_string(),
            port,
            database: database.to_string(),
            table: table.to_string(),
        })
    }

    /// The statement each request runs; its rows are the request's body.
    pub fn insert(&self) -> String {
        format!(
            "INSERT INTO `{}`.`{}` FORMAT JSONEachRow",
            self.database, self.table
        )
    }

    /// The request target: `/?query=` and the URL-encoded `INSERT`.
    pub fn request_path(&self) -> String {
        format!("/?query={}", url_encode(&self.insert()))
    }
}

impl std::fmt::Display for ClickHouseTarget {
    /// The target without its password (for messages and labels).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "clickhouse://")?;
        if let Some((u, _)) = &self.user {
            write!(f, "{u}:***@")?;
        }
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{host}:{}/{}.{}", self.port, self.database, self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_credentials_host_port_database_and_table() {
        let t = ClickHouseTarget::parse("writer:s%40cret@127.0.0.1:8124/logs.events").unwrap();
        assert_eq!(t.user, Some(("writer".into(), "s@cret".into())));
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8124));
        assert_eq!((t.database.as_str(), t.table.as_str()), ("logs", "events"));
        assert_eq!(
            t.request_path(),
            "/?query=INSERT%20INTO%20%60logs%60.%60events%60%20FORMAT%20JSONEachRow"
        );
        assert_eq!(
            t.to_string(),
            "clickhouse://writer:***@127.0.0.1:8124/logs.events"
        );
        let t = ClickHouseTarget::parse("ch.example/db.t").unwrap();
        assert_eq!((t.port, t.user), (DEFAULT_PORT, None));
        let t = ClickHouseTarget::parse("[::1]:9/db.t").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
    }

    #[test]
    fn refuses_what_would_not_be_one_table() {
        for bad in [
            "127.0.0.1:8123",
            "127.0.0.1:8123/",
            "127.0.0.1:8123/logs",
            "127.0.0.1:8123/logs.ev-ents",
            "127.0.0.1:8123/logs.a.b",
            "127.0.0.1:8123/1db.t",
            "127.0.0.1:8123/logs.t`;DROP",
            "127.0.0.1:0/db.t",
            "127.0.0.1:x/db.t",
            ":8123/db.t",
            "user@127.0.0.1/db.t",
            "u:%zz@127.0.0.1/db.t",
        ] {
            assert!(ClickHouseTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
