#!/usr/bin/env bash
# Trend latency against a running server: p50 / p99 / max of N requests per
# query, measured by curl (time to the last byte).
#   scripts/bench-trends.sh [BASE_URL] [N]
# BASE_URL defaults to http://127.0.0.1:8080; N to 50. The queries name
# sources src-01..src-03 (scripts/bench-trends-seed.sql).
set -euo pipefail
base="${1:-http://127.0.0.1:8080}"
n="${2:-50}"
now=$(date +%s)
day=86400
queries=(
  "12 months, day, received|metric=received&bucket=day&from=$((now - 365 * day))&to=$now"
  "12 months, day, lag_p95|metric=lag_p95&bucket=day&from=$((now - 365 * day))&to=$now"
  "12 months, day, errors, 3 sources|metric=errors&bucket=day&from=$((now - 365 * day))&to=$now&source=src-01,src-02,src-03"
  "90 days, hour, received|metric=received&bucket=hour&from=$((now - 90 * day))&to=$now"
  "90 days, hour, lag_p95|metric=lag_p95&bucket=hour&from=$((now - 90 * day))&to=$now"
  "7 days, minute, received (rollups + live)|metric=received&bucket=minute&from=$((now - 7 * day))&to=$now"
  "7 days, minute, lag_p95 (rollups + live)|metric=lag_p95&bucket=minute&from=$((now - 7 * day))&to=$now"
  "7 days, minute, received, 60 days ago (base tables)|metric=received&bucket=minute&from=$((now - 67 * day))&to=$((now - 60 * day))"
  "24 h, minute, received (live only)|metric=received&bucket=minute&from=$((now - day + 600))&to=$now"
)
printf '%-55s %8s %8s %8s %8s\n' query p50_ms p99_ms max_ms bytes
for q in "${queries[@]}"; do
  name="${q%%|*}"
  params="${q#*|}"
  code=$(curl -s -o /dev/null -w '%{http_code}' "$base/api/trends?$params")
  if [ "$code" != 200 ]; then
    printf '%-55s HTTP %s\n' "$name" "$code"
    continue
  fi
  bytes=$(curl -s "$base/api/trends?$params" | wc -c)
  for _ in $(seq "$n"); do
    curl -s -o /dev/null -w '%{time_total}\n' "$base/api/trends?$params"
  done | sort -n | awk -v name="$name" -v bytes="$bytes" '
    { t[NR] = $1 * 1000 }
    END {
      p50 = t[int((NR + 1) * 0.50)]; p99 = t[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1]
      printf "%-55s %8.1f %8.1f %8.1f %8d\n", name, p50, p99, t[NR], bytes
    }'
done
