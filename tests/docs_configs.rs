//! Issue 19: every rlog config printed in README.md, docs/*.md and bindings/*/README.md is
//! accepted as printed.
//!
//! What is checked:
//! - fenced blocks that are config text: untagged or tagged `ini`/`conf`/`config`/`rlog`/`text`,
//!   whose every line that is not blank or a `#`/`;` comment is `KEY = VALUE` (whatever the
//!   keys: a misspelt key must fail here, not make the block look like something else);
//! - the config literals in the bindings' examples: the string literal given to `rlog_init` /
//!   `rlog_logger_new` in C blocks, the dict (or string) literal given to `Logger(` /
//!   `RlogHandler(` in Python blocks, the table given to `init{`/`new{` in Lua and nginx blocks
//!   (turned into text as the bindings do), and `rlog:k=v,...` in uWSGI ini blocks (turned into
//!   text as the plugin does; `rlog:@FILE` names a file the docs do not show and is skipped).
//!   A call whose argument is not a plain literal (a variable, an expression) is skipped.
//!
//! Each must pass `Config::parse`, and then `Logger::start` (no network is needed to start: the
//! worker connects when it has something to send; the logger is closed at once).
//!
//! Markers, an HTML comment on the last non-blank line before a block's fence:
//! - `<!-- invalid -->`: the block shows an error; `Config::parse` must refuse it.
//! - `<!-- not rlog config: WHAT -->`: key = value text of another program (rlogd.conf);
//!   skipped. Without the marker such a block is parsed, and fails.
//!
//! Substitutions, the only changes made to the printed text (line by line, the key's `NAME.`
//! prefix allowed):
//! - `token_file`, `ssl_ca`, `ssl_cert` and `ssl_key` values are files `Config::parse` reads
//!   (the `ssl_*` ones also when the logger starts): replaced by a temporary file holding a
//!   token, and by a temporary CA certificate, certificate and key (tests/pki).
//! - `spool` values are directories `Logger::start` creates or opens: replaced by a fresh
//!   temporary directory for the start only (`Config::parse` does not touch the directory, so
//!   the printed path is parsed as is).

mod pki;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rlog::{Config, Logger};

/// One fenced block of a doc.
struct Block {
    line: usize,
    tag: String,
    marker: Option<String>,
    body: String,
}

/// One config to check: where it is printed, what it is, and its text.
struct Example {
    file: String,
    line: usize,
    what: &'static str,
    invalid: bool,
    text: String,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, docs/*.md and bindings/*/README.md, relative to the crate root.
fn doc_files() -> Vec<String> {
    let mut files = vec!["README.md".to_string()];
    let mut more = Vec::new();
    for e in fs::read_dir(root().join("docs")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            more.push(format!("docs/{name}"));
        }
    }
    for e in fs::read_dir(root().join("bindings")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if root()
            .join("bindings")
            .join(&name)
            .join("README.md")
            .is_file()
        {
            more.push(format!("bindings/{name}/README.md"));
        }
    }
    more.sort();
    files.extend(more);
    files
}

/// The fenced blocks of a markdown text (``` or ~~~, any indentation, which is removed from
/// the block's lines).
fn blocks(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut prev: Option<&str> = None;
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        let indent = lines[i].len() - t.len();
        let fence_char = match t.chars().next() {
            Some(c @ ('`' | '~')) if t.starts_with(&c.to_string().repeat(3)) => c,
            _ => {
                if !t.is_empty() {
                    prev = Some(t);
                }
                i += 1;
                continue;
            }
        };
        let n = t.len() - t.trim_start_matches(fence_char).len();
        let tag = t[n..]
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let marker = prev
            .and_then(|p| p.trim().strip_prefix("<!--"))
            .and_then(|p| p.strip_suffix("-->"))
            .map(|m| m.trim().to_string());
        let mut j = i + 1;
        while j < lines.len() {
            let c = lines[j].trim();
            if c.len() >= n && c.chars().all(|ch| ch == fence_char) {
                break;
            }
            j += 1;
        }
        assert!(j < lines.len(), "unclosed fence at line {}", i + 1);
        let body: Vec<&str> = lines[i + 1..j]
            .iter()
            .map(|l| {
                let strip = l.len() - l.trim_start_matches(' ').len();
                &l[strip.min(indent)..]
            })
            .collect();
        out.push(Block {
            line: i + 1,
            tag,
            marker,
            body: body.join("\n") + "\n",
        });
        prev = None;
        i = j + 1;
    }
    out
}

/// A config key as the parser reads it: letters, digits, `_`, `-`, `.`.
fn is_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Whether every line of `body` that is not blank or a comment is `KEY = VALUE` (and there is
/// at least one).
fn is_key_value(body: &str) -> bool {
    let mut n = 0;
    for line in body.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        match t.split_once('=') {
            Some((k, _)) if is_key(k.trim()) => n += 1,
            _ => return false,
        }
    }
    n > 0
}

/// A quoted config value, as the bindings write one (always quoted: the parser reads it back
/// the same whether quoting was needed or not).
fn quoted(v: &str) -> String {
    let e = v
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .replace('\t', "\\t");
    format!("\"{e}\"")
}

/// A string literal at the start of `s` (C, Python or Lua: `"..."` or `'...'` with the common
/// escapes): its value and the rest of `s`. `None` if `s` does not start with one or it has an
/// escape this reader does not know.
fn string_literal(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices();
    let (_, q) = chars.next()?;
    if q != '"' && q != '\'' {
        return None;
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == q => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                c @ ('\\' | '"' | '\'') => out.push(c),
                _ => return None,
            },
            '\n' => return None,
            c => out.push(c),
        }
    }
    None
}

/// Adjacent C string literals (`"a" "b"`, as the compiler joins them) at the start of `s`.
fn c_strings(s: &str) -> Option<String> {
    let (mut text, mut rest) = string_literal(s.trim_start())?;
    while let Some((more, r)) = string_literal(rest.trim_start()) {
        text.push_str(&more);
        rest = r;
    }
    Some(text)
}

/// A plain literal value in a Python dict or Lua table: as config text (strings quoted, whole
/// numbers as integers, booleans as true/false), and the rest. `None` for anything else.
fn scalar(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    if let Some((v, rest)) = string_literal(s) {
        return Some((quoted(&v), rest));
    }
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    let (word, rest) = s.split_at(end);
    let text = match word {
        "True" | "true" => "true".to_string(),
        "False" | "false" => "false".to_string(),
        w => {
            let n: f64 = w.parse().ok()?;
            if n.fract() == 0.0 && n.abs() < 9e15 {
                format!("{}", n as i64)
            } else {
                w.to_string()
            }
        }
    };
    Some((text, rest))
}

/// The config text of a `{...}` literal at the start of `s`: a Python dict (`"key": value`) or,
/// with `lua`, a Lua table (`key = value`). `None` unless every entry is a plain literal.
fn table_text(s: &str, lua: bool) -> Option<String> {
    let mut rest = s.trim_start().strip_prefix('{')?;
    let mut lines = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.starts_with('}') {
            return Some(lines.join("\n") + "\n");
        }
        let key;
        if lua {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            key = rest[..end].to_string();
            rest = rest[end..].trim_start().strip_prefix('=')?;
        } else {
            let (k, r) = string_literal(rest)?;
            key = k;
            rest = r.trim_start().strip_prefix(':')?;
        }
        if !is_key(&key) {
            return None;
        }
        let (value, r) = scalar(rest)?;
        lines.push(format!("{key} = {value}"));
        rest = r.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// What follows each `pat` in `body`.
fn after<'a>(body: &'a str, pat: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    body.match_indices(pat)
        .map(move |(i, _)| &body[i + pat.len()..])
}

/// The config literals in a code block of the bindings' examples, with what each is.
fn embedded(b: &Block) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match b.tag.as_str() {
        "c" => {
            for call in ["rlog_init(", "rlog_logger_new("] {
                for rest in after(&b.body, call) {
                    if let Some(t) = c_strings(rest) {
                        out.push(("C string given to rlog_init/rlog_logger_new", t));
                    }
                }
            }
        }
        "python" | "py" => {
            for call in ["Logger(", "RlogHandler("] {
                for rest in after(&b.body, call) {
                    let text = table_text(rest, false)
                        .or_else(|| string_literal(rest.trim_start()).map(|(t, _)| t));
                    if let Some(mut t) = text {
                        // RlogHandler adds its DEFAULTS (bindings/python/rlog/handler.py).
                        if call == "RlogHandler(" && !t.contains("periodic_flush") {
                            t.push_str("periodic_flush = 1\n");
                        }
                        out.push(("Python config literal", t));
                    }
                }
            }
        }
        "lua" | "nginx" => {
            for call in [".init{", ".init({", ".new{", ".new({"] {
                for rest in after(&b.body, call) {
                    if let Some(t) = table_text(&format!("{{{rest}"), true) {
                        out.push(("Lua config table", t));
                    }
                }
            }
        }
        "ini" if !is_key_value(&b.body) => {
            // uWSGI's ini: `logger = [NAME] rlog:ARG`; ARG is `k=v,k=v` (the plugin's
            // rlog_items_to_text: `,` ends a line, `\,` is a comma) or `@FILE`.
            for line in b.body.lines() {
                let Some((_, v)) = line.split_once('=') else {
                    continue;
                };
                for word in v.split_whitespace() {
                    let Some(arg) = word.strip_prefix("rlog:") else {
                        continue;
                    };
                    if arg.starts_with('@') {
                        continue;
                    }
                    out.push(("uWSGI rlog: logger argument", items_to_text(arg)));
                }
            }
        }
        _ => {}
    }
    out
}

/// bindings/uwsgi/rlog_plugin.c's rlog_items_to_text.
fn items_to_text(arg: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                quoted = false;
            }
        } else if c == '\\' && matches!(chars.peek(), Some(',' | '\\')) {
            out.push(chars.next().unwrap());
        } else if c == ',' {
            out.push('\n');
        } else {
            quoted |= c == '"';
            out.push(c);
        }
    }
    out.push('\n');
    out
}

/// Every config printed in the docs.
fn examples() -> (Vec<Example>, Vec<String>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for file in doc_files() {
        let text = fs::read_to_string(root().join(&file)).unwrap();
        for b in blocks(&text) {
            let config_tag =
                ["", "ini", "conf", "config", "rlog", "text"].contains(&b.tag.as_str());
            if config_tag && is_key_value(&b.body) {
                match b.marker.as_deref() {
                    Some(m) if m.starts_with("not rlog config") => {
                        skipped.push(format!("{file}:{} ({m})", b.line));
                        continue;
                    }
                    m => out.push(Example {
                        file: file.clone(),
                        line: b.line,
                        what: "config block",
                        invalid: m == Some("invalid"),
                        text: b.body.clone(),
                    }),
                }
                continue;
            }
            for (what, t) in embedded(&b) {
                out.push(Example {
                    file: file.clone(),
                    line: b.line,
                    what,
                    invalid: b.marker.as_deref() == Some("invalid"),
                    text: t,
                });
            }
        }
    }
    (out, skipped)
}

/// `text` with the values of `keys` (any `NAME.` prefix, `-` or `_`) replaced by `value`.
fn substitute(text: &str, keys: &[&str], value: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim();
        let key = t
            .split_once('=')
            .map(|(k, _)| k.trim())
            .filter(|k| is_key(k) && !t.starts_with('#') && !t.starts_with(';'));
        match key {
            Some(k) if keys.contains(&k.rsplit('.').next().unwrap().replace('-', "_").as_str()) => {
                out.push_str(&format!("{k} = {}\n", value(k)));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rlog-docs-configs-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn every_config_in_the_docs_is_accepted_as_printed() {
    let dir = temp_dir("files");
    let token = dir.join("token");
    fs::write(&token, "s3cret\n").unwrap();
    let pki = pki::issue(&["localhost"]).write_to(&dir);
    let for_parse = |text: &str| {
        let t = substitute(text, &["token_file"], &|_| token.display().to_string());
        let t = substitute(&t, &["ssl_cert"], &|_| pki.cert.display().to_string());
        let t = substitute(&t, &["ssl_key"], &|_| pki.key.display().to_string());
        substitute(&t, &["ssl_ca"], &|_| pki.ca.display().to_string())
    };

    let (examples, skipped) = examples();
    let mut failures = Vec::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for (n, ex) in examples.iter().enumerate() {
        match counts.last_mut() {
            Some((f, c)) if *f == ex.file => *c += 1,
            _ => counts.push((ex.file.clone(), 1)),
        }
        let at = format!("{}:{} ({})", ex.file, ex.line, ex.what);
        let text = for_parse(&ex.text);
        let parsed = Config::parse(&text);
        if ex.invalid {
            match parsed {
                Ok(_) => failures.push(format!(
                    "{at} is marked <!-- invalid --> but parses:\n{}",
                    ex.text
                )),
                Err(e) => println!("{at}: refused as marked: {e}"),
            }
            continue;
        }
        if let Err(e) = parsed {
            failures.push(format!("{at}: {e}\n--- text checked:\n{text}"));
            continue;
        }
        let spool = dir.join(format!("spool{n}"));
        let text = substitute(&text, &["spool"], &|_| spool.display().to_string());
        match Logger::start(Config::parse(&text).unwrap()) {
            Ok(lg) => {
                lg.close(Duration::from_millis(100));
            }
            Err(e) => failures.push(format!("{at}: Logger::start: {e}\n--- text:\n{text}")),
        }
        println!("{at}: ok");
    }
    for s in &skipped {
        println!("skipped {s}");
    }
    for (f, c) in &counts {
        println!("{f}: {c} checked");
    }
    let _ = fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));

    // The extraction itself: each of these prints at least this many configs, so a change in
    // how a doc writes them cannot make this test check nothing.
    let least = [
        ("README.md", 1),
        ("docs/ENCODERS.md", 3),
        ("docs/RLOGD.md", 2),
        ("docs/SPOOL.md", 1),
        ("bindings/lua/README.md", 1),
        ("bindings/python/README.md", 2),
        ("bindings/uwsgi/README.md", 2),
    ];
    for (file, n) in least {
        let got = counts
            .iter()
            .find(|(f, _)| f == file)
            .map_or(0, |(_, c)| *c);
        assert!(
            got >= n,
            "{file}: {got} configs found, at least {n} expected"
        );
    }
}

/// The block reader and the classification on small cases.
#[test]
fn the_extraction_reads_what_it_should() {
    let md = "text\n<!-- invalid -->\n```\nport = 70000\n```\n\n```sh\nmake x=1\n```\n  ```ini\n  a = 1\n  ```\n";
    let b = blocks(md);
    assert_eq!(b.len(), 3);
    assert_eq!(b[0].marker.as_deref(), Some("invalid"));
    assert_eq!(b[0].body, "port = 70000\n");
    assert_eq!(b[1].tag, "sh");
    assert_eq!(b[2].body, "a = 1\n");
    assert!(is_key_value("# c\nhost = h\n\nport = 1\n"));
    assert!(!is_key_value("[uwsgi]\nlogger = x\n"));
    assert!(!is_key_value("make fuzz FUZZ_SECONDS=300\n"));
    assert_eq!(
        c_strings(r#""host = h\nport = 1" "\n", err)"#).unwrap(),
        "host = h\nport = 1\n"
    );
    assert_eq!(
        table_text(
            r#"{"host": "127.0.0.1", "port": 5140, "ssl": True, "x": 0.5}) as lg"#,
            false
        )
        .unwrap(),
        "host = \"127.0.0.1\"\nport = 5140\nssl = true\nx = 0.5\n"
    );
    assert_eq!(
        table_text(r#"{ host = "h", port = 5140, periodic_flush = 1 }"#, true).unwrap(),
        "host = \"h\"\nport = 5140\nperiodic_flush = 1\n"
    );
    assert!(
        table_text("{ host = h }", true).is_none(),
        "a variable is not a literal"
    );
    assert_eq!(items_to_text("a=1,b=x\\,y"), "a=1\nb=x,y\n");
    assert_eq!(
        substitute(
            "audit.token-file = /x\n# ssl_ca = /y\nssl_ca = /z\n",
            &["token_file", "ssl_ca"],
            &|_| "T".into()
        ),
        "audit.token-file = T\n# ssl_ca = /y\nssl_ca = T\n"
    );
}
