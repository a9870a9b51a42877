#!/bin/bash
# usage: cpu.sh PORT DB ROWS VARIANT...   backend CPU µs per statement (one connection), and st/s
export PGOPTIONS="-c client_min_messages=warning"
port=$1 db=$2 rows=$3; shift 3
P="psql -h 127.0.0.1 -p $port -U postgres -X -q -At -v ON_ERROR_STOP=1 -d $db"
for v in "$@"; do
  $P -c "drop trigger if exists iw_capture_insert on ingest.raw_records" -c "truncate ingest.raw_records, monitor.events cascade" -c "checkpoint" >/dev/null
  case $v in
    off) ;;
    dynamic) $P -c "create trigger iw_capture_insert after insert on ingest.raw_records referencing new table as new_rows for each statement execute function monitor.capture('monitor.raw_records_contrib', 'source_id')";;
    static) $P -c "create trigger iw_capture_insert after insert on ingest.raw_records referencing new table as new_rows for each statement execute function monitor.capture_raw_records_insert()";;
    noop_plain) $P -c "create trigger iw_capture_insert after insert on ingest.raw_records for each statement execute function monitor.v_noop()";;
    *) $P -c "create trigger iw_capture_insert after insert on ingest.raw_records referencing new table as new_rows for each statement execute function monitor.v_$v()";;
  esac
  l=$(cut -d' ' -f1 /proc/loadavg)
  pgbench -h 127.0.0.1 -p $port -U postgres -n -M prepared -c 1 -T 9 -D rows=$rows -f $(dirname "$0")/ins.sql $db >/tmp/bench-capture-pgbench.out 2>&1 &
  sleep 1.5
  pid=$($P -c "select pid from pg_stat_activity where application_name='pgbench' and datname='$db' limit 1")
  c0=$(awk '{print $14+$15}' /proc/$pid/stat); n0=$($P -c "select count(*) from ingest.raw_records"); t0=$(date +%s.%N)
  sleep 6
  c1=$(awk '{print $14+$15}' /proc/$pid/stat); n1=$($P -c "select count(*) from ingest.raw_records"); t1=$(date +%s.%N)
  wait
  awk -v v=$v -v r=$rows -v c=$((c1-c0)) -v n=$(( (n1-n0)/rows )) -v t0=$t0 -v t1=$t1 -v l=$l 'BEGIN {printf "%-11s rows=%-3d cpu_us_per_st=%7.1f  st/s=%7.1f  backend_cpu=%3.0f%%  load=%s\n", v, r, c*10000/n, n/(t1-t0), c/(t1-t0), l}'
done
$P -c "drop trigger if exists iw_capture_insert on ingest.raw_records" -c "create trigger iw_capture_insert after insert on ingest.raw_records referencing new table as new_rows for each statement execute function monitor.capture_raw_records_insert()"
