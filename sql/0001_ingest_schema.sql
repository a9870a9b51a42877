-- The monitored pipeline's own tables (schema `ingest`).
-- ingestwatch never writes here; it ships this schema so the project can run
-- and be tested on its own. Names and columns are a contract that external
-- tools rely on (see docs/data-model.md); add, never rename.

create schema if not exists ingest;

create table if not exists ingest.sources (
    id                bigint generated always as identity primary key,
    name              text not null unique,
    kind              text,
    expected_interval interval
);

create table if not exists ingest.runs (
    id          bigint generated always as identity primary key,
    source_id   bigint not null references ingest.sources (id),
    started_at  timestamptz not null default now(),
    finished_at timestamptz,
    status      text not null default 'running'
                check (status in ('running', 'succeeded', 'failed', 'partial'))
);

create table if not exists ingest.raw_records (
    id           bigint generated always as identity primary key,
    run_id       bigint references ingest.runs (id),
    source_id    bigint not null references ingest.sources (id),
    external_id  text,
    received_at  timestamptz not null default now(),
    payload      jsonb not null,
    status       text not null default 'pending'
                 check (status in ('pending', 'normalized', 'rejected')),
    processed_at timestamptz
);

create table if not exists ingest.meetings (
    id             bigint generated always as identity primary key,
    raw_record_id  bigint unique references ingest.raw_records (id),
    source_id      bigint references ingest.sources (id),
    title          text,
    starts_at      timestamptz,
    ends_at        timestamptz,
    organizer      text,
    attendee_count int
);

create table if not exists ingest.errors (
    id            bigint generated always as identity primary key,
    run_id        bigint references ingest.runs (id),
    raw_record_id bigint references ingest.raw_records (id),
    source_id     bigint not null references ingest.sources (id),
    occurred_at   timestamptz not null default now(),
    severity      text not null check (severity in ('error', 'warning')),
    stage         text not null check (stage in ('fetch', 'validate', 'normalize', 'load')),
    code          text not null,
    message       text not null,
    details       jsonb
);

-- Indexes for the monitor's window queries (warm-up, lists, trends) and for
-- the pipeline's own lookups by run.
create index if not exists raw_records_received_at_idx on ingest.raw_records (received_at);
create index if not exists raw_records_processed_at_idx on ingest.raw_records (processed_at)
    where processed_at is not null;
create index if not exists raw_records_pending_idx on ingest.raw_records (source_id)
    where status = 'pending';
create index if not exists raw_records_run_idx on ingest.raw_records (run_id);
create index if not exists raw_records_source_received_idx on ingest.raw_records (source_id, received_at);
create index if not exists runs_started_at_idx on ingest.runs (started_at);
create index if not exists runs_finished_at_idx on ingest.runs (finished_at) where finished_at is not null;
create index if not exists runs_running_idx on ingest.runs (source_id) where status = 'running';
create index if not exists runs_source_started_idx on ingest.runs (source_id, started_at);
create index if not exists errors_occurred_at_idx on ingest.errors (occurred_at);
create index if not exists errors_run_idx on ingest.errors (run_id);
create index if not exists errors_raw_record_idx on ingest.errors (raw_record_id);
create index if not exists meetings_source_idx on ingest.meetings (source_id);
