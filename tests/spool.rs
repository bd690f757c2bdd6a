//! The disk spool (SPEC §6) from a host's point of view: what cannot be delivered goes to disk,
//! survives a `kill -9` of the host, is adopted and delivered once, in order, by the next
//! process; the cap and a disk that fails are counted and reported, never a crash.
//!
//! The host processes are this test binary, forked: the child logs and is killed with SIGKILL
//! by the parent, which then plays the next process (or the collector coming back).

mod common;
mod spool_util;

use std::io::{Read, Write};
use std::path::Path;
use std::thread;
use std::time::Duration;

use common::{assert_identity, refusing_port, temp_dir, Collector};
use rlog::{Config, Logged, Logger};
use spool_util::{fork_run, pair, wait_for};

fn config(port: u16, spool: &Path, extra: &str) -> String {
    format!(
        "host = 127.0.0.1\nport = {port}\nspool = {}\nmax_retry_times = 0\nretry_interval = 10\n\
         drop_limit = 67108864\n{extra}",
        spool.display()
    )
}

fn kill9(pid: libc::pid_t) {
    // SAFETY: plain system calls on a child we forked.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
}

/// Lines received, split on newlines.
fn lines(c: &Collector) -> Vec<String> {
    c.lines()
}

#[test]
fn a_killed_hosts_spool_is_delivered_once_in_order_by_the_next_process() {
    const THREADS: usize = 2;
    const PER_THREAD: usize = 50_000;
    const N: u64 = (THREADS * PER_THREAD) as u64;
    let dir = temp_dir("spool-kill9");
    let (port, down) = refusing_port();
    let text = config(port, &dir, "");

    let (mut from_child, mut to_parent) = pair();
    let pid = fork_run(|| {
        let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let lg = lg.clone();
                thread::spawn(move || {
                    for i in 0..PER_THREAD {
                        let m = format!("t{t}-{i:06}\n");
                        assert_eq!(lg.log(m.as_bytes()), Logged::Buffered(m.len()));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Every message on disk (and fsynced: spool_sync = batch), none in memory.
        wait_for("everything spooled", 60, || {
            let s = lg.stats();
            s.spooled == N && s.buffered == 0
        });
        let s = lg.stats();
        assert_identity(&s);
        to_parent.write_all(&s.spooled_bytes.to_le_bytes()).unwrap();
        // Killed here, with everything on disk.
        loop {
            thread::sleep(Duration::from_secs(1));
        }
    });
    drop(to_parent);
    let mut bytes = [0u8; 8];
    from_child
        .read_exact(&mut bytes)
        .expect("the child spooled everything");
    let spooled_bytes = u64::from_le_bytes(bytes);
    kill9(pid);

    // What an operator sees before the next process starts: a dead instance, all of it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rlogd"))
        .arg("spool")
        .arg(&dir)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "rlogd spool: {report}");
    assert!(report.contains("dead: will be adopted"), "{report}");
    assert!(
        report.contains(&format!("records {N}  payload {spooled_bytes} B")),
        "{report}"
    );

    // The collector comes back on the same port; a new process starts with the same config.
    let c = Collector::listen_on(down);
    let lg = Logger::start(Config::parse(&text).unwrap()).unwrap();
    wait_for("every adopted message delivered", 60, || {
        lg.stats().sent == N
    });
    let s = lg.stats();
    assert_eq!(
        (
            s.logged,
            s.adopted,
            s.adopted_bytes,
            s.sent,
            s.lost,
            s.spooled,
            s.buffered
        ),
        (0, N, spooled_bytes, N, 0, 0, 0),
        "{s:?}"
    );
    assert_identity(&s);
    assert!(lg.close(Duration::from_secs(5)));
    assert!(c.wait(|d| d.iter().filter(|&&b| b == b'\n').count() as u64 >= N));
    let got = lines(&c);
    assert_eq!(got.len() as u64, N, "every message once");
    // In order per producing thread.
    let mut next = [0usize; THREADS];
    for l in &got {
        let (t, i) = l[1..].split_once('-').unwrap();
        let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[t], "thread {t} out of order at {l}");
        next[t] += 1;
    }
    assert_eq!(next, [PER_THREAD; THREADS]);
    // Delivered: nothing is left on disk for a later process.
    let lg2 = Logger::start(Config::parse(&text).unwrap()).unwrap();
    thread::sleep(Duration::from_millis(100));
    assert_eq!(lg2.stats().adopted, 0);
    lg2.close(Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn what_does_not_fit_under_the_cap_is_lost_counted_and_reported() {
    let dir = temp_dir("spool-cap");
    let (port, _down) = refusing_port();
    let lg = Logger::start(
        Config::parse(&config(
            port,
            &dir,
            "spool_max_bytes = 65536\nflush_limit = 4096",
        ))
        .unwrap(),
    )
    .unwrap();
    let n = 5_000u64;
    let msg = format!("{}\n", "c".repeat(99));
    for _ in 0..n {
        assert_eq!(lg.log(msg.as_bytes()), Logged::Buffered(100));
    }
    wait_for("everything spooled or lost", 30, || {
        let s = lg.stats();
        s.buffered == 0 && s.spooled + s.lost == n
    });
    let s = lg.stats();
    assert_identity(&s);
    assert!(s.spooled > 0 && s.spooled_bytes <= 65536, "{s:?}");
    assert!(s.lost > 0, "{s:?}");
    let mut saw_full = false;
    wait_for("the spool-full error", 10, || {
        if let Some(e) = lg.take_error() {
            saw_full |= e.as_str().contains("is full (spool_max_bytes = 65536)");
        }
        saw_full
    });
    lg.close(Duration::from_millis(100));
    let s = lg.stats();
    assert_identity(&s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unusable_spool_directory_is_an_init_error() {
    let dir = temp_dir("spool-unusable");
    let file = dir.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let e = Logger::start(Config::parse(&config(1, &file, "")).unwrap()).unwrap_err();
    assert!(e.contains("cannot use \"spool\" directory"), "{e}");
    assert!(e.contains("a-file"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn spool_keys_are_checked() {
    let e = |t: &str| Config::parse(t).unwrap_err();
    assert!(e("path = /x\nspool_mode = always").contains("needs \"spool = DIRECTORY\""));
    assert!(e("path = /x\nspool = /tmp/s\nspool_mode = sometimes")
        .starts_with("invalid \"spool_mode\""));
    assert!(
        e("path = /x\nspool = /tmp/s\nspool_sync = often").starts_with("invalid \"spool_sync\"")
    );
    assert!(e("path = /x\nspool = /tmp/s\nspool_max_bytes = 0")
        .starts_with("invalid \"spool_max_bytes\""));
    assert!(e("path = /x\nspool = /tmp/s\nspool_sync_interval = 100")
        .contains("needs \"spool_sync = interval\""));
    assert!(Config::parse("logger = tcp://127.0.0.1:1\nspool = /tmp/s")
        .unwrap()
        .spool
        .is_some());
    let c = Config::parse("path = /x\nspool = /tmp/s\nspool_sync = interval").unwrap();
    assert_eq!(
        c.spool.unwrap().sync,
        rlog::config::SpoolSync::Interval(Duration::from_millis(500))
    );
}

#[test]
fn always_mode_writes_ahead_and_still_delivers_everything() {
    let dir = temp_dir("spool-always");
    let c = Collector::tcp();
    let lg = Logger::start(
        Config::parse(&config(
            c.port(),
            &dir,
            "spool_mode = always\nspool_sync = none",
        ))
        .unwrap(),
    )
    .unwrap();
    let n = 20_000u64;
    for i in 0..n {
        let m = format!("a{i:06}\n");
        assert_eq!(lg.log(m.as_bytes()), Logged::Buffered(m.len()));
    }
    assert!(lg.close(Duration::from_secs(10)));
    let s = lg.stats();
    assert_eq!((s.logged, s.sent, s.spooled, s.lost), (n, n, 0, 0), "{s:?}");
    assert_identity(&s);
    assert!(c.wait(|d| d.iter().filter(|&&b| b == b'\n').count() as u64 >= n));
    let got = c.lines();
    assert_eq!(got.len() as u64, n);
    for (i, l) in got.iter().enumerate() {
        assert_eq!(l, &format!("a{i:06}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A restart with a config whose logger lines moved (one added above, or reordered) finds the
/// records the earlier config spooled: they are under the key of the logger's old place
/// (`0-TARGET`), and the logger, now second, adopts them from there. A config that names no
/// logger with that target says the records are there rather than leaving them unmentioned.
#[test]
fn a_logger_that_moved_in_the_config_delivers_what_it_spooled_before() {
    let dir = temp_dir("spool-moved");
    let (port, down) = refusing_port();
    let elsewhere = Collector::tcp();
    let n = 2_000u64;
    let spool = format!(
        "spool = {}\nmax_retry_times = 0\nretry_interval = 10\n",
        dir.display()
    );
    let before = format!("logger = tcp://127.0.0.1:{port}\n{spool}");
    let lg = Logger::start(Config::parse(&before).unwrap()).unwrap();
    for i in 0..n {
        let m = format!("m{i:05}\n");
        assert_eq!(lg.log(m.as_bytes()), Logged::Buffered(m.len()));
    }
    wait_for("everything spooled", 30, || lg.stats().spooled == n);
    lg.close(Duration::from_millis(100));
    assert_identity(&lg.stats());

    // A config without that target: the records stay, and it says so.
    let other = format!("logger = tcp://127.0.0.1:{}\n{spool}", elsewhere.port());
    let lg = Logger::start(Config::parse(&other).unwrap()).unwrap();
    let key = format!("0-tcp___127_0_0_1_{port}");
    let mut said = String::new();
    wait_for("the unclaimed-records error", 10, || {
        if let Some(e) = lg.take_error() {
            said = e.as_str().to_string();
        }
        !said.is_empty()
    });
    assert!(
        said.contains(
            "holds records a dead process left for a target no logger of this config names"
        ) && said.contains(&key),
        "{said}"
    );
    thread::sleep(Duration::from_millis(100));
    assert_eq!(lg.stats().adopted, 0);
    lg.close(Duration::from_secs(1));

    // The logger comes back second, its collector up: it adopts from its old key.
    let c = Collector::listen_on(down);
    let after = format!(
        "logger = tcp://127.0.0.1:{}\nlogger = tcp://127.0.0.1:{port}\n{spool}",
        elsewhere.port()
    );
    let lg = Logger::start(Config::parse(&after).unwrap()).unwrap();
    wait_for("the old config's records delivered", 30, || {
        lg.stats().sent == n
    });
    let s = lg.stats();
    assert_eq!(
        (s.logged, s.adopted, s.sent, s.lost, s.spooled),
        (0, n, n, 0, 0),
        "{s:?}"
    );
    assert_identity(&s);
    assert!(lg.take_error().is_none(), "nothing is left unclaimed");
    assert!(lg.close(Duration::from_secs(5)));
    assert!(c.wait(|d| d.iter().filter(|&&b| b == b'\n').count() as u64 >= n));
    let got = lines(&c);
    let want: Vec<String> = (0..n).map(|i| format!("m{i:05}")).collect();
    assert_eq!(got, want, "every record once, in order");
    assert!(elsewhere.lines().is_empty(), "not sent to the other target");
    let _ = std::fs::remove_dir_all(&dir);
}
