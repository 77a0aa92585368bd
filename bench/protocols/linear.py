"""The linear protocol (DESIGN 5): a per-pixel softmax regression on frozen, cached features.

The classifier sees features standardised with the training pixels' mean and std (still a
linear map of the raw features, but well conditioned for every backbone), and is fitted full-batch
with L-BFGS on mean cross-entropy + ``weight_decay / 2 * ||W||^2``: a convex problem with one
optimum, so the result does not depend on a training seed and matches scikit-learn's
``LogisticRegression(C=1 / (n * weight_decay))`` on the same features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.device import host_tensor
from bench.core.errors import NonFiniteLossError
from bench.models.backbones import SegBackbone
from bench.protocols.budget import LabelBudget
from bench.protocols.features import cached_features
from bench.protocols.metrics import confusion_update


@dataclass(frozen=True)
class LinearConfig:
    """Linear-probe settings (hashed into result keys)."""

    weight_decay: float = 1e-4  # L2 on the weights, per mean-loss unit
    max_iter: int = 200  # L-BFGS iterations (full batch); converges well before on ~10^4 pixels


@dataclass
class LinearProbe:
    """Standardisation + linear layer: ``predict`` maps (..., D) features to class indices."""

    mean: torch.Tensor
    std: torch.Tensor
    layer: nn.Linear
    evals: int  # loss evaluations L-BFGS used: the epochs an uncached probe would re-run the backbone

    @torch.no_grad()
    def predict(self, feats: torch.Tensor) -> torch.Tensor:
        return self.layer((feats.float() - self.mean) / self.std).argmax(-1)


def fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: LinearConfig) -> LinearProbe:
    """Fit the probe on features ``x`` (n, D) and labels ``y`` (n,); NaN/inf loss raises."""
    x = x.float()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    layer = nn.Linear(x.shape[1], num_classes).to(x.device)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    opt = torch.optim.LBFGS(
        layer.parameters(),
        lr=1,
        max_iter=cfg.max_iter,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
    )

    evals = 0

    def closure() -> torch.Tensor:
        nonlocal evals
        evals += 1
        opt.zero_grad()
        loss = F.cross_entropy(layer(z), y) + 0.5 * cfg.weight_decay * layer.weight.square().sum()
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"linear probe loss became non-finite ({loss.item()}); no result written"
            )
        loss.backward()
        return loss

    opt.step(closure)
    return LinearProbe(mean, std, layer.eval(), evals)


def stream_confusion(
    probe: LinearProbe,
    feats: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    device: torch.device,
    patches: np.ndarray | None = None,
    chunk: int = 16,
) -> np.ndarray:
    """Global confusion matrix over all valid pixels of ``patches`` (default: all), chunk by chunk."""
    index = np.arange(len(feats)) if patches is None else np.asarray(patches)
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    for start in range(0, len(index), chunk):
        rows = index[start : start + chunk]
        f = host_tensor(feats[rows]).to(device)
        confusion_update(cm, probe.predict(f), host_tensor(labels[rows]).to(device))
    return cm.cpu().numpy()


def run_linear(
    backbone: SegBackbone,
    ds: Any,
    budget: LabelBudget,
    cfg: LinearConfig,
    device: torch.device,
    progress: bool = True,
    split: str = "test",
) -> np.ndarray:
    """Train on the budget's pixels of the cached labelled-pool features; the confusion matrix on
    ``split``: ``test`` (results) or ``val`` (the budget's validation patches, for tuning)."""
    k = ds.classes.num_classes
    train = cached_features(
        backbone,
        ds.labelled.images,
        split_fingerprint=ds.labelled.fingerprint,
        device=device,
        progress=progress,
    )
    x = host_tensor(train[budget.patch, budget.row, budget.col]).to(device)
    probe = fit_linear(x, torch.from_numpy(budget.label).to(device), k, cfg)
    if split == "val":
        return stream_confusion(probe, train, ds.labelled.labels, k, device, patches=budget.val_patches)
    test = cached_features(
        backbone, ds.test.images, split_fingerprint=ds.test.fingerprint, device=device, progress=progress
    )
    return stream_confusion(probe, test, ds.test.labels, k, device)
