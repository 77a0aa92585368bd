"""The shared fixtures load, and ``datasets`` is this project's package."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import datasets
from datasets import DEFAULT_CLASSES, Dataset


def test_datasets_is_this_projects_package() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert Path(datasets.__file__).resolve() == repo / "datasets" / "__init__.py"
    assert hasattr(datasets, "load_dataset") and not hasattr(datasets, "load_dataset_builder")


def test_tiny_dataset_shapes(tiny_dataset: Dataset) -> None:
    assert tiny_dataset.labelled.images.shape == (12, 15, 32, 32)
    assert tiny_dataset.test.images.shape == (8, 15, 32, 32)
    assert tiny_dataset.labelled.images.dtype == np.float16
    assert tiny_dataset.labelled.labels.dtype == np.uint8
    assert len(tiny_dataset.band_names) == 15 and tiny_dataset.band_names[:2] == ("VV", "VH")
    for split in (tiny_dataset.labelled, tiny_dataset.test):
        assert all(split.class_pixels[name] > 0 for name in DEFAULT_CLASSES.names)
        assert float(split.images.min()) >= 0.0 and float(split.images.max()) <= 1.0
