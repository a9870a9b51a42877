#!/usr/bin/env bash
# The demo, in one command: builds the server, makes sure PostgreSQL's server
# binaries are installed (Debian package; nothing needs to be running), and runs
# `ingestwatch demo` — a throwaway PostgreSQL, the simulated pipeline and the
# live client. Extra arguments go to `ingestwatch demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  echo "installing PostgreSQL server binaries (Debian package postgresql)…"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
cargo build --release --quiet -p ingestwatch --bin ingestwatch
exec target/release/ingestwatch demo "$@"
