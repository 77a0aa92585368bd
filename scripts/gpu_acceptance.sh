#!/usr/bin/env bash
# GPU acceptance (DESIGN 8): one command, under 8 minutes on one H100/H200, that writes
# OUTDIR/report.md and OUTDIR/report.json (environment, every perf stage at real size for tiny,
# resnet18 and resnet50, the CUDA tests, one paper-preset cell per method on a real-size synthetic
# subset, the whole-grid estimate with its arithmetic, every DESIGN 8 goal as a line). The steps
# and sizes are in bench/perf/acceptance.py.
#
#   bash scripts/gpu_wheels.sh                  # once, where a registry is reachable (~55 MB)
#   bash scripts/gpu_acceptance.sh OUTDIR       # on the GPU machine
#   bash scripts/gpu_acceptance.sh --smoke OUTDIR   # every step on the CPU at tiny sizes (< 3 min)
#
# On this workplace's device tool (the wheels folder is git-ignored, so it must be carried):
#   run(command="bash scripts/gpu_acceptance.sh $OUT", carry=[".gpu-wheels"], timeout_s=540)
# and commit $OUT/report.md as docs/gpu-acceptance/<date>-<machine>.md.
#
# The GPU machine has torch, timm, numpy, pandas and scikit-learn but not lightly, rasterio,
# mlflow or optuna, and reaches no registry: the wheels from .gpu-wheels/ are installed first,
# with --no-index and --no-deps into a separate folder put on PYTHONPATH, so the machine's own
# torch (any version from 2.9 on) is the one used and nothing of its image is replaced.
set -uo pipefail
smoke=
if [ "${1:-}" = "--smoke" ]; then smoke=--smoke; shift; fi
if [ $# -ne 1 ]; then
    echo "usage: scripts/gpu_acceptance.sh [--smoke] OUTDIR" >&2
    exit 2
fi
out=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out" || { echo "gpu_acceptance.sh: cannot create $out" >&2; exit 2; }
out=$(cd "$out" && pwd)
cd "$repo"

python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -n "$smoke" ] && [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi

wheels=${BENCH_WHEELS:-.gpu-wheels}
if [ -z "$smoke" ] && ls "$wheels"/*.whl >/dev/null 2>&1; then
    site=${BENCH_SITE:-/tmp/bench-gpu-site}
    start=$(date +%s%N)
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$wheels"/*.whl >"$out/wheels.log" 2>&1
    rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    echo "$rc $((ms / 1000)).$(printf %03d $((ms % 1000))) $(ls "$wheels"/*.whl | wc -l)" >"$out/wheels.status"
    if [ $rc -ne 0 ]; then
        echo "gpu_acceptance.sh: installing the wheels of $wheels failed (see $out/wheels.log); going on" >&2
    fi
    export PYTHONPATH="$repo:$site${PYTHONPATH:+:$PYTHONPATH}"
elif [ -z "$smoke" ]; then
    echo "gpu_acceptance.sh: no wheels in $wheels (run scripts/gpu_wheels.sh where a registry is reachable);" \
        "going on with what is installed" >&2
    export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
fi

exec "$python" -m bench.perf.acceptance $smoke "$out"
