"""The linear probe agrees with scikit-learn's logistic regression; a NaN loss is an error."""

from __future__ import annotations

import dataclasses
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from bench.core.errors import NonFiniteLossError
from bench.models.backbones import build_backbone
from bench.protocols.budget import LabelBudget, draw_budget
from bench.protocols.linear import LinearConfig, fit_linear, run_linear, stream_confusion
from bench.protocols.metrics import confusion_matrix
from datasets import Dataset

CPU = torch.device("cpu")


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


def _budget(ds: Dataset, samples: int) -> LabelBudget:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short classes are fine here
        return draw_budget(
            ds.labelled.labels, fingerprint=ds.fingerprint, class_names=ds.classes.names, samples=samples
        )


def test_run_linear_scores_every_valid_test_pixel_and_the_budgets_validation_pixels(
    tiny_dataset: Dataset,
) -> None:
    ds = tiny_dataset
    budget = _budget(ds, 10)
    backbone = build_backbone("tiny", len(ds.band_names))
    test = run_linear(backbone, ds, budget, LinearConfig(max_iter=20), CPU, progress=False)
    val = run_linear(backbone, ds, budget, LinearConfig(max_iter=20), CPU, progress=False, split="val")
    assert test.sum() == (np.asarray(ds.test.labels) != 255).sum()
    assert val.sum() == budget.val_label.size > 0


def test_streamed_test_confusion_is_the_probe_on_full_resolution_features(tiny_dataset: Dataset) -> None:
    """The stream applies the probe before upsampling: the same predictions as after it."""
    ds = tiny_dataset
    torch.manual_seed(0)
    backbone = build_backbone("tiny", len(ds.band_names)).eval()
    budget = _budget(ds, 10)
    with torch.no_grad():
        feats = backbone(torch.from_numpy(np.asarray(ds.labelled.images, dtype=np.float32)))
    train = feats[budget.patch, :, budget.row, budget.col]
    probe = fit_linear(train, torch.from_numpy(budget.label), ds.classes.num_classes, LinearConfig())
    with torch.no_grad():
        test_feats = backbone(torch.from_numpy(np.asarray(ds.test.images, dtype=np.float32)))
    dense = confusion_matrix(
        probe.predict(test_feats.movedim(1, -1)).numpy(), np.array(ds.test.labels), ds.classes.num_classes
    )
    streamed = stream_confusion(
        backbone, probe, ds.test.images, ds.test.labels, ds.classes.num_classes, CPU, batch_size=3
    )
    assert np.abs(streamed - dense).sum() <= 2  # float rounding may flip a near-tie, nothing more


def _feature_cache_bytes(home: Path) -> int:
    return sum(f.stat().st_size for f in (home / "features").iterdir())


def test_feature_cache_grows_with_the_budget_not_with_the_test_set(
    tiny_dataset: Dataset, bench_home_dir: Path
) -> None:
    ds = tiny_dataset
    two_test_patches = dataclasses.replace(
        ds, test=dataclasses.replace(ds.test, images=ds.test.images[:2], labels=ds.test.labels[:2])
    )
    backbone = build_backbone("tiny", len(ds.band_names))
    cfg = LinearConfig(max_iter=5)
    disk = {}
    for name, variant, samples in [
        ("2 test", two_test_patches, 10),
        ("8 test", ds, 10),
        ("8 test x2", ds, 20),
    ]:
        shutil.rmtree(bench_home_dir / "features", ignore_errors=True)
        run_linear(backbone, variant, _budget(ds, samples), cfg, CPU, progress=False)
        disk[name] = _feature_cache_bytes(bench_home_dir)
    assert disk["2 test"] == disk["8 test"] < disk["8 test x2"]
    (entry,) = (bench_home_dir / "features").glob("*.npy")
    budget = _budget(ds, 20)
    assert np.load(entry).shape == (budget.label.size, backbone.out_dim)  # the training pixels, nothing else
