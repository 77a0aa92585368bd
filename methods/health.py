"""Health gates: the checks a pretraining run must pass before its weights count as good (DESIGN 4.1).

A self-supervised run can fail without an error: a Siamese network collapses to a constant, a
restoration network settles at predicting the per-band mean. Its loss may still look fine, and
its weights would then feed every cell of the method, silently. So each method declares, on its
class (``PretrainMethod.health``), the figures that tell a working run from a dead one, each with
a threshold and the reason for it; the harness (``bench.harness.pretraining``) judges every run
on the last value it logged of each figure, records a failed run as FAILED in MLflow with one
line naming the method, the seed and the figure, and never caches its weights as good.

Figures are metric keys as the method logs them, relative to its name: ``recon_skill`` for
``core`` (logged as ``core/recon_skill``), ``core/recon_skill`` for ``sscl`` (``sscl/core/...``).
A declared figure that was never logged fails the gate too: an unmeasured run is not a healthy one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: A threshold: a number, or a function of the method's config (e.g. of its projection width).
Threshold = float | Callable[[Any], float]


@dataclass(frozen=True)
class HealthCheck:
    """``figure`` must be at least ``minimum`` (and at most ``maximum``, when given), because ``reason``.

    ``reason`` ends the failed run's line: it names the threshold and says why it sits there (what
    the figure means at 0 or 1, what a dead run scored), never a range healthy runs scored, which
    moves whenever the method or its schedule does (results/README.md lists every run's figures).
    """

    figure: str
    reason: str
    minimum: Threshold | None = None
    maximum: Threshold | None = None
    #: Where the figure's config lives inside the method's config (``"core"`` for ``sscl``'s CoRe
    #: stage), for thresholds that are functions of the config; empty: the method's own config.
    config_path: str = ""

    def bounds(self, config: Any) -> tuple[float | None, float | None]:
        """(minimum, maximum) for this config (read only by thresholds that are functions of it)."""

        def value(t: Threshold | None) -> float | None:
            if t is None or not callable(t):
                return None if t is None else float(t)
            stage = config
            for part in filter(None, self.config_path.split(".")):
                stage = getattr(stage, part)
            return float(t(stage))

        return value(self.minimum), value(self.maximum)


@dataclass(frozen=True)
class Verdict:
    """The outcome of a run's gate: passed, or the one line saying which figure failed and why."""

    passed: bool
    line: str = ""
    figures: tuple[tuple[str, float], ...] = ()

    @property
    def tag(self) -> str:
        """The ``bench.pretrain_health`` tag of the run and of every seed run that uses its weights."""
        return "passed" if self.passed else f"failed: {self.line}"


def prefixed(checks: Iterable[HealthCheck], stage: str) -> tuple[HealthCheck, ...]:
    """A stage's checks inside a composite method: ``sscl`` declares CoRe's as ``core/<figure>``
    with ``config_path="core"``, so both the logged key and the config a threshold reads match."""
    return tuple(
        HealthCheck(
            f"{stage}/{c.figure}",
            c.reason,
            c.minimum,
            c.maximum,
            ".".join(filter(None, (stage, c.config_path))),
        )
        for c in checks
    )


def judge(
    method: str, seed: int, checks: Iterable[HealthCheck], config: Any, logged: Mapping[str, float]
) -> Verdict:
    """Judge one run of ``method`` (pretraining seed ``seed``) on the last value of each figure it
    logged (``logged``: full keys, ``<method>/<figure>``). The first failed check makes the line."""
    figures = []
    for check in checks:
        key = f"{method}/{check.figure}"
        value = logged.get(key)
        low, high = check.bounds(config)
        if value is None or not math.isfinite(value):
            what = "was not measured" if value is None else f"is {value}"
            return Verdict(False, _line(method, seed, f"{check.figure} {what}", check.reason))
        figures.append((check.figure, float(value)))
        if low is not None and value < low:
            return Verdict(
                False, _line(method, seed, f"{check.figure} {value:.3g} < {low:.3g}", check.reason)
            )
        if high is not None and value > high:
            return Verdict(
                False, _line(method, seed, f"{check.figure} {value:.3g} > {high:.3g}", check.reason)
            )
    return Verdict(True, figures=tuple(figures))


def _line(method: str, seed: int, figure: str, reason: str) -> str:
    return f"pretraining {method} seed {seed} failed its health gate: {figure} ({reason})"
