//! Background export jobs: `POST /api/exports` starts one, `GET
//! /api/exports/{id}` shows its progress, `…/download` serves the finished
//! file, `DELETE` cancels or removes it; finished files expire after the TTL
//! (`--export-ttl-secs`).
//!
//! The registry is a `DashMap` by job id (handlers touch jobs by id,
//! independently). Each job is one task: it waits for one of
//! [`MAX_RUNNING`] slots (a semaphore, so exports cannot take the read pool
//! away from the lists), then reads keyset-paged batches — each a short
//! statement within the statement timeout, bounded by the newest id at start
//! so a table that keeps growing cannot keep an export running — and appends
//! them to a file in the registry's temporary directory (deleted with it).
//! Progress goes to the `exports` WebSocket topic: every state change and at
//! most one progress frame per [`PROGRESS_EVERY`]. After the TTL (or on
//! cancel, or at shutdown) the task deletes the file and the entry.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{take, writer, ExportPlan};
use crate::db::keyset::Cursor;
use crate::db::queries::{self, Kind, PageSpec};
use crate::db::rows::{iso, Item};
use crate::hub::Hub;

/// Jobs reading from PostgreSQL at once; more wait (status `queued`).
pub const MAX_RUNNING: usize = 2;
/// Rows per batch (per statement).
const BATCH: i64 = 5_000;
/// Rows per batch when payloads are included (they can be large).
const BATCH_WITH_PAYLOAD: i64 = 1_000;
/// Least time between two progress frames of one job.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting for a slot.
    Queued,
    /// Writing.
    Running,
    /// The file is ready to download.
    Finished,
    /// Stopped by an error (see `error`).
    Failed,
    /// Cancelled by `DELETE`.
    Cancelled,
    /// Removed after the TTL.
    Expired,
}

impl JobStatus {
    fn name(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Finished => "finished",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Expired => "expired",
        }
    }
}

#[derive(Debug)]
struct Progress {
    status: JobStatus,
    finished_at: Option<DateTime<Utc>>,
    bytes: Option<u64>,
    error: Option<String>,
}

/// One export job.
#[derive(Debug)]
pub struct Job {
    /// Random id (128 bits, hex).
    pub id: String,
    /// What it exports.
    pub kind: Kind,
    /// `sub` of the principal that started it; only it sees the job.
    pub owner: String,
    /// Payload column included.
    pub include_payload: bool,
    /// Start.
    pub created_at: DateTime<Utc>,
    /// The file being written.
    pub path: PathBuf,
    rows: AtomicU64,
    /// Planner estimate of the rows, -1 until known.
    total_estimate: AtomicI64,
    progress: Mutex<Progress>,
    cancel: CancellationToken,
}

/// What `GET /api/exports/{id}` shows.
#[derive(Debug, Serialize)]
pub struct JobView {
    /// Job id.
    pub id: String,
    /// `runs`, `records` or `errors`.
    pub kind: Kind,
    /// queued | running | finished | failed | cancelled.
    pub status: JobStatus,
    /// Rows written so far.
    pub rows: u64,
    /// The planner's estimate of the total (null until known).
    pub total_estimate: Option<i64>,
    /// Payload column included.
    pub include_payload: bool,
    /// Start.
    pub created_at: String,
    /// End.
    pub finished_at: Option<String>,
    /// When the file is deleted.
    pub expires_at: Option<String>,
    /// File size.
    pub bytes: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Download URL once finished.
    pub download: Option<String>,
}

impl Job {
    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Current status.
    pub fn status(&self) -> JobStatus {
        self.lock().status
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Acquire)
    }

    /// A snapshot for the API.
    pub fn view(&self, ttl: Duration) -> JobView {
        let p = self.lock();
        let total = self.total_estimate.load(Ordering::Acquire);
        JobView {
            id: self.id.clone(),
            kind: self.kind,
            status: p.status,
            rows: self.rows(),
            total_estimate: (total >= 0).then_some(total),
            include_payload: self.include_payload,
            created_at: iso(&self.created_at),
            finished_at: p.finished_at.as_ref().map(iso),
            expires_at: p
                .finished_at
                .and_then(|f| chrono::Duration::from_std(ttl).ok().map(|d| iso(&(f + d)))),
            bytes: p.bytes,
            error: p.error.clone(),
            download: (p.status == JobStatus::Finished)
                .then(|| format!("/api/exports/{}/download", self.id)),
        }
    }

    fn set(&self, status: JobStatus) {
        let mut p = self.lock();
        p.status = status;
        if matches!(status, JobStatus::Finished | JobStatus::Failed) {
            p.finished_at = Some(Utc::now());
        }
    }
}

/// The registry of export jobs.
#[derive(Debug)]
pub struct Exports {
    dir: tempfile::TempDir,
    jobs: DashMap<String, Arc<Job>>,
    ttl: Duration,
    slots: Arc<Semaphore>,
}

/// What a job task uses: narrow handles, not the whole application state.
#[derive(Clone)]
pub struct JobDeps {
    /// The registry the job is held in.
    pub exports: Arc<Exports>,
    /// Read pool.
    pub pool: deadpool_postgres::Pool,
    /// Where progress frames go (WS topic `exports`).
    pub hub: Arc<Hub>,
    /// Cancelled when the server shuts down (cancels the job).
    pub shutdown: CancellationToken,
}

/// Why a job stopped early.
enum Stop {
    Cancelled,
    Failed(String),
}

impl Exports {
    /// A registry writing into a fresh temporary directory; files live `ttl` after finishing.
    pub fn new(ttl: Duration) -> std::io::Result<Exports> {
        Ok(Exports {
            dir: tempfile::Builder::new()
                .prefix("ingestwatch-exports-")
                .tempdir()?,
            jobs: DashMap::new(),
            ttl,
            slots: Arc::new(Semaphore::new(MAX_RUNNING)),
        })
    }

    /// How long finished files are kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The job `id` if `owner` started it.
    pub fn get(&self, id: &str, owner: &str) -> Option<Arc<Job>> {
        self.jobs
            .get(id)
            .map(|j| j.value().clone())
            .filter(|j| j.owner == owner)
    }

    /// The jobs `owner` started that are still held, newest first.
    pub fn of_owner(&self, owner: &str) -> Vec<Arc<Job>> {
        let mut jobs: Vec<Arc<Job>> = self
            .jobs
            .iter()
            .filter(|j| j.owner == owner)
            .map(|j| j.value().clone())
            .collect();
        jobs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        jobs
    }

    /// Jobs held (any state).
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// No jobs held.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Cancels (or removes, if finished) the job; its file is deleted.
    pub async fn remove(&self, job: &Arc<Job>) {
        self.jobs.remove_if(&job.id, |_, j| Arc::ptr_eq(j, job));
        job.cancel.cancel();
        let _ = tokio::fs::remove_file(&job.path).await;
    }

    /// Registers a job for `plan` and starts its task.
    pub fn start(st: &JobDeps, plan: ExportPlan, owner: String) -> Arc<Job> {
        let id = format!("{:032x}", rand::random::<u128>());
        let job = Arc::new(Job {
            path: st
                .exports
                .dir
                .path()
                .join(format!("{}-{id}.csv", plan.kind.name())),
            id: id.clone(),
            kind: plan.kind,
            owner,
            include_payload: plan.include_payload,
            created_at: Utc::now(),
            rows: AtomicU64::new(0),
            total_estimate: AtomicI64::new(-1),
            progress: Mutex::new(Progress {
                status: JobStatus::Queued,
                finished_at: None,
                bytes: None,
                error: None,
            }),
            cancel: st.shutdown.child_token(),
        });
        st.exports.jobs.insert(id, job.clone());
        publish(st, &job);
        let span = tracing::info_span!("export_job", id = %job.id, subject = %job.owner, kind = job.kind.name());
        tokio::spawn(run(st.clone(), job.clone(), plan).instrument(span));
        job
    }
}

fn publish(st: &JobDeps, job: &Job) {
    st.hub.publish_export(
        &job.owner,
        &json!({
            "type": "export",
            "id": job.id,
            "status": job.status().name(),
            "rows": job.rows(),
        }),
    );
}

async fn run(st: JobDeps, job: Arc<Job>, plan: ExportPlan) {
    let outcome = tokio::select! {
        r = write(&st, &job, &plan) => r,
        () = job.cancel.cancelled() => Err(Stop::Cancelled),
    };
    match outcome {
        Ok(bytes) => {
            job.lock().bytes = Some(bytes);
            job.set(JobStatus::Finished);
            tracing::info!(rows = job.rows(), bytes, "export finished");
        }
        Err(Stop::Cancelled) => {
            job.set(JobStatus::Cancelled);
            st.exports.remove(&job).await;
            publish(&st, &job);
            return;
        }
        Err(Stop::Failed(e)) => {
            tracing::error!(error = %e, "export failed");
            job.lock().error =
                Some("the export failed; try again (details in the server log)".into());
            job.set(JobStatus::Failed);
            let _ = tokio::fs::remove_file(&job.path).await;
        }
    }
    publish(&st, &job);
    tokio::select! {
        () = tokio::time::sleep(st.exports.ttl) => {
            job.set(JobStatus::Expired);
            publish(&st, &job);
        }
        () = job.cancel.cancelled() => {}
    }
    st.exports.remove(&job).await;
}

async fn write(st: &JobDeps, job: &Job, plan: &ExportPlan) -> Result<u64, Stop> {
    let fail = |e: &dyn std::fmt::Display| Stop::Failed(e.to_string());
    let _slot = st.exports.slots.acquire().await.map_err(|e| fail(&e))?;
    job.set(JobStatus::Running);
    publish(st, job);
    let client = st.pool.get().await.map_err(|e| fail(&e))?;
    let upto: i64 = client
        .query_one(&queries::max_id(plan.kind), &[])
        .await
        .map_err(|e| fail(&e))?
        .get(0);
    let est = queries::estimate(plan.kind, &plan.filters);
    if let Ok(row) = client.query_one(&est.sql, &est.params()).await {
        let plan_json: serde_json::Value = row.get(0);
        if let Some(n) = plan_json[0]["Plan"]["Plan Rows"].as_f64() {
            job.total_estimate.store(n as i64, Ordering::Release);
        }
    }
    let mut file = tokio::fs::File::create(&job.path)
        .await
        .map_err(|e| fail(&e))?;
    let mut w = writer(plan.kind, plan.include_payload).map_err(|e| fail(&e))?;
    let batch = if plan.include_payload {
        BATCH_WITH_PAYLOAD
    } else {
        BATCH
    };
    let fetch = |after: Option<Cursor>| {
        let client = &client;
        async move {
            let q = queries::page_query(&PageSpec {
                kind: plan.kind,
                filters: &plan.filters,
                order: plan.order,
                after: after.as_ref(),
                limit: batch,
                upto_id: Some(upto),
                include_payload: plan.include_payload,
            });
            client.query(&q.sql, &q.params()).await
        }
    };
    let mut last_publish = Instant::now();
    let mut rows = fetch(None).await.map_err(|e| fail(&e))?;
    loop {
        // The next batch starts after this one's last row: ask for it now,
        // and write this batch while PostgreSQL reads the next.
        let next_after = match rows.last() {
            Some(r) if rows.len() as i64 == batch => Some(
                Item::from_row(plan.kind, r)
                    .map_err(|e| fail(&e))?
                    .cursor(&plan.order),
            ),
            _ => None,
        };
        let more = next_after.is_some();
        let next = async {
            match next_after {
                Some(c) => fetch(Some(c)).await.map(Some),
                None => Ok(None),
            }
        };
        let write = async {
            for r in &rows {
                let item = Item::from_row(plan.kind, r).map_err(|e| fail(&e))?;
                item.write_csv(&mut w, plan.cells).map_err(|e| fail(&e))?;
            }
            let buf = take(&mut w).map_err(|e| fail(&e))?;
            file.write_all(&buf).await.map_err(|e| fail(&e))
        };
        let (next, written) = tokio::join!(next, write);
        written?;
        job.rows.fetch_add(rows.len() as u64, Ordering::AcqRel);
        if last_publish.elapsed() >= PROGRESS_EVERY {
            last_publish = Instant::now();
            publish(st, job);
        }
        match next.map_err(|e| fail(&e))? {
            Some(r) if more => rows = r,
            _ => break,
        }
    }
    file.flush().await.map_err(|e| fail(&e))?;
    file.sync_all().await.map_err(|e| fail(&e))?;
    let bytes = file.metadata().await.map_err(|e| fail(&e))?.len();
    Ok(bytes)
}
