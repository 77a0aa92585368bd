"""The file at fault is the one named, and label codes the class table does not know are said
(issue 35, smaller cases): a 16 px S2 file beside 32 px S1 and label files was reported under the
S1 file's name, and codes outside 0-10 were counted as ignored without a word."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from bench.core.errors import DataError
from datasets import load_dataset
from tests.datasets.conftest import patch_file, rewrite


def test_a_small_s2_file_is_named_not_its_s1_partner(data_copy: Path) -> None:
    s2_files = sorted((data_copy / "ROIs0000_validation" / "s2_validation").glob("*.tif"))
    for s2 in s2_files:  # whichever patch is read first, its S2 is the odd one out
        rewrite(s2, np.ones((13, 16, 16), np.uint16))
    with pytest.raises(DataError) as err:
        load_dataset(data_copy, progress=False)
    line = str(err.value)
    assert "_s2_" in line and "shape 16x16, expected 32x32" in line and "_s1_" not in line


def test_label_codes_outside_the_class_table_are_warned_about_once_per_file(data_copy: Path) -> None:
    dfc = patch_file(data_copy, "dfc")
    with rasterio.open(dfc) as src:
        labels = src.read()
    labels[0, :4, :] = 42  # 128 pixels of a code DFC2020 does not have
    rewrite(dfc, labels)
    with pytest.warns(UserWarning, match="label codes outside 0-10") as caught:
        load_dataset(data_copy, progress=False)
    (warning,) = [w for w in caught if "label codes" in str(w.message)]
    assert (
        str(dfc) in str(warning.message)
        and "128 pixels" in str(warning.message)
        and ": 42;" in str(warning.message)
    )


def test_a_sen12ms_lc_holds_igbp_codes_and_warns_of_none(tiny_pool_data_root: Path) -> None:
    """The pool's lc is IGBP 0-17 (mapped to DFC classes for the control): no code of it is unknown
    (every lc file of the default's pool warned, hundreds of lines in the main command)."""
    import warnings

    from datasets import load_pretrain_pool

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pool = load_pretrain_pool(tiny_pool_data_root / "sen12ms", progress=False)
    assert pool.labels is not None
