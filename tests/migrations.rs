//! Migrations are idempotent, the outbox triggers write one event per
//! statement, and the reader role cannot write.

mod common;

use common::*;

#[tokio::test]
async fn rerunning_migrations_is_a_no_op() {
    let mut db = TestDb::new().await;
    let applied = ingestwatch::db::migrate::run(&mut db.client)
        .await
        .expect("rerun");
    assert!(applied.is_empty(), "{applied:?}");
    let n: i64 = db
        .client
        .query_one("select count(*) from monitor.schema_migrations", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n as usize, ingestwatch::db::migrate::migrations().len());
}

#[tokio::test]
async fn one_event_per_statement_not_per_row() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let p = Pipeline::new(&db).await;
    let run = p.run(src).await;
    let before = db.max_seq().await;
    let ids = p.records(run, src, 500).await;
    assert_eq!(db.max_seq().await, before + 1);
    p.process(&ids, "normalized", 10).await;
    let row = db
        .client
        .query_one(
            "select kind, rows, summary from monitor.events order by seq desc limit 1",
            &[],
        )
        .await
        .expect("event");
    assert_eq!(row.get::<_, String>(0), "raw_records.update");
    assert_eq!(row.get::<_, i32>(1), 500);
    // an update that changes nothing writes no event
    let n = db.max_seq().await;
    db.client
        .execute(
            "update ingest.runs set status = 'failed' where id = -1",
            &[],
        )
        .await
        .expect("noop");
    assert_eq!(db.max_seq().await, n);
}

#[tokio::test]
async fn the_reader_role_cannot_write() {
    let db = TestDb::new().await;
    if db.reader_url == db.url {
        eprintln!("reader role cannot log in on this cluster; skipping");
        return;
    }
    let src = db.source("crm").await;
    let reader = ingestwatch::db::connect(&db.reader_url)
        .await
        .expect("reader");
    for sql in [
        format!("insert into ingest.runs (source_id) values ({src})"),
        "update ingest.sources set name = 'x'".to_string(),
        "delete from ingest.errors".to_string(),
        "insert into monitor.events (kind, rows, summary) values ('x', 1, '{}')".to_string(),
    ] {
        let err = reader.batch_execute(&sql).await.expect_err(&sql);
        let code = err.code().map(|c| c.code().to_string()).unwrap_or_default();
        assert!(code == "25006" || code == "42501", "{sql}: {err}");
    }
    reader
        .batch_execute("listen ingestwatch_events")
        .await
        .expect("reader may LISTEN");
    let n: i64 = reader
        .query_one("select count(*) from ingest.sources", &[])
        .await
        .expect("select")
        .get(0);
    assert_eq!(n, 1);
}
