"""Per-pixel reference classifiers against direct scikit-learn computations on the same pixels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.preprocessing import StandardScaler

from bench.protocols.pixel_classifiers import (
    fit_logistic,
    fit_random_forest,
    predict_confusion,
    sample_pixels,
)


@pytest.fixture
def split() -> tuple[np.ndarray, np.ndarray]:
    """6 patches of 8x8 px, 3 bands: band 0 is the pixel's flat index, so a sample says where it came from."""
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(6, 8, 8), p=[0.5, 0.3, 0.15, 0.05])
    labels[:, 0, 0] = 2  # every patch holds class 2
    images = rng.random((6, 3, 8, 8), dtype=np.float32)
    images[:, 0] = np.arange(6 * 64, dtype=np.float32).reshape(6, 8, 8)
    images[:, 1] = labels + 0.3 * rng.standard_normal((6, 8, 8))  # a learnable band
    return images, labels


def test_sample_pixels_takes_each_class_from_its_own_pixels(split: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = split
    x, y = sample_pixels(images, labels, 10, np.random.default_rng(1))
    flat = x[:, 0].astype(np.int64)
    np.testing.assert_array_equal(labels.reshape(-1)[flat], y)  # each sample's label is its pixel's
    np.testing.assert_array_equal(images.transpose(0, 2, 3, 1).reshape(-1, 3)[flat], x)
    assert np.bincount(y).tolist() == [10, 10, 10]
    assert len(np.unique(flat)) == len(flat)  # without replacement


def test_sample_pixels_short_class_and_patch_subset(split: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = split
    x, y = sample_pixels(images, labels, 10_000, np.random.default_rng(1), patches=[4, 1])
    assert np.bincount(y, minlength=3).tolist() == [int((labels[[1, 4]] == c).sum()) for c in range(3)]
    assert set(np.unique(x[:, 0].astype(np.int64) // 64)) == {1, 4}
    assert 255 not in y


def test_fit_logistic_matches_direct_sklearn(split: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = split
    x, y = sample_pixels(images[:, 1:], labels, 40, np.random.default_rng(2))
    scaler = StandardScaler().fit(x)
    direct = LogisticRegression(max_iter=2000, random_state=0).fit(scaler.transform(x), y)
    np.testing.assert_array_equal(fit_logistic(x, y).predict(x), direct.predict(scaler.transform(x)))


def test_random_forest_is_seeded(split: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = split
    x, y = sample_pixels(images, labels, 40, np.random.default_rng(3))
    a, b = fit_random_forest(x, y, seed=5), fit_random_forest(x, y, seed=5)
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))


def test_predict_confusion_equals_sklearn_on_all_valid_pixels(split: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = split
    x, y = sample_pixels(images[:, 1:], labels, 20, np.random.default_rng(4))
    model = fit_logistic(x, y)
    cm = predict_confusion(model, images[:, 1:], labels, num_classes=3, chunk=4)
    pixels = images[:, 1:].transpose(0, 2, 3, 1).reshape(-1, 2)
    truth = labels.reshape(-1)
    valid = truth != 255
    expected = sk_confusion(truth[valid], model.predict(pixels[valid]), labels=[0, 1, 2])
    np.testing.assert_array_equal(cm, expected)
    assert cm.sum() == valid.sum()
    subset = predict_confusion(model, images[:, 1:], labels, num_classes=3, patches=[2])
    assert subset.sum() == (labels[2] != 255).sum()
