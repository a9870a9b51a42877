-- Statement-level capture: every INSERT / UPDATE / DELETE statement on an
-- ingest table writes ONE outbox row and sends ONE pg_notify (not one per
-- row: each notifying commit takes a cluster-wide lock). Transition tables
-- give the changed rows; the per-table `*_contrib` functions say what each
-- row counts for, and `monitor.capture()` (the one shared trigger function)
-- folds new rows (+1) and old rows (-1) into net contributions.

create or replace function monitor.raw_records_contrib(r ingest.raw_records)
    returns setof monitor.contribution language sql stable as $$
    select r.source_id, 'received', monitor.epoch_sec(r.received_at), null::bigint, null::text
    union all
    select r.source_id, 'last_received', null,
           floor(extract(epoch from r.received_at) * 1000)::bigint, null
    union all
    select r.source_id, r.status, monitor.epoch_sec(r.processed_at), null, null
     where r.status in ('normalized', 'rejected') and r.processed_at is not null
    union all
    select r.source_id, 'lag', monitor.epoch_sec(r.processed_at),
           greatest(0, round(extract(epoch from (r.processed_at - r.received_at)) * 1000))::bigint, null
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
    select r.source_id, 'runs_running', null, null, null where r.status = 'running'
$$;

create or replace function monitor.errors_contrib(r ingest.errors)
    returns setof monitor.contribution language sql stable as $$
    select r.source_id, case r.severity when 'warning' then 'warnings' else 'errors' end,
           monitor.epoch_sec(r.occurred_at), null::bigint, r.code
$$;

-- The one trigger function. TG_ARGV[0] names the contribution function, or
-- is 'none' for tables that only produce events (sources, meetings);
-- TG_ARGV[1] is the column holding the source id.
create or replace function monitor.capture() returns trigger
    language plpgsql security definer set search_path = pg_catalog, monitor as $fn$
declare
    changed text;
    contrib text;
    ev record;
    new_seq bigint;
begin
    changed := case tg_op
        when 'INSERT' then 'select n.*, 1 as sgn from new_rows n'
        when 'DELETE' then 'select o.*, -1 as sgn from old_rows o'
        else 'select n.*, 1 as sgn from new_rows n union all select o.*, -1 as sgn from old_rows o'
    end;
    contrib := case when tg_argv[0] = 'none'
        then 'select null::bigint as source_id, null::text as metric, null::bigint as sec, '
             'null::bigint as val, null::text as label, 0::bigint as n where false'
        else format('select k.source_id, k.metric, k.sec, k.val, k.label, sum(ch.sgn)::bigint as n '
                    'from ch cross join lateral %s(row(%s)::ingest.%I) k '
                    'group by 1, 2, 3, 4, 5 having sum(ch.sgn) <> 0',
                    tg_argv[0],
                    (select string_agg('ch.' || quote_ident(attname), ', ' order by attnum)
                       from pg_attribute where attrelid = tg_relid and attnum > 0 and not attisdropped),
                    tg_table_name)
    end;
    execute format($q$
        with ch as (%1$s),
        c as (%2$s)
        select (select count(*) from ch where sgn = case when %3$L = 'DELETE' then -1 else 1 end)::int as rows,
               (select array_agg(distinct %4$I) from ch) as sources,
               (select array_agg(id order by id) from (
                    select distinct id from ch order by id limit 20) i) as ids,
               (select coalesce(jsonb_agg(jsonb_build_array(source_id, metric, sec, val, n, label)), '[]')
                  from c) as d
    $q$, changed, contrib, tg_op, tg_argv[1])
    into ev;

    if ev.rows = 0 then
        return null;  -- a statement that changed nothing is not an event
    end if;

    insert into monitor.events (kind, source_id, rows, summary)
    values (
        tg_table_name || '.' || lower(tg_op),
        case when cardinality(ev.sources) = 1 then ev.sources[1] end,
        ev.rows,
        jsonb_build_object('ids', to_jsonb(ev.ids), 'sources', to_jsonb(ev.sources), 'd', ev.d))
    returning seq into new_seq;

    perform pg_notify(monitor.channel(), new_seq::text);
    return null;
end
$fn$;

-- Installs the three statement triggers (one per event: PostgreSQL allows
-- transition tables only on single-event triggers) on one ingest table.
create or replace function monitor.install_capture(tbl regclass, contrib text, source_col text default 'source_id')
    returns void language plpgsql as $fn$
declare
    name text := (select relname from pg_class where oid = tbl);
begin
    execute format('drop trigger if exists %I on %s', 'iw_capture_insert', tbl);
    execute format('drop trigger if exists %I on %s', 'iw_capture_update', tbl);
    execute format('drop trigger if exists %I on %s', 'iw_capture_delete', tbl);
    execute format('create trigger iw_capture_insert after insert on %s referencing new table as new_rows '
                   'for each statement execute function monitor.capture(%L, %L)', tbl, contrib, source_col);
    execute format('create trigger iw_capture_update after update on %s referencing old table as old_rows '
                   'new table as new_rows for each statement execute function monitor.capture(%L, %L)', tbl, contrib, source_col);
    execute format('create trigger iw_capture_delete after delete on %s referencing old table as old_rows '
                   'for each statement execute function monitor.capture(%L, %L)', tbl, contrib, source_col);
    raise debug 'capture installed on %', name;
end
$fn$;

select monitor.install_capture('ingest.sources', 'none', 'id');
select monitor.install_capture('ingest.runs', 'monitor.runs_contrib');
select monitor.install_capture('ingest.raw_records', 'monitor.raw_records_contrib');
select monitor.install_capture('ingest.meetings', 'none');
select monitor.install_capture('ingest.errors', 'monitor.errors_contrib');
