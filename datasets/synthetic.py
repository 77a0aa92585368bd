"""Synthetic DFC2020-like S1+S2 patches, written as GeoTIFFs in the released DFC2020 layout, with an
unlabelled SEN12MS-like pretraining pool (version 4).

The embedded default of the harness: the reader cannot tell it from the real set (same folders,
bands, dtypes, UTM CRS, 10 m transform), so every code path runs without a download. It models the
ways DFC2020 is hard, from physics and the numbers of research-data.md (never from a method's
score); each effect is a named :class:`SynthConfig` field whose docstring gives the physical
reason. How the defaults were calibrated, with every figure, is in docs/synthetic-calibration.md.

Scene model, per patch:

* **regions**: the labelled pool and the test split are drawn from *disjoint* regions (ROIs); the
  test split spans more of them, and patches are clustered by region (contiguous ids, nearby
  coordinates). A region fixes a season (phenology), soil colour and moisture, vegetation vigour,
  water turbidity, SAR incidence angle and wind, haze and sun elevation, its own class mix and its
  own mix of sub-types per class;
* **labels**: 1-3 dominant classes per patch from argmax'ed power-law Gaussian random fields, crop
  parcels, urban blocks and streets, rivers, roads, then label noise;
* **surfaces**: a linear mixing model. Every pixel is a mixture of endmembers (green leaves,
  needles, dry vegetation, soil, sand, rock, water, roofs, asphalt, snow, and canopy shade) whose
  fractions are drawn around the mean of its class *sub-type*. Sub-types of shrub, grass, crop and
  wetlands share endmembers, so their spectra overlap as on the ground, and a region mixes few of a
  class's sub-types, so the test meets unseen ones;
* **S2 L1C**: endmember spectra (TOA DN), region phenology and soil, scene gain (sun elevation,
  never per class), haze, thin cloud and cloud shadow in a fraction of scenes, a Gaussian sensor
  PSF on every band, the 20 m and 60 m bands at their resolution;
* **S1 GRD**: the fraction-weighted sum of endmember backscatter (incoherent power), sub-type
  structure (double bounce in swamps and cities), soil moisture, incidence, wind on water, bright
  urban point targets, a sub-pixel S1-S2 misregistration, then multiplicative gamma speckle
  (ENL 4.4) correlated over 2 px;
* a few patches get NaN no-data borders or -inf pixels (thermal-noise removal to zero power).

The pool (``sen12ms/``, SEN12MS's layout ``ROIs1868_summer/s1_<scene>/..._p<k>.tif`` with s1, s2
and lc, no fine labels) holds ``n_pretrain`` = 640 patches, 4x the labelled pool, from 32 regions
(8 per season) disjoint from the labelled pool's and the test's and drawn from the same region
model; its ``lc`` is MODIS MCD12Q1-like IGBP at 500 m (:func:`_lc`).

**Reproducible bytes.** Each patch has its own generator seeded by (seed, split, index), and a
region's parameters by (seed, region), so the output is identical for any order or number of
worker processes. Version 4 is also bit-identical on every CPU, BLAS kernel, thread count and SIMD
level: every floating-point step that reaches the written bytes is an elementwise IEEE-754
operation (correctly rounded, so exact whatever the vector width) or a transcendental function of
:mod:`datasets.portable` built from such operations; the two linear mixtures, which version 3
computed with ``np.einsum(..., optimize=True)`` (a BLAS contraction whose summation order follows
the OpenBLAS kernel), are sums over endmembers in index order. Version 4 changes nothing else:
its content differs from version 3's only in the last bits of those floats.
``tests/datasets/test_reproducible.py`` pins the tiny set's content digest under several
``OPENBLAS_CORETYPE`` values, thread counts and with numpy's SIMD dispatch off, and the default's
fingerprint (slow).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine

from bench.core.progress import progress_of
from datasets import portable
from datasets.classes import DFC_NAMES, igbp_to_dfc
from datasets.layouts import SEN12MS, ReleasedDFC2020, SyntheticDFC2020

GENERATOR_VERSION = 4
MARKER = SyntheticDFC2020.marker
CRS_EPSG = 32632
ENL = 4.4

#: Released-layout folders per split: (split folder, modality folder suffix).
SPLIT_FOLDERS: dict[str, tuple[str, str]] = ReleasedDFC2020.split_folders
#: Every generated split, in seed order: ``labelled`` and ``test`` keep version 2's seeds (so their
#: patches are unchanged), ``pretrain`` is version 3's unlabelled pool in the SEN12MS layout.
SPLITS: tuple[str, ...] = ("labelled", "test", "pretrain")
#: SEN12MS's season folder of each generator season (SEN12MS says "fall").
SEN12MS_SEASON_FOLDERS: dict[str, str] = {
    "spring": "ROIs1158_spring",
    "summer": "ROIs1868_summer",
    "autumn": "ROIs1970_fall",
    "winter": "ROIs2017_winter",
}

#: Endmembers of the linear mixing model.
ENDMEMBERS = ("leaf", "needle", "dry", "soil", "sand", "rock", "water", "roof", "asphalt", "snow", "shade")
_E = {name: i for i, name in enumerate(ENDMEMBERS)}

#: S2 L1C DN (TOA reflectance x 10000, clear sky, mid sun) of each pure endmember, B1..B12 with B8A.
#: Path radiance is common to every surface under one atmosphere, so the TOA value of a mixture is
#: the fraction-weighted mix of these rows. Anchored on research-data.md table 5.2: a green crop
#: row for leaves, a darker NIR/SWIR canopy for needles, the bare-field row for soil, the barren
#: row for sand, the water row as is; dry vegetation has the cellulose/lignin SWIR shoulder.
S2_ENDMEMBERS = np.array(
    [
        [1250, 950, 850, 550, 1100, 2800, 3500, 3650, 3800, 1050, 15, 1900, 950],  # leaf
        [1200, 880, 740, 540, 850, 2000, 2450, 2600, 2700, 800, 14, 1100, 540],  # needle
        [1400, 1250, 1300, 1450, 1750, 2050, 2250, 2350, 2500, 800, 15, 3000, 2300],  # dry vegetation
        [1450, 1350, 1450, 1700, 1900, 2050, 2150, 2250, 2400, 780, 16, 2900, 2400],  # soil
        [1700, 1700, 1950, 2500, 2800, 3000, 3150, 3200, 3400, 1100, 20, 4200, 3500],  # sand
        [1500, 1400, 1500, 1650, 1800, 1900, 1950, 2000, 2100, 700, 16, 2500, 2100],  # rock
        [1200, 900, 650, 400, 330, 280, 260, 240, 220, 80, 8, 150, 100],  # water
        [1650, 1550, 1550, 1600, 1700, 1800, 1900, 1950, 2000, 640, 15, 2400, 2200],  # roof
        [1300, 1150, 1100, 1100, 1200, 1300, 1350, 1400, 1450, 450, 12, 1700, 1500],  # asphalt
        [8000, 8200, 8000, 7800, 7600, 7400, 7200, 7000, 6800, 2500, 80, 800, 600],  # snow
        [1150, 850, 600, 350, 290, 250, 235, 220, 200, 70, 8, 130, 90],  # shade: path radiance only
    ],
    dtype=np.float32,
)
#: The atmosphere's share of the clear-sky water row (water itself reflects almost nothing).
PATH_RADIANCE = np.array([1150, 850, 600, 350, 290, 250, 235, 220, 200, 70, 8, 130, 90], np.float32)
#: Extra path radiance of a hazy scene per unit haze, Angstrom-like (~lambda^-1.3); B9/B10 absorb.
HAZE_SPECTRUM = np.array([600, 500, 380, 290, 250, 220, 200, 185, 170, 50, 2, 60, 35], np.float32)
#: Thin cloud (TOA DN at full opacity): flat and bright in VNIR, lower in SWIR, seen by cirrus B10.
CLOUD_SPECTRUM = np.array(
    [5000, 5200, 5000, 5000, 5000, 5000, 4900, 4800, 4800, 1500, 400, 3500, 2500], np.float32
)
#: Suspended sediment: raises green and red of water, barely the NIR.
TURBID_DELTA = np.array([50, 100, 220, 260, 160, 60, 45, 35, 30, 5, 0, 10, 5], np.float32)
_NIR_BANDS = slice(5, 10)  # B6, B7, B8, B8A, B9: the red-edge/NIR plateau of leaves
_BANDS_20M = [4, 5, 6, 8, 11, 12]  # B5 B6 B7 B8A B11 B12
_BANDS_60M = [0, 9, 10]  # B1 B9 B10

#: sigma0 (dB; VV, VH) of each pure endmember at 38 degrees incidence, research-data.md table 5.3:
#: canopies scatter in volume (VV - VH about 6 dB), calm water and smooth sand are specular (below
#: the VH noise floor), building walls and ground form corner reflectors (double bounce).
S1_ENDMEMBERS = np.array(
    [
        [-8.5, -14.5],  # leaf (broadleaf canopy volume)
        [-7.5, -13.0],  # needle
        [-11.0, -18.0],  # dry vegetation
        [-12.0, -20.0],  # soil (moisture moves it, see SynthConfig.soil_moisture_db)
        [-20.0, -27.0],  # sand
        [-9.0, -17.0],  # rock
        [-22.0, -28.0],  # water (wind moves it)
        [3.0, -4.5],  # roof: walls and ground as dihedral corners
        [-16.0, -24.0],  # asphalt
        [-14.0, -22.0],  # snow
        [0.0, 0.0],  # shade: optical only; left out of the SAR mixture
    ],
    dtype=np.float32,
)
S1_NOISE_FLOOR_DB = -28.0
#: Between-patch VV spread (dB, 1 sd) per DFC id (index 0 unused), research-data.md table 5.3.
REGION_SAR_SPREAD_DB = np.array([0, 1.5, 2, 2, 2.5, 3.5, 3, 4, 4, 5, 3], np.float32)


@dataclass(frozen=True)
class SubType:
    """One kind of surface inside a DFC class: mean endmember fractions and SAR structure.

    ``evergreen`` is the share of the leaves that stays in the leaf-off season (the rest turns
    into dry vegetation: litter, branches, senescent grass); ``sar_db`` adds structure the
    mixture cannot show (short vegetation has less volume; flooded stems double-bounce).
    """

    dfc: int
    name: str
    fractions: dict[str, float]
    evergreen: float = 1.0
    sar_db: tuple[float, float] = (0.0, 0.0)


SUBTYPES: tuple[SubType, ...] = (
    SubType(1, "broadleaf", {"leaf": 0.55, "shade": 0.3, "dry": 0.05, "soil": 0.1}, evergreen=0.3),
    SubType(1, "needleleaf", {"needle": 0.6, "shade": 0.3, "dry": 0.05, "soil": 0.05}),
    SubType(1, "mixed forest", {"leaf": 0.3, "needle": 0.3, "shade": 0.3, "dry": 0.05, "soil": 0.05}, 0.6),
    SubType(2, "dense shrub", {"leaf": 0.4, "shade": 0.15, "dry": 0.25, "soil": 0.2}, 0.6, (-1.0, -2.0)),
    SubType(
        2,
        "sparse shrub",
        {"leaf": 0.2, "shade": 0.1, "dry": 0.3, "soil": 0.25, "rock": 0.15},
        0.5,
        (-1.0, -2.0),
    ),
    SubType(3, "savanna", {"leaf": 0.3, "shade": 0.05, "dry": 0.4, "soil": 0.25}, 0.3, (-1.0, -2.0)),
    SubType(4, "green grass", {"leaf": 0.7, "dry": 0.15, "soil": 0.15}, 0.3, (-2.5, -3.0)),
    SubType(4, "dry grass", {"leaf": 0.25, "dry": 0.55, "soil": 0.2}, 0.5, (-2.0, -3.0)),
    SubType(4, "wet meadow", {"leaf": 0.6, "dry": 0.15, "soil": 0.1, "water": 0.15}, 0.3, (-2.0, -3.0)),
    SubType(5, "marsh", {"leaf": 0.5, "dry": 0.2, "water": 0.2, "soil": 0.1}, 0.3, (0.0, -1.0)),
    SubType(
        5, "swamp", {"leaf": 0.4, "needle": 0.05, "shade": 0.1, "water": 0.3, "dry": 0.15}, 0.6, (3.0, 0.0)
    ),
    SubType(
        5, "bog", {"leaf": 0.3, "dry": 0.35, "soil": 0.2, "water": 0.1, "shade": 0.05}, 0.5, (-1.0, -1.0)
    ),
    SubType(6, "green crop", {"leaf": 0.85, "soil": 0.15}, 1.0, (-1.5, -2.0)),
    SubType(6, "bare field", {"soil": 0.85, "dry": 0.15}, 1.0, (1.0, 0.0)),
    SubType(6, "harvested", {"dry": 0.6, "soil": 0.35, "leaf": 0.05}, 1.0, (-0.5, -0.5)),
    SubType(7, "dense urban", {"roof": 0.6, "asphalt": 0.3, "leaf": 0.1}, 0.5),
    SubType(7, "sparse urban", {"roof": 0.3, "leaf": 0.3, "dry": 0.15, "asphalt": 0.15, "soil": 0.1}, 0.5),
    # streets between buildings are rarely dark in SAR: layover and multipath of the walls
    SubType(7, "street", {"asphalt": 0.8, "soil": 0.1, "leaf": 0.1}, 0.5, (10.0, 8.0)),
    SubType(7, "urban green", {"leaf": 0.6, "dry": 0.2, "soil": 0.2}, 0.3, (5.0, 4.0)),
    SubType(8, "snow", {"snow": 0.9, "rock": 0.1}),
    SubType(9, "sand", {"sand": 0.7, "rock": 0.1, "soil": 0.15, "dry": 0.05}),
    SubType(9, "rock", {"rock": 0.6, "soil": 0.25, "dry": 0.1, "sand": 0.05}),
    SubType(9, "gravel plain", {"rock": 0.4, "soil": 0.35, "dry": 0.15, "leaf": 0.1}),
    SubType(10, "clear water", {"water": 1.0}),
    SubType(10, "shallow water", {"water": 0.9, "soil": 0.05, "leaf": 0.05}),
)
_SUB = {s.name: i for i, s in enumerate(SUBTYPES)}
#: Sub-types a region mixes for each DFC class (streets and urban green come from the block layout,
#: crop states from the season).
_NATURAL = {
    c: [i for i, s in enumerate(SUBTYPES) if s.dfc == c and s.name not in ("street", "urban green")]
    for c in DFC_NAMES
}
_CROP_STATES = [_SUB["green crop"], _SUB["bare field"], _SUB["harvested"]]
_SUB_FRACTIONS = np.array([[s.fractions.get(e, 0.0) for e in ENDMEMBERS] for s in SUBTYPES], np.float32)
_SUB_FRACTIONS /= _SUB_FRACTIONS.sum(axis=1, keepdims=True)
_SUB_EVERGREEN = np.array([s.evergreen for s in SUBTYPES], np.float32)
_SUB_SAR = np.array([s.sar_db for s in SUBTYPES], np.float32)

#: Season -> (canopy greenness 0 leaf-off .. 1 leaf-on, crop state probabilities green/bare/harvested,
#: sun elevation factor on the surface signal).
SEASONS: dict[str, tuple[float, tuple[float, float, float], float]] = {
    "winter": (0.1, (0.2, 0.65, 0.15), 0.7),
    "spring": (0.6, (0.45, 0.5, 0.05), 0.92),
    "summer": (1.0, (0.65, 0.1, 0.25), 1.0),
    "autumn": (0.45, (0.15, 0.4, 0.45), 0.85),
}

#: Which class a mislabelled segment is given: the one an annotator confuses it with.
CONFUSED_WITH = {1: 2, 2: 4, 3: 2, 4: 6, 5: 4, 6: 4, 7: 6, 8: 9, 9: 2, 10: 5}


@dataclass(frozen=True)
class SynthConfig:
    """Size, seed and physics of a generated set; written to ``synthetic.json`` beside the data.

    Every effect is a named field. Starting values come from research-data.md and physics; these
    were then set by the calibration with ``bench data difficulty`` (module docstring):
    ``pool_regions``, ``pool_seasons``, ``subtype_concentration``, ``fraction_spread``,
    ``vigour_sd``, ``leaf_pigment_sd``, ``region_sar_scale``, ``haze_mean``.
    """

    n_labelled: int = 160
    n_test: int = 160
    size: int = 64
    seed: int = 0
    nonfinite_fraction: float = 0.08
    #: Patch-level class prior over DFC ids 1..10: frequent forest and cropland, rare wetlands and
    #: barren (DFC2020's test set is dominated by forest, crops and grass), Savanna and Snow/Ice
    #: nearly absent as in the evaluation data.
    class_prior: tuple[float, ...] = (0.22, 0.08, 0.015, 0.15, 0.04, 0.22, 0.09, 0.01, 0.04, 0.12)
    #: Regions (ROIs) of the labelled pool and of the test split, disjoint; the test spans more,
    #: as DFC2020's test scenes come from other ROIs than its validation scenes.
    pool_regions: int = 3
    test_regions: int = 10
    #: Seasons of the pool's and the test's regions (cycled over the regions): the pool sees the
    #: growing season only, the test every season, so leaf-off canopies and bare fields are new.
    pool_seasons: tuple[str, ...] = ("summer",)
    test_seasons: tuple[str, ...] = ("winter", "spring", "summer", "autumn")
    #: How far a region's class mix departs from the global prior (Dirichlet concentration; a
    #: biome: arid regions hold shrub and barren, humid ones forest and wetlands).
    region_prior_concentration: float = 20.0
    #: How unevenly a region mixes the sub-types of a class (Dirichlet concentration; 1 = any mix:
    #: one region's forests are needleleaf, another's broadleaf).
    subtype_concentration: float = 0.2
    #: Region soil: brightness factor range (dark loam .. bright calcareous soils) and redness
    #: (iron oxides raise red and lower blue), and the spread of vegetation vigour (NIR plateau).
    soil_brightness: tuple[float, float] = (0.7, 1.3)
    soil_redness: tuple[float, float] = (-0.1, 0.25)
    vigour_sd: float = 0.15
    #: Canopy spectra differ by region (species, chlorophyll, leaf water content): sd of the
    #: factor on the visible bands (B1-B5) and on SWIR (B11, B12) of leaves and needles; and the
    #: brightness range of dry vegetation (litter, straw) by region.
    leaf_pigment_sd: float = 0.2
    leaf_water_sd: float = 0.12
    litter_brightness: tuple[float, float] = (0.8, 1.2)
    #: Moisture darkens soil (more in SWIR, water absorbs there) and brightens it in SAR (the
    #: dielectric constant rises): dB change of soil backscatter from dry to wet.
    soil_moisture_db: float = 6.0
    #: Incidence angle range of the regions' SAR scenes (IW swath) and the slope of backscatter
    #: with incidence for natural surfaces (about -0.1..-0.2 dB per degree).
    incidence_deg: tuple[float, float] = (30.0, 46.0)
    incidence_slope_db: float = -0.13
    #: Between-region spread of each class's backscatter, as a factor on research table 5.3's
    #: between-patch spreads (REGION_SAR_SPREAD_DB: forest stable, crops, wetlands, barren and
    #: urban variable with roughness, structure and moisture).
    region_sar_scale: float = 1.0
    #: Wind roughens water: dB added to VV at the windiest region (calm water -22 dB, wind -12).
    wind_db: float = 10.0
    #: Endmember fractions vary per pixel around the sub-type mean (sd of the log of each fraction
    #: before renormalising: tree gaps, soil patches), and canopy cover varies smoothly inside a
    #: stand (sd of its log).
    fraction_spread: float = 0.15
    cover_sd: float = 0.25
    #: Patch-level gain (topography, BRDF) on top of the region's sun elevation; never per class.
    gain_sd: float = 0.05
    #: Haze: mean of the region's aerosol level (1 = a hazy day), scaled per patch.
    haze_mean: float = 0.1
    #: Fraction of scenes with thin cloud (and its shadow); largest cloud opacity.
    cloud_fraction: float = 0.1
    cloud_opacity: float = 0.5
    #: Sensor PSF of the 10 m bands (Gaussian sd in px; the 20 m and 60 m bands are also averaged
    #: to their pixel size): mixes the pixels at every boundary.
    psf_sigma_px: float = 0.5
    #: S1-S2 misregistration: the S1 scene is shifted by up to this many px (uniform, per patch).
    s1_shift_px: float = 1.0
    #: Label noise: the label map is displaced by a smooth field of this sd (px), so boundaries
    #: disagree with the image; and this fraction of segments (cells of ``segment_px``) carries
    #: the label of a confusable class (DFC2020's 10 m labels are semi-automatic).
    boundary_shift_px: float = 1.0
    mislabel_rate: float = 0.05
    segment_px: int = 16
    #: SAR point targets in urban blocks: fraction of pixels range and their dB boost range.
    point_target_fraction: tuple[float, float] = (0.01, 0.05)
    point_target_db: tuple[float, float] = (8.0, 18.0)
    #: Order of the generated regions' parameters; not physics: changes the whole set.
    region_seed_offset: int = 0
    #: Version 3, the unlabelled pretraining pool (SEN12MS layout: s1, s2, lc; no fine labels):
    #: patches, regions (disjoint from the labelled pool's and the test's, drawn by the same
    #: region model) and their seasons (cycled over the regions, as SEN12MS's four season folders).
    n_pretrain: int = 640
    pretrain_regions: int = 32
    pretrain_seasons: tuple[str, ...] = ("winter", "spring", "summer", "autumn")
    #: The ``lc`` layer as SEN12MS ships it: MODIS MCD12Q1 IGBP at 500 m (``modis_px`` pixels of
    #: 10 m, on a map-aligned grid, so blocks straddle patches), each block one IGBP class decided
    #: from its true cover fractions by IGBP's own rules (forest above 60% tree cover, woody
    #: savanna 30-60%, cropland/natural mosaic), then wrong in ``modis_error_rate`` of the blocks
    #: (a confusable class; MCD12Q1's overall accuracy is about 75%), and in a region with
    #: probability ``modis_region_bias`` one class is systematically given its confusable class
    #: (MODIS errors cluster by biome, they are not independent per block).
    modis_px: int = 50
    modis_error_rate: float = 0.2
    modis_region_bias: float = 0.3


#: The real DFC2020 proportions (``--full-size``), with a pool of 4x the labelled pool (the default's
#: ratio) from 128 regions, 32 per season.
FULL_SIZE = SynthConfig(n_labelled=986, n_test=5128, size=256, n_pretrain=3944, pretrain_regions=128)


# ---------------------------------------------------------------------------------------------
# small numeric helpers


def _box(a: np.ndarray, k: int) -> np.ndarray:
    """k x k moving average over the last two axes (edge-padded, same shape): a sensor footprint."""
    if k <= 1:
        return a
    lo, hi = (k - 1) // 2, k // 2
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(lo + 1, hi), (lo + 1, hi)], mode="edge")
    c = p.cumsum(-1).cumsum(-2)
    s = c[..., k:, k:] - c[..., :-k, k:] - c[..., k:, :-k] + c[..., :-k, :-k]
    return s / (k * k)


def _gauss(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the last two axes (edge-padded), radius 2 sigma, at least 1 px."""
    if sigma <= 0:
        return a
    r = max(1, math.ceil(2 * sigma))
    taps = portable.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    taps /= taps.sum()
    pad = [(0, 0)] * (a.ndim - 2)
    p = np.pad(a, [*pad, (r, r), (0, 0)], mode="edge")
    a = sum(t * p[..., i : i + a.shape[-2], :] for i, t in enumerate(taps))
    p = np.pad(a, [*pad, (0, 0), (r, r)], mode="edge")
    return sum(t * p[..., i : i + a.shape[-1]] for i, t in enumerate(taps))


def _shift(a: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``a`` resampled at (y + dy, x + dx) over the last two axes, bilinear, edge-clamped."""
    h, w = a.shape[-2:]
    y = np.clip(np.arange(h, dtype=np.float32) + dy, 0, h - 1)
    x = np.clip(np.arange(w, dtype=np.float32) + dx, 0, w - 1)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    top = a[..., y0, :][..., x0] * (1 - fx) + a[..., y0, :][..., x1] * fx
    bottom = a[..., y1, :][..., x0] * (1 - fx) + a[..., y1, :][..., x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(a.dtype)


@functools.lru_cache(maxsize=16)
def _spectrum(size: int, beta: float) -> np.ndarray:
    """Amplitude ~ |f|^(-beta/2) on the rfft grid (no mean term)."""
    f = portable.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.rfftfreq(size), indexing="ij"))
    amp = portable.power(np.maximum(f, 1.0 / size), -beta / 2)
    amp[0, 0] = 0.0
    return amp


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates of a patch (float32; shared, never written to)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def _grf(rng: np.random.Generator, n: int, size: int, beta: float) -> np.ndarray:
    """``n`` standardised Gaussian random fields with power spectrum ~ |f|^-beta (smooth blobs)."""
    amp = _spectrum(size, beta)
    noise = rng.standard_normal((n, size, size // 2 + 1)) + 1j * rng.standard_normal((n, size, size // 2 + 1))
    out = np.fft.irfft2(noise * amp, s=(size, size))
    out -= out.mean(axis=(-2, -1), keepdims=True)
    return (out / out.std(axis=(-2, -1), keepdims=True)).astype(np.float32)


def _rotated(size: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    y, x = _grid(size)
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


# ---------------------------------------------------------------------------------------------
# regions


@dataclass(frozen=True, eq=False)
class Region:
    """What a region (ROI and acquisition date) fixes for all of its patches."""

    index: int
    season: str
    greenness: float
    crop_states: tuple[float, float, float]
    class_prior: np.ndarray  # over DFC ids 1..10
    subtype_weights: np.ndarray  # (len(SUBTYPES),): mix of sub-types within each class
    s2_endmembers: np.ndarray  # (E, 13) after soil, vigour and turbidity
    s1_endmembers: np.ndarray  # (E, 2) dB after moisture and wind
    class_db: np.ndarray  # (11, 2) region-level dB offset per class (between-region spread)
    incidence_db: float
    sun: float
    haze: float


def split_size(config: SynthConfig, split: str) -> tuple[int, int, tuple[str, ...]]:
    """(patches, regions, seasons) of ``split``."""
    return {
        "labelled": (config.n_labelled, config.pool_regions, config.pool_seasons),
        "test": (config.n_test, config.test_regions, config.test_seasons),
        "pretrain": (config.n_pretrain, config.pretrain_regions, config.pretrain_seasons),
    }[split]


def region_index(config: SynthConfig, split: str, r: int) -> int:
    """The set-wide index of region ``r`` of ``split``: the labelled pool's regions first, then the
    test's, then the pretraining pool's, so no region (ROI) belongs to two splits."""
    before = {"labelled": 0, "test": config.pool_regions}
    return before.get(split, config.pool_regions + config.test_regions) + r


@functools.lru_cache(maxsize=256)
def _region(config: SynthConfig, split: str, r: int) -> Region:
    """Region ``r`` of ``split``; every split's regions are different regions of one region model."""
    index = region_index(config, split, r)
    rng = np.random.default_rng([config.seed, 5, index + config.region_seed_offset])
    seasons = split_size(config, split)[2]
    season = seasons[r % len(seasons)]
    base_green, states, sun = SEASONS[season]
    greenness = float(np.clip(base_green + rng.normal(0, 0.08), 0, 1))
    prior = np.asarray(config.class_prior, np.float64)
    prior = prior / prior.sum()
    biome = rng.dirichlet(config.region_prior_concentration * prior)
    class_prior = 0.3 * prior + 0.7 * biome
    weights = np.zeros(len(SUBTYPES))
    for subs in _NATURAL.values():
        weights[subs] = rng.dirichlet(np.full(len(subs), config.subtype_concentration))

    s2 = S2_ENDMEMBERS.copy()
    surface = s2 - PATH_RADIANCE
    brightness = rng.uniform(*config.soil_brightness)
    redness = rng.uniform(*config.soil_redness)
    moisture = rng.uniform(0, 1)
    soil = surface[_E["soil"]] * brightness
    soil[[3, 4]] *= 1 + redness  # B4, B5
    soil[[1]] *= 1 - 0.5 * redness  # B2
    soil *= 1 - 0.3 * moisture
    soil[[11, 12]] *= 1 - 0.25 * moisture  # SWIR: water absorption
    surface[_E["soil"]] = soil
    for canopy in (_E["leaf"], _E["needle"]):  # species, chlorophyll, leaf water: per region
        surface[canopy, :5] *= rng.normal(1, config.leaf_pigment_sd)
        surface[canopy, _NIR_BANDS] *= rng.normal(1, config.vigour_sd)
        surface[canopy, 11:] *= rng.normal(1, config.leaf_water_sd)
    surface[_E["dry"]] *= rng.uniform(*config.litter_brightness)
    turbidity = rng.beta(1.2, 2.5)
    surface[_E["water"]] += turbidity * TURBID_DELTA
    s2 = surface + PATH_RADIANCE

    s1 = S1_ENDMEMBERS.copy()
    s1[_E["soil"]] += config.soil_moisture_db * (moisture - 0.5)
    s1[_E["dry"]] += 0.5 * config.soil_moisture_db * (moisture - 0.5)
    wind = rng.beta(1.5, 4.0)
    s1[_E["water"]] += np.array([1.0, 0.4]) * config.wind_db * wind**2
    incidence = rng.uniform(*config.incidence_deg)
    class_db = rng.normal(0, 1, size=(11, 2)).astype(np.float32) * config.region_sar_scale
    class_db *= REGION_SAR_SPREAD_DB[:, None]
    class_db[:, 1] = 0.8 * class_db[:, 0] + 0.6 * class_db[:, 1]
    return Region(
        index=index,
        season=season,
        greenness=greenness,
        crop_states=states,
        class_prior=class_prior,
        subtype_weights=weights,
        s2_endmembers=s2.astype(np.float32),
        s1_endmembers=s1,
        class_db=class_db,
        incidence_db=config.incidence_slope_db * (incidence - 38.0),
        sun=sun * float(rng.normal(1, 0.03)),
        haze=float(rng.gamma(2.0, config.haze_mean / 2)),
    )


@functools.lru_cache(maxsize=8)
def regions_of(config: SynthConfig, split: str) -> np.ndarray:
    """Region of every patch of ``split`` (contiguous runs: patches are clustered by region)."""
    n, k, _ = split_size(config, split)
    rng = np.random.default_rng([config.seed, 7, SPLITS.index(split)])
    share = rng.dirichlet(np.full(k, 4.0))
    bounds = np.round(np.cumsum(share) * n).astype(int)
    return np.searchsorted(bounds, np.arange(n), side="right").clip(0, k - 1)


def first_of_region(config: SynthConfig, split: str, region: int) -> int:
    """Index of the first patch of ``region`` in ``split`` (its patches are contiguous)."""
    return int(np.searchsorted(regions_of(config, split), region))


# ---------------------------------------------------------------------------------------------
# one patch


@dataclass
class _Patch:
    truth: np.ndarray  # (H, W) DFC ids that the image shows
    labels: np.ndarray  # (H, W) DFC ids written to the dfc file (label noise applied)
    subtype: np.ndarray  # (H, W) index into SUBTYPES
    cover: np.ndarray  # (H, W) multiplicative canopy-cover field
    road: np.ndarray  # (H, W) bool
    building: np.ndarray  # (H, W) bool, urban blocks (point targets)


def _layout(rng: np.random.Generator, size: int, region: Region, config: SynthConfig) -> _Patch:
    """Class and sub-type layout of one patch: dominant classes, parcels, urban blocks, rivers, roads."""
    k = rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25])
    classes = rng.choice(np.arange(1, 11), size=k, replace=False, p=region.class_prior)
    weights = rng.dirichlet(np.full(k, 1.5))
    smooth = _grf(rng, k, size, 3.5)
    rough = _grf(rng, k, size, 2.5)
    blobby = np.isin(classes, (1, 10))[:, None, None]
    fields = np.where(blobby, smooth, rough) + 1.5 * portable.log(weights)[:, None, None]
    truth = classes[np.argmax(fields, axis=0)].astype(np.uint8)

    # segments: a warped grid of cells (stands, patches of one sub-type, annotation polygons)
    warp = _grf(rng, 2, size, 3.0) * (config.segment_px / 3)
    yy, xx = _grid(size)
    cells = max(1, math.ceil(size / config.segment_px) + 2)
    segment = (np.floor((yy + warp[0]) / config.segment_px).astype(np.int64) + 1).clip(
        0, cells - 1
    ) * cells + (np.floor((xx + warp[1]) / config.segment_px).astype(np.int64) + 1).clip(0, cells - 1)
    n_seg = cells * cells
    sub_of = np.zeros((n_seg, 11), dtype=np.int64)
    for c, subs in _NATURAL.items():
        p = region.subtype_weights[subs]
        sub_of[:, c] = np.asarray(subs)[rng.choice(len(subs), size=n_seg, p=p / p.sum())]
    subtype = sub_of[segment, truth]

    # cropland parcels on a rotated, row-shifted grid; sizes from smallholder to industrial fields
    lo, hi = [(8, 16), (10, 45), (40, 80)][rng.choice(3, p=[0.3, 0.5, 0.2])]
    sx, sy = rng.uniform(lo, hi, size=2)
    u, v = _rotated(size, rng.uniform(0, np.pi))
    row = np.floor(v / sy).astype(np.int64)
    u = u + rng.uniform(0, sx, size=row.max() - row.min() + 1)[row - row.min()]
    col = np.floor(u / sx).astype(np.int64)
    parcel = (row - row.min()) * (col.max() - col.min() + 1) + (col - col.min())
    states = np.asarray(_CROP_STATES)[rng.choice(3, size=parcel.max() + 1, p=region.crop_states)]
    crop_sub = states[parcel]
    hedge = (np.mod(u, sx) < 1.0) | (np.mod(v, sy) < 1.0)
    crop_sub = np.where(hedge, _SUB["dense shrub"], crop_sub)
    subtype = np.where(truth == 6, crop_sub, subtype)
    cover = portable.exp(config.cover_sd * _grf(rng, 1, size, 3.0)[0]).astype(np.float32)
    parcel_vigour = rng.uniform(0.6, 1.2, size=parcel.max() + 1).astype(np.float32)[parcel]
    cover = np.where(truth == 6, parcel_vigour, cover)

    # urban blocks with streets; green blocks are commoner in sparse (suburban) areas
    period = rng.uniform(5, 20)
    street = rng.uniform(1, 3)
    bu, bv = _rotated(size, rng.uniform(0, np.pi / 2))
    block = np.floor(bu / period).astype(np.int64) * 7919 + np.floor(bv / period).astype(np.int64)
    is_street = (np.mod(bu, period) < street) | (np.mod(bv, period) < street)
    sparse = subtype == _SUB["sparse urban"]
    green = (np.mod(block * 2654435761, 1000) < np.where(sparse, 350, 120)) & ~is_street
    urban = truth == 7
    subtype = np.where(urban & is_street, _SUB["street"], subtype)
    subtype = np.where(urban & green, _SUB["urban green"], subtype)
    building = urban & ~is_street & ~green

    if rng.random() < (0.5 if 10 in classes else 0.1):  # meandering river, 2-8 px wide
        ru, rv = _rotated(size, rng.uniform(0, np.pi))
        walk = np.cumsum(rng.normal(0, 0.15, size=4 * size)).astype(np.float32)
        t = np.clip((rv + 2 * size).astype(np.int64), 0, 4 * size - 1)
        centre = (
            rng.uniform(0.2, 0.8) * size + rng.uniform(2, 8) * portable.sin(rv / rng.uniform(8, 30)) + walk[t]
        )
        river = np.abs(ru - centre) < rng.uniform(1.0, 4.0)
        truth[river] = 10
        subtype[river] = sub_of[0, 10]
        building &= ~river
    road = np.zeros((size, size), dtype=bool)
    if rng.random() < 0.25:  # a straight road, 1-2 px
        ru, _ = _rotated(size, rng.uniform(0, np.pi))
        road = np.abs(ru - rng.uniform(0.1, 0.9) * size) < rng.uniform(0.5, 1.0)
        truth[road] = 7
        subtype[road] = _SUB["street"]
        building &= ~road

    labels = _label_noise(rng, truth, segment, config)
    return _Patch(truth, labels, subtype.astype(np.int64), cover.astype(np.float32), road, building)


def _label_noise(
    rng: np.random.Generator, truth: np.ndarray, segment: np.ndarray, config: SynthConfig
) -> np.ndarray:
    """Labels as an annotator draws them: displaced boundaries and some segments of a confusable class."""
    size = truth.shape[0]
    labels = truth
    if config.boundary_shift_px > 0:
        d = _grf(rng, 2, size, 3.0) * config.boundary_shift_px
        yy, xx = _grid(size)
        y = np.clip(np.rint(yy + d[0]), 0, size - 1).astype(np.int64)
        x = np.clip(np.rint(xx + d[1]), 0, size - 1).astype(np.int64)
        labels = truth[y, x]
    wrong = rng.random(segment.max() + 1) < config.mislabel_rate
    confused = np.array([0, *[CONFUSED_WITH[c] for c in range(1, 11)]], dtype=np.uint8)
    return np.where(wrong[segment], confused[labels], labels).astype(np.uint8)


def _fractions(rng: np.random.Generator, p: _Patch, region: Region, config: SynthConfig) -> np.ndarray:
    """(E, H, W) endmember fractions: the sub-type's mean after phenology, canopy cover, pixel spread."""
    leaf_kept = _SUB_EVERGREEN + (1 - _SUB_EVERGREEN) * region.greenness  # per sub-type
    table = _SUB_FRACTIONS.copy()
    lost = table[:, _E["leaf"]] * (1 - leaf_kept)
    table[:, _E["leaf"]] -= lost
    table[:, _E["dry"]] += 0.6 * lost
    table[:, _E["soil"]] += 0.4 * lost
    mean = table[p.subtype]  # (H, W, E)
    veg = [_E["leaf"], _E["needle"]]
    mean[..., veg] *= p.cover[..., None]
    mean /= mean.sum(axis=-1, keepdims=True)
    spread = portable.exp(config.fraction_spread * rng.standard_normal(mean.shape, dtype=np.float32))
    mean *= spread.astype(np.float32)
    mean /= mean.sum(axis=-1, keepdims=True)
    return np.moveaxis(mean, -1, 0)


def _render_s2(rng: np.random.Generator, f: np.ndarray, region: Region, config: SynthConfig) -> np.ndarray:
    """(13, H, W) uint16 L1C DN of the fractions ``f`` under the region's light and this scene's sky."""
    size = f.shape[-1]
    toa = portable.mix(f, region.s2_endmembers)
    path = PATH_RADIANCE[:, None, None]
    gain = region.sun * rng.normal(1, config.gain_sd)
    texture = 1 + 0.05 * _grf(rng, 1, size, 3.0)  # topography and illumination
    haze = region.haze * rng.uniform(0.5, 1.5)
    surface = (toa - path) * gain * texture * (1 - 0.25 * min(haze, 2.0))
    surface *= 1 + 0.02 * rng.standard_normal((13, size, size), dtype=np.float32)
    if rng.random() < config.cloud_fraction:
        cover = rng.uniform(0.3, 0.8)
        opacity = config.cloud_opacity * np.clip(_grf(rng, 1, size, 3.0)[0] - (1 - 2 * cover), 0, 1)
        dy, dx = rng.uniform(-0.3, 0.3, size=2) * size
        shadow = _shift(opacity, dy, dx)
        surface *= 1 - 1.2 * shadow[None]  # direct sun blocked, diffuse light remains
        toa = path + haze * HAZE_SPECTRUM[:, None, None] + surface
        toa = (1 - opacity[None]) * toa + opacity[None] * CLOUD_SPECTRUM[:, None, None]
    else:
        toa = path + haze * HAZE_SPECTRUM[:, None, None] + surface
    toa = _gauss(toa, config.psf_sigma_px)
    toa[_BANDS_20M] = _box(toa[_BANDS_20M], 2)
    toa[_BANDS_60M] = _box(toa[_BANDS_60M], 6)
    return np.clip(np.rint(toa), 0, 65535).astype(np.uint16)


def _render_s1(
    rng: np.random.Generator, f: np.ndarray, p: _Patch, region: Region, config: SynthConfig
) -> np.ndarray:
    """(2, H, W) float32 sigma0 in dB (VV, VH) of the fractions ``f``, misregistered and speckled."""
    size = f.shape[-1]
    power_e = portable.pow10(region.s1_endmembers / 10)  # (E, 2)
    power_e[_E["shade"]] = 0.0
    power = portable.mix(f, power_e) / (1 - f[_E["shade"]])[None]
    structure = _SUB_SAR[p.subtype] + region.class_db[p.truth]  # (H, W, 2)
    natural = ~(p.building | p.road)
    structure += np.where(natural, region.incidence_db, 0.0)[..., None]
    db = 10 * portable.log10(power) + np.moveaxis(structure, -1, 0)
    db += (1.5 * _grf(rng, 1, size, 3.0)[0])[None]  # moisture and topography within the patch
    targets = p.building & (rng.random((size, size)) < rng.uniform(*config.point_target_fraction))
    db = np.where(targets[None], db + rng.uniform(*config.point_target_db, size=(size, size))[None], db)
    power = _box(portable.pow10(db / 10), 2)  # 20 m resolution
    dy, dx = rng.uniform(-config.s1_shift_px, config.s1_shift_px, size=2)
    power = _shift(power, dy, dx)
    power = power * portable.pow10(_speckle_db_bias(ENL) / 10) * speckle(rng, (2, size, size))
    floor = portable.pow10(S1_NOISE_FLOOR_DB / 10) * rng.gamma(ENL, 1 / ENL, size=power.shape)
    power = np.maximum(power, floor)
    return (10 * portable.log10(power)).astype(np.float32)


def _add_nonfinite(rng: np.random.Generator, s1: np.ndarray) -> None:
    """Real S1 patches carry NaN no-data borders and -inf where noise removal left zero power."""
    size = s1.shape[-1]
    if rng.random() < 0.5:
        width, start = rng.integers(1, 4), rng.integers(0, size // 2)
        s1[:, start:, :width] = np.nan
    else:
        darkest = np.argsort(s1[1].ravel())[: max(1, size * size // 500)]
        s1[1].ravel()[darkest] = -np.inf


#: IGBP code (MODIS MCD12Q1 band 1) of each DFC class as IGBP's rules see a homogeneous block;
#: Forest and Shrubland take their sub-type's code (:data:`_IGBP_OF_SUBTYPE`).
_IGBP_OF_DFC = np.array([0, 5, 7, 9, 10, 11, 12, 13, 15, 16, 17], dtype=np.int64)
_IGBP_OF_SUBTYPE = {"broadleaf": 4, "needleleaf": 1, "mixed forest": 5, "dense shrub": 6, "sparse shrub": 7}
#: What MODIS confuses each IGBP class with (Friedl et al. 2010's confusions, roughly): forest
#: with woody savanna, shrub with grass, grass with crops and savanna, wetlands with grass, urban
#: with the mosaic class. Several keep the DFC class (4 -> 5 are both Forest), as on the ground.
MODIS_CONFUSED: dict[int, tuple[int, ...]] = {
    1: (5, 8), 2: (8, 5), 3: (1, 8), 4: (5, 8), 5: (4, 8), 6: (7, 10), 7: (6, 10, 16), 8: (5, 9),
    9: (10, 8), 10: (12, 9, 7), 11: (10, 5, 17), 12: (14, 10), 13: (14, 12), 14: (12, 10),
    15: (16,), 16: (7, 10), 17: (11,),
}  # fmt: skip


def _modis_bias(config: SynthConfig, region: Region) -> tuple[int, int] | None:
    """(IGBP class, the class MODIS gives it instead) in every block of the region, or None.

    Drawn from the region's own generator (not the patch's, not the region model's), so the
    systematic error is one per region and version 2's regions are unchanged."""
    rng = np.random.default_rng([config.seed, 11, region.index + config.region_seed_offset])
    if rng.random() >= config.modis_region_bias:
        return None
    wrong = int(rng.choice([4, 6, 7, 10, 11, 12, 14]))
    return wrong, MODIS_CONFUSED[wrong][0]


def _lc(
    rng: np.random.Generator, p: _Patch, region: Region, origin: tuple[float, float], config: SynthConfig
) -> np.ndarray:
    """(4, H, W) uint16 MODIS-like layers: IGBP at 500 m from the true cover, LCCS layers at fill 255.

    Blocks are ``modis_px`` pixels on the map grid (``origin``: the patch's upper-left x, y in
    metres), so a patch sees parts of blocks as SEN12MS's upsampled MCD12Q1 does. A block's class
    follows IGBP's rules on its true class fractions: tree cover >= 60% is forest (the code of
    its commonest forest sub-type), 30-60% woody savanna, a crop-dominated block with >= 25%
    natural vegetation is the cropland/natural mosaic, grass or shrub with 10-30% trees savanna
    (Savanna maps to DFC 3, ignored by the default classes, as in SEN12MS); then the region's
    systematic error (:func:`_modis_bias`) and a confusable class in ``modis_error_rate`` of the blocks.
    """
    size, px = p.truth.shape[0], config.modis_px
    bx = (round(origin[0] / 10) + np.arange(size)) // px
    by = (round(-origin[1] / 10) + np.arange(size)) // px
    bx, by = bx - bx[0], by - by[0]
    block = by[:, None] * (bx[-1] + 1) + bx[None, :]
    n_blocks = int(block.max()) + 1
    frac = np.zeros((n_blocks, 11))
    np.add.at(frac, (block.ravel(), p.truth.ravel().astype(np.int64)), 1.0)
    frac /= frac.sum(axis=1, keepdims=True)
    sub_names = [s.name for s in SUBTYPES]
    bias = _modis_bias(config, region)
    igbp = np.zeros(n_blocks, dtype=np.int64)
    for b in range(n_blocks):
        f = frac[b]
        tree, dom = f[1], int(np.argmax(f[1:]) + 1)
        if tree >= 0.6 or dom == 1:
            code = 8  # woody savanna
            if tree >= 0.6:
                subs = p.subtype[(block == b) & (p.truth == 1)]
                code = _IGBP_OF_SUBTYPE.get(sub_names[int(np.bincount(subs).argmax())], 5)
        elif dom == 6 and f[6] < 0.6 and f[1] + f[2] + f[4] >= 0.25:
            code = 14  # cropland / natural vegetation mosaic
        elif dom in (2, 4) and 0.1 <= tree < 0.3:
            code = 9  # savanna
        elif dom == 2:
            subs = p.subtype[(block == b) & (p.truth == 2)]
            code = _IGBP_OF_SUBTYPE.get(sub_names[int(np.bincount(subs).argmax())], 7)
        else:
            code = int(_IGBP_OF_DFC[dom])
        if bias is not None and code == bias[0]:
            code = bias[1]
        if rng.random() < config.modis_error_rate:
            code = int(rng.choice(MODIS_CONFUSED[code]))
        igbp[b] = code
    layer = igbp[block].astype(np.uint16)
    return np.stack([layer] + [np.full_like(layer, 255)] * 3)


def patch_scene(config: SynthConfig, split: str, index: int) -> tuple[np.random.Generator, Region, _Patch]:
    """The region and layout (true and written labels) of one patch, and its generator to go on with."""
    rng = np.random.default_rng([config.seed, SPLITS.index(split), index])
    region = _region(config, split, int(regions_of(config, split)[index]))
    return rng, region, _layout(rng, config.size, region, config)


def make_patch(config: SynthConfig, split: str, index: int, nonfinite: bool = False) -> dict[str, np.ndarray]:
    """Arrays of one patch (s1, s2, dfc, lc), determined by (config, split, index).

    ``dfc`` (the fine labels) is returned for every split; the pretraining pool never writes it.
    """
    rng, region, p = patch_scene(config, split, index)
    f = _fractions(rng, p, region, config)
    s1 = _render_s1(rng, f, p, region, config)
    if nonfinite:
        _add_nonfinite(rng, s1)
    s2 = _render_s2(rng, f, region, config)
    t = patch_transform(config, split, index)
    return {"s1": s1, "s2": s2, "dfc": p.labels[None], "lc": _lc(rng, p, region, (t.c, t.f), config)}


def content_digest(config: SynthConfig) -> str:
    """SHA-256 of every patch's arrays (split by split, patch by patch, modality by name, with the
    non-finite pixels ``generate`` adds), without writing a file: the generated content as bytes,
    which must be the same on every machine (DESIGN 13; tests pin it)."""
    digest = hashlib.sha256()
    for split in SPLITS:
        n = split_size(config, split)[0]
        with_nonfinite = _nonfinite_patches(config, split, n)
        for i in range(n):
            for name, array in sorted(make_patch(config, split, i, i in with_nonfinite).items()):
                digest.update(f"{split}/{i}/{name}/{array.dtype.str}/{array.shape}".encode())
                digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _nonfinite_patches(config: SynthConfig, split: str, n: int) -> set[int]:
    """The patches of ``split`` that get NaN / -inf pixels (``nonfinite_fraction`` of them, at least one)."""
    pick = np.random.default_rng([config.seed, 99, SPLITS.index(split)])
    n_bad = max(1, round(config.nonfinite_fraction * n)) if config.nonfinite_fraction > 0 else 0
    return set(pick.choice(n, size=min(n, n_bad), replace=False).tolist()) if n else set()


# ---------------------------------------------------------------------------------------------
# writing


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


def patch_transform(config: SynthConfig, split: str, index: int) -> Affine:
    """Patches of a region lie together (a 10-column grid), regions 60 km apart: clustered ROIs."""
    region = int(regions_of(config, split)[index])
    k = index - first_of_region(config, split, region)
    r = region_index(config, split, region)
    pixel, step = 10.0, config.size * 10.0 * 1.2
    x0 = 300_000.0 + (r % 8) * 60_000.0 + (k % 10) * step
    y0 = 5_500_000.0 - (r // 8) * 60_000.0 - (k // 10) * step
    return Affine(pixel, 0.0, x0, 0.0, -pixel, y0)


def pool_patch_path(config: SynthConfig, index: int, mod: str) -> Path:
    """Where pool patch ``index`` keeps ``mod``, relative to the set's root, as SEN12MS names it:
    ``sen12ms/ROIs1868_summer/s1_<scene>/ROIs1868_summer_s1_<scene>_p<k>.tif``; a scene is one of
    the pool's regions (set-wide region index), ``k`` the patch's number within it."""
    r = int(regions_of(config, "pretrain")[index])
    season = SEN12MS_SEASON_FOLDERS[_region(config, "pretrain", r).season]
    k = index - first_of_region(config, "pretrain", r)
    scene = region_index(config, "pretrain", r)
    return Path(SyntheticDFC2020.pool_folder) / SEN12MS.patch_path(season, scene, mod, k)


def _write_patch(job: tuple[Path, SynthConfig, str, int, bool]) -> np.ndarray:
    """Generate and write one patch (a worker's unit of work).

    Returns the DFC pixel counts of its fine labels (11) and, for the pretraining pool, those of its
    ``lc`` through the IGBP lookup (11) and the pixels where the two agree (1).
    """
    out, config, split, index, nonfinite = job
    arrays = make_patch(config, split, index, nonfinite)
    transform = patch_transform(config, split, index)
    dfc = arrays["dfc"].ravel()
    if split == "pretrain":  # SEN12MS: s1, s2 and lc only; the fine labels stay unwritten
        for mod in ("s1", "s2", "lc"):
            _write(out / pool_patch_path(config, index, mod), arrays[mod], transform)
        lc = igbp_to_dfc(arrays["lc"][0]).ravel()
        agree = np.array([np.count_nonzero(lc == dfc)])
        return np.concatenate([np.bincount(dfc, minlength=11), np.bincount(lc, minlength=11), agree])
    for mod, data in arrays.items():
        _write(out / ReleasedDFC2020.patch_path(split, mod, index), data, transform)
    return np.bincount(dfc, minlength=11)


def generate(
    out: Path, config: SynthConfig = SynthConfig(), progress: bool = False, workers: int = 1
) -> Path:
    """Write a synthetic set under ``out``: the labelled pool and the test split in the released
    DFC2020 layout, the pretraining pool (``n_pretrain`` patches) in the SEN12MS layout under
    ``sen12ms/``; returns ``out``.

    ``workers`` > 1 generates patches in that many processes; every patch is seeded on its own,
    so the files are byte-identical for any worker count. The workers are started from a fresh
    interpreter (``python -m datasets._generate``, :func:`_generate_in_subprocess`), never from the caller: a
    ``spawn`` pool re-imports the caller's main module in every worker, which runs a script
    without a main guard again and fails outright for a script read from standard input.
    """
    out = Path(out)
    if workers > 1 and not _IN_WORKER_PARENT:
        return _generate_in_subprocess(out, config, progress, workers)
    dfc_pixels: dict[str, dict[str, int]] = {}
    pool: dict[str, object] = {}
    executor = None
    if workers > 1:
        executor = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    try:
        for split in SPLITS:
            n = split_size(config, split)[0]
            if n == 0 and split == "pretrain":
                continue
            if split == "pretrain":
                for i in range(n):
                    for mod in ("s1", "s2", "lc"):
                        (out / pool_patch_path(config, i, mod)).parent.mkdir(parents=True, exist_ok=True)
            else:
                for mod in ("s1", "s2", "dfc", "lc"):
                    folder = (out / ReleasedDFC2020.patch_path(split, mod, 0)).parent
                    folder.mkdir(parents=True, exist_ok=True)
            with_nonfinite = _nonfinite_patches(config, split, n)
            jobs = [(out, config, split, i, i in with_nonfinite) for i in range(n)]
            results = executor.map(_write_patch, jobs, chunksize=4) if executor else map(_write_patch, jobs)
            counts = np.zeros(23 if split == "pretrain" else 11, dtype=np.int64)
            for c in progress_of(
                results, total=n, desc=f"generating {split}", unit="patch", enabled=progress
            ):
                counts += c
            if split == "pretrain":
                pool = _pool_summary(config, counts)
            else:
                dfc_pixels[split] = {DFC_NAMES[c]: int(counts[c]) for c in DFC_NAMES}
    finally:
        if executor is not None:
            executor.shutdown()
    meta = {
        "generator": "datasets.synthetic",
        "version": GENERATOR_VERSION,
        **asdict(config),
        "dfc_pixels": dfc_pixels,
        "pretrain_pool": pool,
    }
    (out / MARKER).write_text(json.dumps(meta, indent=1))
    return out


#: True in the interpreter :func:`_generate_in_subprocess` starts (``python -m datasets._generate``),
#: whose main module only imports this one: its spawn workers re-import nothing of the caller's.
_IN_WORKER_PARENT = False


def _generate_in_subprocess(out: Path, config: SynthConfig, progress: bool, workers: int) -> Path:
    """:func:`generate` with ``workers`` processes, run by ``python -m datasets._generate``."""
    import subprocess
    import sys

    from bench.core.errors import BenchError

    package_root = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    argv = [sys.executable, "-m", "datasets._generate", str(out), json.dumps(asdict(config)), str(workers)]
    done = subprocess.run([*argv, "progress" if progress else "quiet"], env=env)
    if done.returncode != 0:
        raise BenchError(
            f"generating the synthetic set in {out} failed in its worker processes (exit {done.returncode}); "
            "the lines above say why (free disk space or memory, or use workers=1)"
        )
    return out


def _config_from_json(text: str) -> SynthConfig:
    """A :class:`SynthConfig` from ``json.dumps(asdict(config))`` (JSON lists back to tuples)."""
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(text).items()}
    return SynthConfig(**fields)


def _pool_summary(config: SynthConfig, counts: np.ndarray) -> dict[str, object]:
    """What ``synthetic.json`` says about the pool: where, its regions by season, its lc's classes
    and how often the lc (through the IGBP lookup) agrees with the fine labels nobody sees."""
    seasons: dict[str, int] = {}
    for r in range(config.pretrain_regions):
        folder = SEN12MS_SEASON_FOLDERS[_region(config, "pretrain", r).season]
        seasons[folder] = seasons.get(folder, 0) + 1
    return {
        "folder": SyntheticDFC2020.pool_folder,
        "patches": config.n_pretrain,
        "regions_per_season": seasons,
        "fine_pixels": {DFC_NAMES[c]: int(counts[c]) for c in DFC_NAMES},
        "lc_pixels": {DFC_NAMES[c]: int(counts[11 + c]) for c in DFC_NAMES},
        "lc_agreement": float(counts[22] / max(1, counts[:11].sum())),
    }


def default_workers() -> int:
    """Worker processes for a big set: every core the process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
