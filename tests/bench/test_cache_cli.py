"""``bench cache verify`` finds every bad entry (``--fix`` moves them aside); ``clean`` removes leftovers."""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.core import integrity
from bench.core.paths import bench_home
from bench.protocols.budget import LabelBudget, draw_budget
from datasets import load_dataset

LABELS = np.random.default_rng(0).integers(0, 3, (20, 16, 16)).astype(np.uint8)


def _budget(seed: int) -> LabelBudget:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return draw_budget(LABELS, fingerprint="fp", class_names=("a", "b", "c"), samples=10, seed=seed)


def test_verify_names_bad_entries_and_fix_moves_them_aside(
    tiny_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = load_dataset(tiny_data_root, progress=False)
    garbled, renamed = _budget(0).path, _budget(1).path
    with garbled.open("r+b") as fh:
        fh.seek(64)
        fh.write(b"\xff" * 32)
    # seed 2's index renamed onto seed 1's name with a digest that matches it: only the ident tells
    other = _budget(2).path
    os.replace(other, renamed)
    digest = json.loads(integrity.sidecar(other).read_text())[other.name]
    integrity.sidecar(renamed).write_text(json.dumps({renamed.name: digest}))
    (ds.test.path / "labels.u8").write_bytes(b"\0")

    assert main(["cache", "verify"]) == 1
    out = capsys.readouterr().out
    assert f"bad label budget {garbled}: content differs" in out
    assert f"bad label budget {renamed}: drawn for another budget" in out
    assert f"bad decoded data {ds.test.path}: labels.u8: size 1 bytes" in out
    assert "checked 2 decoded data, 2 label budget" in out and ": 3 bad" in out

    assert main(["cache", "verify", "--fix"]) == 0
    assert main(["cache", "verify"]) == 0
    assert "checked 1 decoded data under" in capsys.readouterr().out.splitlines()[-1]


def test_clean_removes_stale_temporaries_corrupt_and_orphaned_files(
    capsys: pytest.CaptureFixture[str],
) -> None:
    kept = _budget(0).path
    orphan_digest = integrity.sidecar(_budget(1).path)
    _budget(1).path.unlink()
    features = bench_home() / "features"
    features.mkdir()
    stale, fresh = features / ".abc.npy.x1.tmp", features / ".abc.npy.x2.tmp"
    stale.write_bytes(b"0" * 2**20)
    fresh.write_bytes(b"0")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    corrupt = kept.with_name(kept.name + integrity.CORRUPT_TAG + "20260101T000000-1-0")
    corrupt.write_bytes(b"x")

    assert main(["cache", "clean"]) == 0
    assert "removed 1 stale temporaries and 2 corrupt or orphaned files" in capsys.readouterr().out
    assert not any(p.exists() for p in (stale, orphan_digest, corrupt))
    assert fresh.exists() and kept.exists() and integrity.check_entry(kept) is None
