#!/usr/bin/env bash
# Create .venv and install the pinned stack (runtime + test tools). Idempotent.
# One line per step and the total time: pip's output goes to a log that is shown (its last lines)
# only when a step fails, and then the script exits with that step's status, so CI still fails
# loudly on a real error.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
LOG="$(mktemp -t sscl-bench-setup.XXXXXX.log)"
START=$SECONDS

step() {  # step "what" command [args...]
    local what=$1 began=$SECONDS status
    shift
    printf '%-46s' "$what"
    if "$@" >>"$LOG" 2>&1; then
        echo " ok ($((SECONDS - began)) s)"
    else
        status=$?
        echo " FAILED (exit $status)"
        # pip warns once per configured index or wheel folder that lacks a package: not the error
        grep -v "^WARNING: Location '.*' is ignored" "$LOG" | tail -n 40 >&2
        echo "setup failed: $what (full log: $LOG)" >&2
        exit "$status"
    fi
}

make_venv() { [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv; }

step "virtual environment (.venv)" make_venv
step "pip itself" .venv/bin/python -m pip install --quiet --upgrade pip
step "pinned requirements (requirements-dev.txt)" .venv/bin/python -m pip install --quiet -r requirements-dev.txt
# the harness itself (editable): `python -m bench` then works from any directory
step "the harness (editable install)" .venv/bin/python -m pip install --quiet --no-deps -e .
rm -f "$LOG"
echo "setup done in $((SECONDS - START)) s"
