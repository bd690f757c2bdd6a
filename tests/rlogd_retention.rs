//! Retention and `tail`: `--retain-days` removes whole sealed date folders past the window on
//! the master and on the follower; `rlogd tail` prints records as they are committed.

mod rlogd_util;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use rlog::proto::format::Date;
use rlog::proto::reader;
use rlogd_util::*;

#[test]
fn retain_days_deletes_old_dates_on_master_and_follower() {
    let dir = TempDir::new("retain");
    let (mdata, fdata) = (dir.join("master"), dir.join("follower"));
    let m = Proc::serve(
        &mdata,
        &[
            "--listen",
            "rlogd://127.0.0.1:0",
            "--retain-days",
            "2",
            "--seal-grace",
            "31536000",
        ],
        dir.join("mlog"),
    );
    let addr = m.bound("rlogd");
    let _f = Proc::start(
        &[
            "follow",
            "--master",
            &format!("rlogd://{addr}"),
            "--data",
            fdata.to_str().unwrap(),
            "--retain-days",
            "2",
        ],
        dir.join("flog"),
    );
    let today = Date::today();
    let at = |n: i64| today.add_days(-n).end_micros() - 1_000_000;
    for (i, n) in [6i64, 5, 1, 0].into_iter().enumerate() {
        send_dated(
            &addr,
            3,
            i as u64,
            at(n),
            &[format!("day -{n}").into_bytes()],
        );
    }
    // Kept: yesterday and today (two days); the older ones go, on both sides.
    let want = vec![today.add_days(-1), today];
    assert!(
        wait_until(Duration::from_secs(20), || reader::list_dates(&mdata)
            .unwrap()
            == want),
        "{:?}",
        reader::list_dates(&mdata)
    );
    assert!(
        wait_until(Duration::from_secs(20), || reader::list_dates(&fdata)
            .unwrap_or_default()
            == want
            && payloads(&fdata).contains(&b"day -0".to_vec())),
        "{:?}\n{}",
        reader::list_dates(&fdata),
        std::fs::read_to_string(dir.join("flog")).unwrap_or_default()
    );
    // The folder goes before the line saying so is written: wait for the line.
    assert!(
        m.wait_log(|l| l.contains(&format!("retention: deleted {}", today.add_days(-6)))),
        "{}",
        m.log_text()
    );
    assert_eq!(
        payloads(&mdata),
        vec![b"day -1".to_vec(), b"day -0".to_vec()]
    );
    assert_eq!(verify(&fdata).0, 0);
}

#[test]
fn tail_prints_new_records() {
    let dir = TempDir::new("tail");
    let data = dir.join("data");
    let d = Proc::serve(&data, &["--listen", "tcp://127.0.0.1:0"], dir.join("log"));
    let mut t = TcpStream::connect(d.bound("tcp")).unwrap();
    t.write_all(b"before tail\n").unwrap();
    assert!(wait_until(Duration::from_secs(10), || payloads(&data)
        .len()
        == 1));
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut tail = Kill(
        Command::new(BIN)
            .args(["tail", "--data", data.to_str().unwrap(), "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = tail.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            if tx.send(l.unwrap()).is_err() {
                return;
            }
        }
    });
    // Give tail time to find the end of the store, then send more.
    std::thread::sleep(Duration::from_millis(300));
    t.write_all(b"after tail 1\nafter tail 2\n").unwrap();
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("tail printed nothing");
    let second = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("tail printed one line");
    drop(tail);
    assert!(
        first.contains("\"id\":1,") && first.contains("\"msg\":\"after tail 1\""),
        "{first}"
    );
    assert!(second.contains("\"msg\":\"after tail 2\""), "{second}");
}
