//! Config text, as `rlog_init` / `rlog_logger_new` receive it from a user (or a binding that
//! builds it): every key, quoting and escapes, comments, `logger` targets, `log-encoder` lines
//! (templates, msgpack items), `log-route` regexes, `NAME.key` settings.
//!
//! Invariants: no panic; an accepted config has consistent limits and describes its target; a
//! refused one says why; and any value, quoted by the Python binding's rule
//! (bindings/python/rlog/config.py, mirrored below), reads back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// bindings/python/rlog/config.py `quote` (the Lua binding's rule quotes a superset).
fn quote(v: &str) -> String {
    let ws = |c: char| c.is_whitespace();
    let needs = v.is_empty()
        || v.starts_with(ws)
        || v.ends_with(ws)
        || v.starts_with('"')
        || v.contains(['\t', '\r', '\n'])
        || v.starts_with('#')
        || v.char_indices()
            .any(|(i, c)| c == '#' && v[..i].chars().next_back().is_some_and(ws));
    if !needs {
        return v.to_string();
    }
    let e = v
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .replace('\t', "\\t");
    format!("\"{e}\"")
}

fuzz_target!(|data: &[u8]| {
    // The C ABI hands over bytes; non-UTF-8 text is refused before parsing, so the parser sees
    // valid UTF-8 only (lossy conversion keeps the fuzzer's bytes useful).
    let text = String::from_utf8_lossy(data);
    match rlog::Config::parse(&text) {
        Ok(c) => {
            assert!(!c.describe_target().is_empty());
            assert!(c.limits.flush_limit < c.limits.drop_limit);
            assert!(!c.limits.timeout.is_zero());
            assert!(!c.limits.retry_interval.is_zero());
        }
        Err(e) => assert!(!e.is_empty()),
    }

    // Quoting round trip: the whole input as one value.
    let line = format!("log_encoder = {}", quote(&text));
    let entries = rlog::config::entries(&line)
        .unwrap_or_else(|e| panic!("quoted value refused: {e}\n{line:?}"));
    assert_eq!(entries.len(), 1, "{line:?}");
    assert_eq!(entries[0].value, text, "{line:?}");
});
