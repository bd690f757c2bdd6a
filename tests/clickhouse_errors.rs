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

/// The server's real answers to each kind of failure, as the output classifies them (the unit
/// tests in src/output/clickhouse/answer.rs quote the same answers, captured once).
#[test]
fn the_server_s_answers_are_classified_by_code() {
    use rlog::output::clickhouse::answer::{classify, Answer};
    let ch = ClickHouse::start("answers");
    ch.query(
        "CREATE TABLE logs.typed (id UInt64, msg String, dt DateTime, e Enum8('a' = 1, 'b' = 2), \
         u UUID, fs FixedString(2)) ENGINE = MergeTree ORDER BY id",
    )
    .unwrap();
    let insert = |table: &str, headers: &[String], body: &str| {
        let r = ch
            .insert(
                &format!("INSERT INTO {table} FORMAT JSONEachRow"),
                headers,
                body.as_bytes(),
            )
            .unwrap();
        classify(r.status, None, r.body.as_bytes())
    };
    let row = |body: &str| match insert("logs.typed", &[], body) {
        Answer::BadRow { row, .. } => row,
        other => panic!("{body}: expected a bad row, got {other:?}"),
    };
    assert_eq!(row("{\"id\":1}\n{\"id\":2,\"msg\":x}\n"), Some(2));
    assert_eq!(row("{\"id\":1}\n{\"id\":2}\n{\"idx\":3}\n"), Some(3));
    assert_eq!(row("{\"id\":-1}\n"), Some(1));
    assert_eq!(row("{\"msg\":null}\n"), Some(1));
    assert_eq!(row("{\"dt\":\"nope\"}\n"), Some(1));
    assert_eq!(row("{\"u\":\"not-a-uuid\"}\n"), Some(1));
    assert_eq!(row("{\"fs\":\"abc\"}\n"), Some(1));
    assert_eq!(row("{\"e\":\"zz\"}\n"), None);
    assert_eq!(row("{\"msg\":\"\\ud800\"}\n"), None);
    assert_eq!(
        insert("logs.typed", &[], "{\"id\":1}\n{\"id\":2}\n"),
        Answer::Stored
    );
    assert_eq!(ch.count("typed"), 2);

    let refused = |table: &str, headers: &[String]| {
        assert!(
            matches!(insert(table, headers, "{\"id\":1}\n"), Answer::Refused(_)),
            "{table} {headers:?}"
        )
    };
    refused("logs.nope", &[]);
    refused("nodb.typed", &[]);
    let user = |u: &str, p: &str| {
        vec![
            format!("X-ClickHouse-User: {u}"),
            format!("X-ClickHouse-Key: {p}"),
        ]
    };
    refused("logs.typed", &user(clickhouse_util::USER, "wrong"));
    refused("logs.typed", &user("nobody", "x"));
    assert_eq!(
        insert(
            "logs.typed",
            &user(clickhouse_util::USER, clickhouse_util::PASSWORD),
            "{\"id\":3}\n"
        ),
        Answer::Stored
    );
    // A gzip body is taken as it is, with no setting (18.16).
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut z, b"{\"id\":4}\n").unwrap();
    let r = ch
        .insert(
            "INSERT INTO logs.typed FORMAT JSONEachRow",
            &["Content-Encoding: gzip".to_string()],
            &z.finish().unwrap(),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(ch.count("typed"), 4);
}
