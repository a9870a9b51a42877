//! The flush's writes: one table's counter sums and histograms upserted
//! (`n = n + excluded.n`) in the flush transaction.

use std::collections::{BTreeMap, HashMap};

use super::pending::{HistKey, Key};

/// Adds `sums` to `table`; rows that reach 0 are deleted.
pub(super) async fn upsert(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    sums: &HashMap<Key, i64>,
) -> Result<(), tokio_postgres::Error> {
    if sums.is_empty() {
        return Ok(());
    }
    let len = sums.len();
    let (mut src, mut bucket, mut metric, mut val, mut n) = (
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
    );
    for (&(s, b, m, v), &count) in sums {
        src.push(s);
        bucket.push(b);
        metric.push(m);
        val.push(v);
        n.push(count);
    }
    let sql = format!(
        "insert into {table} as r (source_id, bucket, metric, val, n)
         select s, to_timestamp(b), m, v, n
           from unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) as t(s, b, m, v, n)
         on conflict (metric, bucket, source_id, val) do update set n = r.n + excluded.n"
    );
    tx.execute(&sql, &[&src, &bucket, &metric, &val, &n])
        .await?;
    // Only a negative delta (a row updated away or deleted) can bring a row to 0.
    if n.iter().any(|n| *n < 0) {
        let sql = format!(
            "delete from {table} r
              using unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) as t(s, b, m, v, n)
              where t.n < 0 and r.metric = t.m and r.bucket = to_timestamp(t.b)
                and r.source_id = t.s and r.val = t.v and r.n = 0"
        );
        tx.execute(&sql, &[&src, &bucket, &metric, &val, &n])
            .await?;
    }
    Ok(())
}

/// Adds histograms (lag, run duration) to `table` (`n` = samples; `hist`
/// merged by `monitor.hist_add`); rows left without samples are deleted.
pub(super) async fn upsert_hists(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    hists: &HashMap<HistKey, BTreeMap<i64, i64>>,
) -> Result<(), tokio_postgres::Error> {
    if hists.is_empty() {
        return Ok(());
    }
    let len = hists.len();
    let (mut src, mut bucket, mut metric, mut n, mut hist) = (
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
    );
    let mut removes = false;
    for (&(s, b, m), h) in hists {
        src.push(s);
        bucket.push(b);
        metric.push(m);
        n.push(h.values().sum::<i64>());
        removes |= h.values().any(|c| *c < 0);
        let pairs: Vec<String> = h.iter().map(|(bin, c)| format!("{bin},{c}")).collect();
        hist.push(format!("{{{}}}", pairs.join(",")));
    }
    let sql = format!(
        "insert into {table} as r (source_id, bucket, metric, val, n, hist)
         select s, to_timestamp(b), m, 0, n, h::bigint[]
           from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[]) as t(s, b, n, h, m)
         on conflict (metric, bucket, source_id, val)
         do update set n = r.n + excluded.n, hist = monitor.hist_add(r.hist, excluded.hist)"
    );
    tx.execute(&sql, &[&src, &bucket, &n, &hist, &metric])
        .await?;
    if removes {
        let sql = format!(
            "delete from {table} r using unnest($1::bigint[], $2::bigint[], $3::text[]) as t(s, b, m)
              where r.metric = t.m and r.bucket = to_timestamp(t.b) and r.source_id = t.s
                and r.val = 0 and r.n = 0"
        );
        tx.execute(&sql, &[&src, &bucket, &metric]).await?;
    }
    Ok(())
}
