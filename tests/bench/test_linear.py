"""The linear probe agrees with scikit-learn's logistic regression; a NaN loss is an error."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from bench.core.errors import NonFiniteLossError
from bench.models.backbones import build_backbone
from bench.protocols.budget import draw_budget
from bench.protocols.linear import LinearConfig, fit_linear, run_linear
from datasets import Dataset


def blobs(n: int = 2000, dim: int = 16, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(k, dim, generator=gen)
    y = torch.randint(0, k, (n,), generator=gen)
    return 3 + 2 * (centers[y] + 1.2 * torch.randn(n, dim, generator=gen)), y


def test_matches_sklearn_logistic_regression() -> None:
    x, y = blobs()
    cfg = LinearConfig(weight_decay=1e-3)
    ours = fit_linear(x, y, 5, cfg).predict(x).numpy()
    z = StandardScaler().fit_transform(x.numpy())
    sk = LogisticRegression(C=1 / (len(x) * cfg.weight_decay), max_iter=1000).fit(z, y.numpy()).predict(z)
    acc_ours, acc_sk = (ours == y.numpy()).mean(), (sk == y.numpy()).mean()
    assert abs(acc_ours - acc_sk) < 0.01
    assert (ours == sk).mean() > 0.98


def test_non_finite_features_raise() -> None:
    x, y = blobs(200)
    x[3, 2] = float("inf")
    with pytest.raises(NonFiniteLossError):
        fit_linear(x, y, 5, LinearConfig())


def test_standardisation_is_part_of_the_probe() -> None:
    x, y = blobs(500)
    probe = fit_linear(x, y, 5, LinearConfig())
    np.testing.assert_array_equal(probe.predict(x).numpy(), probe.predict(x.half()).numpy())


def test_run_linear_scores_every_valid_pixel(tiny_dataset: Dataset) -> None:
    ds = tiny_dataset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        budget = draw_budget(
            ds.labelled.labels, fingerprint=ds.fingerprint, class_names=ds.classes.names, samples=10
        )
    backbone = build_backbone("tiny", len(ds.band_names))
    cpu = torch.device("cpu")
    test = run_linear(backbone, ds, budget, LinearConfig(max_iter=20), cpu, progress=False)
    val = run_linear(backbone, ds, budget, LinearConfig(max_iter=20), cpu, progress=False, split="val")
    assert test.sum() == (np.asarray(ds.test.labels) != 255).sum()
    assert val.sum() == (np.asarray(ds.labelled.labels)[budget.val_patches] != 255).sum()
