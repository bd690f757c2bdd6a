//! The keys of `nats://` loggers: credentials, the window of unacknowledged publishes and the
//! time a publish may wait for its acknowledgement. Bare, a key is a default for every NATS
//! logger; `NAME.key` sets it for one.

use std::time::Duration;

use super::Entry;

/// Keys only NATS loggers take.
pub const NATS_KEYS: &[&str] = &[
    "nats_user",
    "nats_password",
    "nats_token",
    "nats_window",
    "nats_ack_timeout",
];

/// Unacknowledged publishes in flight, by default.
pub const DEFAULT_WINDOW: usize = 1024;
/// How long a publish waits for its acknowledgement, by default (nats-py's default too).
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest window. The server queues the acknowledgements of what is in flight for a
/// client that is still writing, and closes a client whose queue passes its `max_pending`
/// (64 MiB by default) as a slow consumer: 65 536 acknowledgements of about 60 bytes stay far
/// below that.
const MAX_WINDOW: u64 = 1 << 16;

/// How a NATS logger authenticates and paces its publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// `nats_window`: publishes sent and not yet acknowledged, at most.
    pub window: usize,
    /// `nats_ack_timeout`: how long one publish waits for its acknowledgement.
    pub ack_timeout: Duration,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            user: None,
            password: None,
            token: None,
            window: DEFAULT_WINDOW,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
        }
    }
}

impl NatsSettings {
    /// Sets the key `key` (one of [`NATS_KEYS`]) from `e`.
    ///
    /// Errors: a bad value, naming the key and the line.
    pub fn apply(&mut self, key: &str, e: &Entry) -> Result<(), String> {
        let text = || -> Result<String, String> {
            if e.value.is_empty() {
                return Err(super::invalid(e, "a non-empty string"));
            }
            Ok(e.value.clone())
        };
        match key {
            "nats_user" => self.user = Some(text()?),
            "nats_password" => self.password = Some(text()?),
            "nats_token" => self.token = Some(text()?),
            "nats_window" => {
                let n = super::whole(e)?;
                if n == 0 || n > MAX_WINDOW {
                    return Err(super::invalid(
                        e,
                        &format!("a number of publishes 1~{MAX_WINDOW}"),
                    ));
                }
                self.window = n as usize;
            }
            "nats_ack_timeout" => self.ack_timeout = super::timeout(e)?,
            _ => unreachable!("checked against NATS_KEYS"),
        }
        Ok(())
    }

    /// Checks that the credentials make sense together.
    ///
    /// Errors: a user without a password (or the reverse), a token with a user.
    pub fn check(&self) -> Result<(), String> {
        match (&self.user, &self.password, &self.token) {
            (Some(_), None, _) => Err("\"nats_user\" needs \"nats_password\"".into()),
            (None, Some(_), _) => Err("\"nats_password\" needs \"nats_user\"".into()),
            (Some(_), Some(_), Some(_)) => {
                Err("\"nats_token\" and \"nats_user\"/\"nats_password\" exclude each other".into())
            }
            _ => Ok(()),
        }
    }
}

/// The handle-wide NATS keys, for NATS loggers.
#[derive(Debug, Clone, Default)]
pub struct NatsBase {
    pub settings: NatsSettings,
    /// The first of these keys in the config (key, line), to name it when no logger is NATS.
    pub first_key: Option<(String, usize)>,
}

impl NatsBase {
    /// Takes `e` if it is a bare NATS key: `Ok(true)` taken, `Ok(false)` not one.
    ///
    /// Errors: a bad value, naming the key and the line.
    pub fn take(&mut self, e: &Entry) -> Result<bool, String> {
        if !NATS_KEYS.contains(&e.key.as_str()) {
            return Ok(false);
        }
        self.settings.apply(&e.key, e)?;
        self.first_key.get_or_insert((e.key.clone(), e.line));
        Ok(true)
    }
}

/// Checks a subject to publish to: dot-separated tokens, none empty, no wildcard, no blank.
///
/// Errors: what is wrong with it.
pub fn check_subject(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the subject is missing: nats://HOST:PORT/SUBJECT".into());
    }
    if s.split('.').any(str::is_empty) {
        return Err(format!(
            "bad subject \"{s}\": a subject is tokens separated by single dots"
        ));
    }
    if s.split('.').any(|t| t == "*" || t == ">") {
        return Err(format!(
            "bad subject \"{s}\": a publish subject takes no wildcard"
        ));
    }
    if s.bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "bad subject \"{s}\": no blank or control character"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        check_subject("logs").unwrap();
        check_subject("logs.app-1.web").unwrap();
        assert!(check_subject("").unwrap_err().contains("missing"));
        assert!(check_subject("a..b").unwrap_err().contains("single dots"));
        assert!(check_subject("a.").unwrap_err().contains("single dots"));
        assert!(check_subject("a.*").unwrap_err().contains("wildcard"));
        assert!(check_subject("a.>").unwrap_err().contains("wildcard"));
        assert!(check_subject("a b").unwrap_err().contains("blank"));
    }

    #[test]
    fn credentials() {
        let mut s = NatsSettings {
            user: Some("u".into()),
            ..Default::default()
        };
        assert!(s.check().unwrap_err().contains("needs \"nats_password\""));
        s.password = Some("p".into());
        s.check().unwrap();
        s.token = Some("t".into());
        assert!(s.check().unwrap_err().contains("exclude each other"));
    }
}
