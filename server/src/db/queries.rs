//! SQL builders for the operator API: validated filters become a
//! parameterized `WHERE` clause (user input only ever travels as bind
//! parameters), plus the page query shared by the lists and the CSV exports.
//!
//! A page query first picks the page's rows by filter, order and limit from
//! one table (served by its indexes), then decorates only those rows: source
//! name, per-run counts through lateral aggregates. So a page costs its limit,
//! not the table, whatever the sort.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use super::keyset::{ColType, Cursor, Order, SortCol};

/// A parameterized SQL text under construction.
#[derive(Default)]
pub struct Query {
    /// The SQL text; parameters are `$1`, `$2`, …
    pub sql: String,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query")
            .field("sql", &self.sql)
            .field("params", &self.params.len())
            .finish()
    }
}

impl Query {
    /// Adds a bind parameter; returns its placeholder (`$n`).
    pub fn bind<T: ToSql + Sync + Send + 'static>(&mut self, v: T) -> String {
        self.params.push(Box::new(v));
        format!("${}", self.params.len())
    }

    /// The parameters, as `query` wants them.
    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// A list that can be filtered, sorted, paged and exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `ingest.runs`.
    Runs,
    /// `ingest.raw_records`.
    Records,
    /// `ingest.errors`.
    Errors,
}

const RUN_SORTS: [SortCol; 4] = [
    SortCol::new("started_at", "u.started_at", ColType::Ts),
    SortCol::nullable("finished_at", "u.finished_at", ColType::Ts),
    SortCol::new("status", "u.status", ColType::Text),
    SortCol::new("id", "u.id", ColType::Int),
];
const RECORD_SORTS: [SortCol; 5] = [
    SortCol::new("received_at", "r.received_at", ColType::Ts),
    SortCol::nullable("processed_at", "r.processed_at", ColType::Ts),
    SortCol::new("status", "r.status", ColType::Text),
    SortCol::nullable("external_id", "r.external_id", ColType::Text),
    SortCol::new("id", "r.id", ColType::Int),
];
const ERROR_SORTS: [SortCol; 6] = [
    SortCol::new("occurred_at", "e.occurred_at", ColType::Ts),
    SortCol::new("severity", "e.severity", ColType::Text),
    SortCol::new("stage", "e.stage", ColType::Text),
    SortCol::new("code", "e.code", ColType::Text),
    SortCol::nullable("run_id", "e.run_id", ColType::Int),
    SortCol::new("id", "e.id", ColType::Int),
];
/// Sortable columns of `GET /api/sources`.
pub const SOURCE_SORTS: [SortCol; 2] = [
    SortCol::new("name", "s.name", ColType::Text),
    SortCol::new("id", "s.id", ColType::Int),
];

/// Run statuses.
pub const RUN_STATUSES: [&str; 4] = ["running", "succeeded", "failed", "partial"];
/// Raw record statuses.
pub const RECORD_STATUSES: [&str; 3] = ["pending", "normalized", "rejected"];
/// Error severities.
pub const SEVERITIES: [&str; 2] = ["error", "warning"];
/// Error stages.
pub const STAGES: [&str; 4] = ["fetch", "validate", "normalize", "load"];

impl Kind {
    /// Parses `runs`, `records` or `errors`.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "runs" => Some(Kind::Runs),
            "records" => Some(Kind::Records),
            "errors" => Some(Kind::Errors),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Runs => "runs",
            Kind::Records => "records",
            Kind::Errors => "errors",
        }
    }

    /// Table alias used in every expression.
    pub fn alias(self) -> &'static str {
        match self {
            Kind::Runs => "u",
            Kind::Records => "r",
            Kind::Errors => "e",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Kind::Runs => "ingest.runs u",
            Kind::Records => "ingest.raw_records r",
            Kind::Errors => "ingest.errors e",
        }
    }

    /// Primary key expression.
    pub fn id_expr(self) -> &'static str {
        match self {
            Kind::Runs => "u.id",
            Kind::Records => "r.id",
            Kind::Errors => "e.id",
        }
    }

    /// The timestamp `from`/`to` filter on.
    pub fn time_col(self) -> &'static str {
        match self {
            Kind::Runs => "u.started_at",
            Kind::Records => "r.received_at",
            Kind::Errors => "e.occurred_at",
        }
    }

    /// Whitelisted sort columns.
    pub fn sorts(self) -> &'static [SortCol] {
        match self {
            Kind::Runs => &RUN_SORTS,
            Kind::Records => &RECORD_SORTS,
            Kind::Errors => &ERROR_SORTS,
        }
    }

    /// Default sort: newest first.
    pub fn default_sort(self) -> &'static str {
        match self {
            Kind::Runs => "-started_at",
            Kind::Records => "-received_at",
            Kind::Errors => "-occurred_at",
        }
    }

    /// Columns read for the page (before decoration).
    fn inner_cols(self, include_payload: bool) -> &'static str {
        match (self, include_payload) {
            (Kind::Runs, _) => "u.id, u.source_id, u.status, u.started_at, u.finished_at",
            (Kind::Records, false) => {
                "r.id, r.run_id, r.source_id, r.external_id, r.status, r.received_at, r.processed_at"
            }
            (Kind::Records, true) => {
                "r.id, r.run_id, r.source_id, r.external_id, r.status, r.received_at, r.processed_at, \
                 r.payload::text as payload"
            }
            (Kind::Errors, _) => {
                "e.id, e.run_id, e.raw_record_id, e.source_id, e.occurred_at, e.severity, e.stage, \
                 e.code, e.message, e.details::text as details"
            }
        }
    }

    /// Select list and joins over the page (aliased like the table).
    fn outer(self, include_payload: bool) -> &'static str {
        match (self, include_payload) {
            (Kind::Runs, _) => RUNS_OUTER,
            (Kind::Records, false) => {
                "select r.id, r.run_id, s.name, r.external_id, r.status, r.received_at, r.processed_at \
                 from page r join ingest.sources s on s.id = r.source_id"
            }
            (Kind::Records, true) => {
                "select r.id, r.run_id, s.name, r.external_id, r.status, r.received_at, r.processed_at, \
                 r.payload from page r join ingest.sources s on s.id = r.source_id"
            }
            (Kind::Errors, _) => {
                "select e.id, e.run_id, e.raw_record_id, s.name, e.occurred_at, e.severity, e.stage, \
                 e.code, e.message, e.details from page e join ingest.sources s on s.id = e.source_id"
            }
        }
    }
}

/// Runs decorated with their record and error counts. The lateral aggregates
/// run once per page row, through `raw_records (run_id, status)` and
/// `errors (run_id, severity)` (sql/0005), index-only when the visibility map
/// allows.
const RUNS_OUTER: &str = "select u.id, s.name, u.status, u.started_at, u.finished_at,
       rc.received, rc.normalized, rc.rejected, rc.pending, ec.errors, ec.warnings
  from page u
  join ingest.sources s on s.id = u.source_id
  cross join lateral (
      select count(*) as received,
             count(*) filter (where x.status = 'normalized') as normalized,
             count(*) filter (where x.status = 'rejected') as rejected,
             count(*) filter (where x.status = 'pending') as pending
        from ingest.raw_records x where x.run_id = u.id) rc
  cross join lateral (
      select count(*) filter (where y.severity = 'error') as errors,
             count(*) filter (where y.severity = 'warning') as warnings
        from ingest.errors y where y.run_id = u.id) ec";

/// Validated filters of a list or export (every field optional; each given
/// one narrows the result).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Filters {
    /// Source ids, resolved from names and the caller's scope (`None` = all).
    pub source_ids: Option<Vec<i64>>,
    /// Run ids.
    pub runs: Option<Vec<i64>>,
    /// Statuses (runs or records).
    pub statuses: Option<Vec<String>>,
    /// Error severities.
    pub severities: Option<Vec<String>>,
    /// Error stages.
    pub stages: Option<Vec<String>>,
    /// Error codes.
    pub codes: Option<Vec<String>>,
    /// External ids (records).
    pub external_ids: Option<Vec<String>>,
    /// Source kinds (sources list).
    pub kinds: Option<Vec<String>>,
    /// Substring of the error message (case-insensitive).
    pub q: Option<String>,
    /// Inclusive lower bound of the list's timestamp.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound of the list's timestamp.
    pub to: Option<DateTime<Utc>>,
}

/// `s` as an ILIKE pattern matching it anywhere, its wildcards escaped.
pub fn contains_pattern(s: &str) -> String {
    let mut p = String::with_capacity(s.len() + 2);
    p.push('%');
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The conditions of `f` for `kind`, joined with `and` (or `true`).
pub fn where_clause(q: &mut Query, kind: Kind, f: &Filters) -> String {
    let a = kind.alias();
    let mut conds: Vec<String> = Vec::new();
    if let Some(ids) = &f.source_ids {
        conds.push(format!("{a}.source_id = any({})", q.bind(ids.clone())));
    }
    if let Some(runs) = &f.runs {
        let col = if kind == Kind::Runs { "id" } else { "run_id" };
        conds.push(format!("{a}.{col} = any({})", q.bind(runs.clone())));
    }
    let mut any_text = |col: &str, v: &Option<Vec<String>>, conds: &mut Vec<String>| {
        if let Some(v) = v {
            conds.push(format!("{a}.{col} = any({})", q.bind(v.clone())));
        }
    };
    any_text("status", &f.statuses, &mut conds);
    any_text("severity", &f.severities, &mut conds);
    any_text("stage", &f.stages, &mut conds);
    any_text("code", &f.codes, &mut conds);
    any_text("external_id", &f.external_ids, &mut conds);
    if let Some(text) = &f.q {
        let p = q.bind(contains_pattern(text));
        conds.push(format!("{a}.message ilike {p}"));
    }
    if let Some(from) = f.from {
        conds.push(format!("{} >= {}", kind.time_col(), q.bind(from)));
    }
    if let Some(to) = f.to {
        conds.push(format!("{} < {}", kind.time_col(), q.bind(to)));
    }
    if conds.is_empty() {
        "true".into()
    } else {
        conds.join(" and ")
    }
}

/// One page (or export batch) of `kind`.
#[derive(Debug, Clone)]
pub struct PageSpec<'a> {
    /// Which list.
    pub kind: Kind,
    /// Its filters.
    pub filters: &'a Filters,
    /// Sort.
    pub order: Order,
    /// Start strictly after this row.
    pub after: Option<&'a Cursor>,
    /// Rows at most.
    pub limit: i64,
    /// Only rows with `id <= upto_id` (an export's snapshot bound).
    pub upto_id: Option<i64>,
    /// Records: also select `payload::text`.
    pub include_payload: bool,
}

/// The page query for `spec`.
pub fn page_query(spec: &PageSpec<'_>) -> Query {
    let mut q = Query::default();
    let mut conds = where_clause(&mut q, spec.kind, spec.filters);
    if let Some(c) = spec.after {
        let pred = spec.order.after(&mut q, c);
        conds = format!("{conds} and {pred}");
    }
    if let Some(upto) = spec.upto_id {
        conds = format!("{conds} and {} <= {}", spec.kind.id_expr(), q.bind(upto));
    }
    let limit = q.bind(spec.limit);
    let order = spec.order.order_by();
    q.sql = format!(
        "with page as (select {cols} from {table} where {conds} order by {order} limit {limit})\n{outer}\norder by {order}",
        cols = spec.kind.inner_cols(spec.include_payload),
        table = spec.kind.table(),
        outer = spec.kind.outer(spec.include_payload),
    );
    q
}

/// `select count(*)` of at most `cap` matching rows (to refuse big synchronous exports cheaply).
pub fn count_capped(kind: Kind, f: &Filters, cap: i64) -> Query {
    let mut q = Query::default();
    let conds = where_clause(&mut q, kind, f);
    let cap = q.bind(cap);
    q.sql = format!(
        "select count(*) from (select 1 from {} where {conds} limit {cap}) c",
        kind.table()
    );
    q
}

/// The planner's row estimate of all matching rows (an export's progress
/// total: exact counts of big tables would not fit the statement timeout).
pub fn estimate(kind: Kind, f: &Filters) -> Query {
    let mut q = Query::default();
    let conds = where_clause(&mut q, kind, f);
    q.sql = format!(
        "explain (format json) select 1 from {} where {conds}",
        kind.table()
    );
    q
}

/// Newest id of `kind` (an export's snapshot bound).
pub fn max_id(kind: Kind) -> String {
    format!(
        "select coalesce(max({}), 0) from {}",
        kind.id_expr(),
        kind.table()
    )
}

/// The sources list page.
pub fn sources_query(f: &Filters, order: &Order, after: Option<&Cursor>, limit: i64) -> Query {
    let mut q = Query::default();
    let mut conds: Vec<String> = Vec::new();
    if let Some(ids) = &f.source_ids {
        conds.push(format!("s.id = any({})", q.bind(ids.clone())));
    }
    if let Some(kinds) = &f.kinds {
        conds.push(format!("s.kind = any({})", q.bind(kinds.clone())));
    }
    if let Some(c) = after {
        conds.push(order.after(&mut q, c));
    }
    let conds = if conds.is_empty() {
        "true".to_string()
    } else {
        conds.join(" and ")
    };
    let limit = q.bind(limit);
    let order = order.order_by();
    q.sql = format!(
        "with page as (select s.id, s.name, s.kind, s.expected_interval from ingest.sources s
                        where {conds} order by {order} limit {limit})
         select s.id, s.name, s.kind, extract(epoch from s.expected_interval)::float8,
                (select max(x.received_at) from ingest.raw_records x where x.source_id = s.id),
                lr.id, lr.status, lr.started_at, lr.finished_at
           from page s
           left join lateral (select u.id, u.status, u.started_at, u.finished_at from ingest.runs u
                               where u.source_id = s.id
                               order by u.started_at desc, u.id desc limit 1) lr on true
          order by {order}"
    );
    q
}

/// Resolves requested source names against the caller's scope.
///
/// `known` are the `(id, name)` rows of `ingest.sources` whose name is in
/// `requested` or `scope`. Returns the source ids to filter on (`None` = no
/// filter), or the first requested name that is unknown or outside the scope
/// (the same answer for both, so a scoped caller learns nothing about
/// sources it may not see).
pub fn scope_ids(
    known: &[(i64, String)],
    requested: Option<&[String]>,
    scope: Option<&BTreeSet<String>>,
) -> Result<Option<Vec<i64>>, String> {
    let visible = |name: &str| scope.is_none_or(|s| s.contains(name));
    match requested {
        Some(names) => {
            let mut ids = Vec::with_capacity(names.len());
            for n in names {
                match known.iter().find(|(_, k)| k == n) {
                    Some((id, _)) if visible(n) => ids.push(*id),
                    _ => return Err(n.clone()),
                }
            }
            ids.sort_unstable();
            ids.dedup();
            Ok(Some(ids))
        }
        None => Ok(scope.map(|s| {
            known
                .iter()
                .filter(|(_, n)| s.contains(n))
                .map(|(id, _)| *id)
                .collect()
        })),
    }
}

/// Looks up the sources named in `requested` or `scope` and applies
/// [`scope_ids`].
pub async fn resolve_sources(
    client: &tokio_postgres::Client,
    requested: Option<&[String]>,
    scope: Option<&BTreeSet<String>>,
) -> Result<Result<Option<Vec<i64>>, String>, tokio_postgres::Error> {
    if requested.is_none() && scope.is_none() {
        return Ok(Ok(None));
    }
    let mut names: Vec<String> = requested.map(<[String]>::to_vec).unwrap_or_default();
    names.extend(scope.into_iter().flatten().cloned());
    let rows = client
        .query(
            "select id, name from ingest.sources where name = any($1)",
            &[&names],
        )
        .await?;
    let known: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(scope_ids(&known, requested, scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_escaped() {
        assert_eq!(contains_pattern(r"50%_a\b"), r"%50\%\_a\\b%");
        assert_eq!(contains_pattern(""), "%%");
    }

    #[test]
    fn filters_become_bind_parameters_only() {
        let f = Filters {
            source_ids: Some(vec![1, 2]),
            statuses: Some(vec!["x'); drop table y; --".into()]),
            q: Some("o'hara".into()),
            ..Filters::default()
        };
        let mut q = Query::default();
        let w = where_clause(&mut q, Kind::Errors, &f);
        assert_eq!(
            w,
            "e.source_id = any($1) and e.status = any($2) and e.message ilike $3"
        );
        assert!(!w.contains("drop") && !w.contains("hara"));
        assert_eq!(q.params().len(), 3);
    }

    #[test]
    fn scope_limits_and_hides_sources() {
        let known = vec![(1, "crm".to_string()), (2, "erp".to_string())];
        let scope: BTreeSet<String> = ["crm".to_string()].into();
        assert_eq!(scope_ids(&known, None, None), Ok(None));
        assert_eq!(scope_ids(&known, None, Some(&scope)), Ok(Some(vec![1])));
        let erp = vec!["erp".to_string()];
        assert_eq!(
            scope_ids(&known, Some(&erp), Some(&scope)),
            Err("erp".into())
        );
        assert_eq!(scope_ids(&known, Some(&erp), None), Ok(Some(vec![2])));
        let nope = vec!["nope".to_string()];
        assert_eq!(scope_ids(&known, Some(&nope), None), Err("nope".into()));
    }
}
