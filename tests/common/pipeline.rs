//! Writing like a pipeline does: runs, records, processing, errors,
//! meetings and a varied workload, through the owner connection.

use super::TestDb;

/// A connection writing like a pipeline does.
pub struct Pipeline {
    pub client: tokio_postgres::Client,
}

impl Pipeline {
    pub async fn new(db: &TestDb) -> Pipeline {
        Pipeline {
            client: ingestwatch_server::db::connect(&db.url)
                .await
                .expect("pipeline connection"),
        }
    }

    pub async fn run(&self, source: i64) -> i64 {
        self.client
            .query_one(
                "insert into ingest.runs (source_id) values ($1) returning id",
                &[&source],
            )
            .await
            .expect("run")
            .get(0)
    }

    pub async fn finish_run(&self, run: i64, status: &str) {
        self.client
            .execute(
                "update ingest.runs set status = $2, finished_at = now() where id = $1",
                &[&run, &status],
            )
            .await
            .expect("finish run");
    }

    /// Inserts `n` pending records; returns their ids.
    pub async fn records(&self, run: i64, source: i64, n: i64) -> Vec<i64> {
        self.client
            .query(
                "insert into ingest.raw_records (run_id, source_id, external_id, payload)
                 select $1, $2, 'ext-' || g, jsonb_build_object('title', 'Meeting ' || g, 'n', g)
                   from generate_series(1::bigint, $3) g returning id",
                &[&run, &source, &n],
            )
            .await
            .expect("records")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Marks records processed with a lag of `lag_ms`.
    pub async fn process(&self, ids: &[i64], status: &str, lag_ms: i64) {
        self.client
            .execute(
                "update ingest.raw_records set status = $2,
                        processed_at = received_at + make_interval(secs => $3::float8 / 1000)
                  where id = any($1)",
                &[&ids, &status, &(lag_ms as f64)],
            )
            .await
            .expect("process");
    }

    pub async fn error(
        &self,
        run: i64,
        source: i64,
        record: Option<i64>,
        severity: &str,
        code: &str,
    ) {
        self.client
            .execute(
                "insert into ingest.errors (run_id, raw_record_id, source_id, severity, stage, code, message, details)
                 values ($1, $2, $3, $4, 'validate', $5, 'field missing', '{\"field\":\"start\"}')",
                &[&run, &record, &source, &severity, &code],
            )
            .await
            .expect("error row");
    }
}

impl Pipeline {
    /// One pending record with a payload given as JSON text; returns its id.
    pub async fn record_with(
        &self,
        run: i64,
        source: i64,
        external_id: Option<&str>,
        payload_json: &str,
    ) -> i64 {
        self.client
            .query_one(
                "insert into ingest.raw_records (run_id, source_id, external_id, payload)
                 values ($1, $2, $3, $4::text::jsonb) returning id",
                &[&run, &source, &external_id, &payload_json],
            )
            .await
            .expect("record")
            .get(0)
    }

    /// One error-log row with every field chosen; returns its id.
    #[allow(clippy::too_many_arguments)]
    pub async fn error_with(
        &self,
        run: Option<i64>,
        source: i64,
        record: Option<i64>,
        severity: &str,
        stage: &str,
        code: &str,
        message: &str,
        details_json: Option<&str>,
    ) -> i64 {
        self.client
            .query_one(
                "insert into ingest.errors (run_id, raw_record_id, source_id, severity, stage, code, message, details)
                 values ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb) returning id",
                &[&run, &record, &source, &severity, &stage, &code, &message, &details_json],
            )
            .await
            .expect("error row")
            .get(0)
    }

    /// The meeting normalized from `record`; returns its id.
    pub async fn meeting(&self, record: i64, source: i64, title: &str, attendees: i32) -> i64 {
        self.client
            .query_one(
                "insert into ingest.meetings (raw_record_id, source_id, title, starts_at, ends_at, organizer, attendee_count)
                 values ($1, $2, $3, now() + interval '1 day', now() + interval '1 day 1 hour', 'Zoë', $4) returning id",
                &[&record, &source, &title, &attendees],
            )
            .await
            .expect("meeting")
            .get(0)
    }
}

impl Pipeline {
    /// Step `i` of a varied workload: a run, 1–4 records processed (every
    /// fifth step rejected), an error every third step, every seventh run
    /// failed. Autocommit: several events per step.
    pub async fn varied_step(&self, src: i64, i: i64) {
        let run = self.run(src).await;
        let ids = self.records(run, src, 1 + i % 4).await;
        let status = if i % 5 == 0 { "rejected" } else { "normalized" };
        self.process(&ids, status, 20 + i).await;
        if i % 3 == 0 {
            self.error(run, src, ids.first().copied(), "error", "E_SCHEMA")
                .await;
        }
        self.finish_run(run, if i % 7 == 0 { "failed" } else { "succeeded" })
            .await;
    }
}
