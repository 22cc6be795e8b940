#!/bin/sh
# Regenerate src/flagedge/_proto from proto/ (or, with --check, verify it is current).
set -eu
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec "$PY" scripts/gen_proto.py "$@"
