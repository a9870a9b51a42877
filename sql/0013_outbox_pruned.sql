-- The outbox's retention horizon. Pruning `monitor.events` (docs/operations.md,
-- "Outbox retention") used to be invisible: a subscriber resuming from a seq
-- older than the oldest kept row got the events still present after it and
-- never learned that the ones in between were gone (a silent gap). Rolled-back
-- statements leave holes too, so a gap in the seqs alone cannot tell pruned
-- events from holes. Here every DELETE (or TRUNCATE) on the outbox records
-- the largest seq it removed in `monitor.outbox_pruned.upto`: a resume from
-- a `since` below it may have lost events, and the server answers it with an
-- explicit resync (a `resync` frame with `"skipped": true`, then a fresh KPI
-- snapshot) instead of a silent gap (docs/protocol.md).

create table if not exists monitor.outbox_pruned (
    id         int primary key check (id = 1),
    -- every seq at or below this one may have been deleted
    upto       bigint not null,
    updated_at timestamptz not null default now()
);

create or replace function monitor.note_outbox_pruned(upto bigint) returns void
    language sql security definer set search_path = pg_catalog, monitor as $$
    insert into monitor.outbox_pruned (id, upto) values (1, upto)
    on conflict (id) do update
        set upto = greatest(monitor.outbox_pruned.upto, excluded.upto), updated_at = now()
$$;

create or replace function monitor.outbox_pruned_delete() returns trigger
    language plpgsql security definer set search_path = pg_catalog, monitor as $fn$
declare
    top bigint := (select max(seq) from old_rows);
begin
    if top is not null then
        perform monitor.note_outbox_pruned(top);
    end if;
    return null;
end
$fn$;

-- BEFORE: an AFTER TRUNCATE trigger could no longer see the seqs.
create or replace function monitor.outbox_pruned_truncate() returns trigger
    language plpgsql security definer set search_path = pg_catalog, monitor as $fn$
declare
    top bigint := (select max(seq) from monitor.events);
begin
    if top is not null then
        perform monitor.note_outbox_pruned(top);
    end if;
    return null;
end
$fn$;

drop trigger if exists iw_pruned_delete on monitor.events;
create trigger iw_pruned_delete after delete on monitor.events
    referencing old table as old_rows
    for each statement execute function monitor.outbox_pruned_delete();

drop trigger if exists iw_pruned_truncate on monitor.events;
create trigger iw_pruned_truncate before truncate on monitor.events
    for each statement execute function monitor.outbox_pruned_truncate();

grant select on monitor.outbox_pruned to ingestwatch_reader;
