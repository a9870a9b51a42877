//! Migrations are idempotent, the outbox triggers write one event per
//! statement, and the reader role cannot write.

mod common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn rerunning_migrations_is_a_no_op() {
    let mut db = TestDb::new().await;
    let applied = ingestwatch_server::db::migrate::run(&mut db.client)
        .await
        .expect("rerun");
    assert!(applied.is_empty(), "{applied:?}");
    // Every file in sql/ (read from the repository, not from the embedded
    // list the runner uses) was applied exactly once, in name order.
    let sql_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|p| p.join("sql"))
        .find(|p| p.is_dir())
        .expect("sql/ directory");
    let mut files: Vec<String> = std::fs::read_dir(&sql_dir)
        .expect("read sql/")
        .filter_map(|e| {
            let name = e.expect("entry").file_name().into_string().expect("utf-8");
            name.strip_suffix(".sql").map(str::to_owned)
        })
        .collect();
    files.sort();
    let applied: Vec<String> = db
        .client
        .query(
            "select version from monitor.schema_migrations order by applied_at, version",
            &[],
        )
        .await
        .expect("versions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(applied, files);
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
    let src = db.source("crm").await;
    let reader = ingestwatch_server::db::connect(&db.reader_url)
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

/// The statically planned capture functions (0008) write the same events as
/// the dynamic `monitor.capture()` of 0003. Both run side by side: the old
/// function is attached under other trigger names (`iw_old_*` fire after
/// `iw_capture_*`), so every statement writes two consecutive events in the
/// same transaction, which must agree on kind, xid, source, rows, ids,
/// sources and the contribution tuples (0003 wrote `d` in hash order, 0008
/// sorts it: compared as sorted lists, and 0008's order is checked).
#[tokio::test]
async fn static_capture_writes_the_events_of_the_dynamic_function() {
    let db = TestDb::new().await;
    db.client
        .batch_execute(
            "do $$ declare t record; begin
               for t in select * from (values
                   ('ingest.sources'::regclass, 'none', 'id'),
                   ('ingest.runs', 'monitor.runs_contrib', 'source_id'),
                   ('ingest.raw_records', 'monitor.raw_records_contrib', 'source_id'),
                   ('ingest.meetings', 'none', 'source_id'),
                   ('ingest.errors', 'monitor.errors_contrib', 'source_id')) v(tbl, c, s) loop
                 execute format('create trigger iw_old_insert after insert on %s referencing new table as new_rows '
                                'for each statement execute function monitor.capture(%L, %L)', t.tbl, t.c, t.s);
                 execute format('create trigger iw_old_update after update on %s referencing old table as old_rows '
                                'new table as new_rows for each statement execute function monitor.capture(%L, %L)', t.tbl, t.c, t.s);
                 execute format('create trigger iw_old_delete after delete on %s referencing old table as old_rows '
                                'for each statement execute function monitor.capture(%L, %L)', t.tbl, t.c, t.s);
               end loop;
             end $$",
        )
        .await
        .expect("old triggers");
    let functions: Vec<String> = db
        .client
        .query(
            "select distinct p.proname::text from pg_trigger t join pg_proc p on p.oid = t.tgfoid
              where t.tgname like 'iw_capture_%' order by 1",
            &[],
        )
        .await
        .expect("trigger functions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(functions.len(), 15, "{functions:?}");
    assert!(
        functions.iter().all(|f| f.starts_with("capture_")),
        "{functions:?}"
    );

    let statements = [
        "insert into ingest.sources (name, kind) values ('a', 'api'), ('b', 'api'), ('c', 'file')",
        "update ingest.sources set expected_interval = '5 minutes' where name <> 'c'",
        "insert into ingest.runs (source_id, started_at)
           select s.id, timestamptz '2026-11-26 10:00:00' + s.id * interval '7 seconds'
             from ingest.sources s, generate_series(1, 3)",
        "insert into ingest.runs (source_id) select id from ingest.sources where name = 'a'",
        "insert into ingest.raw_records (run_id, source_id, external_id, payload, received_at)
           select r.id, r.source_id, 'ext-' || g, jsonb_build_object('n', g),
                  timestamptz '2026-11-26 10:00:00' + (g * 37 % 50) * interval '1 second' + g * interval '1 ms'
             from ingest.runs r, generate_series(1, 40) g",
        "insert into ingest.raw_records (run_id, source_id, payload)
           select min(id), min(source_id), '{}' from ingest.runs",
        // batches whose rows share every column a contribution reads (0011
        // folds them into one group per source before the contributions)
        "insert into ingest.raw_records (run_id, source_id, external_id, payload, received_at)
           select r.id, r.source_id, 'batch-' || r.id || '-' || g, '{}', timestamptz '2026-11-26 11:00:00.123456'
             from ingest.runs r, generate_series(1, 25) g",
        "update ingest.raw_records set status = 'normalized', processed_at = timestamptz '2026-11-26 11:00:02.5'
          where external_id like 'batch-%' and id % 4 <> 0",
        "update ingest.raw_records
            set status = case when id % 4 = 0 then 'rejected' else 'normalized' end,
                processed_at = received_at + (id % 7) * interval '13 ms' + (id % 3) * interval '1 s'
          where id % 3 <> 0",
        "update ingest.raw_records set processed_at = processed_at + interval '2 s' where id % 5 = 1",
        "update ingest.raw_records set external_id = external_id where id < 10",
        "insert into ingest.meetings (raw_record_id, source_id, title, starts_at, ends_at, organizer, attendee_count)
           select id, source_id, 'M ' || id, received_at, received_at + interval '1 hour', 'Zoë', 3
             from ingest.raw_records where status = 'normalized' and id % 2 = 0",
        "update ingest.meetings set attendee_count = attendee_count + 1 where id % 3 = 0",
        "insert into ingest.errors (run_id, raw_record_id, source_id, severity, stage, code, message, occurred_at)
           select run_id, id, source_id, case when id % 8 = 0 then 'warning' else 'error' end, 'validate',
                  'E_' || (id % 3), 'bad', processed_at
             from ingest.raw_records where status = 'rejected'",
        "update ingest.errors set severity = 'warning', code = 'E_X' where id % 2 = 0",
        "update ingest.runs set status = case when id % 3 = 0 then 'failed' when id % 3 = 1 then 'succeeded' else 'partial' end,
                finished_at = started_at + id * interval '1 minute' where id % 4 <> 0",
        "update ingest.runs set status = 'running', finished_at = null where id = 1",
        "delete from ingest.errors where id % 3 = 0",
        "delete from ingest.meetings where id % 2 = 0",
        "delete from ingest.raw_records r where id % 5 = 0
            and not exists (select 1 from ingest.meetings m where m.raw_record_id = r.id)
            and not exists (select 1 from ingest.errors e where e.raw_record_id = r.id)",
        "update ingest.raw_records set status = 'pending', processed_at = null where id = -1",
        "delete from ingest.errors",
        "delete from ingest.meetings",
        "delete from ingest.raw_records",
        "delete from ingest.runs where id % 2 = 0",
        "delete from ingest.runs",
        "delete from ingest.sources where name = 'c'",
    ];
    let before = db.max_seq().await;
    for sql in statements {
        db.client.batch_execute(sql).await.expect(sql);
    }
    let rows = db
        .client
        .query(
            "select kind, xid::text, source_id, rows, summary from monitor.events
              where seq > $1 order by seq",
            &[&before],
        )
        .await
        .expect("events");
    // one no-op update: no event from either function
    assert_eq!(
        rows.len(),
        2 * (statements.len() - 1),
        "two events per statement"
    );
    let mut kinds = std::collections::BTreeSet::new();
    for pair in rows.chunks(2) {
        let (new, old) = (&pair[0], &pair[1]);
        let kind: String = new.get(0);
        assert_eq!(kind, old.get::<_, String>(0));
        assert_eq!(
            new.get::<_, String>(1),
            old.get::<_, String>(1),
            "{kind}: xid"
        );
        assert_eq!(
            new.get::<_, Option<i64>>(2),
            old.get::<_, Option<i64>>(2),
            "{kind}: source_id"
        );
        assert_eq!(new.get::<_, i32>(3), old.get::<_, i32>(3), "{kind}: rows");
        let (ns, os): (Value, Value) = (new.get(4), old.get(4));
        assert_eq!(ns["ids"], os["ids"], "{kind}: ids");
        assert_eq!(ns["sources"], os["sources"], "{kind}: sources");
        let d = |s: &Value| -> Vec<String> {
            s["d"]
                .as_array()
                .expect("d")
                .iter()
                .map(Value::to_string)
                .collect()
        };
        let (nd, mut od) = (d(&ns), d(&os));
        let key = |t: &Value| {
            let a = t.as_array().expect("tuple");
            (
                a[0].as_i64(),
                a[1].as_str().map(str::to_string),
                a[2].as_i64(),
                a[3].as_i64(),
                a[5].as_str().map(str::to_string),
            )
        };
        let nkeys: Vec<_> = ns["d"].as_array().expect("d").iter().map(key).collect();
        let mut sorted = nkeys.clone();
        sorted.sort();
        assert_eq!(nkeys, sorted, "{kind}: 0008 writes d sorted");
        let mut nd_sorted = nd.clone();
        nd_sorted.sort();
        od.sort();
        assert_eq!(nd_sorted, od, "{kind}: contributions");
        assert_eq!(
            ns.as_object().map(|o| o.len()),
            Some(3),
            "{kind}: summary keys"
        );
        kinds.insert(kind);
    }
    for t in ["sources", "runs", "raw_records", "meetings", "errors"] {
        for op in ["insert", "update", "delete"] {
            assert!(kinds.contains(&format!("{t}.{op}")), "{t}.{op} not covered");
        }
    }
}

/// 0010's double-precision time functions give exactly the numeric
/// expressions they replaced: random timestamps over two centuries, every
/// sub-second boundary around a few seconds, and durations on both sides of
/// every half millisecond.
#[tokio::test]
async fn float_epoch_functions_equal_the_numeric_expressions() {
    let db = TestDb::new().await;
    let row = db
        .client
        .query_one(
            "with ts as (
               select timestamptz '1900-01-01 00:00:00+00'
                      + (random() * 200 * 365.25 * 86400 * 1e6)::bigint * interval '1 microsecond' as t
                 from generate_series(1, 200000)
               union all
               select timestamptz '2026-11-26 10:00:00+00' + d * interval '1 microsecond' + s * interval '1 second'
                 from generate_series(-3, 3) s,
                      unnest(array[0, 1, 499, 500, 501, 999, 1000, 1001, 500000, 999499, 999500, 999999]) d
               union all
               select t from unnest(array[timestamptz '1970-01-01 00:00:00+00', '1969-12-31 23:59:59.999999+00',
                                          '1969-12-31 23:59:59.9995+00', '2038-01-19 03:14:07.999999+00',
                                          '2099-12-31 23:59:59.999999+00', '1900-01-01 00:00:00.000001+00']) t
             ), pairs as (
               select t as a, t + (random() * 1e9)::bigint * interval '1 microsecond'
                                * (case when random() < 0.3 then 1000 else 1 end) as b
                 from ts
               union all
               select t, t + d * interval '1 microsecond'
                 from ts, unnest(array[0, 1, 499, 500, 501, 1499, 1500, 1501, -1, -499, -500, -501, -1500]) d
                where t > '2026-01-01'
             )
             select (select count(*) from ts),
                    (select count(*) from ts
                      where monitor.epoch_sec(t) <> floor(extract(epoch from t))::bigint),
                    (select count(*) from ts
                      where monitor.epoch_ms(t) <> floor(extract(epoch from t) * 1000)::bigint),
                    (select count(*) from pairs),
                    (select count(*) from pairs
                      where monitor.ms_between(a, b)
                            <> greatest(0, round(extract(epoch from (b - a)) * 1000))::bigint)",
            &[],
        )
        .await
        .expect("compare");
    let (n, sec, ms, pairs, lag): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert!(n > 200_000 && pairs > n, "{n} timestamps, {pairs} pairs");
    assert_eq!(
        (sec, ms, lag),
        (0, 0, 0),
        "differences: epoch_sec, epoch_ms, ms_between"
    );
}

/// The capture functions group changed rows by the columns the contribution
/// functions read (0011), as generated when they were installed: a later
/// redefinition of a contribution function that reads another column must
/// regenerate its table's capture functions, or that column would be null.
#[tokio::test]
async fn capture_functions_group_by_every_column_the_contributions_read() {
    let db = TestDb::new().await;
    let rows = db
        .client
        .query(
            "select t.tbl, op, monitor.contrib_columns(t.tbl::regclass, t.contrib), p.prosrc
               from (values ('ingest.runs', 'runs', 'monitor.runs_contrib'),
                            ('ingest.raw_records', 'raw_records', 'monitor.raw_records_contrib'),
                            ('ingest.errors', 'errors', 'monitor.errors_contrib')) t(tbl, name, contrib)
              cross join unnest(array['insert', 'update', 'delete']) op
               join pg_proc p on p.proname = 'capture_' || t.name || '_' || op",
            &[],
        )
        .await
        .expect("capture functions");
    assert_eq!(rows.len(), 9);
    for r in rows {
        let (tbl, op): (String, String) = (r.get(0), r.get(1));
        let cols: Option<Vec<String>> = r.get(2);
        let cols = cols.unwrap_or_else(|| panic!("{tbl}: contribution columns not derived"));
        assert!(cols.len() >= 3, "{tbl}: {cols:?}");
        let src: String = r.get(3);
        let group = format!(
            "(select {}, count(*) as c from",
            cols.iter()
                .map(|c| format!("r.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(
            src.contains(&group),
            "{tbl}.{op} does not group by {cols:?}"
        );
    }
}
