//! A database that went back in time (issue 16, item 2), the part that is
//! checked before anything is read: the outbox sequence must hand out one
//! seq at a time (`cache 1`), or seqs cached by one session would be used
//! after the server passed them and their events lost without a trace. The
//! server refuses to start on such a sequence, naming the fix.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_sequence_with_a_cache_is_refused_at_start() {
    let db = TestDb::new().await;
    let name: String = db
        .client
        .query_one(
            "select pg_get_serial_sequence('monitor.events', 'seq')",
            &[],
        )
        .await
        .expect("sequence name")
        .get(0);
    db.client
        .batch_execute(&format!("alter sequence {name} cache 20"))
        .await
        .expect("cache 20");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let stop = tokio_util::sync::CancellationToken::new();
    let run = ingestwatch_server::server::run(listener, &db.reader_url, options(), stop.clone());
    let result = tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("run returns instead of serving");
    stop.cancel();
    let err = format!("{:#}", result.expect_err("refused to start"));
    assert!(
        err.contains("cache 20") && err.contains("cache 1"),
        "the error names the cache and the fix: {err}"
    );

    // Back to cache 1: it starts and serves.
    db.client
        .batch_execute(&format!("alter sequence {name} cache 1"))
        .await
        .expect("cache 1");
    let server = TestServer::start(&db).await;
    server.wait_caught_up(&db).await;
    server.stop().await;
}
