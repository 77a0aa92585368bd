"""Physics sanity of the synthetic generator, its domain shift and label noise, its file format, and
determinism for a seed and for any number of worker processes."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio

from datasets.synthetic import ENL, SynthConfig, generate, make_patch, patch_scene, regions_of, speckle
from tests.datasets.conftest import patch_file

#: 60 labelled patches of 64 px from summer (leaf-on) regions, without the between-region SAR
#: spread: the class physics of research-data.md tables 5.2 and 5.3 shows in a few regions.
CONFIG = SynthConfig(
    n_labelled=60, n_test=60, size=64, seed=7, pool_seasons=("summer",), region_sar_scale=0.0
)


def _stack(config: SynthConfig, split: str, n: int) -> dict[str, np.ndarray]:
    ps = [make_patch(config, split, i) for i in range(n)]
    return {k: np.stack([p[k] for p in ps]) for k in ("s1", "s2", "dfc")}


@pytest.fixture(scope="module")
def patches() -> dict[str, np.ndarray]:
    return _stack(CONFIG, "labelled", CONFIG.n_labelled)


@pytest.fixture(scope="module")
def default_mix() -> dict[str, np.ndarray]:
    """The default physics over the test split's 10 regions and four seasons (60 patches)."""
    return _stack(SynthConfig(n_labelled=10, n_test=60), "test", 60)


def _class_mean(values: np.ndarray, labels: np.ndarray, dfc_id: int) -> float:
    return float(values[labels == dfc_id].mean())


def test_ndvi_ordering(patches: dict[str, np.ndarray]) -> None:
    s2, labels = patches["s2"].astype(np.float64), patches["dfc"][:, 0]
    ndvi = (s2[:, 7] - s2[:, 3]) / (s2[:, 7] + s2[:, 3])
    by_class = {c: _class_mean(ndvi, labels, c) for c in (1, 4, 7, 9, 10)}
    assert min(by_class[1], by_class[4]) > by_class[7] > by_class[10]  # vegetation > urban > water
    assert by_class[9] < by_class[4] and by_class[10] < 0 < by_class[9]
    # research table 5.2: 0.6 for clear leaf-on forest; haze, thin cloud and boundary pixels lower it
    assert 0.45 < by_class[1] < 0.7


def test_water_darkest_and_urban_brightest_in_sar(default_mix: dict[str, np.ndarray]) -> None:
    s1, labels = default_mix["s1"], default_mix["dfc"][:, 0]
    present = [c for c in range(1, 11) if (labels == c).sum() > 500]
    for band in (0, 1):
        medians = {c: float(np.median(s1[:, band][labels == c])) for c in present}
        assert min(medians, key=medians.get) == 10
        assert max(medians, key=medians.get) == 7  # double bounce and point targets
    urban_vv = s1[:, 0][labels == 7]
    assert float(np.median(urban_vv)) == pytest.approx(-3, abs=1.5)  # research table 5.3
    assert np.percentile(urban_vv, 99) - np.median(urban_vv) > 8  # heavy right tail


def test_forest_volume_scattering(patches: dict[str, np.ndarray]) -> None:
    s1, labels = patches["s1"], patches["dfc"][:, 0]
    assert _class_mean(s1[:, 0], labels, 1) - _class_mean(s1[:, 1], labels, 1) == pytest.approx(6, abs=1)


def test_speckle_enl_and_correlation() -> None:
    n = speckle(np.random.default_rng(0), (256, 256))
    assert n.mean() == pytest.approx(1.0, abs=0.02)
    assert n.mean() ** 2 / n.var() == pytest.approx(ENL, rel=0.08)
    lag1 = np.corrcoef(n[:, :-1].ravel(), n[:, 1:].ravel())[0, 1]
    lag2 = np.corrcoef(n[:, :-2].ravel(), n[:, 2:].ravel())[0, 1]
    assert lag1 == pytest.approx(0.5, abs=0.05) and abs(lag2) < 0.05


def test_enl_on_homogeneous_areas(patches: dict[str, np.ndarray]) -> None:
    """ENL in 8x8 windows entirely inside forest: speckle dominates, mixing adds a little variance."""
    power, labels = 10 ** (patches["s1"][:, 0] / 10), patches["dfc"][:, 0]
    enls = []
    for i in range(len(power)):
        for y in range(0, 64, 8):
            for x in range(0, 64, 8):
                if (labels[i, y : y + 8, x : x + 8] == 1).all():
                    w = power[i, y : y + 8, x : x + 8]
                    enls.append(w.mean() ** 2 / w.var())
    assert len(enls) > 50
    assert float(np.median(enls)) == pytest.approx(ENL, rel=0.3)


def test_patches_dominated_by_few_classes() -> None:
    for i in range(30):
        truth = patch_scene(CONFIG, "test", i)[2].truth
        share = np.sort(np.bincount(truth.ravel(), minlength=11))[::-1] / truth.size
        assert share[:3].sum() > 0.9


def test_regions_differ_between_splits() -> None:
    """Pool and test come from disjoint regions, the test from more of them, in other seasons."""
    pool = {patch_scene(CONFIG, "labelled", i)[1] for i in range(CONFIG.n_labelled)}
    test = {patch_scene(CONFIG, "test", i)[1] for i in range(CONFIG.n_test)}
    assert not {r.index for r in pool} & {r.index for r in test}
    assert len(test) > len(pool) == CONFIG.pool_regions
    assert {r.season for r in pool} <= set(CONFIG.pool_seasons) and {r.season for r in test} > {"winter"}
    soils = [tuple(r.s2_endmembers[3]) for r in pool | test]
    assert len(set(soils)) == len(soils)  # every region has its own soil
    assert np.all(np.diff(regions_of(CONFIG, "test")) >= 0)  # patches clustered by region


def test_phenology_shows_in_the_image() -> None:
    """Broadleaf forest loses NIR in a leaf-off (winter) region: same sub-type, other season."""
    summer = dataclasses.replace(CONFIG, pool_seasons=("summer",), subtype_concentration=100.0)
    winter = dataclasses.replace(summer, pool_seasons=("winter",))
    nir = []
    for config in (summer, winter):
        values = []
        for i in range(30):
            p = patch_scene(config, "labelled", i)[2]
            s2 = make_patch(config, "labelled", i)["s2"]
            values.append(s2[7][p.subtype == 0])  # broadleaf pixels, B8
        nir.append(float(np.concatenate(values).mean()))
    assert nir[1] < 0.85 * nir[0]


@pytest.mark.parametrize("rate", [0.0, 0.2])
def test_label_noise_rate_as_configured(rate: float) -> None:
    config = dataclasses.replace(CONFIG, mislabel_rate=rate, boundary_shift_px=0.0)
    wrong = total = 0
    for i in range(40):
        p = patch_scene(config, "test", i)[2]
        wrong += int((p.labels != p.truth).sum())
        total += p.truth.size
    assert wrong / total == pytest.approx(rate, abs=0.04)


def test_boundary_noise_stays_at_boundaries() -> None:
    """With segment noise off, a written label differs from the truth only within 3 px of a boundary."""
    config = dataclasses.replace(CONFIG, mislabel_rate=0.0, boundary_shift_px=1.0)
    changed = 0
    for i in range(10):
        p = patch_scene(config, "test", i)[2]
        padded = np.pad(p.truth, 3, mode="edge")
        h, w = p.truth.shape
        near = np.zeros((h, w), dtype=bool)
        for dy in range(7):
            for dx in range(7):
                near |= padded[dy : dy + h, dx : dx + w] != p.truth
        wrong = p.labels != p.truth
        assert not (wrong & ~near).any()
        changed += int(wrong.sum())
    assert changed > 0


def test_deterministic_for_a_seed() -> None:
    a, b = make_patch(CONFIG, "test", 5, True), make_patch(CONFIG, "test", 5, True)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    other = dataclasses.replace(CONFIG, seed=8)
    assert not np.array_equal(a["s2"], make_patch(other, "test", 5, True)["s2"])
    assert not np.isfinite(a["s1"]).all()


def test_identical_bytes_for_one_and_two_workers(tmp_path: Path) -> None:
    config = SynthConfig(n_labelled=5, n_test=4, size=32, seed=3, n_pretrain=6, pretrain_regions=3)
    one = generate(tmp_path / "one", config, workers=1)
    two = generate(tmp_path / "two", config, workers=2)
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert len(files) == 4 * 9 + 3 * 6 + 1  # s1 s2 dfc lc of 9 patches, s1 s2 lc of 6, the marker
    for name in files:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_written_format(tiny_data_root: Path) -> None:
    expected = {"s1": (2, "float32"), "s2": (13, "uint16"), "dfc": (1, "uint8"), "lc": (4, "uint16")}
    for mod, (count, dtype) in expected.items():
        with rasterio.open(patch_file(tiny_data_root, mod, 0, split="test")) as src:
            assert (src.count, src.dtypes[0], src.shape) == (count, dtype, (32, 32))
            assert src.crs.to_epsg() == 32632
            assert (src.transform.a, src.transform.e) == (10.0, -10.0)


_NO_MAIN_GUARD = """
from pathlib import Path
from datasets.synthetic import SynthConfig, generate
print("top level ran")
generate(Path({out!r}), SynthConfig(n_labelled=4, n_test=4, size=16, n_pretrain=0), workers=2)
print("generated")
"""


@pytest.mark.parametrize("how", ["script file", "standard input"])
def test_workers_start_from_any_caller(how: str, tmp_path: Path) -> None:
    """A script with no main guard, or one read from standard input, generates with 2 workers: the
    workers never re-import the caller (a spawn pool did, and broke with BrokenProcessPool)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    code = _NO_MAIN_GUARD.format(out=str(tmp_path / "set"))
    env = {**os.environ, "PYTHONPATH": str(root)}
    if how == "script file":
        script = tmp_path / "make.py"
        script.write_text(code)
        done = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
        )
    else:
        done = subprocess.run(
            [sys.executable, "-"], input=code, env=env, capture_output=True, text=True, timeout=300
        )
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.splitlines() == ["top level ran", "generated"]
    assert "RuntimeWarning" not in done.stderr  # the generator's module is loaded once per process
    assert len(list((tmp_path / "set").rglob("*.tif"))) == 8 * 4
