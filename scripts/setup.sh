#!/usr/bin/env bash
# Create .venv and install the pinned stack (runtime + test tools). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-dev.txt
# the harness itself (editable): `python -m bench` then works from any directory
.venv/bin/python -m pip install --quiet --no-deps -e .
