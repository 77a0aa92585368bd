#!/usr/bin/env bash
# One command from a fresh clone: install, then run the main job (SSCL, 800 labelled pixels per
# class, 5 seeds, linear probe) on the embedded synthetic DFC2020-like dataset.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
echo "python -m bench run --method sscl --samples 800 $*"
exec .venv/bin/python -m bench run --method sscl --samples 800 "$@"
