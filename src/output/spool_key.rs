//! Which sub-directory of the spool holds each output's queue: `<index>-<target>`, the output's
//! place in the config and its target as a file name. The same config finds the same queues
//! after a restart; a config whose outputs moved finds them under the keys it gave them before
//! (see [`strays_of`]); what is left for a target the config no longer names is reported
//! ([`unclaimed_report`]).

use std::path::Path;

use crate::config::target::Target;
use crate::config::{Config, OutputSpec};
use crate::output::spool::{self, StrayKeys};

/// The longest target name in a spool key (the spool takes keys of 200 bytes at most, and
/// the output's index comes first).
const MAX_KEY_NAME: usize = 180;

/// Each output's key, in config order.
pub fn keys(config: &Config) -> Vec<String> {
    config
        .outputs
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| format!("{i}-{}", target_name(&key_text(o))))
        .collect()
}

/// The target's text as keys name it: as messages show it, but for the IPv6 host of a
/// `tcp`, `udp`, `tls`, `rlogd` or `relp` target, which keys have without the brackets
/// messages now put around it (`tcp://::1:5140`). A key must never change: the queue under the
/// old one would be left behind.
fn key_text(o: &OutputSpec) -> String {
    let text = o.target_text();
    match &o.target {
        Target::Tcp { host, .. }
        | Target::Udp { host, .. }
        | Target::Tls { host, .. }
        | Target::Rlogd { host, .. }
        | Target::RlogdTls { host, .. }
        | Target::Relp { host, .. }
        | Target::RelpTls { host, .. }
            if host.contains(':') =>
        {
            text.replacen(&format!("[{host}]"), host, 1)
        }
        _ => text,
    }
}

/// A target as a file name: what is not `[A-Za-z0-9_-]` becomes `_`; a long target (an http
/// URL with a long path) is cut, and told apart from others cut alike by a hash of the whole,
/// the same in every process and version (FNV-1a).
fn target_name(target: &str) -> String {
    let name: String = target
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.len() <= MAX_KEY_NAME {
        return name;
    }
    let hash = target.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{}-{hash:016x}", &name[..MAX_KEY_NAME - 17])
}

/// The target part of a key (`0-tcp___h_5140` gives `tcp___h_5140`); `None` for a directory
/// name that is not a key.
fn target_of(key: &str) -> Option<&str> {
    let (index, target) = key.split_once('-')?;
    let is_index = !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit());
    (is_index && !target.is_empty()).then_some(target)
}

/// The other keys output `i` of a config with `keys` adopts from: the same target under
/// another index that this config does not use. An earlier config had the output elsewhere
/// (a logger line was added above it, or the lines were reordered), or an nginx reload's old
/// workers still deliver with the old config and leave their records under the old key when
/// they exit. Either way the records are for the same target: left there, nobody would ever
/// deliver them.
pub fn strays_of(keys: &[String], i: usize) -> StrayKeys {
    let keys = keys.to_vec();
    let target = target_of(&keys[i]).unwrap_or_default().to_string();
    Box::new(move |name| !keys.iter().any(|k| k == name) && target_of(name) == Some(&*target))
}

/// Whether `name` is a key this config's outputs use or adopt from.
pub fn claimed(keys: &[String], name: &str) -> bool {
    let target = target_of(name);
    keys.iter()
        .any(|k| k == name || (target.is_some() && target_of(k) == target))
}

/// What to tell of records a dead process left in the spool `dir` for a target none of this
/// config's outputs (`keys`) delivers to: nobody will adopt them while that stays so.
/// A key whose target a live process sharing the spool delivers to is not reported either:
/// that process adopts what is left under it.
pub fn unclaimed_report(dir: &str, keys: &[String]) -> Option<String> {
    let root = Path::new(dir);
    let mut users = keys.to_vec();
    users.extend(spool::live_keys(root));
    let unclaimed = spool::unclaimed_keys(root, |k| claimed(&users, k));
    (!unclaimed.is_empty()).then(|| {
        format!(
            "spool {dir} holds records a dead process left for a target no logger of this \
             config names ({}): they stay there until a logger with that target uses this \
             spool (`rlogd spool {dir}` shows them)",
            unclaimed.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(text: &str) -> Vec<String> {
        keys(&Config::parse(text).expect("config"))
    }

    #[test]
    fn a_key_is_the_index_and_the_target_as_a_file_name() {
        let k = keys_of("logger = tcp://127.0.0.1:5140\nlogger = socket:/run/x.sock\n");
        assert_eq!(k, ["0-tcp___127_0_0_1_5140", "1-socket__run_x_sock"]);
        assert_eq!(target_of(&k[0]), Some("tcp___127_0_0_1_5140"));
        assert_eq!(target_of("tcp___x"), None);
        assert_eq!(target_of("x-tcp___x"), None);
        assert_eq!(target_of("0-"), None);
    }

    #[test]
    fn an_ipv6_host_is_bare_in_a_key_as_it_always_was() {
        let k = keys_of("logger = tcp://[::1]:5140\nlogger = relps://[fe80::1]:6514\n");
        assert_eq!(k, ["0-tcp_____1_5140", "1-relps___fe80__1_6514"]);
        let k = keys_of("logger = http://[::1]:8080/x\n");
        assert_eq!(
            k,
            ["0-http______1__8080_x"],
            "http targets were always bracketed"
        );
    }

    /// Every target kind with an IPv6 host keeps the key 45166f0's `spool_keys` gave it (the
    /// target text of then, the host bare but for http, nats and clickhouse, which were
    /// bracketed already), for logger lines and for plain `host`/`port` configs alike.
    #[test]
    fn every_target_kind_with_an_ipv6_host_keeps_its_old_key() {
        let lines = [
            ("logger = tcp://[::1]:5140", "0-tcp_____1_5140"),
            ("logger = udp://[::1]:514", "0-udp_____1_514"),
            ("logger = socket:[::1]:514", "0-udp_____1_514"),
            (
                "logger = tls://[::1]:6514\nssl_verify = false",
                "0-tls_____1_6514",
            ),
            ("logger = rlogd://[::1]:5141", "0-rlogd_____1_5141"),
            (
                "logger = rlogds://[::1]:5141\nssl_verify = false",
                "0-rlogds_____1_5141",
            ),
            ("logger = relp://[::1]:2514", "0-relp_____1_2514"),
            (
                "logger = relps://[::1]:6514\nssl_verify = false",
                "0-relps_____1_6514",
            ),
            ("logger = nats://[::1]:4222/s", "0-nats______1__4222_s"),
            (
                "logger = clickhouse://[::1]:8123/d.t",
                "0-clickhouse______1__8123_d_t",
            ),
            ("host = ::1\nport = 5140", "0-tcp_____1_5140"),
            (
                "host = ::1\nport = 5140\nsock_type = udp",
                "0-udp_____1_5140",
            ),
            (
                "host = ::1\nport = 5140\nssl = true\nssl_verify = false",
                "0-tls_____1_5140",
            ),
            (
                "host = ::1\nport = 5140\nsock_type = rlogd",
                "0-rlogd_____1_5140",
            ),
            (
                "host = ::1\nport = 5140\nsock_type = rlogd\nssl = true\nssl_verify = false",
                "0-rlogds_____1_5140",
            ),
        ];
        for (text, key) in lines {
            assert_eq!(keys_of(&format!("{text}\n")), [key], "{text}");
        }
    }

    #[test]
    fn a_long_target_is_cut_and_hashed() {
        let path = "p".repeat(300);
        let k = keys_of(&format!("logger = http://h:8080/{path}\n"));
        assert!(k[0].len() <= 200, "{}", k[0]);
        let other = keys_of(&format!("logger = http://h:8080/{path}q\n"));
        assert_ne!(k[0], other[0]);
        assert_eq!(&k[0][..150], &other[0][..150]);
    }

    #[test]
    fn an_output_adopts_its_target_under_another_index_only() {
        let k = keys_of("logger = tcp://127.0.0.1:1\nlogger = tcp://127.0.0.1:2\n");
        let first = strays_of(&k, 0);
        assert!(first("1-tcp___127_0_0_1_1"), "moved from index 1");
        assert!(first("7-tcp___127_0_0_1_1"));
        assert!(!first("0-tcp___127_0_0_1_1"), "its own key");
        assert!(!first("1-tcp___127_0_0_1_2"), "another target");
        assert!(!first("tcp___127_0_0_1_1"));
        let second = strays_of(&k, 1);
        assert!(second("0-tcp___127_0_0_1_2"));
        assert!(!second("0-tcp___127_0_0_1_1"), "output 0's key");
        assert!(claimed(&k, "5-tcp___127_0_0_1_2"));
        assert!(!claimed(&k, "0-tcp___127_0_0_1_3"));
    }
}
