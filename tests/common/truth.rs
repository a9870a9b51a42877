//! SQL truth: KPI figures computed by SQL over the base tables, compared
//! with what the API says; and exact comparison of event sequences.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// KPI figures computed by SQL over the base tables, per the definitions in
/// docs/data-model.md, for `[from, to)`; keyed by source name plus "total".
pub async fn sql_truth(
    c: &tokio_postgres::Client,
    from: &str,
    to: &str,
) -> BTreeMap<String, Value> {
    let sql = "
      with s as (select id, name from ingest.sources union all select null, 'total'),
      r as (select * from ingest.raw_records), b as (select $1::text::timestamptz f, $2::text::timestamptz t)
      select s.name,
        (select count(*) from r, b where (s.id is null or r.source_id = s.id) and received_at >= f and received_at < t),
        (select count(*) from r, b where (s.id is null or r.source_id = s.id) and status = 'normalized' and processed_at >= f and processed_at < t),
        (select count(*) from r, b where (s.id is null or r.source_id = s.id) and status = 'rejected' and processed_at >= f and processed_at < t),
        (select count(*) from ingest.errors e, b where (s.id is null or e.source_id = s.id) and severity = 'error' and occurred_at >= f and occurred_at < t),
        (select count(*) from ingest.errors e, b where (s.id is null or e.source_id = s.id) and severity = 'warning' and occurred_at >= f and occurred_at < t),
        (select count(*) from ingest.runs u, b where (s.id is null or u.source_id = s.id) and started_at >= f and started_at < t),
        (select count(*) from ingest.runs u, b where (s.id is null or u.source_id = s.id) and status = 'succeeded' and finished_at >= f and finished_at < t),
        (select count(*) from ingest.runs u, b where (s.id is null or u.source_id = s.id) and status = 'failed' and finished_at >= f and finished_at < t),
        (select count(*) from ingest.runs u where (s.id is null or u.source_id = s.id) and status = 'running'),
        (select count(*) from r where (s.id is null or r.source_id = s.id) and status = 'pending'),
        (select percentile_disc(array[0.5, 0.95, 0.99]) within group (order by greatest(0, round(extract(epoch from processed_at - received_at) * 1000))::float8)
           from r, b where (s.id is null or r.source_id = s.id) and status in ('normalized', 'rejected') and processed_at >= f and processed_at < t),
        (select percentile_disc(array[0.5, 0.95, 0.99]) within group (order by greatest(0, round(extract(epoch from finished_at - started_at) * 1000))::float8)
           from ingest.runs u, b where (s.id is null or u.source_id = s.id) and status in ('succeeded', 'failed', 'partial') and finished_at >= f and finished_at < t),
        (select count(*) from ingest.runs u, b where (s.id is null or u.source_id = s.id) and status = 'partial' and finished_at >= f and finished_at < t),
        (select coalesce(jsonb_agg(jsonb_build_object('code', code, 'count', n) order by n desc, code), '[]')::text
           from (select code, count(*) as n from ingest.errors e, b
                  where (s.id is null or e.source_id = s.id) and occurred_at >= f and occurred_at < t
                  group by code order by n desc, code limit 5) c),
        (select floor(extract(epoch from max(received_at)) * 1000)::bigint from r where s.id is null or r.source_id = s.id)
      from s";
    let rows = c.query(sql, &[&from, &to]).await.expect("sql truth");
    rows.iter()
        .map(|r| {
            let lag: Option<Vec<f64>> = r.get(11);
            let p = |i: usize| lag.as_ref().map(|v| v[i]);
            let dur: Option<Vec<f64>> = r.get(12);
            let d = |i: usize| dur.as_ref().map(|v| v[i]);
            (
                r.get::<_, String>(0),
                json!({
                    "received": r.get::<_, i64>(1), "normalized": r.get::<_, i64>(2), "rejected": r.get::<_, i64>(3),
                    "errors": r.get::<_, i64>(4), "warnings": r.get::<_, i64>(5), "runs_started": r.get::<_, i64>(6),
                    "runs_succeeded": r.get::<_, i64>(7), "runs_failed": r.get::<_, i64>(8),
                    "runs_running": r.get::<_, i64>(9), "backlog": r.get::<_, i64>(10),
                    "lag_ms": {"p50": p(0), "p95": p(1), "p99": p(2)},
                    "run_duration_ms": {"p50": d(0), "p95": d(1), "p99": d(2)},
                    "runs_partial": r.get::<_, i64>(13),
                    "top_codes": serde_json::from_str::<Value>(r.get::<_, &str>(14)).expect("top codes"),
                    "last_received_ms": r.get::<_, Option<i64>>(15),
                }),
            )
        })
        .collect()
}

const EXACT_KEYS: [&str; 12] = [
    "received",
    "normalized",
    "rejected",
    "errors",
    "warnings",
    "runs_started",
    "runs_succeeded",
    "runs_failed",
    "runs_partial",
    "runs_running",
    "backlog",
    "top_codes",
];

/// Asserts one `/api/kpis` body equals SQL over its stated interval: every
/// counter, `top_codes` and `last_received_at` exactly, lag and run duration
/// percentiles within the histogram's 0.8 % + 1 ms.
pub async fn assert_kpis_match_sql(c: &tokio_postgres::Client, kpis: &Value) {
    let from = kpis["from"].as_str().expect("from");
    let to = kpis["to"].as_str().expect("to");
    let truth = sql_truth(c, from, to).await;
    let window = &kpis["window"];
    for (name, want) in &truth {
        let got = if name == "total" {
            &kpis["total"]
        } else {
            &kpis["sources"][name]
        };
        assert!(
            got.is_object(),
            "window {window}: source {name} missing from {kpis}"
        );
        for k in EXACT_KEYS {
            assert_eq!(
                got[k], want[k],
                "window {window} [{from}, {to}) source {name}: {k}"
            );
        }
        let last_ms = got["last_received_at"].as_str().map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap_or_else(|e| panic!("last_received_at {t}: {e}"))
                .timestamp_millis()
        });
        assert_eq!(
            last_ms,
            want["last_received_ms"].as_i64(),
            "window {window} source {name}: last_received_at {}",
            got["last_received_at"]
        );
        for figure in ["lag_ms", "run_duration_ms"] {
            for p in ["p50", "p95", "p99"] {
                let (g, w) = (&got[figure][p], &want[figure][p]);
                match (g.as_f64(), w.as_f64()) {
                    (Some(g), Some(w)) => assert!(
                        (g - w).abs() <= w * 0.008 + 1.0,
                        "window {window} {name} {figure} {p}: {g} vs {w}"
                    ),
                    (None, None) => {}
                    _ => panic!("window {window} {name} {figure} {p}: {g} vs {w}"),
                }
            }
        }
    }
}

/// Asserts `got` is exactly `want`, saying what is missing, extra or repeated.
pub fn assert_same_seqs(got: &[i64], want: &[i64], what: &str) {
    if got == want {
        return;
    }
    let g: std::collections::BTreeSet<i64> = got.iter().copied().collect();
    let w: std::collections::BTreeSet<i64> = want.iter().copied().collect();
    let missing: Vec<_> = w.difference(&g).take(20).collect();
    let extra: Vec<_> = g.difference(&w).take(20).collect();
    let dups = got.len() - g.len();
    let unordered = got.windows(2).filter(|p| p[0] >= p[1]).count();
    panic!(
        "{what}: got {} want {}; missing {missing:?}; extra {extra:?}; duplicates {dups}; out of order {unordered}",
        got.len(),
        want.len()
    );
}
