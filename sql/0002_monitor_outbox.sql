-- The monitor's outbox: one row per statement that changed an ingest table.
-- NOTIFY is only a doorbell (lossy across disconnects); this table is the
-- truth the server catches up from. `seq` comes from a sequence, so seq order
-- is not commit order and rolled-back statements leave holes: the server
-- keeps a watermark that passes a hole only once no transaction that could
-- fill it is still running (see docs/data-model.md).

create schema if not exists monitor;

create table if not exists monitor.events (
    seq       bigint generated always as identity primary key,
    -- top-level id of the writing transaction
    xid       xid8 not null default pg_current_xact_id(),
    -- wall-clock time of the statement
    at        timestamptz not null default clock_timestamp(),
    -- "<table>.<insert|update|delete>"
    kind      text not null,
    -- the one source the statement touched, null when it touched several
    source_id bigint,
    -- rows changed by the statement
    rows      integer not null,
    -- compact summary: ids (first few), sources, KPI contributions ("d")
    summary   jsonb not null
);

create index if not exists events_at_idx on monitor.events (at);

-- The channel the triggers notify on; the payload is the event's seq.
create or replace function monitor.channel() returns text
    language sql immutable as $$ select 'ingestwatch_events' $$;

-- One KPI contribution of one row: a row counts +1 for each line here
-- (an update subtracts the old row's lines and adds the new row's).
-- metric: received | normalized | rejected | lag | backlog | last_received |
--         runs_started | runs_succeeded | runs_failed | runs_partial |
--         runs_running | errors | warnings
-- sec:    epoch second of the timestamp the metric is bucketed by (null for
--         gauges: backlog, runs_running, last_received)
-- val:    lag in ms for `lag`; epoch ms of received_at for `last_received`
-- label:  error code for errors / warnings
do $$
begin
    if not exists (select 1 from pg_type t join pg_namespace n on n.oid = t.typnamespace
                   where n.nspname = 'monitor' and t.typname = 'contribution') then
        create type monitor.contribution as (
            source_id bigint, metric text, sec bigint, val bigint, label text);
    end if;
end $$;

create or replace function monitor.epoch_sec(ts timestamptz) returns bigint
    language sql immutable parallel safe
    as $$ select floor(extract(epoch from ts))::bigint $$;
