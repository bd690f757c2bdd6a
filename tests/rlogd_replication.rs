//! Replication: a follower started after the master has several dates catches up, survives
//! being killed mid-catch-up and mid-live and the master restarting, and ends with a
//! byte-identical copy.

mod rlogd_util;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use rlog::proto::format::Date;
use rlog::proto::reader;
use rlog::{Config, Logger};
use rlogd_util::*;

/// Every file of a date folder, by name.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn count(data: &Path, d: Date) -> u64 {
    rlog::proto::reader::DateReader::open(data, d)
        .and_then(|r| r.count_on_disk())
        .unwrap_or(0)
}

#[test]
fn follower_catches_up_survives_kills_and_master_restart_and_matches_byte_for_byte() {
    let dir = TempDir::new("repl");
    let (mdata, fdata) = (dir.join("master"), dir.join("follower"));
    // Dates seal when a newer one begins, not by the clock (they are in the past).
    let mut m = Proc::serve(
        &mdata,
        &[
            "--listen",
            "rlogd://127.0.0.1:0",
            "--seal-grace",
            "31536000",
            "--file-size",
            "16777272",
        ],
        dir.join("mlog"),
    );
    let addr = m.bound("rlogd");
    // Three past dates; the last one large enough to rotate its data file (16 MiB + a bit).
    let today = Date::today();
    let day = |n: i64| today.add_days(-n).end_micros() - 3_600_000_000;
    let small: Vec<Vec<u8>> = (0..3000)
        .map(|i| format!("old record {i}").into_bytes())
        .collect();
    send_dated(&addr, 1, 0, day(5), &small);
    send_dated(&addr, 1, 3000, day(4), &small);
    let big: Vec<Vec<u8>> = (0..9000)
        .map(|i| format!("{i:06}{}", "y".repeat(1000)).into_bytes())
        .collect();
    send_dated(&addr, 1, 6000, day(3), &big);
    send_dated(&addr, 1, 15000, day(3), &big);
    assert!(mdata
        .join(today.add_days(-3).to_string())
        .join("data000001")
        .exists());

    let follow_args = [
        "follow",
        "--master",
        &format!("rlogd://{addr}"),
        "--data",
        fdata.to_str().unwrap(),
    ];
    let flog = dir.join("flog");
    // Kill the follower as soon as it has started copying.
    let mut f = Proc::start(&follow_args, flog.clone());
    assert!(wait_until(Duration::from_secs(20), || reader::list_dates(
        &fdata
    )
    .map(|d| !d.is_empty())
    .unwrap_or(false)));
    f.kill9();
    let mut f = Proc::start(&follow_args, flog.clone());

    // Live records from librlog, now.
    let (host, port) = addr.rsplit_once(':').unwrap();
    let cfg = Config::parse(&format!("host = {host}\nport = {port}\nsock_type = rlogd\nretry_interval = 20\nmax_retry_times = 50")).unwrap();
    let lg = Logger::start(cfg).unwrap();
    let mut live = 0u64;
    let mut log_some = |n: u64| {
        for _ in 0..n {
            lg.log(format!("live {live}").as_bytes());
            live += 1;
        }
        assert!(wait_until(Duration::from_secs(30), || {
            lg.flush();
            lg.stats().sent == live
        }));
    };
    log_some(500);
    assert!(
        wait_until(Duration::from_secs(30), || count(&fdata, today) >= 100),
        "{}",
        fs::read_to_string(&flog).unwrap()
    );
    // Killed mid-live.
    f.kill9();
    log_some(500);
    let _f = Proc::start(&follow_args, flog.clone());
    log_some(500);
    // The master restarts while the follower is connected.
    assert_eq!(m.term(), Some(0));
    m = Proc::serve(
        &mdata,
        &[
            "--listen",
            &format!("rlogd://{addr}"),
            "--seal-grace",
            "31536000",
            "--file-size",
            "16777272",
        ],
        dir.join("mlog"),
    );
    log_some(500);
    assert!(
        wait_until(Duration::from_secs(30), || count(&fdata, today)
            == count(&mdata, today)
            && count(&mdata, today) == live),
        "follower {} master {} live {live}\n{}",
        count(&fdata, today),
        count(&mdata, today),
        fs::read_to_string(&flog).unwrap()
    );
    // Sealed dates: byte-identical folders (finish included). Live date: identical too, now
    // that both have every record.
    let dates = reader::list_dates(&mdata).unwrap();
    assert_eq!(dates.len(), 4);
    assert_eq!(reader::list_dates(&fdata).unwrap(), dates);
    for d in &dates {
        let (a, b) = (
            files(&mdata.join(d.to_string())),
            files(&fdata.join(d.to_string())),
        );
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{d}"
        );
        for (name, bytes) in &a {
            assert!(bytes == &b[name], "{d}/{name} differs");
        }
    }
    for d in &dates[..3] {
        assert!(reader::is_sealed(&fdata, *d));
    }
    let (code, out) = verify(&fdata);
    assert_eq!(code, 0, "{out}");
    drop(lg);
    drop(m);
}

#[test]
fn replication_listener_is_separate_and_live_lag_is_pushed() {
    let dir = TempDir::new("repl2");
    let (mdata, fdata) = (dir.join("master"), dir.join("follower"));
    let m = Proc::serve(
        &mdata,
        &[
            "--listen",
            "rlogd://127.0.0.1:0",
            "--replication",
            "rlogd://127.0.0.1:0",
        ],
        dir.join("mlog"),
    );
    let ingest = m.bound("rlogd");
    let repl = m.bound_by("replication on rlogd://");
    // A follower on the ingest listener is refused there.
    let f_wrong = Proc::start(
        &[
            "follow",
            "--master",
            &format!("rlogd://{ingest}"),
            "--data",
            fdata.to_str().unwrap(),
        ],
        dir.join("f0log"),
    );
    assert!(
        wait_until(Duration::from_secs(10), || fs::read_to_string(
            dir.join("f0log")
        )
        .unwrap_or_default()
        .contains("does not serve that role")),
        "{}\n{}",
        fs::read_to_string(dir.join("f0log")).unwrap_or_default(),
        m.log_text()
    );
    drop(f_wrong);
    let _f = Proc::start(
        &[
            "follow",
            "--master",
            &format!("rlogd://{repl}"),
            "--data",
            fdata.to_str().unwrap(),
        ],
        dir.join("flog"),
    );
    let now = rlog::proto::format::now_micros();
    send_dated(&ingest, 9, 0, now, &[b"pushed".to_vec()]);
    assert!(wait_until(Duration::from_secs(10), || payloads(&fdata)
        == vec![b"pushed".to_vec()]));
}

#[test]
fn a_past_date_is_sealed_by_the_clock_and_finish_reaches_the_follower() {
    let dir = TempDir::new("seal");
    let (mdata, fdata) = (dir.join("master"), dir.join("follower"));
    let m = Proc::serve(
        &mdata,
        &["--listen", "rlogd://127.0.0.1:0", "--seal-grace", "0"],
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
        ],
        dir.join("flog"),
    );
    let yesterday = Date::today().add_days(-1);
    send_dated(&addr, 4, 0, yesterday.end_micros() - 1, &[b"late".to_vec()]);
    // Nothing else arrives: the master's clock alone seals the date, and the follower follows.
    assert!(wait_until(Duration::from_secs(20), || reader::is_sealed(
        &mdata, yesterday
    )));
    assert!(wait_until(Duration::from_secs(20), || reader::is_sealed(
        &fdata, yesterday
    )));
    assert_eq!(
        files(&mdata.join(yesterday.to_string())),
        files(&fdata.join(yesterday.to_string()))
    );
    assert!(m.log_text().contains(&format!("sealed {yesterday}")));
}
