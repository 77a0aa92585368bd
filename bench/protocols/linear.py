"""The linear protocol (DESIGN 5): a per-pixel softmax regression on a frozen backbone.

The features of the budget's labelled pixels (training and validation) are extracted once per
checkpoint and cached (:mod:`bench.protocols.features`); the test split is streamed batch by batch
through backbone + probe into the confusion matrix and never stored, so disk use grows with the
budget, not with the test set.

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

from bench.core.device import autocast, to_device
from bench.core.errors import NonFiniteLossError
from bench.models.backbones import SegBackbone, upsample
from bench.protocols.budget import LabelBudget
from bench.protocols.features import budget_features
from bench.protocols.registry import EvalProtocol, FitJob, register_protocol
from bench.protocols.validation import Predict, confusion_on_split


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
    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """(..., D) features -> (..., K) class scores, in float32 whatever the features' dtype."""
        return self.layer((feats.float() - self.mean) / self.std)

    def predict(self, feats: torch.Tensor) -> torch.Tensor:
        return self.logits(feats).argmax(-1)


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


def linear_predictor(backbone: SegBackbone, probe: LinearProbe, device: torch.device) -> Predict:
    """``x -> class map`` through the frozen backbone and the probe.

    The probe (an affine map) runs on the backbone's coarse features and its logits are upsampled,
    which equals the probe on the upsampled features (bilinear weights sum to one) at K instead of
    D channels per full-resolution pixel.
    """
    to_device(backbone, device).eval()

    @torch.no_grad()
    def predict(x: torch.Tensor) -> torch.Tensor:
        with autocast(device):
            coarse = backbone.features(x)
        return upsample(probe.logits(coarse.movedim(1, -1)).movedim(-1, 1), x.shape[-2:]).argmax(1)

    return predict


def stream_confusion(
    backbone: SegBackbone,
    probe: LinearProbe,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    device: torch.device,
    batch_size: int = 8,
    progress: bool = False,
) -> np.ndarray:
    """Global confusion matrix over every valid pixel of ``images``, batch by batch through
    backbone + probe: nothing of the split is kept beyond the (K, K) counts."""
    predict = linear_predictor(backbone, probe, device)
    return confusion_on_split(predict, images, labels, num_classes, device, batch_size, progress)


def fit_probe(
    backbone: SegBackbone,
    ds: Any,
    budget: LabelBudget,
    cfg: LinearConfig,
    device: torch.device,
    progress: bool,
    cache: bool = True,
) -> LinearProbe:
    """The probe fitted on the features of the budget's training pixels (only those): cached, or
    with ``cache=False`` extracted and dropped (features read once, e.g. a pretraining run's
    usefulness figure, :mod:`bench.harness.usefulness`)."""
    feats = budget_features(backbone, ds, budget, device, progress, cache)
    x = torch.from_numpy(feats).to(device)
    return fit_linear(x, torch.from_numpy(budget.label).to(device), ds.classes.num_classes, cfg)


@register_protocol("linear")
class Linear(EvalProtocol):
    """Frozen backbone, per-pixel softmax regression on cached budget-pixel features (DESIGN 5)."""

    description = "frozen backbone + per-pixel linear classifier; test split streamed, never cached"
    Config = LinearConfig

    def fit(self, job: FitJob) -> Predict:
        """Convex probe (no training seed) on the frozen backbone's features."""
        assert job.backbone is not None, "the linear protocol needs a backbone"
        probe = fit_probe(job.backbone, job.ds, job.budget, job.cfg, job.device, job.progress)
        return linear_predictor(job.backbone, probe, job.device)


def run_linear(
    backbone: SegBackbone,
    ds: Any,
    budget: LabelBudget,
    cfg: LinearConfig,
    device: torch.device,
    progress: bool = True,
    split: str = "test",
) -> np.ndarray:
    """The linear protocol's confusion matrix on ``split`` (``Linear().evaluate``)."""
    return Linear().evaluate(backbone, ds, budget, cfg, seed=0, device=device, progress=progress, split=split)
