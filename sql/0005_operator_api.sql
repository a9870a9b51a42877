-- Indexes for the operator API (lists, drill-downs, exports; see
-- server/src/db/queries.rs). Each one serves a query that would otherwise
-- scan a table that grows without bound; they cost the pipeline one index
-- entry per row written, so only these.

-- Per-run record counts by status (runs list, run drill-down): index-only.
create index if not exists raw_records_run_status_idx on ingest.raw_records (run_id, status);
-- Records by external id.
create index if not exists raw_records_external_id_idx on ingest.raw_records (external_id)
    where external_id is not null;
-- Keyset pages in the default orders: (time, id) gives the row comparison
-- `(t, id) < ($1, $2)` an exact index range. raw_records, the table written
-- most, has none: its (received_at) index serves the same predicate as a
-- lossy range plus an incremental sort over the rows sharing one timestamp
-- (one inserting statement's worth), which keeps pages in the same
-- sub-millisecond range without another index on every insert.
create index if not exists runs_started_id_idx on ingest.runs (started_at, id);
create index if not exists errors_occurred_id_idx on ingest.errors (occurred_at, id);
-- The error log by source, and per-run error counts by severity.
create index if not exists errors_source_occurred_idx on ingest.errors (source_id, occurred_at);
create index if not exists errors_run_severity_idx on ingest.errors (run_id, severity);

-- Optional: trigram index for `q` (ILIKE '%…%') on error messages, when the
-- pg_trgm extension is available and we may create it. Without it the
-- search still works (a filtered scan, bounded by the statement timeout).
do $$
begin
    if exists (select 1 from pg_available_extensions where name = 'pg_trgm') then
        begin
            create extension if not exists pg_trgm;
        exception when insufficient_privilege or feature_not_supported then
            raise notice 'pg_trgm not created (%); error search runs without an index', sqlerrm;
        end;
    end if;
    if exists (select 1 from pg_extension where extname = 'pg_trgm') then
        execute format('create index if not exists errors_message_trgm_idx on ingest.errors
                        using gin (message %I.gin_trgm_ops)',
                       (select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace
                         where e.extname = 'pg_trgm'));
    end if;
end $$;
