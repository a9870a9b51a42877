//! The operator API's lists under change and under scopes: keyset pages
//! skip and repeat nothing while the pipeline inserts, and source scopes
//! and roles apply to lists, drill-downs and exports.

mod common;
#[path = "common/lists.rs"]
mod lists_support;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use common::*;
use ingestwatch_server::auth::{Principal, Role};
use ingestwatch_server::http::params::{ApiQuery, NoParams};
use lists_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_while_the_pipeline_inserts_skips_and_repeats_nothing() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let p = Pipeline::new(&db).await;
    let run = p.run(src).await;
    for _ in 0..6 {
        p.records(run, src, 50).await;
    }
    let errs_run = p.run(src).await;
    for i in 0..120 {
        p.error_with(
            Some(errs_run),
            src,
            None,
            "error",
            "load",
            "E",
            &format!("e{i}"),
            None,
        )
        .await;
    }
    let server = TestServer::start(&db).await;

    for sort in ["-received_at", "received_at", "id", "-id", "status"] {
        let before: HashSet<i64> = ids_sql(&db, "select id from ingest.raw_records")
            .await
            .into_iter()
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let w = Pipeline::new(&db).await;
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0;
                // Bounded, so ascending pages can catch up and end.
                while !stop.load(Ordering::Acquire) && n < 150 {
                    w.records(run, src, 3).await;
                    n += 1;
                }
                n
            })
        };
        let items = page_all(&server, &format!("/api/records?sort={sort}"), 20).await;
        stop.store(true, Ordering::Release);
        let statements = writer.await.expect("writer");
        let got = ids_of(&items);
        let unique: HashSet<i64> = got.iter().copied().collect();
        assert_eq!(
            unique.len(),
            got.len(),
            "sort={sort}: a row was served twice"
        );
        let missing: Vec<&i64> = before.difference(&unique).collect();
        assert!(missing.is_empty(), "sort={sort}: rows skipped: {missing:?}");
        // Whatever else was served exists, and the whole sequence is in SQL order.
        let list = got.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let (col, dir) = match sort.strip_prefix('-') {
            Some(c) => (c, "desc"),
            None => (sort, "asc"),
        };
        let ordered = ids_sql(
            &db,
            &format!("select id from ingest.raw_records where id in ({list}) order by {col} {dir}, id {dir}"),
        )
        .await;
        assert_eq!(got, ordered, "sort={sort}: pages are in order");
        assert!(statements > 0, "the writer wrote while paging");
    }
    // The error log too, with a writer.
    let before = ids_sql(
        &db,
        "select id from ingest.errors order by occurred_at desc, id desc",
    )
    .await;
    let writer = {
        let w = Pipeline::new(&db).await;
        tokio::spawn(async move {
            for i in 0..100 {
                w.error_with(
                    Some(errs_run),
                    src,
                    None,
                    "warning",
                    "fetch",
                    "W",
                    &format!("w{i}"),
                    None,
                )
                .await;
            }
        })
    };
    let got = ids_of(&page_all(&server, "/api/errors?", 9).await);
    writer.await.expect("writer");
    let unique: HashSet<i64> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len());
    assert!(before.iter().all(|id| unique.contains(id)));
    server.stop().await;
}

fn principal(role: Role, sources: Option<&[&str]>) -> Principal {
    Principal {
        subject: "test".into(),
        role,
        sources: sources.map(|s| s.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>()),
        expires_at: None,
    }
}

/// The handlers are called directly with a principal (the auth extractor is
/// not part of this branch): scopes filter every list, hide other sources'
/// runs and records (404), and viewers get no payloads and no exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_and_roles_apply_to_lists_drill_downs_and_exports() {
    use ingestwatch_server::http::lists::{errors, records, runs, sources};
    let db = TestDb::new().await;
    let s = seed(&db).await;
    let st = ingestwatch_server::server::state(
        &db.reader_url,
        options(),
        tokio_util::sync::CancellationToken::new(),
    )
    .expect("state");
    let scoped = principal(Role::Viewer, Some(&["calendar", "erp"]));

    let page = runs::list(
        State(st.clone()),
        scoped.clone(),
        ApiQuery(Default::default()),
    )
    .await
    .expect("runs");
    let got: Vec<i64> = page.0.items.iter().map(|i| i.id()).collect();
    let want = ids_sql(
        &db,
        &format!(
            "select id from ingest.runs where source_id in ({}, {}) order by started_at desc, id desc",
            s.calendar, s.erp
        ),
    )
    .await;
    assert_eq!(got, want);

    let page = records::list(
        State(st.clone()),
        scoped.clone(),
        ApiQuery(Default::default()),
    )
    .await
    .expect("records");
    assert!(page
        .0
        .items
        .iter()
        .all(|i| matches!(i, ingestwatch_server::db::rows::Item::Record(r) if r.source != "crm")));
    let page = errors::list(
        State(st.clone()),
        scoped.clone(),
        ApiQuery(Default::default()),
    )
    .await
    .expect("errors");
    let want = ids_sql(
        &db,
        &format!(
            "select id from ingest.errors where source_id in ({}, {}) order by occurred_at desc, id desc",
            s.calendar, s.erp
        ),
    )
    .await;
    assert_eq!(
        page.0.items.iter().map(|i| i.id()).collect::<Vec<_>>(),
        want
    );
    let page = sources::list(
        State(st.clone()),
        scoped.clone(),
        ApiQuery(Default::default()),
    )
    .await
    .expect("sources");
    let names: Vec<&str> = page.0.page.items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["calendar", "erp"]);

    // Asking for a source outside the scope is the same 400 as an unknown one.
    let q = runs::RunParams {
        source: Some("crm".into()),
        ..Default::default()
    };
    let e = runs::list(State(st.clone()), scoped.clone(), ApiQuery(q))
        .await
        .expect_err("crm is out of scope");
    assert_eq!(e.to_string(), "parameter `source`: unknown source \"crm\"");
    // An empty scope sees nothing.
    let nobody = principal(Role::Viewer, Some(&[]));
    let page = runs::list(State(st.clone()), nobody, ApiQuery(Default::default()))
        .await
        .expect("runs");
    assert!(page.0.items.is_empty());

    // Drill-downs: other sources are 404; viewers get no payload.
    use ingestwatch_server::http::drill;
    let e = drill::run(
        State(st.clone()),
        scoped.clone(),
        Ok(Path(s.runs[0].to_string())),
        ApiQuery(NoParams {}),
    )
    .await
    .expect_err("crm run hidden");
    assert!(matches!(
        e,
        ingestwatch_server::error::AppError::NotFound(_)
    ));
    let e = drill::record(
        State(st.clone()),
        scoped.clone(),
        Ok(Path(s.record.to_string())),
        ApiQuery(NoParams {}),
    )
    .await
    .expect_err("crm record hidden");
    assert!(matches!(
        e,
        ingestwatch_server::error::AppError::NotFound(_)
    ));
    let ok = drill::run(
        State(st.clone()),
        scoped.clone(),
        Ok(Path(s.runs[1].to_string())),
        ApiQuery(NoParams {}),
    )
    .await
    .expect("calendar run visible");
    assert_eq!(ok.0.run.source, "calendar");
    let viewer = principal(Role::Viewer, None);
    let detail = drill::record(
        State(st.clone()),
        viewer.clone(),
        Ok(Path(s.record.to_string())),
        ApiQuery(NoParams {}),
    )
    .await
    .expect("record");
    assert!(detail.0.payload.is_none() && detail.0.payload_text.is_none());
    assert!(detail.0.payload_redacted);
    assert_eq!(detail.0.errors.len(), 2, "errors are not payloads");
    let operator = principal(Role::Operator, Some(&["crm"]));
    let detail = drill::record(
        State(st.clone()),
        operator,
        Ok(Path(s.record.to_string())),
        ApiQuery(NoParams {}),
    )
    .await
    .expect("record");
    assert!(detail.0.payload_text.is_some() && !detail.0.payload_redacted);

    // Exports need the operator role.
    use ingestwatch_server::http::export;
    let e = export::csv(
        State(st.clone()),
        viewer.clone(),
        Path("runs.csv".into()),
        axum::extract::RawQuery(None),
    )
    .await
    .expect_err("viewer export");
    assert!(matches!(
        e,
        ingestwatch_server::error::AppError::Forbidden(_)
    ));
    let e = export::start(
        State(st.clone()),
        viewer,
        ApiQuery(NoParams {}),
        ingestwatch_server::http::params::ApiJson(export::StartExport {
            kind: "runs".into(),
            filters: Default::default(),
            include_payload: false,
        }),
    )
    .await
    .expect_err("viewer job");
    assert!(matches!(
        e,
        ingestwatch_server::error::AppError::Forbidden(_)
    ));
}
