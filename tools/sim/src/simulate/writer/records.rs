//! Processing a fetched batch: validation (rejects) or normalization
//! (meetings, warnings), the odd deliberate rollback, the planning of each
//! record's payload and fate, and the issue rows written for them.

use super::*;

impl Writer {
    /// Validates (rejects the invalid) or normalizes (writes meetings for the
    /// valid, rejects the unparsable) one batch, in one transaction — which
    /// is, now and then, rolled back on purpose and retried later.
    pub(crate) async fn process(
        &mut self,
        conn: &mut Conn,
        run: &mut RunState,
        batch: usize,
        normalize: bool,
    ) -> Result<(), StepError> {
        let Some(run_id) = run.id else { return Ok(()) };
        let Some(Some(records)) = run.batches.get(batch) else {
            return Ok(());
        };
        let source_id = conn.source_ids[run.source];
        let mut good: Vec<i64> = Vec::new();
        let mut bad: Vec<i64> = Vec::new();
        let mut owned: Vec<(Option<i64>, Issue)> = Vec::new();
        for r in records {
            match (&r.outcome, normalize) {
                (Outcome::Reject(issue), _) if (issue.stage == "validate") != normalize => {
                    bad.push(r.id);
                    owned.push((Some(r.id), issue.clone()));
                }
                (Outcome::Clean(warning), true) => {
                    good.push(r.id);
                    if let Some(w) = warning {
                        owned.push((Some(r.id), w.clone()));
                    }
                }
                _ => {}
            }
        }
        let issues: Vec<(Option<i64>, &Issue)> = owned.iter().map(|(id, i)| (*id, i)).collect();
        if good.is_empty() && bad.is_empty() {
            return Ok(());
        }
        let roll_back = self.rng.random_bool(ROLLBACK_RATE);
        let errors = issues.iter().filter(|(_, i)| i.severity == "error").count() as u64;
        let warnings = issues.len() as u64 - errors;

        self.permit().await?;
        let tx = conn.client.transaction().await?;
        let mut statements = 1;
        let meetings = if good.is_empty() {
            insert_issues(&tx, &conn.insert_issues, run_id, source_id, &issues).await?;
            None
        } else {
            Some(tx.execute(&conn.normalize[run.source], &[&good]).await?)
        };
        if roll_back {
            tx.rollback().await?;
            self.shared.record(&SimStats {
                statements: 1,
                rolled_back: 1,
                ..SimStats::default()
            });
            let warning = load_retry_warning(&mut self.rng, batch, good.len() + bad.len());
            self.permit().await?;
            insert_issues(
                &conn.client,
                &conn.insert_issues,
                run_id,
                source_id,
                &[(None, &warning)],
            )
            .await?;
            self.shared.record(&SimStats {
                statements: 1,
                warnings: 1,
                ..SimStats::default()
            });
            // The caller keeps the step: push it back so it is retried.
            run.steps.push_front(if normalize {
                Step::Normalize(batch)
            } else {
                Step::Validate(batch)
            });
            return Ok(());
        }
        if meetings.is_some() && !issues.is_empty() {
            self.permit().await?;
            insert_issues(&tx, &conn.insert_issues, run_id, source_id, &issues).await?;
            statements += 1;
        }
        self.permit().await?;
        tx.execute(&conn.set_status, &[&good, &bad]).await?;
        statements += 1;
        tx.commit().await?;
        if let Some(m) = meetings.filter(|&m| m != good.len() as u64) {
            tracing::debug!(
                writer = self.index,
                expected = good.len(),
                inserted = m,
                "meetings insert count differs"
            );
        }
        run.rejected += bad.len() as u64;
        self.shared.record(&SimStats {
            statements,
            normalized: good.len() as u64,
            rejected: bad.len() as u64,
            errors,
            warnings,
            ..SimStats::default()
        });
        Ok(())
    }

    /// Plans `size` records of `source`: payload, external id and fate.
    pub(crate) fn plan_batch(
        &mut self,
        source: usize,
        size: usize,
        reject_rate: f64,
    ) -> Vec<Planned> {
        let p = &SOURCES[source];
        let mut used: HashSet<String> = HashSet::with_capacity(size);
        let mut out = Vec::with_capacity(size);
        for _ in 0..size {
            let defect = self
                .rng
                .random_bool(reject_rate)
                .then(|| pick_weighted(&mut self.rng, p.defects));
            let quirk = (defect.is_none() && self.rng.random_bool(p.warning_rate)).then(|| {
                match self.rng.random_range(0..3) {
                    0 => Quirk::LongTitle,
                    1 => Quirk::MissingEnd,
                    _ => Quirk::DuplicateAttendee,
                }
            });
            // A duplicate reuses an id from an earlier batch; none yet → a missing field instead.
            let mut defect = defect;
            let mut external_id = None;
            if defect == Some(Defect::Duplicate) {
                let recent = &self.recent[source];
                let candidates: Vec<&String> =
                    recent.iter().filter(|id| !used.contains(*id)).collect();
                if candidates.is_empty() {
                    defect = Some(Defect::MissingField);
                } else {
                    external_id =
                        Some(candidates[self.rng.random_range(0..candidates.len())].clone());
                }
            }
            let external_id = match external_id {
                Some(id) => id,
                None => loop {
                    let id = self.new_external_id(p.format);
                    if !used.contains(&id) {
                        break id;
                    }
                },
            };
            used.insert(external_id.clone());
            let meeting = Meeting::generate(&mut self.rng, defect, quirk);
            let (payload, outcome) = render(
                p.format,
                &meeting,
                &external_id,
                defect,
                quirk,
                &mut self.rng,
            );
            out.push(Planned {
                external_id,
                payload,
                outcome,
            });
        }
        out
    }

    /// A fresh external id in the source's style.
    pub(crate) fn new_external_id(&mut self, format: Format) -> String {
        self.serial += 1;
        let rng = &mut self.rng;
        match format {
            Format::Crm => format!(
                "00U{}",
                random_chars(
                    rng,
                    15,
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                )
            ),
            Format::Calendar => random_chars(rng, 26, b"0123456789abcdefghijklmnopqrstuv"),
            Format::Zoom => format!("{}", rng.random_range(10_000_000_000_u64..99_999_999_999)),
            Format::Erp => format!(
                "BK-{}-{}{:06}",
                Utc::now().year(),
                self.index,
                self.serial % 1_000_000
            ),
            Format::Legacy => format!("LGC-{}{:07}", self.index, self.serial % 10_000_000),
        }
    }
}

/// Writes `issues` (each with its raw record id, if any) in one statement.
pub(crate) async fn insert_issues<C: GenericClient>(
    client: &C,
    statement: &Statement,
    run_id: i64,
    source_id: i64,
    issues: &[(Option<i64>, &Issue)],
) -> Result<u64, tokio_postgres::Error> {
    let raw_ids: Vec<Option<i64>> = issues.iter().map(|(id, _)| *id).collect();
    let severities: Vec<&str> = issues.iter().map(|(_, i)| i.severity).collect();
    let stages: Vec<&str> = issues.iter().map(|(_, i)| i.stage).collect();
    let codes: Vec<&str> = issues.iter().map(|(_, i)| i.code).collect();
    let messages: Vec<&str> = issues.iter().map(|(_, i)| i.message.as_str()).collect();
    let details: Vec<&Value> = issues.iter().map(|(_, i)| &i.details).collect();
    let params: [&(dyn ToSql + Sync); 8] = [
        &run_id,
        &source_id,
        &raw_ids,
        &severities,
        &stages,
        &codes,
        &messages,
        &details,
    ];
    client.execute(statement, &params).await
}

/// A record about to be fetched.
#[derive(Debug)]
pub(crate) struct Planned {
    pub(crate) external_id: String,
    pub(crate) payload: Value,
    pub(crate) outcome: Outcome,
}
