//! The spool keeps each output's queue in a directory named after the output's target. A long
//! target (an http URL with a long path, as ingestion endpoints with a tenant and stream in
//! the path have) made a directory name longer than NAME_MAX (255 bytes): `spool` was then an
//! init error, "File name too long", for a valid config.

mod common;

use common::temp_dir;
use rlog::{Config, Logger};

#[test]
fn a_spool_for_an_output_with_a_long_url_opens() {
    let dir = temp_dir("review-spool-key");
    let path = format!("/ingest/{}", "tenant-stream-".repeat(20));
    let cfg = format!(
        "logger = http://127.0.0.1:9{path}\nlogger = http://127.0.0.1:9{path}x\nspool = {}",
        dir.join("spool").display()
    );
    let lg = Logger::start(Config::parse(&cfg).unwrap()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = std::fs::read_dir(dir.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "one queue per output: {names:?}");
    assert!(names.iter().all(|n| n.len() <= 255), "{names:?}");
    lg.close(std::time::Duration::from_millis(100));
}
