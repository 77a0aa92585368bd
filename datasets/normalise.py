"""Band layout and normalisation of S1 (dB) and S2 (L1C DN) into the network's input range.

Default (DESIGN 2.3, as the DFC2020 baseline and the SEN12MS toolbox do it): S1 non-finite ->
``s1_fill_db``, clip to [-25, 0] dB, /25 + 1 -> [0, 1]; S2 clip to [0, 10000], /10000 -> [0, 1].

The fill value is -25 dB, the bottom of the clip range: NaN and -inf in S1 come from no-data
borders and from thermal-noise removal driving the power to zero, i.e. "no measurable return",
which the clip would map to -25 dB anyway. The replaced pixels are counted per file.

``mode="zscore"`` standardises each band after the same fill and clipping with fixed DFC2020
statistics (GFM-Bench means/stds, see research-data.md 1.4); fixed rather than estimated so that
the cached values do not depend on which patches a split happens to contain.

**The network input stays ``scaled`` for every method** (decided on validation pixels, issue 8):
the band-shared stem sees SAR with about 10x the spread of B2 under ``scaled``, so z-scoring the
input looked attractive, but on the embedded default (v2, first calibration pass), random init,
200 labelled pixels per class, 3 budget seeds, validation AA was scaled 45.4 / zscore 39.3 (linear probe) and
scaled 65.3 / zscore 51.3 (fine-tuning); the test split was never read. Reproduce with
``python scripts/input_scale_on_validation.py``. The stem's BatchNorm already rescales the
pooled bands; what per-band equality matters for (CoRe's loss) is handled there, by standardising
the reconstruction targets with the pool's statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

S1_BANDS: tuple[str, ...] = ("VV", "VH")
S2_BANDS: tuple[str, ...] = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
BAND_NAMES: tuple[str, ...] = S1_BANDS + S2_BANDS

_ZSCORE_MEAN = np.array(
    [-12.55, -20.19, 1370, 1184, 1121, 1136, 1264, 1645, 1847, 1763, 1973, 583, 14.8, 1732, 1248],
    dtype=np.float64,
)
_ZSCORE_STD = np.array(
    [5.26, 5.91, 633, 650, 712, 965, 949, 1108, 1258, 1233, 1364, 472, 14.3, 1310, 1088], dtype=np.float64
)


@dataclass(frozen=True)
class Normalisation:
    """How raw S1/S2 values become cached inputs; part of the cache fingerprint."""

    mode: Literal["scaled", "zscore"] = "scaled"
    s1_fill_db: float = -25.0
    s1_range_db: tuple[float, float] = (-25.0, 0.0)
    s2_max: float = 10000.0

    def __post_init__(self) -> None:
        if self.mode not in ("scaled", "zscore"):
            raise ValueError(f"unknown normalisation mode {self.mode!r}; use 'scaled' or 'zscore'")

    def apply(self, s1: np.ndarray, s2: np.ndarray) -> tuple[np.ndarray, int]:
        """(2,H,W) dB + (13,H,W) DN -> ((15,H,W) float32 input, number of replaced non-finite pixels)."""
        s1 = s1.astype(np.float32, copy=True)
        bad = ~np.isfinite(s1)
        nonfinite = int(bad.sum())
        s1[bad] = self.s1_fill_db
        lo, hi = self.s1_range_db
        np.clip(s1, lo, hi, out=s1)
        s2 = np.clip(s2.astype(np.float32), 0.0, self.s2_max)
        if self.mode == "scaled":
            s1 = (s1 - lo) / (hi - lo)
            s2 /= self.s2_max
            return np.concatenate([s1, s2]), nonfinite
        out = np.concatenate([s1, s2])
        out -= _ZSCORE_MEAN[:, None, None].astype(np.float32)
        out /= _ZSCORE_STD[:, None, None].astype(np.float32)
        return out, nonfinite

    def per_band(self) -> list[dict[str, object]]:
        """What :meth:`apply` does to each band of :data:`BAND_NAMES`, as data (an export's card):
        its unit, the fill of non-finite values (S1 only), the clip range, then
        ``(x - subtract) / divide``: the same arithmetic, band by band."""
        lo, hi = self.s1_range_db
        rows: list[dict[str, object]] = []
        for i, band in enumerate(BAND_NAMES):
            s1 = band in S1_BANDS
            if self.mode == "scaled":
                subtract, divide = (lo, hi - lo) if s1 else (0.0, self.s2_max)
            else:
                subtract, divide = float(_ZSCORE_MEAN[i]), float(_ZSCORE_STD[i])
            rows.append(
                {
                    "band": band,
                    "unit": "sigma0 dB (Sentinel-1 GRD)" if s1 else "L1C reflectance x 10000 (Sentinel-2 DN)",
                    "fill": self.s1_fill_db if s1 else None,
                    "clip": [lo, hi] if s1 else [0.0, self.s2_max],
                    "subtract": float(subtract),
                    "divide": float(divide),
                }
            )
        return rows


DEFAULT_NORMALISATION = Normalisation()
