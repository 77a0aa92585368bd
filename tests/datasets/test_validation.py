"""Every broken input gives a DataError naming the file; ``skip_bad`` reports and leaves it out."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.core.errors import DataError
from datasets import load_dataset
from tests.datasets.conftest import patch_file, rewrite


def _expect_error(root: Path, bad: Path, words: str) -> None:
    with pytest.raises(DataError) as err:
        load_dataset(root, progress=False)
    assert str(bad) in str(err.value)
    assert words in str(err.value)


def test_missing_partner(data_copy: Path) -> None:
    s1 = patch_file(data_copy, "s1")
    s1.unlink()
    _expect_error(data_copy, s1, "missing s1 file")


def test_truncated_file(data_copy: Path) -> None:
    s2 = patch_file(data_copy, "s2")
    s2.write_bytes(s2.read_bytes()[: s2.stat().st_size // 2])
    _expect_error(data_copy, s2, "unreadable or truncated")


def test_garbage_file(data_copy: Path) -> None:
    dfc = patch_file(data_copy, "dfc")
    dfc.write_bytes(b"not a tiff at all")
    _expect_error(data_copy, dfc, "unreadable or truncated")


def test_wrong_band_count(data_copy: Path) -> None:
    s2 = patch_file(data_copy, "s2")
    rewrite(s2, np.ones((12, 32, 32), np.uint16))
    _expect_error(data_copy, s2, "12 bands")


def test_wrong_dtype(data_copy: Path) -> None:
    s2 = patch_file(data_copy, "s2")
    rewrite(s2, np.ones((13, 32, 32), np.float32))
    _expect_error(data_copy, s2, "dtype float32")


def test_wrong_shape(data_copy: Path) -> None:
    s1 = patch_file(data_copy, "s1")
    rewrite(s1, np.zeros((2, 16, 32), np.float32))
    _expect_error(data_copy, s1, "shape 16x32")


def test_empty_dataset(tmp_path: Path) -> None:
    for folder in ("ROIs0000_validation/s2_validation", "ROIs0000_test/s2_0"):
        (tmp_path / folder).mkdir(parents=True)
    with pytest.raises(DataError, match="empty dataset"):
        load_dataset(tmp_path, progress=False)


def test_missing_split_and_unknown_layout(data_copy: Path, tmp_path: Path) -> None:
    shutil.rmtree(data_copy / "ROIs0000_test")
    _expect_error(data_copy, data_copy / "ROIs0000_test", "missing split folder")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="no known dataset layout"):
        load_dataset(tmp_path / "nothing", progress=False)


def test_skip_bad_reports_and_leaves_out(data_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s2 = patch_file(data_copy, "s2", 5)
    rewrite(s2, np.ones((13, 32, 32), np.float32))
    (dfc := patch_file(data_copy, "dfc", 7)).unlink()
    with pytest.warns(UserWarning, match="skipping"):
        ds = load_dataset(data_copy, skip_bad=True, progress=False)
    err = capsys.readouterr().err
    assert str(s2) in err and str(dfc) in err
    assert len(ds.labelled) == 10
    assert "ROIs0000_validation_0_p5" not in ds.labelled.patch_ids
    assert {str(b.path) for b in ds.labelled.skipped} == {str(s2), str(dfc)}
    # the cache remembers: reported again on a cached load, and an error without skip_bad
    with pytest.warns(UserWarning, match="skipping"):
        load_dataset(data_copy, skip_bad=True, progress=False)
    with pytest.raises(DataError, match="and 1 more bad files"):
        load_dataset(data_copy, progress=False)
