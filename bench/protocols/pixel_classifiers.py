"""Standard machine learning on raw pixels: per-pixel classifiers on the 15 normalised bands.

The seed's poster notes that end-to-end deep models often fail to beat standard methods on this
kind of data, so a benchmark needs those standard methods as reference points, and the synthetic
default is calibrated against them (``bench data difficulty``) precisely because they involve no
pretraining method. Everything here is plain scikit-learn on (pixels, bands) matrices; spatial
context is deliberately absent, which is what makes these rows a floor for the deep models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from bench.protocols.metrics import confusion_matrix

#: Forest size: 200 trees is where the out-of-bag error of a 15-feature problem has flattened;
#: depth 16 lets trees split a few thousand samples per class down to small leaves while keeping
#: prediction over millions of test pixels affordable on one core (a tree is 16 comparisons deep).
FOREST_TREES = 200
FOREST_DEPTH = 16


def sample_pixels(
    images: np.ndarray,
    labels: np.ndarray,
    per_class: int,
    rng: np.random.Generator,
    ignore_index: int = 255,
    patches: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` random pixels of every class (all of a class when it has fewer).

    ``images`` (N, C, H, W) and ``labels`` (N, H, W) may be memory maps; ``patches`` restricts the
    draw to those patch indices (a train/validation split by patch). Returns X (n, C) float32 and
    y (n,) int64, grouped by class. Pixels are read patch by patch in sorted order, so a draw from
    a memory-mapped split touches each patch once.
    """
    chosen = np.arange(len(labels)) if patches is None else np.sort(np.asarray(patches, dtype=np.int64))
    pool = np.asarray(labels[chosen]).reshape(len(chosen), -1)
    classes = [c for c in np.unique(pool) if c != ignore_index]
    flat_all = []
    for c in classes:
        where = np.flatnonzero(pool == c)
        flat_all.append(np.sort(rng.choice(where, size=min(per_class, where.size), replace=False)))
    flat = np.concatenate(flat_all) if flat_all else np.zeros(0, np.int64)
    order = np.argsort(flat, kind="stable")
    hw = pool.shape[1]
    local, pix = np.divmod(flat[order], hw)
    x = np.empty((flat.size, images.shape[1]), dtype=np.float32)
    for i in np.unique(local):
        rows = np.flatnonzero(local == i)
        patch = np.asarray(images[chosen[i]]).reshape(images.shape[1], -1)
        x[order[rows]] = patch[:, pix[rows]].T
    y = np.asarray(pool.reshape(-1)[flat], dtype=np.int64)
    return x, y


def fit_logistic(x: np.ndarray, y: np.ndarray, seed: int = 0) -> Pipeline:
    """Multinomial logistic regression on standardised bands (the ``raw`` reference).

    Standardising first makes the L2 penalty treat every band alike (B10 spans a hundredth of
    B8's range) and lets lbfgs converge in a few hundred iterations.
    """
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    return model.fit(x, y)


def fit_random_forest(
    x: np.ndarray, y: np.ndarray, seed: int = 0, trees: int = FOREST_TREES, max_depth: int = FOREST_DEPTH
) -> RandomForestClassifier:
    """A seeded random forest (the ``rf`` reference); one job, so runs never fight for the cores."""
    model = RandomForestClassifier(n_estimators=trees, max_depth=max_depth, n_jobs=1, random_state=seed)
    return model.fit(x, y)


def predict_confusion(
    model: ClassifierMixin,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    chunk: int = 16,
    ignore_index: int = 255,
    patches: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """The global K x K test confusion matrix (rows = truth) of ``model`` over every valid pixel.

    Patches stream in groups of ``chunk`` so a 5128-patch memory map never sits in memory whole;
    ignored pixels are never predicted.
    """
    chosen = np.arange(len(labels)) if patches is None else np.asarray(patches, dtype=np.int64)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for start in range(0, len(chosen), chunk):
        idx = chosen[start : start + chunk]
        lab = np.asarray(labels[idx]).reshape(-1)
        valid = lab != ignore_index
        if not valid.any():
            continue
        img = np.asarray(images[idx], dtype=np.float32)
        x = np.moveaxis(img, 1, -1).reshape(-1, img.shape[1])[valid]
        cm += confusion_matrix(model.predict(x), lab[valid], num_classes, ignore_index)
    return cm
