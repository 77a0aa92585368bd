"""Label budgets (DESIGN 2.4): which labelled-pool pixels a run may train on.

The labelled pool is split once, by patch, into a training part and a validation part (disjoint
patches; never the test set). ``--samples N`` is the *whole* labelled budget: N pixels per class
(``pixels``) or N whole patches (``images``), of which ``val_fraction`` (20 %) is drawn from the
validation patches and the rest from the training patches. Checkpoint selection, early stopping
and tuning read only those budgeted validation labels, never the dense labels of the validation
patches: selecting on 100x more labels than the budget is the classic unrealistic low-label
evaluation (about 131k validation pixels against 1.6k training pixels at 200 per class before).
The draw uses its own generator, seeded from (dataset fingerprint, unit, N, budget seed), so it is
independent of the training seed and of any global RNG state. It is written once as an npz index
under ``bench_home()/budgets`` and re-read afterwards, so every method of a comparison trains on
exactly the same labels.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.core.errors import BenchError
from bench.core.integrity import atomic_entry, move_aside, usable_entry
from bench.core.paths import bench_home
from bench.core.provenance import stable_hash

Unit = Literal["pixels", "images"]
UNITS: tuple[str, ...] = ("pixels", "images")
#: Share of the budget drawn from the validation patches (the rest from the training patches).
VAL_FRACTION = 0.2
#: Share of the labelled pool's patches held out as validation patches (fixed per dataset).
VAL_PATCH_FRACTION = 0.2
#: Version of the drawing rule, part of every budget's identity: v2 counts validation in the budget.
DRAW_VERSION = 2


@dataclass(frozen=True)
class LabelBudget:
    """The drawn labels: training pixels and validation pixels, coordinates into the labelled pool."""

    key: str
    unit: str
    samples: int
    seed: int
    patch: np.ndarray  # (n,) int64 index into the labelled pool
    row: np.ndarray  # (n,) int64
    col: np.ndarray  # (n,) int64
    label: np.ndarray  # (n,) int64 class index
    train_patches: np.ndarray  # patches the training labels were drawn from
    val_patches: np.ndarray  # held-out patches the validation labels were drawn from
    realised: dict[str, int]  # training pixels per class actually drawn
    val_patch: np.ndarray  # (m,) validation pixels: patch, row, col, label (as above)
    val_row: np.ndarray
    val_col: np.ndarray
    val_label: np.ndarray
    realised_val: dict[str, int]  # validation pixels per class actually drawn
    path: Path

    @property
    def labelled_patches(self) -> np.ndarray:
        """Sorted patches that hold at least one drawn pixel."""
        return np.unique(self.patch)


def _rng(*parts: object) -> np.random.Generator:
    """A generator seeded only by ``parts``: no global state, no training seed."""
    return np.random.default_rng(int(stable_hash(list(parts)), 16))


def validation_split(
    n_patches: int, fingerprint: str, fraction: float = VAL_PATCH_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) patch indices: a fixed, seeded split of the labelled pool by patch."""
    if n_patches < 2:
        raise BenchError(f"the labelled pool has {n_patches} patch(es); a validation split needs at least 2")
    n_val = min(n_patches - 1, max(1, round(fraction * n_patches)))
    perm = _rng("validation-split", fingerprint, fraction).permutation(n_patches)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def split_count(total: int, val_fraction: float) -> tuple[int, int]:
    """(training, validation) share of a budget of ``total``: the validation part rounded."""
    val = int(np.floor(val_fraction * total + 0.5)) if total > 1 else 0
    return total - val, val


def _draw_pixels(
    labels: np.ndarray, patches: np.ndarray, per_class: int, num_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices into ``labels[patches]`` of ``per_class`` pixels per class (all of a short class)."""
    pool = np.asarray(labels[patches]).reshape(-1)
    picked, classes = [], []
    for c in range(num_classes):
        where = np.flatnonzero(pool == c)
        take = np.sort(rng.choice(where, size=min(per_class, where.size), replace=False))
        picked.append(take)
        classes.append(np.full(take.size, c, dtype=np.int64))
    return np.concatenate(picked), np.concatenate(classes)


def _draw_images(
    labels: np.ndarray, patches: np.ndarray, count: int, num_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices into ``labels[patches]`` of every valid pixel of ``count`` whole patches."""
    chosen = np.sort(rng.choice(patches.size, size=count, replace=False))
    hw = labels.shape[1] * labels.shape[2]
    flat = np.concatenate([i * hw + np.arange(hw) for i in chosen]) if count else np.zeros(0, np.int64)
    values = np.asarray(labels[patches]).reshape(-1)[flat].astype(np.int64)
    keep = values < num_classes
    return flat[keep], values[keep]


def _draw(
    labels: np.ndarray, patches: np.ndarray, unit: str, count: int, num_classes: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Pixels of ``count`` per class (or ``count`` images) from ``patches``, as pool coordinates
    (arrays; typed ``Any`` so that ``np.savez(**drawn)`` type-checks against its ``allow_pickle``)."""
    draw = _draw_pixels if unit == "pixels" else _draw_images
    flat, label = draw(labels, patches, count, num_classes, rng)
    local, row, col = np.unravel_index(flat, (patches.size, labels.shape[1], labels.shape[2]))
    return {"patch": patches[local], "row": row, "col": col, "label": label}


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
        "val_patch_fraction": VAL_PATCH_FRACTION,
        "draw_version": DRAW_VERSION,
        "classes": list(class_names),
    }
    key = stable_hash(ident)
    path = bench_home() / "budgets" / f"{unit}-{samples}-seed{seed}-{key}.npz"
    if not _usable_index(path, ident):
        train, val = validation_split(labels.shape[0], fingerprint)
        n_train, n_val = split_count(samples, val_fraction)
        if unit == "images" and (n_train > train.size or n_val > val.size):
            raise BenchError(
                f"--budget-unit images --samples {samples} needs {n_train} training and {n_val} validation "
                f"patches, but the labelled pool ({labels.shape[0]} patches) has {train.size} and {val.size}"
            )
        rng = _rng("budget", fingerprint, unit, samples, seed, val_fraction)
        k = len(class_names)
        drawn = _draw(labels, train, unit, n_train, k, rng)
        held = _draw(labels, val, unit, n_val, k, rng)
        with atomic_entry(path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                **drawn,
                **{f"val_{name}": values for name, values in held.items()},
                train_patches=train,
                val_patches=val,
                realised=np.bincount(drawn["label"], minlength=k),
                realised_val=np.bincount(held["label"], minlength=k),
                ident=json.dumps(ident),
            )
    with np.load(path) as z:
        coords = {name: z[name].astype(np.int64) for name in ("patch", "row", "col", "label")}
        val_coords = {f"val_{name}": z[f"val_{name}"].astype(np.int64) for name in coords}
        budget = LabelBudget(
            key=key,
            unit=unit,
            samples=samples,
            seed=seed,
            **coords,
            **val_coords,
            train_patches=z["train_patches"],
            val_patches=z["val_patches"],
            realised={name: int(n) for name, n in zip(class_names, z["realised"], strict=True)},
            realised_val={name: int(n) for name, n in zip(class_names, z["realised_val"], strict=True)},
            path=path,
        )
    if unit == "pixels":
        for name, n in budget.realised.items():
            total = n + budget.realised_val[name]
            if total < samples:
                warnings.warn(
                    f"class {name!r} has only {total} labelled pixels in the labelled pool's budget draw "
                    f"({n} training + {budget.realised_val[name]} validation) instead of {samples}",
                    stacklevel=2,
                )
    return budget
