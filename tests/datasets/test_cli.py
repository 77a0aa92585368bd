"""``bench data synth|check|cache`` and ``bench perf --stage data`` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from bench.cli import main
from datasets import DEFAULT_CLASSES, load_dataset
from datasets.embedded import DEFAULT_NAME
from tests.datasets.conftest import patch_file, rewrite


def test_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    argv = ["data", "synth", "--out", str(out), "--train", "6", "--test", "4", "--pretrain", "5"]
    assert main([*argv, "--size", "32", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 6 labelled + 4 test + 5 pool patches of 32 px" in printed and "Savanna" in printed
    assert "pretraining pool: 5 unlabelled patches in the SEN12MS layout" in printed
    assert len(list((out / "ROIs0000_test" / "s2_0").glob("*.tif"))) == 4
    for mod in ("s1", "s2", "lc"):
        assert len(list((out / "sen12ms").glob(f"ROIs*_*/{mod}_*/ROIs*_{mod}_*_p*.tif"))) == 5
    assert not list((out / "sen12ms").rglob("*dfc*"))  # the pool has no fine labels
    assert json.loads((out / "synthetic.json").read_text())["seed"] == 1


def test_check_and_cache(data_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "cache", "--data", str(data_copy)]) == 0
    assert "cache ready" in capsys.readouterr().out
    assert main(["data", "check", "--data", str(data_copy)]) == 0
    printed = capsys.readouterr().out
    assert "labelled: 12 patches of 32x32 px" in printed and "test: 8 patches" in printed
    assert all(name in printed for name in DEFAULT_CLASSES.names)
    assert "non-finite S1 pixels replaced" in printed


def test_check_preview_draws_the_patches(tiny_data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "preview.png"
    assert main(["data", "check", "--data", str(tiny_data_root), "--preview", str(out)]) == 0
    image = plt.imread(out)
    assert image.ndim == 3 and image.shape[1] > image.shape[0]  # 4 rows of 6 patches, wider than tall


def test_check_broken_names_the_file(data_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s1 = patch_file(data_copy, "s1", 2, split="test")
    rewrite(s1, np.zeros((3, 32, 32), np.float32))
    assert main(["data", "check", "--data", str(data_copy)]) == 2
    assert f"error: {s1}: 3 bands" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="skipping"):
        assert main(["data", "check", "--data", str(data_copy), "--skip-bad"]) == 0
    assert "test: 7 patches" in capsys.readouterr().out


def test_perf_data_stage(tiny_data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["perf", "--stage", "data", "--data", str(tiny_data_root)]) == 0
    printed = capsys.readouterr().out
    assert "cache speed-up over GeoTIFF" in printed and "patches/s" in printed
    assert main(["perf", "--stage", "nope"]) == 2


@pytest.mark.slow  # generates the whole default (960 patches, with its pool): ~30 s on 2 free cores
def test_embedded_default(bench_home_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No --data: the default set is generated once under BENCH_HOME, big enough for 800 px/class,
    with its pretraining pool."""
    assert main(["data", "check"]) == 0
    assert "labelled: 160 patches of 64x64 px" in capsys.readouterr().out
    ds = load_dataset(progress=False)
    assert ds.root == bench_home_dir / "data" / DEFAULT_NAME and ds.layout == "synthetic"
    assert min(ds.labelled.class_pixels[n] for n in DEFAULT_CLASSES.names) >= 2000
    assert not [p for p in (bench_home_dir / "data").iterdir() if p.name != DEFAULT_NAME]
    assert ds.pretrain_pool == ds.root / "sen12ms" and ds.pretrain_pool_id is not None
