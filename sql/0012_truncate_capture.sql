-- TRUNCATE capture. The row-change triggers (0003, 0008, 0011) never fire
-- on TRUNCATE, so `truncate ingest.raw_records cascade` used to leave the
-- live figures at their old values until a restart and the trend rollups
-- wrong for good. Here every monitored table gets a statement-level AFTER
-- TRUNCATE trigger that writes ONE outbox event of op `truncate` and rings
-- the doorbell, like the other capture functions. TRUNCATE has no
-- transition tables, so the event carries no contributions: `rows` is 0
-- (the rows are gone before an AFTER trigger could count them),
-- `source_id` is null and `summary` is `{"ids": [], "sources": [],
-- "d": [], "truncate": true}`. On such an event the server re-reads its
-- aggregates from the base tables (a re-warm consistent with the
-- watermark), sends its subscribers a fresh snapshot and rebuilds the trend
-- rollups (docs/data-model.md#truncate). A TRUNCATE ... CASCADE fires the
-- trigger of every table it empties: one event per table, in one
-- transaction.

create or replace function monitor.capture_truncate() returns trigger
    language plpgsql security definer set search_path = pg_catalog, monitor as $fn$
declare
    new_seq bigint;
begin
    insert into monitor.events (kind, source_id, rows, summary)
    values (tg_table_name || '.truncate', null, 0,
            jsonb_build_object('ids', '[]'::jsonb, 'sources', '[]'::jsonb, 'd', '[]'::jsonb,
                               'truncate', true))
    returning seq into new_seq;

    perform pg_notify(monitor.channel(), new_seq::text);
    return null;
end
$fn$;

-- Installs the TRUNCATE trigger on one table (named `iw_truncate`, apart
-- from the three generated `iw_capture_*` row-change triggers).
create or replace function monitor.install_truncate_capture(tbl regclass)
    returns void language plpgsql as $fn$
begin
    execute format('drop trigger if exists %I on %s', 'iw_truncate', tbl);
    execute format('create trigger %I after truncate on %s for each statement '
                   'execute function monitor.capture_truncate()', 'iw_truncate', tbl);
end
$fn$;

select monitor.install_truncate_capture('ingest.sources');
select monitor.install_truncate_capture('ingest.runs');
select monitor.install_truncate_capture('ingest.raw_records');
select monitor.install_truncate_capture('ingest.meetings');
select monitor.install_truncate_capture('ingest.errors');
