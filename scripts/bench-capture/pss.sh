#!/bin/bash
# usage: pss.sh VARIANT ROWS N  — pg_stat_statements of N single-connection statements
export PGOPTIONS="-c client_min_messages=warning"
DB=${DB:-decomp}; P="psql -h 127.0.0.1 -p ${PGPORT:-55432} -U postgres -X -q -v ON_ERROR_STOP=1 -d $DB"
v=$1 rows=$2 n=$3
$P -c "drop trigger if exists iw_capture_insert on ingest.raw_records" -c "truncate ingest.raw_records, monitor.events cascade" >/dev/null
case $v in
  dynamic) $P -c "create trigger iw_capture_insert after insert on ingest.raw_records referencing new table as new_rows for each statement execute function monitor.capture('monitor.raw_records_contrib', 'source_id')";;
  static) $P -c "create trigger iw_capture_insert after insert on ingest.raw_records referencing new table as new_rows for each statement execute function monitor.capture_raw_records_insert()";;
esac
$P -c "select pg_stat_statements_reset()" >/dev/null
pgbench -h 127.0.0.1 -p ${PGPORT:-55432} -U postgres -n -M prepared -c 1 -t $n -D rows=$rows -f $(dirname "$0")/ins.sql $DB >/dev/null 2>&1
$P -c "select calls, plans, round((total_plan_time/greatest(calls,1)*1000)::numeric,1) as plan_us, round((total_exec_time/calls*1000)::numeric,1) as exec_us, toplevel, left(regexp_replace(query, '\s+', ' ', 'g'), 90) as query from pg_stat_statements where calls >= $n/2 order by total_exec_time desc limit 12"
