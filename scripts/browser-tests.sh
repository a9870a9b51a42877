#!/usr/bin/env bash
# Browser end-to-end tests (client/tests): the real server binary against a
# fresh database on $DATABASE_URL's PostgreSQL (default
# postgres://postgres@127.0.0.1:5432/postgres), driven in headless Debian
# Chromium through playwright-core. Installs the pinned npm packages and
# chromium when missing; builds the server once. Ends with "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if ! command -v chromium >/dev/null 2>&1; then
  step "installing chromium (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
command -v psql >/dev/null 2>&1 || { echo "psql is required (apt-get install postgresql-client)" >&2; exit 1; }

# No PostgreSQL given and none on 127.0.0.1:5432: a throwaway cluster from
# the installed binaries (run as the postgres user when we are root).
# (INGESTWATCH_THROWAWAY_PG=1 forces it, to test this path.)
if [ -n "${INGESTWATCH_THROWAWAY_PG:-}" ] || { [ -z "${DATABASE_URL:-}" ] && ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }; then
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$bindir" ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1); }
  pgdir=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as=()
  if [ "$(id -u)" = 0 ]; then chown postgres "$pgdir"; as=(runuser -u postgres --); fi
  step "throwaway PostgreSQL on port $port"
  "${as[@]}" "$bindir/initdb" -D "$pgdir/data" -A trust -U postgres --no-sync >/dev/null
  "${as[@]}" "$bindir/pg_ctl" -D "$pgdir/data" -w -l "$pgdir/log" -o "-F -c listen_addresses=127.0.0.1 -p $port -k $pgdir" start >/dev/null
  trap '"${as[@]}" "$bindir/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$pgdir"' EXIT
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
fi

step "npm ci (client/tests)"
(cd client/tests && npm ci --no-audit --no-fund --loglevel=error)

step "cargo build -p ingestwatch --bin ingestwatch"
cargo build --quiet -p ingestwatch --bin ingestwatch

step "node --test (client/tests)"
log=$(mktemp)
set +e
(cd client/tests && node --test --test-concurrency=1 --test-reporter=spec ./*.test.js) 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
passed=$(sed -n 's/^ℹ pass \([0-9]*\)$/\1/p' "$log" | tail -1)
failed=$(sed -n 's/^ℹ fail \([0-9]*\)$/\1/p' "$log" | tail -1)
passed=${passed:-0}
failed=${failed:-0}
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
exit "$rc"
