"""A usefulness figure beside the health gate: does a pretraining run beat its own initialisation?

A health gate (:mod:`methods.health`) catches a dead run (collapse, a restoration stuck at the
mean) but not a useless one: a run can keep a high effective rank and still give features worse
for land cover than the random weights it started from (issue 32: UniFeat pretraining seed 2
passed its gate with rank 17.7, yet its linear AA at 1000 px/class was 29.3 against 38.6 for its
own random init). So every pretraining run of a trained method (``needs_data``) also measures the
linear-probe AA of its backbone and of its own initialisation (the same seed's random init, the
weights :func:`bench.harness.pretraining.load_or_pretrain` built before training) on validation
pixels of the labelled pool, never on test pixels. MLflow gets ``usefulness.val_AA``,
``usefulness.init_val_AA`` and ``usefulness.gain`` on the pretraining run; the weights record
gets them too, and every seed run evaluated on the weights carries :data:`USEFULNESS_TAG`, so
tables mark a method whose runs score below their init (:mod:`bench.report.table`).

It is **not a gate**, and never stops a run: the figure is read on validation pixels, the signal
checkpoints and settings are chosen on, so dropping the runs it dislikes would be selection on the
evaluation signal (the surviving runs would look better because they were chosen to). A weak run
stays in the results, marked, and the mark says by how much.

The draw is fixed and depends on no evaluation budget: :data:`SAMPLES` pixels per class of the
labelled pool drawn by :func:`bench.protocols.budget.draw_budget` with seed :data:`DRAW_SEED` and
validation fraction :data:`VAL_FRACTION`, so half come from the training patches (the probe fits
on those) and half from the held-out validation patches (scored). Its own validation fraction
gives it an identity of its own (no evaluation budget is this draw). With 8 classes that is 800
validation pixels (one pixel is 0.125 AA points, the sampling sd of one AA about 1.8 points); the
trained and the initial backbone are scored on the very same pixels, so their difference is
paired. On the embedded default's labelled pool (160 patches of 64 px) the two probes take
1.7-3.5 s on one CPU thread for the tiny backbone, about 6 s for resnet18 (measured on a shared
CPU): nearly every patch holds a drawn pixel, so the cost is one pass over the labelled pool per
backbone. The probe is the linear protocol's (:func:`bench.protocols.linear.fit_probe`, default
settings), its features not cached: they are read once.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from bench.harness.tracking import BELOW_INIT, USEFULNESS_TAG
from bench.models.backbones import SegBackbone
from bench.protocols.budget import LabelBudget, draw_budget
from bench.protocols.linear import LinearConfig, fit_probe, linear_predictor
from bench.protocols.metrics import Scores
from bench.protocols.validation import validation_confusion

#: Labelled pixels per class of the fixed draw (training and validation together).
SAMPLES = 200
#: Half of them on the validation patches: 100 validation pixels per class.
VAL_FRACTION = 0.5
#: The draw's seed: fixed, so every pretraining run of a dataset is scored on the same pixels.
DRAW_SEED = 0
#: The pretraining run's MLflow metrics (fractions), with their column names in listings.
METRICS = {"usefulness.val_AA": "val AA", "usefulness.init_val_AA": "init val AA", "usefulness.gain": "gain"}

__all__ = [
    "BELOW_INIT",
    "METRICS",
    "USEFULNESS_TAG",
    "Usefulness",
    "measure",
    "snapshot",
    "usefulness_draw",
    "validation_aa",
]


@dataclass(frozen=True)
class Usefulness:
    """Validation linear-probe AA (fractions) of a pretrained backbone and of its own initialisation."""

    val_aa: float
    init_val_aa: float
    seconds: float = 0.0

    @property
    def gain(self) -> float:
        """What pretraining added over the same seed's random init (negative: it made things worse)."""
        return self.val_aa - self.init_val_aa

    @property
    def below_init(self) -> bool:
        return self.gain < 0

    def metrics(self) -> dict[str, float]:
        """The MLflow metrics of the pretraining run."""
        return dict(zip(METRICS, (self.val_aa, self.init_val_aa, self.gain), strict=True))

    def record(self) -> dict[str, Any]:
        """The weights record's ``usefulness`` entry."""
        return {
            "val_AA": self.val_aa,
            "init_val_AA": self.init_val_aa,
            "gain": self.gain,
            "seconds": self.seconds,
            "draw": f"{SAMPLES} px/class, validation fraction {VAL_FRACTION}, seed {DRAW_SEED}",
        }

    @classmethod
    def from_record(cls, record: Any) -> Usefulness | None:
        """The figure of a weights record (None for records written before it existed)."""
        found = record.get("usefulness") if isinstance(record, dict) else None
        if not isinstance(found, dict):
            return None
        try:
            return cls(float(found["val_AA"]), float(found["init_val_AA"]), float(found.get("seconds", 0.0)))
        except (KeyError, TypeError, ValueError):
            return None

    def tag(self, method: str, seed: int) -> str:
        """The :data:`USEFULNESS_TAG` of the seed runs on these weights: :data:`BELOW_INIT` first
        when pretraining lowered the validation AA, the two figures in points either way."""
        where = BELOW_INIT if self.below_init else "not below init:"
        return f"{where} pretraining {method} seed {seed} {self.line}"

    @property
    def line(self) -> str:
        """The two figures and the gain, in AA points."""
        return (
            f"validation linear AA {100 * self.val_aa:.1f} vs {100 * self.init_val_aa:.1f} for its own "
            f"random init ({100 * self.gain:+.1f} points)"
        )


def usefulness_draw(ds: Any) -> LabelBudget:
    """The fixed draw of the module doc (written once under ``bench_home()/budgets``, like any
    budget). A class short of pixels gives all it has, without the budget's warning: this draw is
    the harness's, not a budget the user asked for."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return draw_budget(
            ds.labelled.labels,
            fingerprint=ds.fingerprint,
            class_names=ds.classes.names,
            samples=SAMPLES,
            unit="pixels",
            seed=DRAW_SEED,
            val_fraction=VAL_FRACTION,
        )


def validation_aa(backbone: SegBackbone, ds: Any, budget: LabelBudget, device: torch.device) -> float:
    """Linear-probe AA of ``backbone`` at ``budget``'s validation pixels (probe fitted on its
    training pixels); the backbone's train/eval mode is left as it was."""
    training = backbone.training
    try:
        probe = fit_probe(backbone, ds, budget, LinearConfig(), device, progress=False, cache=False)
        predict = linear_predictor(backbone, probe, device)
        k = ds.classes.num_classes
        confusion = validation_confusion(predict, ds.labelled.images, budget, k, device)
    finally:
        backbone.train(training)
    return float(Scores.from_confusion(confusion).aa)


def snapshot(backbone: SegBackbone) -> SegBackbone:
    """A copy of the backbone as it is now (its initialisation, taken before pretraining)."""
    return copy.deepcopy(backbone).cpu()


def measure(trained: SegBackbone, init: SegBackbone, ds: Any, device: torch.device) -> Usefulness:
    """:class:`Usefulness` of ``trained`` against ``init`` on the fixed draw."""
    start = time.perf_counter()
    budget = usefulness_draw(ds)
    val_aa = validation_aa(trained, ds, budget, device)
    init_val_aa = validation_aa(init, ds, budget, device)
    return Usefulness(val_aa, init_val_aa, time.perf_counter() - start)
