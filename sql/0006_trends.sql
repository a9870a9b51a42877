-- Trend rollups: net counts per metric, bucket and source at minute, hour
-- and day granularity, so a 12-month chart reads a few thousand rows instead
-- of the base tables. The server keeps them (one replica at a time, under an
-- advisory lock) from the ordered, exactly-once event stream: each event's
-- `summary.d` contributions are added with `n = n + excluded.n`.
--
-- Counters (metric = the trigger's name) have `val` = 0 and no `hist`.
-- Lag (metric `lag`) has ONE row per source and bucket: `n` samples and
-- `hist`, the lag histogram as sorted (bin, count) pairs flattened into one
-- array, bins from monitor.lag_bin (the live aggregates' bins), so a bucket's
-- percentiles come from its bins. (A row per bin would be about a row per
-- sample for broad distributions: 12-month lag charts read 20x more rows.)
-- The primary key covers `n`, so counter trends are index-only scans.
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
    hist      bigint[],
    primary key (metric, bucket, source_id, val) include (n)
);

create table if not exists monitor.rollup_hour (
    source_id bigint not null,
    bucket    timestamptz not null,
    metric    text not null,
    val       bigint not null default 0,
    n         bigint not null,
    hist      bigint[],
    primary key (metric, bucket, source_id, val) include (n)
);

create table if not exists monitor.rollup_day (
    source_id bigint not null,
    bucket    timestamptz not null,
    metric    text not null,
    val       bigint not null default 0,
    n         bigint not null,
    hist      bigint[],
    primary key (metric, bucket, source_id, val) include (n)
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

-- Adds two flattened (bin, count) histograms; bins whose count reaches 0 are
-- dropped; the result is sorted by bin (empty array when nothing is left).
create or replace function monitor.hist_add(a bigint[], b bigint[]) returns bigint[]
    language sql immutable parallel safe as $$
    select coalesce(array_agg(v.x order by s.bin, v.o), '{}')
      from (select p.bin, sum(p.n)::bigint as n
              from (select h.h[i] as bin, h.h[i + 1] as n
                      from (select coalesce(a, '{}') || coalesce(b, '{}') as h) h,
                           generate_series(1, cardinality(h.h) - 1, 2) i) p
             group by p.bin
            having sum(p.n) <> 0) s
     cross join lateral (values (0, s.bin), (1, s.n)) v(o, x)
$$;

-- The server's role may write the rollups and nothing else (it stays
-- read-only on ingest.* and monitor.events); its writer connection opts in
-- with `set session characteristics as transaction read write`.
grant select, insert, update, delete
    on monitor.rollup_minute, monitor.rollup_hour, monitor.rollup_day, monitor.rollup_state
    to ingestwatch_reader;
