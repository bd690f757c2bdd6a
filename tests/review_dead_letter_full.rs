//! A dead-letter file whose disk fills up mid-line. The full disk is a file size limit: a forked
//! child sets `RLIMIT_FSIZE` (SIGXFSZ ignored, so a write past it fails with EFBIG after writing
//! what fits, as a full disk fails with ENOSPC) and has a 70 000-byte datagram refused. Once
//! the limit is lifted, the next refused record must still be a line of its own: a torn line
//! left behind glued itself to the next one, and both were lost to any JSON-lines reader.
//! (One test in this file: the fork happens with no other test thread running.)

mod common;

use std::time::Duration;

use common::temp_dir;
use rlog::{Config, Logger};

fn set_fsize(cur: libc::rlim_t) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on this process with a struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_FSIZE, &mut l);
        l.rlim_cur = cur.min(l.rlim_max);
        libc::setrlimit(libc::RLIMIT_FSIZE, &l);
    }
}

fn refuse_one(cfg: &str, fill: u8) {
    let lg = Logger::start(Config::parse(cfg).unwrap()).unwrap();
    lg.log(&vec![fill; 70_000]);
    lg.close(Duration::from_secs(5));
}

#[test]
fn a_dead_letter_torn_by_a_full_disk_does_not_spoil_the_next_one() {
    let dir = temp_dir("review-dead-full");
    let dead = dir.join("dead.jsonl");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = format!(
        "host = 127.0.0.1\nport = {}\nsock_type = udp\ndead_letter = {}",
        udp.local_addr().unwrap().port(),
        dead.display()
    );
    // SAFETY: the child only runs this test's code and exits with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: ignoring SIGXFSZ in this child, which owns its signal dispositions.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        set_fsize(16 << 10);
        refuse_one(&cfg, b'a'); // 70 KB: 16 KiB of its line written, then EFBIG
        set_fsize(libc::RLIM_INFINITY);
        refuse_one(&cfg, b'b');
        // SAFETY: ends the forked child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    let text = std::fs::read_to_string(&dead).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(
        parsed.len(),
        lines.len(),
        "every line of the dead letters is a JSON object; lines of {:?} bytes",
        lines.iter().map(|l| l.len()).collect::<Vec<_>>()
    );
    assert!(
        parsed.iter().any(|v| v["record"]
            .as_str()
            .is_some_and(|r| r.len() == 70_000 && r.bytes().all(|c| c == b'b'))),
        "the record refused after the disk had room again is kept whole"
    );
}
