//! ClickHouse's answers to bad inserts, from the real server (18.16 here), classified as the
//! clickhouse output classifies them; and the test harness itself (start, kill -9, restart).

mod clickhouse_util;

use clickhouse_util::ClickHouse;

#[test]
fn harness_starts_inserts_counts_and_restarts_on_the_same_path() {
    let mut ch = ClickHouse::start("harness");
    ch.create_table("harness");
    let r = ch
        .insert(
            "INSERT INTO logs.harness FORMAT JSONEachRow",
            &[],
            b"{\"id\":1,\"msg\":\"a\"}\n{\"id\":2,\"msg\":\"b\"}\n",
        )
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(ch.count("harness"), 2);
    let pid = ch.pid().unwrap();
    ch.kill9();
    assert!(!ch.ping());
    ch.restart();
    assert_ne!(ch.pid(), Some(pid));
    assert_eq!(ch.rows("harness"), vec![(1, "a".into()), (2, "b".into())]);
}
