"""Physics sanity of the synthetic generator, its file format, and determinism for a seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from datasets.synthetic import ENL, make_patch, speckle
from tests.datasets.conftest import patch_file


@pytest.fixture(scope="module")
def patches() -> dict[str, np.ndarray]:
    """60 patches of 64 px: enough pixels of every class for class statistics."""
    ps = [make_patch(7, "labelled", i, 64, nonfinite=False) for i in range(60)]
    return {k: np.stack([p[k] for p in ps]) for k in ("s1", "s2", "dfc")}


def _class_mean(values: np.ndarray, labels: np.ndarray, dfc_id: int) -> float:
    return float(values[labels == dfc_id].mean())


def test_ndvi_ordering(patches: dict[str, np.ndarray]) -> None:
    s2, labels = patches["s2"].astype(np.float64), patches["dfc"][:, 0]
    ndvi = (s2[:, 7] - s2[:, 3]) / (s2[:, 7] + s2[:, 3])
    by_class = {c: _class_mean(ndvi, labels, c) for c in (1, 4, 7, 9, 10)}
    assert by_class[1] > by_class[4] > by_class[7] > by_class[10]  # forest > grass > urban > water
    assert by_class[9] < by_class[4] and by_class[10] < 0 < by_class[9]
    assert by_class[1] == pytest.approx(0.6, abs=0.08)


def test_water_darkest_in_sar(patches: dict[str, np.ndarray]) -> None:
    s1, labels = patches["s1"], patches["dfc"][:, 0]
    present = [c for c in range(1, 11) if (labels == c).sum() > 500]
    for band in (0, 1):
        means = {c: _class_mean(s1[:, band], labels, c) for c in present}
        assert min(means, key=means.get) == 10
        assert means[7] == max(means.values())  # urban brightest (double bounce, point targets)
    assert _class_mean(s1[:, 0], labels, 1) - _class_mean(s1[:, 1], labels, 1) == pytest.approx(6, abs=1)


def test_speckle_enl_and_correlation() -> None:
    n = speckle(np.random.default_rng(0), (256, 256))
    assert n.mean() == pytest.approx(1.0, abs=0.02)
    assert n.mean() ** 2 / n.var() == pytest.approx(ENL, rel=0.08)
    lag1 = np.corrcoef(n[:, :-1].ravel(), n[:, 1:].ravel())[0, 1]
    lag2 = np.corrcoef(n[:, :-2].ravel(), n[:, 2:].ravel())[0, 1]
    assert lag1 == pytest.approx(0.5, abs=0.05) and abs(lag2) < 0.05


def test_enl_on_homogeneous_areas(patches: dict[str, np.ndarray]) -> None:
    """ENL estimated in 8x8 windows entirely inside forest of the generated S1 is near 4.4."""
    power, labels = 10 ** (patches["s1"][:, 0] / 10), patches["dfc"][:, 0]
    enls = []
    for i in range(len(power)):
        for y in range(0, 64, 8):
            for x in range(0, 64, 8):
                if (labels[i, y : y + 8, x : x + 8] == 1).all():
                    w = power[i, y : y + 8, x : x + 8]
                    enls.append(w.mean() ** 2 / w.var())
    assert len(enls) > 50
    assert float(np.median(enls)) == pytest.approx(ENL, rel=0.2)


def test_patches_dominated_by_few_classes(patches: dict[str, np.ndarray]) -> None:
    labels = patches["dfc"][:, 0]
    for patch in labels:
        share = np.sort(np.bincount(patch.ravel(), minlength=11))[::-1] / patch.size
        assert share[:3].sum() > 0.9


def test_deterministic_for_a_seed() -> None:
    a, b = make_patch(3, "test", 5, 32, True), make_patch(3, "test", 5, 32, True)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["s2"], make_patch(4, "test", 5, 32, True)["s2"])
    assert not np.isfinite(a["s1"]).all()


def test_written_format(tiny_data_root: Path) -> None:
    expected = {"s1": (2, "float32"), "s2": (13, "uint16"), "dfc": (1, "uint8"), "lc": (4, "uint16")}
    for mod, (count, dtype) in expected.items():
        with rasterio.open(patch_file(tiny_data_root, mod, 0, split="test")) as src:
            assert (src.count, src.dtypes[0], src.shape) == (count, dtype, (32, 32))
            assert src.crs.to_epsg() == 32632
            assert (src.transform.a, src.transform.e) == (10.0, -10.0)
