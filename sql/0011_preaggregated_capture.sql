-- Pre-aggregated contributions. The capture functions of 0008 run the
-- table's contribution function once per changed row and hash-aggregate the
-- result: for a 100-row INSERT of a pipeline batch, 500 contribution rows
-- folded into 3. Rows of one batch mostly share every column a contribution
-- reads (source, status, `received_at` = the statement's now()), so here the
-- changed rows are first grouped by exactly those columns, the contribution
-- function runs once per group and each contribution counts the group's
-- rows: the same net contributions, 0.21-0.25 -> 0.09-0.11 ms for that
-- statement's summary query; +0-5 % when every row differs (an UPDATE
-- stamping a distinct `processed_at` per row) (docs/benchmarks.md).
--
-- The grouping columns are the ones the contribution function reads,
-- `r.<column>` in its body (its parameter is `r`); a function that uses `r`
-- otherwise (passes the whole row on) is not pre-aggregated. The capture
-- functions are generated from the bodies as they are when this runs: a
-- later migration that redefines a contribution function must call
-- `monitor.install_static_capture` for its table again.
-- Events are unchanged (tests/migrations.rs compares them with 0003's
-- per-row function on every table and operation).

drop function if exists monitor.install_static_capture(regclass, text, text);

-- The columns of `tbl` that the contribution function `contrib` reads, in
-- table order; null when it uses its row other than by `r.<column>`.
create or replace function monitor.contrib_columns(tbl regclass, contrib text)
    returns text[] language plpgsql stable as $fn$
declare
    body text := (select prosrc from pg_proc where oid = contrib::regproc);
begin
    if body ~ '\mr\M(?!\.)' then
        return null;
    end if;
    return (select array_agg(a.attname::text order by a.attnum)
              from pg_attribute a
             where a.attrelid = tbl and a.attnum > 0 and not a.attisdropped
               and a.attname::text in (select m[1] from regexp_matches(body, '\mr\.(\w+)', 'g') m));
end
$fn$;

create or replace function monitor.install_static_capture(
    tbl regclass, contrib text, source_col text default 'source_id')
    returns void language plpgsql as $gen$
declare
    tname text := (select relname from pg_class where oid = tbl);
    cols text[] := case when contrib <> 'none' then monitor.contrib_columns(tbl, contrib) end;
    grouped text;    -- per transition table: its rows grouped by `cols`, with count c
    as_row text;     -- a group as a row of the table (unread columns null)
    op text;
    fn text;
    rows_of text;    -- the transition table(s) the statement's rows are in
    changed text;    -- id and source of every changed row (old and new for updates)
    counted text;    -- the rows `rows` counts
    contrib_q text;  -- the net contributions: source_id, metric, sec, val, label, n
    d_expr text;
begin
    if cols is not null then
        grouped := format('(select %s, count(*) as c from %%s r group by %s) g',
                          (select string_agg('r.' || quote_ident(c), ', ') from unnest(cols) c),
                          (select string_agg(i::text, ', ') from generate_series(1, cardinality(cols)) i));
        as_row := format('row(%s)::%s',
                         (select string_agg(case when a.attname::text = any(cols)
                                                 then 'g.' || quote_ident(a.attname)
                                                 else 'null::' || format_type(a.atttypid, a.atttypmod) end,
                                            ', ' order by a.attnum)
                            from pg_attribute a
                           where a.attrelid = tbl and a.attnum > 0 and not a.attisdropped),
                         tbl::text);
    end if;
    foreach op in array array['insert', 'update', 'delete'] loop
        fn := format('capture_%s_%s', tname, op);
        changed := case op
            when 'insert' then format('select n.id, n.%I as src from new_rows n', source_col)
            when 'delete' then format('select o.id, o.%I as src from old_rows o', source_col)
            else format('select n.id, n.%1$I as src from new_rows n '
                        'union all select o.id, o.%1$I from old_rows o', source_col)
        end;
        rows_of := case op when 'insert' then 'new_rows' when 'delete' then 'old_rows' end;
        counted := case op when 'delete' then 'old_rows' else 'new_rows' end;
        contrib_q := case
            when cols is null and op = 'update' then format(
                'select k.source_id, k.metric, k.sec, k.val, k.label, sum(k.sgn)::bigint as n '
                'from (select k.*, 1 as sgn from new_rows n cross join lateral %1$s(n) k '
                '      union all '
                '      select k.*, -1 from old_rows o cross join lateral %1$s(o) k) k '
                'group by 1, 2, 3, 4, 5 having sum(k.sgn) <> 0', contrib)
            -- Inserts and deletes have one sign: the count is the net count, never 0.
            when cols is null then format(
                'select k.source_id, k.metric, k.sec, k.val, k.label, %s count(*) as n '
                'from %s r cross join lateral %s(r) k group by 1, 2, 3, 4, 5',
                case op when 'delete' then '-' else '' end, rows_of, contrib)
            when op = 'update' then format(
                'select k.source_id, k.metric, k.sec, k.val, k.label, sum(k.sgn)::bigint as n '
                'from (select k.*, g.c as sgn from %1$s cross join lateral %2$s(%3$s) k '
                '      union all '
                '      select k.*, -g.c from %4$s cross join lateral %2$s(%3$s) k) k '
                'group by 1, 2, 3, 4, 5 having sum(k.sgn) <> 0',
                format(grouped, 'new_rows'), contrib, as_row, format(grouped, 'old_rows'))
            else format(
                'select k.source_id, k.metric, k.sec, k.val, k.label, %s sum(g.c)::bigint as n '
                'from %s cross join lateral %s(%s) k group by 1, 2, 3, 4, 5',
                case op when 'delete' then '-' else '' end, format(grouped, rows_of), contrib, as_row)
        end;
        d_expr := case when contrib = 'none' then '''[]''::jsonb' else format(
            '(select coalesce(jsonb_agg(jsonb_build_array(c.source_id, c.metric, c.sec, c.val, c.n, c.label) '
            'order by c.source_id, c.metric, c.sec, c.val, c.label), ''[]'') from (%s) c)', contrib_q)
        end;
        execute format($f$
create or replace function monitor.%1$I() returns trigger
    language plpgsql security definer set search_path = pg_catalog, monitor as $body$
-- Generated by monitor.install_static_capture (sql/0011_preaggregated_capture.sql).
declare
    ev record;
    new_seq bigint;
begin
    with ch as not materialized (%2$s)
    select (select count(*) from %3$s)::int as rows,
           (select array_agg(distinct ch.src) from ch) as sources,
           (select array_agg(i.id order by i.id) from (
                select distinct ch.id from ch order by ch.id limit 20) i) as ids,
           %4$s as d
      into ev;

    if ev.rows = 0 then
        return null;  -- a statement that changed nothing is not an event
    end if;

    insert into monitor.events (kind, source_id, rows, summary)
    values (%5$L,
            case when cardinality(ev.sources) = 1 then ev.sources[1] end,
            ev.rows,
            jsonb_build_object('ids', to_jsonb(ev.ids), 'sources', to_jsonb(ev.sources), 'd', ev.d))
    returning seq into new_seq;

    perform pg_notify(monitor.channel(), new_seq::text);
    return null;
end
$body$$f$, fn, changed, counted, d_expr, tname || '.' || op);

        execute format('drop trigger if exists %I on %s', 'iw_capture_' || op, tbl);
        execute format('create trigger %I after %s on %s referencing %s for each statement '
                       'execute function monitor.%I()',
                       'iw_capture_' || op, op, tbl,
                       case op when 'insert' then 'new table as new_rows'
                               when 'delete' then 'old table as old_rows'
                               else 'old table as old_rows new table as new_rows' end,
                       fn);
    end loop;
end
$gen$;

select monitor.install_static_capture('ingest.sources', 'none', 'id');
select monitor.install_static_capture('ingest.runs', 'monitor.runs_contrib');
select monitor.install_static_capture('ingest.raw_records', 'monitor.raw_records_contrib');
select monitor.install_static_capture('ingest.meetings', 'none');
select monitor.install_static_capture('ingest.errors', 'monitor.errors_contrib');
