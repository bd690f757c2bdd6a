//! `log-route = LOGGER REGEX`: which loggers a message goes to, with uWSGI's rules.
//!
//! Every route whose regex matches the message fires (two matching routes to one logger deliver
//! two copies, as in uWSGI); a message no route matched goes to every unnamed (default) logger;
//! named loggers receive only through routes. The regex is matched against the message without
//! one trailing newline, so `$` means the end of the line. The `regex` crate is used: no
//! look-around and no backreferences (PCRE has them); matching time is linear in the message.
//!
//! Matching is on bytes, as PCRE's without UTF mode in uWSGI: Unicode mode is off, so `.` and
//! negated classes match any byte (messages need not be UTF-8), `\xff` is the byte 0xFF, and
//! `\w \d \s \b` are ASCII. Non-ASCII literal text in a pattern matches its UTF-8 bytes;
//! `(?u)` turns Unicode mode back on for a part of a pattern.

use regex::bytes::{Regex, RegexBuilder};

/// Appended to a regex error about Unicode: routes match bytes, with Unicode mode off.
const ROUTE_UNICODE_HINT: &str =
    " (routes match bytes with Unicode mode off: put (?u) before a Unicode class or \\p{..})";

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// The named logger it delivers to.
    pub logger: String,
    pub regex: Regex,
}

impl Route {
    /// Parses a `log-route` value: a logger name (letters and digits), one or more spaces, the
    /// regex.
    ///
    /// Errors: a missing regex, a bad name, or a regex that does not compile (with the regex
    /// crate's explanation).
    pub fn parse(value: &str) -> Result<Route, String> {
        let Some((name, re)) = value.split_once(' ') else {
            return Err(format!("log-route \"{value}\": expected \"LOGGER REGEX\""));
        };
        let re = re.trim_start();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "log-route \"{value}\": bad logger name \"{name}\": letters and digits only"
            ));
        }
        if re.is_empty() {
            return Err(format!("log-route \"{value}\": the regex is missing"));
        }
        let regex = RegexBuilder::new(re).unicode(false).build().map_err(|e| {
            let unicode = e.to_string().contains("Unicode not allowed");
            let hint = if unicode { ROUTE_UNICODE_HINT } else { "" };
            format!("log-route \"{value}\": bad regex: {e}{hint}")
        })?;
        Ok(Route {
            logger: name.to_string(),
            regex,
        })
    }
}

/// Routes resolved to sink indexes, and the default sinks.
#[derive(Debug, Clone, Default)]
pub struct Router {
    /// (regex, sink index), in config order.
    routes: Vec<(Regex, usize)>,
    /// The unnamed loggers' sink indexes.
    defaults: Vec<usize>,
}

impl Router {
    /// Resolves `routes` against the sinks' names (`names[i]` is sink `i`'s name, `None` for an
    /// unnamed logger).
    ///
    /// Errors: a route to a logger no `logger` line names (uWSGI skips such a route silently),
    /// and a named logger no route sends to (uWSGI accepts it, and it never receives anything).
    pub fn new(routes: &[Route], names: &[Option<String>]) -> Result<Router, String> {
        let mut resolved = Vec::with_capacity(routes.len());
        for r in routes {
            let Some(i) = names
                .iter()
                .position(|n| n.as_deref() == Some(r.logger.as_str()))
            else {
                return Err(format!(
                    "log-route to unknown logger \"{}\": add \"logger = {} TARGET\"",
                    r.logger, r.logger
                ));
            };
            resolved.push((r.regex.clone(), i));
        }
        if let Some(name) = names
            .iter()
            .enumerate()
            .find(|(i, n)| n.is_some() && !resolved.iter().any(|(_, j)| j == i))
            .and_then(|(_, n)| n.as_deref())
        {
            return Err(format!(
                "logger \"{name}\" would never receive a message: named loggers receive only \
                 through routes; add \"log-route = {name} REGEX\", or remove the name to make it a \
                 default logger"
            ));
        }
        Ok(Router {
            routes: resolved,
            defaults: names
                .iter()
                .enumerate()
                .filter(|(_, n)| n.is_none())
                .map(|(i, _)| i)
                .collect(),
        })
    }

    /// Whether every message goes to sink `i` and only there (no route; `i` the one default).
    pub fn sends_all_to(&self, i: usize) -> bool {
        self.routes.is_empty() && self.defaults == [i]
    }

    /// Pushes onto `out` the sink of every copy of `msg` (one per matching route, else one per
    /// default logger). `out` is cleared first; it may end up empty (no route matched and there
    /// is no default logger).
    pub fn route(&self, msg: &[u8], out: &mut Vec<usize>) {
        out.clear();
        let line = msg.strip_suffix(b"\n").unwrap_or(msg);
        for (re, i) in &self.routes {
            if re.is_match(line) {
                out.push(*i);
            }
        }
        if out.is_empty() {
            out.extend_from_slice(&self.defaults);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[&str], names: &[Option<&str>]) -> Router {
        let routes: Vec<_> = routes.iter().map(|r| Route::parse(r).unwrap()).collect();
        let names: Vec<_> = names.iter().map(|n| n.map(String::from)).collect();
        Router::new(&routes, &names).unwrap()
    }

    fn dest(r: &Router, msg: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        r.route(msg, &mut out);
        out
    }

    #[test]
    fn uwsgi_semantics() {
        let r = router(
            &["errors ERROR|CRIT", "audit ^AUDIT", "errors CRIT$"],
            &[None, Some("errors"), Some("audit"), None],
        );
        assert_eq!(dest(&r, b"hello"), vec![0, 3]);
        assert_eq!(dest(&r, b"an ERROR here"), vec![1]);
        assert_eq!(dest(&r, b"AUDIT CRIT\n"), vec![1, 2, 1]);
        assert_eq!(dest(&r, b"CRIT\n\n"), vec![1]);
        let only_named = router(&["errors ERROR"], &[Some("errors")]);
        assert!(dest(&only_named, b"fine").is_empty());
    }

    #[test]
    fn matching_is_on_bytes_not_utf8() {
        let r = router(
            &[
                "errors ERROR.*end",
                "bin ^\\xff[^a]x$",
                "word ^\\w+$",
                "caf café",
            ],
            &[None, Some("errors"), Some("bin"), Some("word"), Some("caf")],
        );
        assert_eq!(dest(&r, b"ERROR \xff end"), vec![1]);
        assert_eq!(dest(&r, b"ERROR \xc3\xa9 end\n"), vec![1]);
        assert_eq!(dest(&r, b"\xff\xfex"), vec![2]);
        // \w is ASCII, as in PCRE without UCP.
        assert_eq!(dest(&r, b"abc_1"), vec![3]);
        assert_eq!(dest(&r, "ab\u{e9}".as_bytes()), vec![0]);
        // Non-ASCII literal text matches its UTF-8 bytes.
        assert_eq!(dest(&r, "un café".as_bytes()), vec![4]);
        assert_eq!(dest(&r, b"un caf\xe9"), vec![0]);
        // (?u) turns Unicode back on where it is wanted.
        let u = router(&["u (?u)^\\w+$"], &[None, Some("u")]);
        assert_eq!(dest(&u, "ab\u{e9}".as_bytes()), vec![1]);
    }

    #[test]
    fn errors() {
        assert!(Route::parse("errors").unwrap_err().contains("LOGGER REGEX"));
        assert!(Route::parse("err-x a")
            .unwrap_err()
            .contains("bad logger name"));
        assert!(Route::parse("e (").unwrap_err().contains("bad regex"));
        assert!(Route::parse("e (?=x)").unwrap_err().contains("bad regex"));
        // A non-ASCII class or \p{..} needs Unicode mode: a clear init error that says how.
        for re in ["[é]", "\\p{L}"] {
            let e = Route::parse(&format!("e {re}")).unwrap_err();
            assert!(
                e.starts_with(&format!("log-route \"e {re}\": bad regex: ")),
                "{e}"
            );
            assert!(e.contains("Unicode not allowed here"), "{e}");
            assert!(e.ends_with(ROUTE_UNICODE_HINT), "{e}");
        }
        assert!(Route::parse("e (?u)[é]").is_ok());
        let r = Route::parse("ghost x").unwrap();
        let e = Router::new(&[r], &[None]).unwrap_err();
        assert!(e.contains("unknown logger \"ghost\""), "{e}");
        // A named logger no route sends to would never receive a message (uWSGI accepts it and
        // leaves it silent).
        let r = Route::parse("errors ERROR").unwrap();
        let names = [None, Some("errors".into()), Some("audit".into())];
        let e = Router::new(&[r], &names).unwrap_err();
        assert_eq!(
            e,
            "logger \"audit\" would never receive a message: named loggers receive only through \
             routes; add \"log-route = audit REGEX\", or remove the name to make it a default logger"
        );
    }
}
