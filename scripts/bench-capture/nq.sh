#!/bin/bash
# notifying vs plain commits/s; usage nq.sh fsync(on|off) clients...
P="psql -h 127.0.0.1 -p ${PGPORT:-55432} -U postgres -X -q"
$P -c "alter system set fsync = $1" -c "select pg_reload_conf()" >/dev/null; sleep 1
f=$1; shift
for c in "$@"; do for s in plain notify notify plain; do
  l=$(cut -d' ' -f1 /proc/loadavg)
  tps=$(pgbench -h 127.0.0.1 -p ${PGPORT:-55432} -U postgres -n -c $c -j 2 -T 5 -f $(dirname "$0")/$s.sql nq 2>/dev/null | awk '/^tps/ {print $3}')
  echo "fsync=$f clients=$c $s $tps load=$l"
done; done
