//! Stream test helpers shared by the SSE and `tail` tests: a pipeline step
//! committed or rolled back, and the event seqs SQL says were published.
#![allow(dead_code)]

use super::common::*;

pub async fn step(p: &Pipeline, src: i64, i: i64, rollback: bool) {
    p.client.batch_execute("begin").await.expect("begin");
    let run = p.run(src).await;
    let ids = p.records(run, src, 1 + i % 3).await;
    p.process(&ids, "normalized", 10 + i).await;
    if i % 2 == 0 {
        p.error(run, src, ids.first().copied(), "error", "E_X")
            .await;
    }
    p.finish_run(run, "succeeded").await;
    p.client
        .batch_execute(if rollback { "rollback" } else { "commit" })
        .await
        .expect("end");
}

pub async fn seqs_where(db: &TestDb, cond: &str) -> Vec<i64> {
    db.client
        .query(
            &format!("select seq from monitor.events where {cond} order by seq"),
            &[],
        )
        .await
        .expect("seqs")
        .iter()
        .map(|r| r.get(0))
        .collect()
}
