"""Label budgets (DESIGN 2.4): which labelled-pool pixels a run may train on.

The labelled pool is split once, by patch, into a training part and a validation part (model
selection and tuning; never the test set). ``--samples N`` then draws N pixels per class from the
training part (``pixels``) or N whole patches (``images``). The draw uses its own generator,
seeded from (dataset fingerprint, unit, N, budget seed), so it is independent of the training seed
and of any global RNG state. It is written once as an npz index under ``bench_home()/budgets`` and
re-read afterwards, so every method of a comparison trains on exactly the same labels.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from bench.core.errors import BenchError
from bench.core.integrity import atomic_entry, move_aside, usable_entry
from bench.core.paths import bench_home
from bench.core.provenance import stable_hash

Unit = Literal["pixels", "images"]
UNITS: tuple[str, ...] = ("pixels", "images")
VAL_FRACTION = 0.2


@dataclass(frozen=True)
class LabelBudget:
    """The drawn labels: pixel coordinates into the labelled pool, plus the validation patches."""

    key: str
    unit: str
    samples: int
    seed: int
    patch: np.ndarray  # (n,) int64 index into the labelled pool
    row: np.ndarray  # (n,) int64
    col: np.ndarray  # (n,) int64
    label: np.ndarray  # (n,) int64 class index
    train_patches: np.ndarray  # patches the budget was drawn from
    val_patches: np.ndarray  # held-out patches for model selection / tuning
    realised: dict[str, int]  # labelled pixels per class actually drawn
    path: Path

    @property
    def labelled_patches(self) -> np.ndarray:
        """Sorted patches that hold at least one drawn pixel."""
        return np.unique(self.patch)


def _rng(*parts: object) -> np.random.Generator:
    """A generator seeded only by ``parts``: no global state, no training seed."""
    return np.random.default_rng(int(stable_hash(list(parts)), 16))


def validation_split(
    n_patches: int, fingerprint: str, fraction: float = VAL_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) patch indices: a fixed, seeded split of the labelled pool by patch."""
    if n_patches < 2:
        raise BenchError(f"the labelled pool has {n_patches} patch(es); a validation split needs at least 2")
    n_val = min(n_patches - 1, max(1, round(fraction * n_patches)))
    perm = _rng("validation-split", fingerprint, fraction).permutation(n_patches)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _draw_pixels(
    labels: np.ndarray, train: np.ndarray, samples: int, class_names: Sequence[str], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices into ``labels[train]`` of N pixels per class (all of them when a class is short)."""
    pool = np.asarray(labels[train]).reshape(-1)
    picked, classes = [], []
    for c in range(len(class_names)):
        where = np.flatnonzero(pool == c)
        take = np.sort(rng.choice(where, size=min(samples, where.size), replace=False))
        picked.append(take)
        classes.append(np.full(take.size, c, dtype=np.int64))
    return np.concatenate(picked), np.concatenate(classes)


def _draw_images(
    labels: np.ndarray, train: np.ndarray, samples: int, num_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices into ``labels[train]`` of every valid pixel of N whole patches."""
    if samples > train.size:
        raise BenchError(
            f"--budget-unit images --samples {samples} exceeds the {train.size} training patches of the "
            f"labelled pool ({labels.shape[0]} patches minus the validation split)"
        )
    chosen = np.sort(rng.choice(train.size, size=samples, replace=False))
    hw = labels.shape[1] * labels.shape[2]
    flat = np.concatenate([i * hw + np.arange(hw) for i in chosen]) if samples else np.zeros(0, np.int64)
    values = np.asarray(labels[train]).reshape(-1)[flat].astype(np.int64)
    keep = values < num_classes
    return flat[keep], values[keep]


def _usable_index(path: Path, ident: dict[str, object]) -> bool:
    """The index file exists, matches its digest and was drawn for ``ident``; else it is redrawn.

    The stored ``ident`` catches a file copied or renamed over another budget's name together with
    its digest: a budget is only ever used for the draw it was made for.
    """
    if not usable_entry(path, "label budget"):
        return False
    try:
        with np.load(path) as z:
            stored = json.loads(str(z["ident"]))
    except Exception as err:  # matches its digest but is not a budget index: written wrong
        move_aside(path, f"unreadable ({type(err).__name__})", "label budget")
        return False
    if stored != json.loads(json.dumps(ident)):
        move_aside(path, "drawn for another budget (its stored ident differs)", "label budget")
        return False
    return True


def draw_budget(
    labels: np.ndarray,
    *,
    fingerprint: str,
    class_names: Sequence[str],
    samples: int,
    unit: str = "pixels",
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
) -> LabelBudget:
    """The budget for (dataset, unit, N, seed): read from its index file, or drawn and written once.

    ``labels`` is the labelled pool (N, H, W), class indices with 255 (or any value >= K) ignored.
    """
    if unit not in UNITS:
        raise BenchError(f"unknown budget unit {unit!r}; choose one of {', '.join(UNITS)}")
    if samples < 1:
        raise BenchError(f"--samples must be a positive count, got {samples}")
    ident = {
        "dataset": fingerprint,
        "unit": unit,
        "samples": samples,
        "seed": seed,
        "val_fraction": val_fraction,
        "classes": list(class_names),
    }
    key = stable_hash(ident)
    path = bench_home() / "budgets" / f"{unit}-{samples}-seed{seed}-{key}.npz"
    if not _usable_index(path, ident):
        train, val = validation_split(labels.shape[0], fingerprint, val_fraction)
        rng = _rng("budget", fingerprint, unit, samples, seed)
        if unit == "pixels":
            flat, label = _draw_pixels(labels, train, samples, class_names, rng)
        else:
            flat, label = _draw_images(labels, train, samples, len(class_names), rng)
        local, row, col = np.unravel_index(flat, (train.size, labels.shape[1], labels.shape[2]))
        realised = np.bincount(label, minlength=len(class_names))
        with atomic_entry(path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                patch=train[local],
                row=row,
                col=col,
                label=label,
                train_patches=train,
                val_patches=val,
                realised=realised,
                ident=json.dumps(ident),
            )
    with np.load(path) as z:
        budget = LabelBudget(
            key=key,
            unit=unit,
            samples=samples,
            seed=seed,
            patch=z["patch"].astype(np.int64),
            row=z["row"].astype(np.int64),
            col=z["col"].astype(np.int64),
            label=z["label"].astype(np.int64),
            train_patches=z["train_patches"],
            val_patches=z["val_patches"],
            realised={name: int(n) for name, n in zip(class_names, z["realised"], strict=True)},
            path=path,
        )
    if unit == "pixels":
        for name, n in budget.realised.items():
            if n < samples:
                warnings.warn(
                    f"class {name!r} has only {n} labelled pixels in the training pool; "
                    f"using all {n} instead of {samples}",
                    stacklevel=2,
                )
    return budget
