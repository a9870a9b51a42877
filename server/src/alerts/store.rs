//! Durability: the server's own alert tables (`sql/0007_alerts.sql`).
//!
//! - `monitor.alert_transitions`: every transition, forever (the history);
//!   `idempotency_key` unique, so recording the same transition twice is a no-op.
//! - `monitor.alert_state`: the current state per (rule, instance), pointing
//!   at its last transition — what a new leader restores and what every
//!   replica shows as active.
//! - `monitor.alert_deliveries`: one row per (transition, receiver), written
//!   in the same transaction as the transition (an outbox): a receiver's
//!   queue is its undelivered rows, so a new leader resumes them.
//!
//! Writes happen only on the leader's own session (the one holding the
//! advisory lock), in explicit `read write` transactions: the server's role
//! defaults to read-only. If that session dies, its lock is gone and so is
//! its ability to write — no two leaders write at once.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::GenericClient;

use super::engine::{Change, Restored};
use super::record::Transition;
use super::rules::{Severity, StateName};

/// The NOTIFY channel the leader rings after recording transitions.
pub const CHANNEL: &str = "ingestwatch_alerts";

/// A transition to record, with what describes its rule and where it goes.
#[derive(Debug, Clone)]
pub struct NewTransition {
    /// The engine's change.
    pub change: Change,
    /// Condition kind.
    pub condition: String,
    /// Unit of value and threshold.
    pub unit: String,
    /// Severity.
    pub severity: Severity,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Summary line.
    pub summary: Option<String>,
    /// Receivers to deliver it to.
    pub receivers: Vec<String>,
}

const TCOLS: &str = "t.id, t.rule, t.instance, t.condition, t.source, t.sources, t.from_state, \
     t.to_state, t.value, t.threshold, t.unit, t.severity, t.labels, t.summary, t.at, t.idempotency_key";

/// The visibility rule shared by REST, WS and history (it lives with `auth::Scope`).
pub fn visible(sources: &[String], scope: Option<&std::collections::BTreeSet<String>>) -> bool {
    crate::auth::Scope::of(scope).sees_all(sources)
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Records `batch` in one read-write transaction (transitions, state,
/// deliveries, NOTIFY); returns the ids of the transitions recorded (one
/// already recorded under the same idempotency key is skipped).
pub async fn record(
    client: &mut tokio_postgres::Client,
    batch: &[NewTransition],
) -> Result<Vec<i64>, tokio_postgres::Error> {
    let tx = client.build_transaction().read_only(false).start().await?;
    let mut ids = Vec::with_capacity(batch.len());
    for t in batch {
        let c = &t.change;
        let key = c.idempotency_key();
        let labels = serde_json::to_value(&t.labels).unwrap_or(Value::Null);
        let row = tx
            .query_opt(
                "insert into monitor.alert_transitions
                   (rule, instance, condition, source, sources, from_state, to_state, value,
                    threshold, unit, severity, labels, summary, at, idempotency_key)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                 on conflict (idempotency_key) do nothing
                 returning id",
                &[
                    &c.rule,
                    &c.key,
                    &t.condition,
                    &c.source,
                    &c.sources,
                    &c.from.as_str(),
                    &c.to.as_str(),
                    &c.value,
                    &c.threshold,
                    &t.unit,
                    &t.severity.as_str(),
                    &labels,
                    &t.summary,
                    &at(c.at),
                    &key,
                ],
            )
            .await?;
        let Some(row) = row else { continue };
        let id: i64 = row.get(0);
        tx.execute(
            "insert into monitor.alert_state (rule, instance, state, since, transition_id)
             values ($1, $2, $3, $4, $5)
             on conflict (rule, instance) do update
               set state = excluded.state, since = excluded.since,
                   transition_id = excluded.transition_id",
            &[&c.rule, &c.key, &c.to.as_str(), &at(c.at), &id],
        )
        .await?;
        for r in &t.receivers {
            tx.execute(
                "insert into monitor.alert_deliveries (transition_id, receiver, idempotency_key)
                 values ($1, $2, $3) on conflict do nothing",
                &[&id, r, &key],
            )
            .await?;
        }
        ids.push(id);
    }
    if let Some(last) = ids.last() {
        tx.execute("select pg_notify($1, $2)", &[&CHANNEL, &last.to_string()])
            .await?;
    }
    tx.commit().await?;
    Ok(ids)
}

/// Every recorded instance state (for [`super::engine::Engine::restore`]).
pub async fn load_state(
    client: &impl GenericClient,
) -> Result<Vec<Restored>, tokio_postgres::Error> {
    let rows = client
        .query(
            "select a.rule, a.instance, a.state, a.since, t.source, t.sources, t.threshold
               from monitor.alert_state a join monitor.alert_transitions t on t.id = a.transition_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(Restored {
                rule: r.get(0),
                key: r.get(1),
                state: StateName::parse(r.get(2))?,
                since: ms(r.get(3)),
                source: r.get(4),
                sources: r.get(5),
                threshold: r.get(6),
            })
        })
        .collect())
}

/// The active alerts (the last transition of each pending or firing
/// instance) and the highest transition id, read in one snapshot.
pub async fn active(
    client: &mut deadpool_postgres::Object,
) -> Result<(Vec<Transition>, i64), tokio_postgres::Error> {
    let tx = crate::db::snapshot(client).await?;
    let rows = tx
        .query(
            &format!(
                "select {TCOLS} from monitor.alert_state a
                   join monitor.alert_transitions t on t.id = a.transition_id
                  where a.state in ('pending', 'firing') order by t.id"
            ),
            &[],
        )
        .await?;
    let last: i64 = tx
        .query_one(
            "select coalesce(max(id), 0) from monitor.alert_transitions",
            &[],
        )
        .await?
        .get(0);
    tx.commit().await?;
    let list = rows
        .iter()
        .map(Transition::from_row)
        .collect::<Result<_, _>>()?;
    Ok((list, last))
}

/// Transitions with id > `after`, oldest first, at most `limit`.
pub async fn after(
    client: &impl GenericClient,
    after: i64,
    limit: i64,
) -> Result<Vec<Transition>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!("select {TCOLS} from monitor.alert_transitions t where t.id > $1 order by t.id limit $2"),
            &[&after, &limit],
        )
        .await?;
    rows.iter().map(Transition::from_row).collect()
}

/// Filters of `GET /api/alerts/history`.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// Rule name.
    pub rule: Option<String>,
    /// Transitions of alerts covering this source.
    pub source: Option<String>,
    /// State entered.
    pub state: Option<StateName>,
    /// `at >= from`.
    pub from: Option<DateTime<Utc>>,
    /// `at < to`.
    pub to: Option<DateTime<Utc>>,
    /// Keyset cursor: ids below it.
    pub before: Option<i64>,
    /// Page size.
    pub limit: i64,
    /// The caller's source scope (None: all).
    pub scope: Option<Vec<String>>,
}

/// One page of history, newest first.
pub async fn history(
    client: &impl GenericClient,
    q: &HistoryQuery,
) -> Result<Vec<Transition>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "select {TCOLS} from monitor.alert_transitions t
                  where ($1::text is null or t.rule = $1)
                    and ($2::text is null or $2 = any(t.sources))
                    and ($3::text is null or t.to_state = $3)
                    and ($4::timestamptz is null or t.at >= $4)
                    and ($5::timestamptz is null or t.at < $5)
                    and ($6::bigint is null or t.id < $6)
                    and ($7::text[] is null or (cardinality(t.sources) > 0 and t.sources <@ $7))
                  order by t.id desc limit $8"
            ),
            &[
                &q.rule,
                &q.source,
                &q.state.map(StateName::as_str),
                &q.from,
                &q.to,
                &q.before,
                &q.scope,
                &q.limit,
            ],
        )
        .await?;
    rows.iter().map(Transition::from_row).collect()
}

/// An undelivered delivery and its transition.
#[derive(Debug, Clone)]
pub struct Pending {
    /// `alert_deliveries.id`.
    pub id: i64,
    /// Attempts made so far (by any leader).
    pub attempts: i32,
    /// Not before (epoch ms), after a failed attempt.
    pub next_attempt_ms: Option<i64>,
    /// The transition.
    pub transition: Transition,
}

/// The oldest undelivered deliveries of `receiver`, at most `limit`.
pub async fn pending_deliveries(
    client: &impl GenericClient,
    receiver: &str,
    limit: i64,
) -> Result<Vec<Pending>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "select d.id, d.attempts, d.next_attempt_at, {TCOLS}
                   from monitor.alert_deliveries d
                   join monitor.alert_transitions t on t.id = d.transition_id
                  where d.receiver = $1 and d.delivered_at is null and d.failed_at is null
                  order by d.id limit $2"
            ),
            &[&receiver, &limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Pending {
                id: r.try_get(0)?,
                attempts: r.try_get(1)?,
                next_attempt_ms: r.try_get::<_, Option<DateTime<Utc>>>(2)?.map(ms),
                transition: Transition::from_row_at(r, 3)?,
            })
        })
        .collect()
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// `alert_deliveries.id`.
    pub id: i64,
    /// Attempts made, this one included.
    pub attempts: i32,
    /// HTTP status, if a response came.
    pub status: Option<i32>,
    /// Why it failed (never a URL or secret).
    pub error: Option<String>,
    /// Delivered (2xx).
    pub delivered: bool,
    /// Given up (attempts exhausted, or refused with a 4xx).
    pub gave_up: bool,
    /// Next attempt not before (epoch ms).
    pub next_attempt_ms: Option<i64>,
}

/// Records one attempt.
pub async fn record_attempt(
    client: &mut tokio_postgres::Client,
    a: &Attempt,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.build_transaction().read_only(false).start().await?;
    tx.execute(
        "update monitor.alert_deliveries
            set attempts = $2, last_status = $3, last_error = $4, last_attempt_at = now(),
                next_attempt_at = $5,
                delivered_at = case when $6 then now() end,
                failed_at = case when $7 then now() end
          where id = $1 and delivered_at is null",
        &[
            &a.id,
            &a.attempts,
            &a.status,
            &a.error,
            &a.next_attempt_ms.map(at),
            &a.delivered,
            &a.gave_up,
        ],
    )
    .await?;
    tx.commit().await
}
