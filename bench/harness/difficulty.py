"""How hard is a dataset for standard machine learning? (``bench data difficulty``)

Per-pixel logistic regression and a random forest on the raw normalised bands, trained on N
pixels per class, scored two ways:

* ``test``: trained on the whole labelled pool, scored on every valid pixel of the test split:
  the difficulty a method faces in the benchmark, domain shift included;
* ``pool-val``: trained on the pool's training patches, scored on its held-out patches (the fixed
  80/20 split by patch that tuning uses): the in-domain difficulty.

The gap between the two (in AA points) measures how much of the difficulty is shift between the
pool and the test split rather than class overlap. The synthetic default is calibrated with this
command alone, because it involves no pretraining method; it runs on real DFC2020 unchanged, so a
user can set the synthetic set beside the real one.

Discriminative power (``--controls``, :func:`control_differences`): can the protocols reward a good
initialisation at all? The positive control ``supervised`` (pretrained on the pretraining pool's
coarse lc labels) minus the baseline ``random``, paired by evaluation seed (same labelled pixels,
same test pixels), under both protocols at the scarcest budget and at 200 px per class, with its
95% t interval. A dataset whose control does not beat random initialisation cannot tell
pretraining methods apart. These are ordinary cells (``run_cell``; a later sweep reuses them), and
the only deep models the pool's calibration looks at: no self-supervised method is involved.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.core.errors import BenchError
from bench.core.intervals import t_interval
from bench.core.provenance import stable_hash
from bench.protocols.budget import validation_split
from bench.protocols.metrics import Scores
from bench.protocols.pixel_classifiers import (
    fit_logistic,
    fit_random_forest,
    predict_confusion,
    sample_pixels,
)

if TYPE_CHECKING:
    import torch

    from datasets import Dataset

CLASSIFIERS: dict[str, Callable[[np.ndarray, np.ndarray, int], object]] = {
    "logistic": fit_logistic,
    "rf": fit_random_forest,
}
SETTINGS = ("test", "pool-val")
DEFAULT_SAMPLES = (200, 1000)
#: The positive control and the baseline it is compared against (``--controls``).
CONTROL, BASELINE = "supervised", "random"
#: The scarcest budget of the cpu preset's grid and 200 px per class (DESIGN 2.5).
CONTROL_SAMPLES = (10, 200)
CONTROL_SEEDS = 5
CONTROL_PROTOCOLS = ("linear", "finetune")


@dataclass(frozen=True)
class DifficultyRow:
    """One (classifier, pixels per class, evaluation) result."""

    classifier: str
    samples: int
    setting: str  # "test" (pool -> test) or "pool-val" (pool-train -> pool-val)
    scores: Scores
    confusion: np.ndarray  # K x K, rows = truth, over every scored pixel
    realised: int  # training pixels actually drawn (short classes give all they have)
    seconds: float


def difficulty(
    ds: Dataset,
    samples: Sequence[int] = DEFAULT_SAMPLES,
    seed: int = 0,
    classifiers: Sequence[str] = tuple(CLASSIFIERS),
    progress: Callable[[str], None] | None = None,
) -> list[DifficultyRow]:
    """Every (classifier, samples, setting) row for a loaded dataset (``datasets.Dataset``).

    The pixel draw for (samples, setting) is seeded by (dataset fingerprint, setting, samples,
    seed) and shared by both classifiers, so their rows differ only by the classifier.
    """
    pool_labels, test_labels = ds.labelled.labels, ds.test.labels
    if pool_labels is None or test_labels is None:
        raise BenchError(
            f"{ds.root}: bench data difficulty needs labels in the labelled pool and the test split"
        )
    k, ignore = ds.classes.num_classes, ds.classes.ignore_index
    train_patches, val_patches = validation_split(len(pool_labels), ds.fingerprint)
    evaluations = {
        "test": (None, ds.test.images, test_labels, None),
        "pool-val": (train_patches, ds.labelled.images, pool_labels, val_patches),
    }
    rows = []
    for n in samples:
        for setting in SETTINGS:
            fit_on, images, labels, score_on = evaluations[setting]
            rng = np.random.default_rng(
                int(stable_hash(["difficulty", ds.fingerprint, setting, n, seed]), 16)
            )
            x, y = sample_pixels(ds.labelled.images, pool_labels, n, rng, ignore, patches=fit_on)
            for name in classifiers:
                start = time.perf_counter()
                model = CLASSIFIERS[name](x, y, seed)
                cm = predict_confusion(model, images, labels, k, ignore_index=ignore, patches=score_on)
                seconds = time.perf_counter() - start
                row = DifficultyRow(name, n, setting, Scores.from_confusion(cm), cm, len(y), seconds)
                rows.append(row)
                if progress is not None:
                    progress(
                        f"{name} {n}/class {setting}: AA {100 * row.scores.aa:.1f} ({row.seconds:.1f} s)"
                    )
    return rows


def gaps(rows: Sequence[DifficultyRow]) -> dict[tuple[str, int], float]:
    """In-domain minus test AA, in points, per (classifier, samples)."""
    aa = {(r.classifier, r.samples, r.setting): r.scores.aa for r in rows}
    return {
        (c, n): 100 * (aa[(c, n, "pool-val")] - aa[(c, n, "test")])
        for (c, n, s) in aa
        if s == "test" and (c, n, "pool-val") in aa
    }


def format_difficulty(rows: Sequence[DifficultyRow], class_names: Sequence[str]) -> str:
    """A fixed-width table (%, one row per result) and the gap lines: what the command prints."""
    short = [name.split("/")[0][:9] for name in class_names]
    head = f"{'classifier':<10}{'n/class':>8}  {'eval':<9}{'AA':>6}{'OA':>6}  " + "".join(
        f"{s:>10}" for s in short
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        per_class = "".join(
            f"{100 * v:>10.1f}" if not np.isnan(v) else f"{'-':>10}" for v in r.scores.per_class
        )
        head_cells = f"{r.classifier:<10}{r.samples:>8}  {r.setting:<9}"
        lines.append(f"{head_cells}{100 * r.scores.aa:>6.1f}{100 * r.scores.oa:>6.1f}  {per_class}")
    lines.append("")
    for (c, n), gap in gaps(rows).items():
        lines.append(f"gap {c} {n}/class: pool-val AA - test AA = {gap:+.1f} points")
    return "\n".join(lines)


def log_difficulty(
    rows: Sequence[DifficultyRow],
    ds: Dataset,
    seed: int,
    class_names: Sequence[str],
    controls: Sequence[ControlRow] = (),
) -> str:
    """One MLflow run tagged ``bench.kind=difficulty``; metrics ``<setting>.<classifier>.<n>.<metric>``."""
    import mlflow

    from bench.harness.tracking import metric_name, setup_tracking

    setup_tracking()
    tags = {
        "bench.kind": "difficulty",
        "bench.dataset_fingerprint": ds.fingerprint,
    }
    with mlflow.start_run(run_name="difficulty", tags=tags) as run:
        mlflow.log_params(
            {
                "data": str(ds.root),
                "seed": seed,
                "samples": ",".join(str(n) for n in sorted({r.samples for r in rows})),
            }
        )
        metrics: dict[str, float] = {}
        for r in rows:
            prefix = f"{r.setting}.{r.classifier}.{r.samples}"
            metrics[f"{prefix}.AA"] = r.scores.aa
            metrics[f"{prefix}.OA"] = r.scores.oa
            for name, value in zip(class_names, r.scores.per_class, strict=True):
                if not np.isnan(value):
                    metrics[f"{prefix}.acc.{metric_name(name)}"] = value
        for (c, n), gap in gaps(rows).items():
            metrics[f"gap.{c}.{n}"] = gap / 100
        for cr in controls:
            mean, low, high = cr.interval()
            prefix = f"control.{cr.protocol}.{cr.samples}"
            metrics |= {f"{prefix}.diff": mean, f"{prefix}.low": low, f"{prefix}.high": high}
        mlflow.log_metrics({k: v for k, v in metrics.items() if not np.isnan(v)})
        return run.info.run_id


@dataclass(frozen=True)
class ControlRow:
    """Per-seed AA of the control and of the baseline in one (protocol, budget), paired by seed."""

    protocol: str
    samples: int
    control: np.ndarray  # (n,) AA of ``supervised`` per evaluation seed
    baseline: np.ndarray  # (n,) AA of ``random`` for the same seeds
    seconds: float

    @property
    def diff(self) -> np.ndarray:
        return self.control - self.baseline

    def interval(self, confidence: float = 0.95) -> tuple[float, float, float]:
        """(mean, low, high) of the paired difference, t interval over seeds (NaN below 2 seeds)."""
        return t_interval(self.diff, confidence)


def control_differences(
    ds: Dataset,
    device: torch.device,
    samples: Sequence[int] = CONTROL_SAMPLES,
    seeds: int = CONTROL_SEEDS,
    protocols: Sequence[str] = CONTROL_PROTOCOLS,
    pretrain_seeds: int | None = None,
    pretrain_data: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ControlRow]:
    """``supervised`` minus ``random`` AA per (protocol, budget), paired over ``seeds`` seeds.

    Both run as ordinary cells (cached, recorded in MLflow, resumable); ``pretrain_seeds`` is K of
    ``--pretrain-seeds`` (seed ``s`` uses pretraining seed ``s mod K``; None, the default, one run
    per seed), for the baseline too (its initialisation seed), so these are the very cells a sweep
    with the same K runs and tables.
    """
    from bench.harness.runner import CellSpec, run_cell

    rows = []
    for protocol in protocols:
        for n in samples:
            start = time.perf_counter()
            aa = {}
            for method, k in ((CONTROL, pretrain_seeds), (BASELINE, pretrain_seeds)):
                spec = CellSpec(method, n, protocol=protocol, pretrain_seeds=k, pretrain_data=pretrain_data)
                cell = run_cell(spec, range(seeds), ds, device, progress=False)
                aa[method] = np.array([r.scores.aa for r in cell.seeds])
            row = ControlRow(protocol, n, aa[CONTROL], aa[BASELINE], time.perf_counter() - start)
            rows.append(row)
            if progress is not None:
                mean, low, high = row.interval()
                progress(
                    f"control {protocol} {n}/class: {CONTROL} - {BASELINE} AA {100 * mean:+.1f} "
                    f"[{100 * low:+.1f}, {100 * high:+.1f}] ({row.seconds:.0f} s)"
                )
    return rows


def format_controls(rows: Sequence[ControlRow]) -> str:
    """The discriminative-power table: both AAs and their paired difference with its interval."""
    head = f"{'protocol':<10}{'n/class':>8}{CONTROL:>12}{BASELINE:>9}{'diff':>8}   95% interval    seeds"
    lines = [
        f"positive control: {CONTROL} (pool lc labels) - {BASELINE} (no pretraining), test AA in %, "
        "paired by seed",
        head,
        "-" * len(head),
    ]
    for r in rows:
        mean, low, high = r.interval()
        verdict = "above 0" if low > 0 else ("below 0" if high < 0 else "spans 0")
        lines.append(
            f"{r.protocol:<10}{r.samples:>8}{100 * r.control.mean():>12.1f}{100 * r.baseline.mean():>9.1f}"
            f"{100 * mean:>+8.1f}   [{100 * low:+.1f}, {100 * high:+.1f}] {verdict}   {len(r.diff)}"
        )
    return "\n".join(lines)
