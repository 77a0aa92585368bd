"""Synthetic DFC2020-like S1+S2 patches, written as GeoTIFFs in the released DFC2020 layout.

The embedded default of the harness: the reader cannot tell it from the real set (same folders,
bands, dtypes, UTM CRS, 10 m transform), so every code path runs without a download. The physics
follows research-data.md section 5 (starting values, never tuned to favour a method):

* label maps: 1-3 dominant classes per patch (imbalanced prior) from argmax'ed power-law Gaussian
  random fields (smoother for forest and water), cropland parcels with a per-parcel crop stage
  and hedges, urban blocks and streets, meandering rivers, roads (labelled Urban/Built-up);
  a little Savanna and Snow/Ice, which the default class config ignores;
* S2 L1C: per-class spectra (table 5.2), per-patch gain and NIR (season) jitter, low-frequency
  texture, per-pixel jitter, the 20 m and 60 m bands blurred to their resolution;
* S1 GRD: per-class dB means with between-patch spread, VV/VH offsets correlated (rho 0.8),
  within-class texture, crop-stage and urban structure, bright point targets, an incidence ramp,
  then multiplicative gamma speckle (ENL 4.4) correlated over 2 px; the log bias of speckle is
  added back so the class means are means of dB pixels, as in real statistics;
* a few patches get NaN no-data borders or -inf pixels (thermal-noise removal to zero power).

Each patch has its own generator seeded by (seed, split, index): deterministic and independent of
the order or batching of generation.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine

from bench.core.progress import progress_of
from datasets.classes import DFC_NAMES
from datasets.layouts import ReleasedDFC2020, SyntheticDFC2020

GENERATOR_VERSION = 1
MARKER = SyntheticDFC2020.marker
CRS_EPSG = 32632
ENL = 4.4
_VEGETATION = (1, 2, 3, 4, 5, 6)

#: Released-layout folders per split: (split folder, modality folder suffix).
SPLIT_FOLDERS: dict[str, tuple[str, str]] = ReleasedDFC2020.split_folders

#: Patch-level class prior over DFC ids 1..10 (imbalanced; Savanna and Snow/Ice rare).
CLASS_PRIOR = np.array([0.20, 0.06, 0.015, 0.15, 0.05, 0.20, 0.10, 0.01, 0.07, 0.135])

#: S2 L1C DN per DFC id (rows 1..10; row 0 unused), research-data.md table 5.2, B1..B12 with B8A.
S2_SPECTRA = np.array(
    [
        [0] * 13,
        [1250, 950, 800, 600, 950, 1900, 2300, 2400, 2550, 750, 15, 1300, 650],
        [1350, 1150, 1100, 1150, 1400, 1800, 2000, 2050, 2200, 700, 15, 2300, 1600],
        [1350, 1100, 1050, 1050, 1350, 1900, 2150, 2200, 2350, 700, 15, 2300, 1500],
        [1300, 1050, 1000, 850, 1250, 2300, 2750, 2850, 3000, 850, 15, 2100, 1250],
        [1250, 950, 850, 650, 850, 1400, 1650, 1700, 1800, 550, 12, 1000, 550],
        [1300, 1000, 950, 700, 1150, 2600, 3200, 3300, 3450, 950, 15, 2000, 1100],
        [1500, 1350, 1300, 1350, 1500, 1700, 1850, 1850, 1950, 600, 15, 2100, 1800],
        [8000, 8200, 8000, 7800, 7600, 7400, 7200, 7000, 6800, 2500, 80, 800, 600],
        [1700, 1700, 1950, 2500, 2800, 3000, 3150, 3200, 3400, 1100, 20, 4200, 3500],
        [1200, 900, 650, 400, 330, 280, 260, 240, 220, 80, 8, 150, 100],
    ],
    dtype=np.float32,
)
S2_BARE_FIELD = np.array(
    [1450, 1300, 1350, 1550, 1800, 2000, 2150, 2200, 2350, 750, 15, 2800, 2200], np.float32
)
S2_ASPHALT = np.array([1300, 1150, 1100, 1100, 1200, 1300, 1350, 1400, 1450, 450, 12, 1700, 1500], np.float32)
_NIR_BANDS = slice(5, 10)  # B6, B7, B8, B8A, B9: the red-edge/NIR plateau that moves with season
_BANDS_20M = (4, 5, 6, 8, 11, 12)  # B5 B6 B7 B8A B11 B12
_BANDS_60M = (0, 9, 10)  # B1 B9 B10

#: S1 sigma0 per DFC id: (VV mean, VV between-patch sd, VH mean, VH sd) in dB, table 5.3.
S1_BACKSCATTER = np.array(
    [
        [0, 0, 0, 0],
        [-7.5, 1.5, -13.5, 1.5],
        [-10, 2, -17, 2],
        [-9.5, 2, -16, 2],
        [-11, 2.5, -18, 2],
        [-11, 3.5, -19, 3],
        [-10.5, 3, -17, 3],
        [-3, 4, -10, 3.5],
        [-14, 4, -22, 4],
        [-15, 5, -23, 4],
        [-21, 3, -27, 2.5],
    ],
    dtype=np.float32,
)
S1_ROAD_DB = (-14.0, -21.0)


@dataclass(frozen=True)
class SynthConfig:
    """Size and seed of a generated set; written to ``synthetic.json`` beside the data."""

    n_labelled: int = 160
    n_test: int = 160
    size: int = 64
    seed: int = 0
    nonfinite_fraction: float = 0.08


#: The real DFC2020 proportions (``--full-size``).
FULL_SIZE = SynthConfig(n_labelled=986, n_test=5128, size=256)


def _box(a: np.ndarray, k: int) -> np.ndarray:
    """k x k moving average over the last two axes (edge-padded, same shape): a sensor footprint."""
    if k <= 1:
        return a
    lo, hi = (k - 1) // 2, k // 2
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(lo + 1, hi), (lo + 1, hi)], mode="edge")
    c = p.cumsum(-1).cumsum(-2)
    s = c[..., k:, k:] - c[..., :-k, k:] - c[..., k:, :-k] + c[..., :-k, :-k]
    return s / (k * k)


def _grf(rng: np.random.Generator, n: int, size: int, beta: float) -> np.ndarray:
    """``n`` standardised Gaussian random fields with power spectrum ~ |f|^-beta (smooth blobs)."""
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.rfftfreq(size), indexing="ij"))
    amp = np.maximum(f, 1.0 / size) ** (-beta / 2)
    amp[0, 0] = 0.0
    noise = rng.standard_normal((n, size, size // 2 + 1)) + 1j * rng.standard_normal((n, size, size // 2 + 1))
    field = np.fft.irfft2(noise * amp, s=(size, size))
    field -= field.mean(axis=(-2, -1), keepdims=True)
    return (field / field.std(axis=(-2, -1), keepdims=True)).astype(np.float32)


def _rotated(size: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    c, s = math.cos(angle), math.sin(angle)
    return x * c + y * s, -x * s + y * c


def _speckle_db_bias(enl: float) -> float:
    """-E[10 log10 n] for n ~ Gamma(enl, 1/enl); digamma by its asymptotic series (1e-5 for enl >= 2)."""
    x = enl
    digamma = math.log(x) - 1 / (2 * x) - 1 / (12 * x**2) + 1 / (120 * x**4) - 1 / (252 * x**6)
    return -10 / math.log(10) * (digamma - math.log(x))


def speckle(rng: np.random.Generator, shape: tuple[int, ...], enl: float = ENL) -> np.ndarray:
    """Unit-mean multiplicative speckle with gamma(ENL) marginals, correlated over 2 px.

    The mean of four iid Gamma(enl/4, 4/enl) draws is exactly Gamma(enl, 1/enl); a 2x2 moving
    mean therefore keeps the ENL while neighbours share samples (20 m resolution, 10 m pixels),
    without the block artefacts of upsampling.
    """
    *lead, h, w = shape
    g = rng.gamma(enl / 4, 4 / enl, size=(*lead, h + 1, w + 1))
    return ((g[..., 1:, 1:] + g[..., :-1, 1:] + g[..., 1:, :-1] + g[..., :-1, :-1]) / 4).astype(np.float32)


@dataclass
class _Patch:
    labels: np.ndarray  # (H, W) DFC ids
    crop_stage: np.ndarray  # (H, W) 0 bare .. 1 green, per parcel
    hedge: np.ndarray  # (H, W) bool, parcel edges
    urban: np.ndarray  # (H, W) int8: 0 street, 1 building, 2 green
    road: np.ndarray  # (H, W) bool


def _label_map(rng: np.random.Generator, size: int) -> _Patch:
    """Class layout of one patch: dominant classes, parcels, urban blocks, rivers, roads."""
    k = rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25])
    classes = rng.choice(np.arange(1, 11), size=k, replace=False, p=CLASS_PRIOR / CLASS_PRIOR.sum())
    weights = rng.dirichlet(np.full(k, 1.5))
    smooth = _grf(rng, k, size, 3.5)
    rough = _grf(rng, k, size, 2.5)
    blobby = np.isin(classes, (1, 10))[:, None, None]
    fields = np.where(blobby, smooth, rough) + 1.5 * np.log(weights)[:, None, None]
    labels = classes[np.argmax(fields, axis=0)].astype(np.uint8)

    # cropland parcels on a rotated, row-shifted grid; sizes from smallholder to industrial fields
    lo, hi = [(8, 16), (10, 45), (40, 80)][rng.choice(3, p=[0.3, 0.5, 0.2])]
    sx, sy = rng.uniform(lo, hi, size=2)
    u, v = _rotated(size, rng.uniform(0, np.pi))
    row = np.floor(v / sy).astype(np.int64)
    u = u + rng.uniform(0, sx, size=row.max() - row.min() + 1)[row - row.min()]
    col = np.floor(u / sx).astype(np.int64)
    parcel = (row - row.min()) * (col.max() - col.min() + 1) + (col - col.min())
    crop_stage = rng.beta(0.8, 0.8, size=parcel.max() + 1).astype(np.float32)[parcel]
    hedge = (np.mod(u, sx) < 1.0) | (np.mod(v, sy) < 1.0)

    # urban blocks with streets; some blocks are green
    period = rng.uniform(5, 20)
    street = rng.uniform(1, 3)
    bu, bv = _rotated(size, rng.uniform(0, np.pi / 2))
    block = np.floor(bu / period).astype(np.int64) * 7919 + np.floor(bv / period).astype(np.int64)
    is_street = (np.mod(bu, period) < street) | (np.mod(bv, period) < street)
    green = (np.mod(block * 2654435761, 1000) < 200) & ~is_street
    urban = np.where(is_street, 0, np.where(green, 2, 1)).astype(np.int8)

    if rng.random() < (0.5 if 10 in classes else 0.1):  # meandering river, 1-6 px wide
        ru, rv = _rotated(size, rng.uniform(0, np.pi))
        walk = np.cumsum(rng.normal(0, 0.15, size=4 * size)).astype(np.float32)
        t = np.clip((rv + 2 * size).astype(np.int64), 0, 4 * size - 1)
        centre = rng.uniform(0.2, 0.8) * size + rng.uniform(2, 8) * np.sin(rv / rng.uniform(8, 30)) + walk[t]
        labels[np.abs(ru - centre) < rng.uniform(0.5, 3.0)] = 10
    road = np.zeros((size, size), dtype=bool)
    if rng.random() < 0.25:  # a straight road, 1-2 px
        ru, _ = _rotated(size, rng.uniform(0, np.pi))
        road = np.abs(ru - rng.uniform(0.1, 0.9) * size) < rng.uniform(0.5, 1.0)
        labels[road] = 7
    return _Patch(labels, crop_stage, hedge, urban, road)


def _render_s2(rng: np.random.Generator, p: _Patch) -> np.ndarray:
    """(13, H, W) uint16 L1C DN for the label map ``p``."""
    size = p.labels.shape[0]
    gain = rng.normal(1.0, 0.08, size=11).astype(np.float32)
    season = rng.normal(1.0, 0.06, size=11).astype(np.float32)
    spectra = S2_SPECTRA * gain[:, None]
    spectra[:, _NIR_BANDS] *= season[:, None]
    refl = np.moveaxis(spectra[p.labels], -1, 0)  # (13, H, W)
    crop = p.labels == 6
    stage = np.where(p.hedge, np.maximum(p.crop_stage, 0.8), p.crop_stage)
    mix = (
        stage[None] * spectra[6][:, None, None] + (1 - stage[None]) * (S2_BARE_FIELD * gain[6])[:, None, None]
    )
    refl = np.where(crop[None], mix, refl)
    urban = p.labels == 7
    urban_mix = np.where(
        (p.urban == 0)[None],
        S2_ASPHALT[:, None, None],
        np.where((p.urban == 2)[None], 0.5 * (spectra[4] + spectra[7])[:, None, None], refl),
    )
    refl = np.where((urban & ~p.road)[None], urban_mix * rng.normal(1.0, 0.2, size=(1, size, size)), refl)
    refl = np.where(p.road[None], S2_ASPHALT[:, None, None], refl)
    texture = 1 + 0.06 * _grf(rng, 1, size, 3.0)
    jitter = 1 + 0.08 * rng.standard_normal((1, size, size)) + 0.03 * rng.standard_normal((13, size, size))
    refl = refl * texture * jitter
    refl[list(_BANDS_20M)] = _box(refl[list(_BANDS_20M)], 2)
    refl[list(_BANDS_60M)] = _box(refl[list(_BANDS_60M)], 6)
    return np.clip(np.rint(refl), 0, 65535).astype(np.uint16)


def _render_s1(rng: np.random.Generator, p: _Patch) -> np.ndarray:
    """(2, H, W) float32 sigma0 in dB (VV, VH) for the label map ``p``, speckled."""
    size = p.labels.shape[0]
    z = rng.standard_normal((2, 11)).astype(np.float32)
    table = S1_BACKSCATTER
    vv = table[:, 0] + table[:, 1] * z[0]
    vh = table[:, 2] + table[:, 3] * (0.8 * z[0] + 0.6 * z[1])
    db = np.stack([vv[p.labels], vh[p.labels]])
    texture = _grf(rng, 1, size, 3.0)[0] * np.where(p.labels == 5, 3.0, 1.5)
    db += texture[None]
    crop = p.labels == 6
    parcel_db = (p.crop_stage - 0.5) * np.array([2.0, 4.0], np.float32)[:, None, None]
    db = np.where(crop[None], db + parcel_db, db)
    urban = (p.labels == 7) & ~p.road
    structure = np.select([p.urban == 1, p.urban == 0], [3.0, -3.0], 0.0).astype(np.float32)
    targets = urban & (rng.random((size, size)) < rng.uniform(0.01, 0.05))
    db = np.where(urban[None], db + structure[None], db)
    db = np.where(targets[None], db + rng.uniform(10, 20, size=(size, size))[None], db)
    db = np.where(p.road[None], np.array(S1_ROAD_DB, np.float32)[:, None, None], db)
    db += np.linspace(-1, 1, size, dtype=np.float32)[None, None, :] * rng.uniform(-1.5, 1.5)
    power = 10 ** ((db + _speckle_db_bias(ENL)) / 10) * speckle(rng, (2, size, size))
    return (10 * np.log10(power)).astype(np.float32)


def _add_nonfinite(rng: np.random.Generator, s1: np.ndarray) -> None:
    """Real S1 patches carry NaN no-data borders and -inf where noise removal left zero power."""
    size = s1.shape[-1]
    if rng.random() < 0.5:
        width, start = rng.integers(1, 4), rng.integers(0, size // 2)
        s1[:, start:, :width] = np.nan
    else:
        darkest = np.argsort(s1[1].ravel())[: max(1, size * size // 500)]
        s1[1].ravel()[darkest] = -np.inf


def _lc(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """(4, H, W) uint16 MODIS-like layers: blocky 500 m IGBP from the labels, LCCS layers at fill 255."""
    to_igbp = np.array([0, 5, 7, 9, 10, 11, 12, 13, 15, 16, 17], dtype=np.uint16)
    size = labels.shape[0]
    igbp = np.zeros((size, size), dtype=np.uint16)
    for y in range(0, size, 50):
        for x in range(0, size, 50):
            block = labels[y : y + 50, x : x + 50]
            values = np.unique(block)
            mode = np.bincount(block.ravel()).argmax() if rng.random() > 0.15 else rng.choice(values)
            igbp[y : y + 50, x : x + 50] = to_igbp[mode]
    return np.stack([igbp] + [np.full_like(igbp, 255)] * 3)


def _write(path: Path, data: np.ndarray, transform: Affine) -> None:
    profile = {
        "driver": "GTiff",
        "height": data.shape[1],
        "width": data.shape[2],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "crs": CRS.from_epsg(CRS_EPSG),
        "transform": transform,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def make_patch(seed: int, split: str, index: int, size: int, nonfinite: bool) -> dict[str, np.ndarray]:
    """Arrays of one patch (s1, s2, dfc, lc), determined by (seed, split, index)."""
    rng = np.random.default_rng([seed, list(SPLIT_FOLDERS).index(split), index])
    p = _label_map(rng, size)
    s1 = _render_s1(rng, p)
    if nonfinite:
        _add_nonfinite(rng, s1)
    return {"s1": s1, "s2": _render_s2(rng, p), "dfc": p.labels[None], "lc": _lc(rng, p.labels)}


def generate(out: Path, config: SynthConfig = SynthConfig(), progress: bool = False) -> Path:
    """Write a synthetic set in the released DFC2020 layout under ``out``; returns ``out``."""
    out = Path(out)
    pixel = 10.0
    dfc_pixels: dict[str, dict[str, int]] = {}
    for split, n in (("labelled", config.n_labelled), ("test", config.n_test)):
        counts = np.zeros(11, dtype=np.int64)
        folder, suffix = SPLIT_FOLDERS[split]
        for mod in ("s1", "s2", "dfc", "lc"):
            (out / folder / f"{mod}_{suffix}").mkdir(parents=True, exist_ok=True)
        pick = np.random.default_rng([config.seed, 99, list(SPLIT_FOLDERS).index(split)])
        n_bad = max(1, round(config.nonfinite_fraction * n)) if config.nonfinite_fraction > 0 else 0
        with_nonfinite = set(pick.choice(n, size=min(n, n_bad), replace=False).tolist())
        split_offset = 0 if split == "labelled" else 200_000.0
        for i in progress_of(range(n), desc=f"generating {split}", unit="patch", enabled=progress):
            arrays = make_patch(config.seed, split, i, config.size, i in with_nonfinite)
            x0 = 300_000.0 + (i % 50) * config.size * pixel * 1.5
            y0 = 5_500_000.0 - (i // 50) * config.size * pixel * 1.5 - split_offset
            transform = Affine(pixel, 0.0, x0, 0.0, -pixel, y0)
            for mod, data in arrays.items():
                _write(out / ReleasedDFC2020.patch_path(split, mod, i), data, transform)
            counts += np.bincount(arrays["dfc"].ravel(), minlength=11)
        dfc_pixels[split] = {DFC_NAMES[c]: int(counts[c]) for c in DFC_NAMES}
    meta = {
        "generator": "datasets.synthetic",
        "version": GENERATOR_VERSION,
        **asdict(config),
        "dfc_pixels": dfc_pixels,
    }
    (out / MARKER).write_text(json.dumps(meta, indent=1))
    return out
