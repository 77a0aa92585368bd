#!/usr/bin/env bash
# Download the wheels the GPU machine lacks into .gpu-wheels/ (git-ignored), for Python 3.12 on
# manylinux x86_64, so that scripts/gpu_acceptance.sh can install them there with --no-index
# (that machine reaches no registry).
#
# Why this list: the GPU image already has torch, torchvision, timm, numpy, pandas, scipy,
# scikit-learn, matplotlib, tqdm, filelock, pytorch-lightning, requests, pyyaml, protobuf, click,
# cloudpickle, packaging, attrs, certifi, pyparsing, ... (/work/.library/device/KINDS.md, "Python
# packages already there"). What requirements.txt needs beyond that is lightly, rasterio, mlflow
# and optuna and the dependencies of theirs the image does not hold. The closure was worked out
# from the installed packages' Requires-Dist with environment markers evaluated for CPython 3.12 on
# Linux x86_64, less the image's packages. mlflow-skinny (same version as mlflow) replaces mlflow:
# the full package adds Flask, gunicorn, docker, graphene, pyarrow... for the UI and model
# serving, which the benchmark does not run; its SQL store needs sqlalchemy + alembic, listed.
# lightly's hydra-core/omegaconf are left out: only its CLI and embedding modules import them, not
# lightly.loss, lightly.models.modules and lightly.utils.debug, which the methods use (and
# omegaconf's antlr4-python3-runtime==4.9.* has no wheel).
# ray and submitit (DESIGN 10 scale-out) are left out: imported only by `--executor ray|submitit`,
# and ray alone is larger than the 64 MiB the device tool carries.
#
# The four top-level versions come from requirements.txt, the rest are pinned here (what the
# project's venv resolved to on 2026-12-01). One version of each: two would stop the install.
#
# Usage: bash scripts/gpu_wheels.sh [DEST]   (default .gpu-wheels; re-running skips what is there)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.gpu-wheels}
python=${PYTHON:-python3}
[ -x .venv/bin/python ] && python=${PYTHON:-.venv/bin/python}

pin() {  # the version requirements.txt pins for $1
    local v
    v=$(grep -iE "^$1==" requirements.txt | head -1 | cut -d= -f3)
    if [ -z "$v" ]; then
        echo "gpu_wheels.sh: requirements.txt pins no version of $1; add '$1==X.Y.Z' there" >&2
        exit 1
    fi
    echo "$v"
}

wheels=(
    "lightly==$(pin lightly)"
    "rasterio==$(pin rasterio)"
    "mlflow-skinny==$(pin mlflow)"
    "optuna==$(pin optuna)"
    # rasterio
    affine==3.0.1 click-plugins==1.1.1.2 cligj==0.7.2
    # optuna and mlflow's SQL store
    alembic==1.20.1 sqlalchemy==2.1.9 mako==1.4.3 colorlog==6.12.0
    # mlflow-skinny
    cachetools==7.3.3 databricks-sdk==0.162.0 google-auth==2.63.0 pyasn1==0.6.5 pyasn1-modules==0.4.2
    cryptography==50.0.2 cffi==2.1.1 pycparser==3.12
    fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0
    gitpython==3.2.1 gitdb==4.0.12 smmap==5.0.3 importlib-metadata==9.1.0
    opentelemetry-api==1.45.2 opentelemetry-proto==1.45.2 opentelemetry-sdk==1.45.2
    opentelemetry-semantic-conventions==0.66b2
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    python-dotenv==1.2.4 sqlparse==0.6.1
)

platforms=()
for tag in manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 \
    manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done

mkdir -p "$dest"
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$dest" "${wheels[@]}"

# One version of each distribution: a stale wheel from an earlier pin would break the install.
dupes=$(ls "$dest" | grep '\.whl$' | cut -d- -f1 | tr 'A-Z-.' 'a-z__' | sort | uniq -d)
if [ -n "$dupes" ]; then
    echo "gpu_wheels.sh: $dest holds two versions of: $dupes; delete $dest and run again" >&2
    exit 1
fi
count=$(ls "$dest"/*.whl | wc -l)
echo "$count wheels, $(du -sh "$dest" | cut -f1) in $dest:"
ls -1 "$dest"
