"""The embedded default is the same bytes on every machine of this kind (DESIGN 13).

Generation runs in fresh interpreters under other OpenBLAS kernels, thread counts and with numpy's
run-time SIMD dispatch switched off, and every one must give the pinned content digest. Version 3
failed this: its einsum went through BLAS, so ``OPENBLAS_CORETYPE=SandyBridge`` wrote other bytes.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from datasets import Dataset, load_dataset
from datasets.synthetic import content_digest
from tests.conftest import TINY_CONFIG, TINY_POOL_CONFIG

ROOT = Path(__file__).resolve().parents[2]
#: content_digest(TINY_POOL_CONFIG), generator version 4: labelled, test and pool patches.
TINY_POOL_DIGEST = "b3e974c2cbda3cf8791d7a5a0044a8f02df62eb424eb800df589ba7c85a6001c"
#: The tiny set's dataset fingerprint (decoded, normalised cache content): what its results key on.
TINY_FINGERPRINT = "8d757241ffa7c522"
#: The embedded default's dataset fingerprint and its pool's (generator version 4).
DEFAULT_FINGERPRINT = "c745f8071908bcf1"
DEFAULT_POOL_FINGERPRINT = "ffaf00a12ae2ee2f"

_DIGEST_SCRIPT = (
    "from datasets.synthetic import content_digest\n"
    "from tests.conftest import TINY_POOL_CONFIG\n"
    "print(content_digest(TINY_POOL_CONFIG))\n"
)


def _dispatched_simd() -> str:
    """numpy's run-time-dispatched CPU features this machine has (beyond the build's baseline)."""
    from numpy._core import _multiarray_umath as umath

    baseline = set(umath.__cpu_baseline__)
    return " ".join(f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f) and f not in baseline)


def _digest_in_subprocess(env: dict[str, str]) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS", "OMP_", "NPY_", "MKL"))}
    full.update(env, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", _DIGEST_SCRIPT],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_tiny_content_is_pinned() -> None:
    assert content_digest(TINY_POOL_CONFIG) == TINY_POOL_DIGEST


def test_tiny_fingerprint_is_pinned(tiny_dataset: Dataset) -> None:
    assert tiny_dataset.fingerprint == TINY_FINGERPRINT


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="OpenBLAS x86 kernel names")
def test_same_bytes_under_every_blas_kernel_thread_count_and_simd_level() -> None:
    variants = [
        {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"},
        {"OPENBLAS_CORETYPE": "SandyBridge", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        {"OPENBLAS_CORETYPE": "Prescott"},  # SSE3 only: the oldest kernel
    ]
    simd = _dispatched_simd()
    if simd:
        variants.append({"NPY_DISABLE_CPU_FEATURES": simd})
    digests = {str(env): _digest_in_subprocess(env) for env in variants}
    assert set(digests.values()) == {TINY_POOL_DIGEST}, digests


@pytest.mark.slow
def test_default_fingerprint_is_pinned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The full default, generated afresh in two worker processes (about 1.5 minutes on 2 cores)."""
    monkeypatch.setenv("BENCH_HOME", str(tmp_path))
    ds = load_dataset(None, progress=False)
    assert (ds.fingerprint, ds.pretrain_pool_id) == (DEFAULT_FINGERPRINT, DEFAULT_POOL_FINGERPRINT)


def test_tiny_config_is_what_the_digest_covers() -> None:
    """The pool config holds the plain tiny set's labelled and test patches (same seed), so one
    pinned digest covers both fixtures."""
    assert (TINY_POOL_CONFIG.seed, TINY_POOL_CONFIG.size) == (TINY_CONFIG.seed, TINY_CONFIG.size)
