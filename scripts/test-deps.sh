#!/usr/bin/env bash
# Installs what the tests outside Rust need, project-locally and idempotently:
# Python `websockets` (examples/python/requirements.txt) into .tools/venv-examples,
# the pinned npm packages of examples/node (the Node subscriber) and of
# tests/contracts (AsyncAPI validation), and Debian's prometheus (Prometheus and
# promtool, for tests/prometheus.rs). Prints the Python interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.tools/venv-examples
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import websockets' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q -r examples/python/requirements.txt >&2
fi
if [ ! -d examples/node/node_modules/ws ]; then
  (cd examples/node && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  # Prometheus and promtool (Debian) for tests/prometheus.rs.
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } >&2
fi
if [ ! -d tests/contracts/node_modules/@asyncapi/parser ]; then
  (cd tests/contracts && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
echo "$PWD/$venv/bin/python"
