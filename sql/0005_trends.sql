-- Trend rollups: net counts per metric, bucket and source at minute, hour
-- and day granularity, so a 12-month chart reads a few thousand rows instead
-- of the base tables. The server keeps them (one replica at a time, under an
-- advisory lock) from the ordered, exactly-once event stream: each event's
-- `summary.d` contributions are added with `n = n + excluded.n`.
--
-- `val` is 0 except for metric `lag`, where it is the histogram bin of the
-- lag in ms (monitor.lag_bin, the same bins as the live aggregates), so a
-- bucket's lag percentiles come from its bins and rows stay few.
-- Buckets are UTC (epoch-aligned). Minute rows are kept for a configurable
-- number of days (the server prunes them); hour and day rows are kept.
--
-- `rollup_state.seq`: every event with seq <= it is in the rollups, plus the
-- seqs in `counted` (above it; the initial backfill read them from the base
-- tables already, so the writer skips them). Rollups and state change in ONE
-- transaction: a restart neither loses nor double counts.

create table if not exists monitor.rollup_minute (
    source_id bigint not null,
    bucket    timestamptz not null,
    metric    text not null,
    val       bigint not null default 0,
    n         bigint not null,
    primary key (metric, bucket, source_id, val)
);

create table if not exists monitor.rollup_hour (
    source_id bigint not null,
    bucket    timestamptz not null,
    metric    text not null,
    val       bigint not null default 0,
    n         bigint not null,
    primary key (metric, bucket, source_id, val)
);

create table if not exists monitor.rollup_day (
    source_id bigint not null,
    bucket    timestamptz not null,
    metric    text not null,
    val       bigint not null default 0,
    n         bigint not null,
    primary key (metric, bucket, source_id, val)
);

create table if not exists monitor.rollup_state (
    id         int primary key check (id = 1),
    seq        bigint not null,
    counted    bigint[] not null default '{}',
    updated_at timestamptz not null default now()
);

-- The lag histogram bin of a value in ms: exact below 1,024, then 64 bins
-- per power of two (server/src/live/histogram.rs `bin`; a test checks they agree).
create or replace function monitor.lag_bin(v bigint) returns bigint
    language sql immutable strict parallel safe as $$
    select case when v < 1024 then greatest(v, 0)
                else 1024 + (e - 10) * 64 + ((v >> (e - 6)) - 64) end
      from (select 64 - position('1' in v::bit(64)::text) as e) x
$$;

-- The server's role may write the rollups and nothing else (it stays
-- read-only on ingest.* and monitor.events); its writer connection opts in
-- with `set session characteristics as transaction read write`.
grant select, insert, update, delete
    on monitor.rollup_minute, monitor.rollup_hour, monitor.rollup_day, monitor.rollup_state
    to ingestwatch_reader;
