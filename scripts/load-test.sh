#!/usr/bin/env bash
# The seed's load test: 100 concurrent POST /api/v1/tasks, then wait until every run completed.
# Usage: scripts/load-test.sh URL [--tasks N] [--root DIR] [--api-key K] [--timeout S]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -lt 1 ]; then echo "usage: scripts/load-test.sh URL [--tasks N] [--root DIR] [--timeout S]" >&2; exit 2; fi
py="$here/.venv/bin/python"; [ -x "$py" ] || { make -C "$here" venv >/dev/null; }
exec "$py" -m conductor_perf.loadtest "$@"
