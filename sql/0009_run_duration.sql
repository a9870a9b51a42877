-- Run duration as a live figure: every finished run (succeeded, failed or
-- partial, with finished_at) contributes its duration in ms, bucketed at
-- finished_at, as a histogram sample like the processing lag. This replaces
-- monitor.runs_contrib (0003); the capture triggers and the warm-up call it
-- by name, so both pick it up. The trend rollups keep it like the lag: one
-- histogram row per source, bucket and metric (server/src/trends/rollup.rs).

create or replace function monitor.runs_contrib(r ingest.runs)
    returns setof monitor.contribution language sql stable as $$
    select r.source_id, 'runs_started', monitor.epoch_sec(r.started_at), null::bigint, null::text
    union all
    select r.source_id, 'runs_' || r.status, monitor.epoch_sec(r.finished_at), null, null
     where r.status in ('succeeded', 'failed', 'partial') and r.finished_at is not null
    union all
    select r.source_id, 'run_duration', monitor.epoch_sec(r.finished_at),
           greatest(0, round(extract(epoch from (r.finished_at - r.started_at)) * 1000))::bigint, null
     where r.status in ('succeeded', 'failed', 'partial') and r.finished_at is not null
    union all
    select r.source_id, 'runs_running', null, null, null where r.status = 'running'
$$;

-- Rollups written before this migration have no run_duration rows, and the
-- events already in the outbox carry no run_duration contributions: forget
-- the rollup state so that the next rollup writer backfills every table
-- from the base tables again (it clears the rollup rows first).
delete from monitor.rollup_state;
