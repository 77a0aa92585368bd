"""Label budgets: exact counts, determinism, independence from training RNG, short classes, images."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bench.core.errors import BenchError
from bench.protocols.budget import LabelBudget, draw_budget, validation_split

NAMES = ("a", "b", "c")


@pytest.fixture
def labels() -> np.ndarray:
    """20 patches of 16 x 16; class 2 is rare (3 pixels a patch), 255 is ignored."""
    lab = np.random.default_rng(0).integers(0, 2, (20, 16, 16)).astype(np.uint8)
    lab[:, :2] = 255
    lab[:, 5, 5:8] = 2
    return lab


def draw(labels: np.ndarray, **kw: object) -> LabelBudget:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return draw_budget(labels, fingerprint="fp", class_names=NAMES, **kw)


def test_pixel_budget_is_the_whole_budget_train_plus_validation(labels: np.ndarray) -> None:
    """N per class in all: 80 % from training patches, 20 % from disjoint validation patches."""
    b = draw(labels, samples=40, seed=1)
    counts = np.bincount(b.label, minlength=3)
    val_counts = np.bincount(b.val_label, minlength=3)
    assert counts[:2].tolist() == [32, 32] and val_counts[:2].tolist() == [8, 8]
    assert (counts + val_counts)[:2].tolist() == [40, 40]
    assert b.realised == {"a": 32, "b": 32, "c": counts[2]}
    assert b.realised_val == {"a": 8, "b": 8, "c": val_counts[2]}
    assert (labels[b.patch, b.row, b.col] == b.label).all()
    assert (labels[b.val_patch, b.val_row, b.val_col] == b.val_label).all()
    assert set(b.patch) <= set(b.train_patches) and set(b.val_patch) <= set(b.val_patches)
    assert not set(b.train_patches) & set(b.val_patches)  # disjoint patches
    assert len({(p, r, c) for p, r, c in zip(b.patch, b.row, b.col, strict=True)}) == b.label.size


def test_every_method_sees_the_same_draw(labels: np.ndarray) -> None:
    """The draw depends on (dataset, unit, N, seed) only: nothing method-specific can enter it."""
    first, second = draw(labels, samples=20, seed=2), draw(labels, samples=20, seed=2)
    for name in ("patch", "row", "col", "label", "val_patch", "val_row", "val_col", "val_label"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


def test_same_key_same_draw_and_index_file_reused(labels: np.ndarray) -> None:
    first = draw(labels, samples=30, seed=3)
    mtime = first.path.stat().st_mtime_ns
    torch.manual_seed(123)  # the training seed must not matter
    np.random.seed(456)
    again = draw(labels, samples=30, seed=3)
    assert again.path == first.path and again.path.stat().st_mtime_ns == mtime
    first.path.unlink()
    torch.manual_seed(999)
    np.random.seed(0)
    redrawn = draw(labels, samples=30, seed=3)
    for field in ("patch", "row", "col", "label"):
        np.testing.assert_array_equal(getattr(first, field), getattr(redrawn, field))
    other = draw(labels, samples=30, seed=4)
    assert not np.array_equal(other.row, first.row) or not np.array_equal(other.patch, first.patch)


def test_short_class_warns_with_realised_count(labels: np.ndarray) -> None:
    train, val = validation_split(len(labels), "fp")
    available = int((labels[train] == 2).sum())
    available_val = int((labels[val] == 2).sum())
    total = available + min(available_val, 20)
    with pytest.warns(UserWarning, match=rf"class 'c' has only {total} labelled pixels"):
        b = draw_budget(labels, fingerprint="fp", class_names=NAMES, samples=100)
    assert b.realised["c"] == available and b.realised_val["c"] == min(available_val, 20)


def test_images_unit_takes_whole_patches_and_rejects_too_many(labels: np.ndarray) -> None:
    b = draw(labels, samples=5, unit="images")  # 4 training + 1 validation patch
    assert b.labelled_patches.size == 4 and np.unique(b.val_patch).size == 1
    valid = labels[b.labelled_patches] != 255
    assert b.label.size == valid.sum()
    assert b.val_label.size == (labels[np.unique(b.val_patch)] != 255).sum()
    with pytest.raises(BenchError, match=r"training and \d+ validation patches, but the labelled pool"):
        draw(labels, samples=len(labels) + 1, unit="images")


def test_validation_split_is_fixed_and_disjoint() -> None:
    train, val = validation_split(50, "fp")
    assert val.size == 10 and not set(train) & set(val) and train.size + val.size == 50
    np.testing.assert_array_equal(val, validation_split(50, "fp")[1])
