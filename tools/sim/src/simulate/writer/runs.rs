//! Starting runs: which source a new run is for, statement execution with
//! the rate permit, and fetching a batch of raw records (or failing the run
//! at fetch time).

use super::*;

impl Writer {
    /// Picks the source of a new run: the most overdue one, else by weight.
    pub(crate) fn choose_source(&mut self, now: Instant) -> Option<usize> {
        let schedule = &self.shared.schedule;
        let mut last = self
            .shared
            .last_start
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let candidates: Vec<usize> = (0..SOURCES.len())
            .filter(|&s| !schedule.stalled(s, now))
            .collect();
        let overdue = candidates
            .iter()
            .map(|&s| {
                let due = Duration::from_secs(SOURCES[s].interval_secs) / 2;
                let ratio = last[s].map_or(f64::INFINITY, |t| {
                    now.duration_since(t).as_secs_f64() / due.as_secs_f64()
                });
                (s, ratio)
            })
            .filter(|&(_, ratio)| ratio >= 1.0)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(s, _)| s);
        let chosen = overdue.or_else(|| {
            let total: u32 = candidates.iter().map(|&s| SOURCES[s].weight).sum();
            if total == 0 {
                return None;
            }
            let mut x = self.rng.random_range(0..total);
            candidates.iter().copied().find(|&s| {
                let w = SOURCES[s].weight;
                if x < w {
                    true
                } else {
                    x -= w;
                    false
                }
            })
        })?;
        last[chosen] = Some(now);
        Some(chosen)
    }

    pub(crate) async fn exec(
        &mut self,
        conn: &mut Conn,
        run: &mut RunState,
        step: Step,
    ) -> Result<(), StepError> {
        match step {
            Step::Start => {
                self.permit().await?;
                let row = conn
                    .client
                    .query_one(&conn.start_run, &[&conn.source_ids[run.source]])
                    .await?;
                run.id = Some(row.try_get(0)?);
                self.shared.record(&SimStats {
                    statements: 1,
                    runs: 1,
                    ..SimStats::default()
                });
                Ok(())
            }
            Step::Fetch(b) => self.fetch(conn, run, b).await,
            Step::Validate(b) => self.process(conn, run, b, false).await,
            Step::Normalize(b) => self.process(conn, run, b, true).await,
            Step::Finish => {
                let Some(run_id) = run.id else { return Ok(()) };
                let status = if run.failed {
                    "failed"
                } else if run.rejected >= 2
                    && run.rejected as f64 / run.received.max(1) as f64 > PARTIAL_THRESHOLD
                {
                    "partial"
                } else {
                    "succeeded"
                };
                self.permit().await?;
                conn.client
                    .execute(&conn.finish_run, &[&run_id, &status])
                    .await?;
                self.shared.record(&SimStats {
                    statements: 1,
                    ..SimStats::default()
                });
                Ok(())
            }
        }
    }

    /// Fetches one batch: maybe a retry warning, then the records — or a
    /// fetch error that fails the run.
    pub(crate) async fn fetch(
        &mut self,
        conn: &mut Conn,
        run: &mut RunState,
        batch: usize,
    ) -> Result<(), StepError> {
        let Some(run_id) = run.id else { return Ok(()) };
        let p = &SOURCES[run.source];
        let source_id = conn.source_ids[run.source];
        if self.rng.random_bool(p.fetch_fail_rate) {
            let issue = fetch_error(p.format, &mut self.rng, batch);
            self.permit().await?;
            insert_issues(
                &conn.client,
                &conn.insert_issues,
                run_id,
                source_id,
                &[(None, &issue)],
            )
            .await?;
            self.shared.record(&SimStats {
                statements: 1,
                errors: 1,
                ..SimStats::default()
            });
            run.failed = true;
            run.steps.retain(|s| !matches!(s, Step::Fetch(_)));
            return Ok(());
        }
        if self.rng.random_bool(p.retry_warning_rate) {
            let issue = fetch_retry_warning(p.format, &mut self.rng, batch);
            self.permit().await?;
            insert_issues(
                &conn.client,
                &conn.insert_issues,
                run_id,
                source_id,
                &[(None, &issue)],
            )
            .await?;
            self.shared.record(&SimStats {
                statements: 1,
                warnings: 1,
                ..SimStats::default()
            });
        }
        let now = Instant::now();
        let reject_rate = if self.shared.schedule.bad_minute(run.source, now) {
            BAD_MINUTE_REJECT_RATE
        } else {
            p.reject_rate
        };
        let size = self.rng.random_range(p.batch_size.0..=p.batch_size.1);
        let planned = self.plan_batch(run.source, size, reject_rate);
        let ext_ids: Vec<&str> = planned.iter().map(|r| r.external_id.as_str()).collect();
        let payloads: Vec<&Value> = planned.iter().map(|r| &r.payload).collect();
        self.permit().await?;
        let rows = conn
            .client
            .query(
                &conn.insert_records,
                &[&run_id, &source_id, &ext_ids, &payloads],
            )
            .await?;
        let mut ids: HashMap<String, i64> = HashMap::with_capacity(rows.len());
        for row in &rows {
            ids.insert(row.try_get(1)?, row.try_get(0)?);
        }
        let recent = &mut self.recent[run.source];
        let mut fetched = Vec::with_capacity(planned.len());
        for r in planned {
            if let Some(&id) = ids.get(&r.external_id) {
                fetched.push(Fetched {
                    id,
                    outcome: r.outcome,
                });
            }
            if recent.len() >= 256 {
                recent.pop_front();
            }
            recent.push_back(r.external_id);
        }
        run.received += fetched.len() as u64;
        self.shared.record(&SimStats {
            statements: 1,
            records: rows.len() as u64,
            ..SimStats::default()
        });
        if let Some(slot) = run.batches.get_mut(batch) {
            *slot = Some(fetched);
        }
        Ok(())
    }
}
