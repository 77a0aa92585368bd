"""Elementwise math whose results are the same bits on every x86-64 machine: the generator's arithmetic.

Why: the synthetic default must be byte-identical wherever it is generated (DESIGN 13), and numpy's
own kernels are not. A contraction such as ``np.einsum(..., optimize=True)`` goes through BLAS,
whose kernel (and so its summation order) follows the CPU and ``OPENBLAS_CORETYPE``; ``np.exp``,
``np.log10``, ``np.power``, ``np.sin`` and ``np.hypot`` on arrays are dispatched at run time to
SIMD implementations (SVML on AVX-512 machines) that differ from the scalar ones in the last bit.

How: everything here is built from IEEE-754 operations that are correctly rounded, so exact
whatever the vector width: ``+ - * /``, ``sqrt``, ``floor``/``rint``, and ``frexp``/``ldexp``
(exact by construction); each numpy ufunc call rounds once (numpy never fuses a multiply and an
add across calls). Transcendentals are argument reduction plus a fixed polynomial evaluated by
Horner's rule in float64, accurate to a few ulp (far below what reaches a uint16 DN or a
float32 dB value); sums over a few terms run in a written order (:func:`mix`).

What remains machine-dependent is outside this module and documented where used: numpy's
``Generator`` draws its normal, gamma and beta variates through libm's ``log``/``exp`` (the same
glibc on every machine of this kind), and the FFT is numpy's compiled pocketfft (no run-time
dispatch).
"""

from __future__ import annotations

import math

import numpy as np

_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k * _LN2_HI is exact for |k| < 2**20
_LN2_LO = 1.90821492927058770002e-10
_LN10 = math.log(10.0)
_INV_LN10 = 1.0 / _LN10
#: exp(r) on |r| <= ln2 / 2 by Taylor to degree 13 (truncation below 1e-17 relative).
_EXP_TAYLOR = tuple(1.0 / math.factorial(n) for n in range(13, -1, -1))
#: log((1 + s) / (1 - s)) = 2 (s + s^3/3 + ...), |s| <= 0.1716 after reduction: 12 odd terms.
_ATANH_ODD = tuple(1.0 / (2 * n + 1) for n in range(11, -1, -1))
_PIO2_HI = 1.57079632673412561417e00  # pi/2 in two parts (Cody-Waite), exact k * hi for |k| < 2**20
_PIO2_LO = 6.07710050650619224932e-11
#: sin(r), cos(r) on |r| <= pi/4 by Taylor: degrees 21 and 20 (truncation below 1e-18).
_SIN_TAYLOR = tuple((-1.0) ** n / math.factorial(2 * n + 1) for n in range(10, -1, -1))
_COS_TAYLOR = tuple((-1.0) ** n / math.factorial(2 * n) for n in range(10, -1, -1))


def _horner(x: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """sum c_i x^(n-i), highest degree first, one rounding per step."""
    acc = np.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        acc = acc * x + c
    return acc


def exp(x: np.ndarray | float) -> np.ndarray:
    """e**x in float64 (inf above 709.78, 0 below -745): exp(r) * 2**k with x = k ln2 + r."""
    x = np.asarray(x, dtype=np.float64)
    clipped = np.clip(np.where(np.isnan(x), 0.0, x), -746.0, 710.0)  # beyond: ldexp gives 0 or inf
    k = np.rint(clipped / (_LN2_HI + _LN2_LO))
    r = (clipped - k * _LN2_HI) - k * _LN2_LO
    with np.errstate(over="ignore"):
        out = np.ldexp(_horner(r, _EXP_TAYLOR), k.astype(np.int64))
    out = np.where(np.isnan(x), np.nan, out)
    return np.where(x == np.inf, np.inf, np.where(x == -np.inf, 0.0, out))


def log(x: np.ndarray | float) -> np.ndarray:
    """Natural log in float64 (-inf at 0, nan below 0): x = m 2**e, m in [sqrt(.5), sqrt(2))."""
    x = np.asarray(x, dtype=np.float64)
    finite_positive = np.isfinite(x) & (x > 0)
    safe = np.where(finite_positive, x, 1.0)
    m, e = np.frexp(safe)  # m in [0.5, 1)
    small = m < math.sqrt(0.5)
    m = np.where(small, m * 2.0, m)  # exact
    e = (e - small).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)
    log_m = 2.0 * s * _horner(s * s, _ATANH_ODD)
    out = (e * _LN2_HI + log_m) + e * _LN2_LO
    out = np.where(x == 0, -np.inf, out)
    out = np.where(x == np.inf, np.inf, out)
    return np.where(np.isnan(x) | (x < 0), np.nan, out)


def log10(x: np.ndarray | float) -> np.ndarray:
    """Base-10 log in float64."""
    return log(x) * _INV_LN10


def pow10(x: np.ndarray | float) -> np.ndarray:
    """10**x in float64 (dB to power)."""
    return exp(np.asarray(x, dtype=np.float64) * _LN10)


def power(base: np.ndarray | float, exponent: float) -> np.ndarray:
    """base**exponent for base > 0, in float64."""
    return exp(exponent * log(base))


def sin(x: np.ndarray | float) -> np.ndarray:
    """sin in float64 for |x| < 1e5 (the patch geometry's range): quadrant k of x = k pi/2 + r."""
    x = np.asarray(x, dtype=np.float64)
    k = np.rint(x / (_PIO2_HI + _PIO2_LO))
    r = (x - k * _PIO2_HI) - k * _PIO2_LO
    r2 = r * r
    s = r * _horner(r2, _SIN_TAYLOR)
    c = _horner(r2, _COS_TAYLOR)
    quadrant = np.mod(k, 4).astype(np.int64)
    return np.choose(quadrant, [s, c, -s, -c])


def hypot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sqrt(a**2 + b**2) (no overflow concern at the generator's magnitudes)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.sqrt(a * a + b * b)


def mix(fractions: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(P, H, W) = sum_e fractions[e] * table[e, p]: a linear mixture, summed over e in index order.

    ``fractions`` (E, H, W), ``table`` (E, P); the result has ``fractions``' dtype. Replaces
    ``np.einsum("ehw,ep->phw", ...)``, whose BLAS contraction sums in a CPU-dependent order.
    """
    table = np.asarray(table, dtype=fractions.dtype)
    out = fractions[0][None] * table[0][:, None, None]
    for e in range(1, fractions.shape[0]):
        out = out + fractions[e][None] * table[e][:, None, None]
    return out
