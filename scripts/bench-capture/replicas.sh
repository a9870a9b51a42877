#!/bin/bash
# usage: replicas.sh PORT DB ROWS CLIENTS SECONDS ORDER...   (ORDER: replica counts, e.g. 0 1 2 2 1 0)
# Writer throughput through the capture trigger (pgbench, CLIENTS connections,
# ROWS-row autocommit INSERTs into ingest.raw_records, `ins.sql`) while 0, 1 or 2
# `ingestwatch serve` replicas LISTEN on DB. Per run: statements/s, PostgreSQL
# CPU of the replicas' listener backends and of the replicas themselves (% of
# one core), whether every replica delivered every event (its /api/kpis seq
# equals max(monitor.events.seq) after the run) and the notification queue use.
# DB must be migrated with one source and run (setup.sh). Needs
# target/release/ingestwatch and root (reads /proc/<pid>/stat).
set -euo pipefail
port=$1 db=$2 rows=$3 clients=$4 secs=$5; shift 5
here=$(cd "$(dirname "$0")" && pwd)
bin="$here/../../target/release/ingestwatch"
url="postgres://postgres@127.0.0.1:$port/$db"
export PGOPTIONS="-c client_min_messages=warning"
P="psql -h 127.0.0.1 -p $port -U postgres -X -q -At -v ON_ERROR_STOP=1 -d $db"
secret=replicas-bench-secret-0123456789abcdef
token=$("$bin" token --jwt-secret "$secret" --role viewer --ttl 1h)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap stop EXIT
printf '| replicas | rows/st | clients | st/s | rows/s | listener backends cpu %% | replicas cpu %% | every replica caught up | queue usage | load avg |\n|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n'
for n in "$@"; do
  stop
  $P -c "truncate ingest.raw_records cascade" -c "checkpoint" >/dev/null
  for i in $(seq 1 "$n"); do
    "$bin" serve --database-url "$url" --listen "127.0.0.1:$((18180 + i))" \
      --jwt-secret "$secret" >/dev/null 2>&1 &
    pids+=($!)
  done
  for i in $(seq 1 "$n"); do
    until curl -fs "http://127.0.0.1:$((18180 + i))/readyz" >/dev/null; do sleep 0.1; done
  done
  backends=$($P -c "select string_agg(pid::text, ' ') from pg_stat_activity where datname = '$db' and application_name = 'ingestwatch-listener'")
  load=$(cut -d' ' -f1 /proc/loadavg)
  b0=0; for p in $backends; do b0=$((b0 + $(ticks "$p"))); done
  r0=0; for p in "${pids[@]}"; do r0=$((r0 + $(ticks "$p"))); done
  out=$(pgbench -h 127.0.0.1 -p "$port" -U postgres -n -M prepared -c "$clients" -j 2 -T "$secs" \
        -D rows="$rows" -f "$here/ins.sql" "$db" 2>&1)
  b1=0; for p in $backends; do b1=$((b1 + $(ticks "$p"))); done
  r1=0; for p in "${pids[@]}"; do r1=$((r1 + $(ticks "$p"))); done
  tps=$(grep -oP 'tps = \K[0-9.]+' <<<"$out")
  want=$($P -c "select coalesce(max(seq), 0) from monitor.events")
  caught=yes
  for i in $(seq 1 "$n"); do
    ok=no
    for _ in $(seq 1 100); do
      got=$(curl -fs -H "authorization: Bearer $token" "http://127.0.0.1:$((18180 + i))/api/kpis?window=1m" | grep -oP '"seq":\K[0-9]+' || echo 0)
      if [ "$got" -ge "$want" ]; then ok=yes; break; fi
      sleep 0.1
    done
    [ "$ok" = yes ] || caught=no
  done
  [ "$n" = 0 ] && caught="n/a"
  usage=$($P -c "select round(pg_notification_queue_usage()::numeric, 6)")
  awk -v n="$n" -v r="$rows" -v c="$clients" -v t="$tps" -v b=$((b1 - b0)) -v rr=$((r1 - r0)) -v s="$secs" \
      -v ok="$caught" -v u="$usage" -v l="$load" \
      'BEGIN { printf "| %d | %d | %d | %.0f | %.0f | %.1f | %.1f | %s | %s | %s |\n", n, r, c, t, t * r, b / s, rr / s, ok, u, l }'
done
