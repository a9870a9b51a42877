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

step "npm ci (client/tests)"
(cd client/tests && npm ci --no-audit --no-fund --loglevel=error)

step "cargo build --bin ingestwatch"
cargo build --quiet --bin ingestwatch

step "node --test (client/tests)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
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
