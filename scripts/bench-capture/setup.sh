#!/bin/bash
# usage: setup.sh PORT DB  — migrated db with 0001-0008 (+ variant functions)
set -e
P="psql -h 127.0.0.1 -p $1 -U postgres -X -q -v ON_ERROR_STOP=1"
$P -c "drop database if exists $2" -c "create database $2"
for f in $(dirname "$0")/../../sql/*.sql; do $P -d $2 -c "set client_min_messages=warning" -f $f >/dev/null; done
$P -d $2 <<'SQL'
insert into ingest.sources(name) values ('trig');
insert into ingest.runs(source_id) values (1);
create function monitor.v_noop() returns trigger language plpgsql as $$ begin return null; end $$;
do $$ declare src text := (select prosrc from pg_proc where proname = 'capture_raw_records_insert');
begin
  -- static: summary only
  execute format('create function monitor.v_summary() returns trigger language plpgsql security definer set search_path = pg_catalog, monitor as %L',
     regexp_replace(src, 'insert into monitor.events.*perform pg_notify\(monitor.channel\(\), new_seq::text\);', '', 'n'));
  -- static: summary + outbox row, no notify
  execute format('create function monitor.v_nonotify() returns trigger language plpgsql security definer set search_path = pg_catalog, monitor as %L',
     replace(src, 'perform pg_notify(monitor.channel(), new_seq::text);', ''));
  -- static: no SET search_path (everything is qualified; measurement only)
  execute format('create function monitor.v_noset() returns trigger language plpgsql security definer as %L', src);
  -- notify only
  execute $f$create function monitor.v_notifyonly() returns trigger language plpgsql as $b$ begin perform pg_notify('ingestwatch_events', '1'); return null; end $b$ $f$;
end $$;
SQL
