-- Cheaper time arithmetic in the contribution functions. `extract(...)`
-- returns numeric (PostgreSQL 14+), and numeric floor/round/multiply were
-- a third of the capture's summary query on a 100-row insert (the lateral
-- contribution rows plus their hash aggregate: 0.26 ms -> 0.18-0.22 ms with
-- the functions below; docs/benchmarks.md#pipeline-trigger-overhead). The
-- same values from double precision, which is exact here:
--
-- * `date_part('epoch', interval)` is time/1e6 + 86400 * days (a
--   timestamptz difference has no months), each rounded once: the error is
--   at most one unit in the last place of the result, 2.4e-7 s for epochs
--   up to 2^31 s (2038), 9.5e-7 s up to 2^33 s (2242). Timestamps have
--   microsecond resolution, so a non-integral epoch is at least 1e-6 s
--   below the next second and an integral one is computed exactly (a sum of
--   integers below 2^53): `floor` gives the exact second until 2242.
-- * Milliseconds: the true value is a multiple of 0.001 ms; adding 0.0005
--   keeps every one of them at least 0.0005 ms away from an integer, more
--   than the error (at most 1000 x 4.8e-7 + 2.4e-4 ms until 2106), so
--   `floor` gives numeric's floor; `+ 0.5005` likewise gives numeric's
--   round (half away from zero) for the non-negative durations counted.
--
-- Checked equal to the numeric expressions they replace on 200,000 random
-- timestamps between 1900 and 2100 and on every sub-second boundary
-- (tests/migrations.rs). All three are immutable and inline into the
-- contribution functions.

create or replace function monitor.epoch_sec(ts timestamptz) returns bigint
    language sql immutable parallel safe
    as $$ select floor(date_part('epoch', ts - timestamptz '1970-01-01 00:00:00+00'))::bigint $$;

-- Epoch milliseconds, floored (`received_at` of `last_received`).
create or replace function monitor.epoch_ms(ts timestamptz) returns bigint
    language sql immutable parallel safe
    as $$ select floor(date_part('epoch', ts - timestamptz '1970-01-01 00:00:00+00') * 1000 + 0.0005)::bigint $$;

-- Milliseconds from `a` to `b`, rounded half up, never negative (lag, run duration).
create or replace function monitor.ms_between(a timestamptz, b timestamptz) returns bigint
    language sql immutable parallel safe
    as $$ select greatest(0, floor(date_part('epoch', b - a) * 1000 + 0.5005))::bigint $$;

create or replace function monitor.raw_records_contrib(r ingest.raw_records)
    returns setof monitor.contribution language sql stable as $$
    select r.source_id, 'received', monitor.epoch_sec(r.received_at), null::bigint, null::text
    union all
    select r.source_id, 'last_received', null, monitor.epoch_ms(r.received_at), null
    union all
    select r.source_id, r.status, monitor.epoch_sec(r.processed_at), null, null
     where r.status in ('normalized', 'rejected') and r.processed_at is not null
    union all
    select r.source_id, 'lag', monitor.epoch_sec(r.processed_at),
           monitor.ms_between(r.received_at, r.processed_at), null
     where r.status in ('normalized', 'rejected') and r.processed_at is not null
    union all
    select r.source_id, 'backlog', null, null, null where r.status = 'pending'
$$;

create or replace function monitor.runs_contrib(r ingest.runs)
    returns setof monitor.contribution language sql stable as $$
    select r.source_id, 'runs_started', monitor.epoch_sec(r.started_at), null::bigint, null::text
    union all
    select r.source_id, 'runs_' || r.status, monitor.epoch_sec(r.finished_at), null, null
     where r.status in ('succeeded', 'failed', 'partial') and r.finished_at is not null
    union all
    select r.source_id, 'run_duration', monitor.epoch_sec(r.finished_at),
           monitor.ms_between(r.started_at, r.finished_at), null
     where r.status in ('succeeded', 'failed', 'partial') and r.finished_at is not null
    union all
    select r.source_id, 'runs_running', null, null, null where r.status = 'running'
$$;
