"""The finetune protocol (DESIGN 5): backbone + 1x1 classifier trained end to end.

Every method gets the same schedule (fixed steps, AdamW, linear warm-up then cosine decay).
Cross-entropy is taken only at the budget's labelled pixels (``ignore_index`` elsewhere), on
random square crops that each contain a labelled pixel, with random flips and 90-degree rotations.
The loop indexes tensors directly (no DataLoader): the training patches live on the device when
they fit, and cropping and augmentation run there too. The checkpoint with the best validation AA
(on the held-out validation patches of the labelled pool, evaluated every ``eval_every`` steps)
is the one tested.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bench.core.device import as_input, autocast, fits_on_device, host_tensor, to_device
from bench.core.errors import NonFiniteLossError
from bench.core.schedule import warmup_cosine
from bench.models.backbones import SegBackbone
from bench.protocols.budget import LabelBudget
from bench.protocols.metrics import Scores, confusion_update

IGNORE = 255


@dataclass(frozen=True)
class FinetuneConfig:
    """Finetune settings (hashed into result keys).

    The defaults are sized for the tiny backbone on 2 CPU cores (about 0.06 s a step there); they
    are the same on every device so results stay comparable. Real runs raise them with
    ``--set finetune.steps=... --set finetune.crop=...``. 400 steps, not fewer: at 200 the
    embedded default was under-converged (SimSiam at 200 pixels per class: AA 77.6 +- 9.0 with
    per-class stds up to 44 points over 3 seeds, against 85.0 +- 2.1 at 400 steps).
    """

    steps: int = 400
    batch_size: int = 8
    crop: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    eval_every: int = 50  # validation AA for checkpoint selection


class Segmenter(nn.Module):
    """Backbone features -> 1x1 conv logits, per pixel."""

    def __init__(self, backbone: SegBackbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Conv2d(backbone.out_dim, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


@dataclass
class TrainingPatches:
    """The patches holding labelled pixels, their sparse label maps and the pixel list, on one device."""

    images: torch.Tensor  # (P, C, H, W) float16
    labels: torch.Tensor  # (P, H, W) uint8: class at budget pixels, IGNORE elsewhere
    pixels: torch.Tensor  # (n, 3) int64: (local patch, row, col) of every labelled pixel

    @classmethod
    def from_budget(cls, images: np.ndarray, budget: LabelBudget, device: torch.device) -> TrainingPatches:
        patches = budget.labelled_patches
        local = np.searchsorted(patches, budget.patch)
        sparse = np.full((patches.size, *images.shape[2:]), IGNORE, dtype=np.uint8)
        sparse[local, budget.row, budget.col] = budget.label
        data = host_tensor(images[patches])
        home = device if fits_on_device(data.numel() * data.element_size(), device) else torch.device("cpu")
        return cls(
            data.to(home),
            torch.from_numpy(sparse).to(home),
            torch.from_numpy(np.stack([local, budget.row, budget.col], 1)).to(home),
        )

    def batch(self, size: int, crop: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` random crops, each containing a random labelled pixel, randomly flipped/rotated."""
        dev = self.images.device
        h, w = self.images.shape[-2:]
        crop = min(crop, h, w)
        pick = self.pixels[torch.randint(len(self.pixels), (size,), generator=gen, device=dev)]
        p, r, c = pick.unbind(1)
        top = (r - torch.randint(crop, (size,), generator=gen, device=dev)).clamp(0, h - crop)
        left = (c - torch.randint(crop, (size,), generator=gen, device=dev)).clamp(0, w - crop)
        ar = torch.arange(crop, device=dev)
        rows, cols = (top[:, None] + ar)[:, :, None], (left[:, None] + ar)[:, None, :]
        x = self.images[p[:, None, None], :, rows, cols].permute(0, 3, 1, 2)  # (B, C, crop, crop)
        y = self.labels[p[:, None, None], rows, cols]
        return augment(x, y, gen)


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample horizontal/vertical flips and rot90 of images (B, C, S, S) and labels (B, S, S)."""
    for op in (lambda t: t.flip(-1), lambda t: t.flip(-2), lambda t: t.rot90(1, (-2, -1))):
        m = torch.rand(len(x), generator=gen, device=x.device) < 0.5
        x = torch.where(m[:, None, None, None], op(x), x)
        y = torch.where(m[:, None, None], op(y), y)
    return x, y


def lr_factor(step: int, cfg: FinetuneConfig) -> float:
    """Linear warm-up, then cosine decay to zero at ``cfg.steps``."""
    return warmup_cosine(step, cfg.warmup_steps, cfg.steps)


@torch.no_grad()
def predict_confusion(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    device: torch.device,
    batch_size: int = 8,
) -> np.ndarray:
    """Global confusion matrix of ``model`` on full patches (every valid pixel)."""
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    for start in range(0, len(images), batch_size):
        x = as_input(host_tensor(images[start : start + batch_size]), device)
        with autocast(device):
            pred = model(x).argmax(1)
        confusion_update(cm, pred, host_tensor(labels[start : start + batch_size]).to(device))
    return cm.cpu().numpy()


def train_step(
    model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """One forward/backward/update at labelled pixels; returns the (detached) loss."""
    with autocast(device):
        logits = model(as_input(x, device))
    loss = F.cross_entropy(logits.float(), y.to(device).long(), ignore_index=IGNORE)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def finetune(
    backbone: SegBackbone,
    ds: Any,
    budget: LabelBudget,
    cfg: FinetuneConfig,
    seed: int,
    device: torch.device,
    progress: bool = True,
) -> nn.Module:
    """Train a copy of ``backbone`` + head; return the model at its best validation AA."""
    torch.manual_seed(seed)
    model = to_device(Segmenter(copy.deepcopy(backbone), ds.classes.num_classes), device)
    data = TrainingPatches.from_budget(ds.labelled.images, budget, device)
    gen = torch.Generator(data.images.device).manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    val_images, val_labels = ds.labelled.images[budget.val_patches], ds.labelled.labels[budget.val_patches]
    best: tuple[float, dict[str, torch.Tensor]] = (-1.0, {})
    bad = torch.zeros((), dtype=torch.bool, device=device)
    for step in tqdm(range(cfg.steps), desc="finetune", disable=not progress, leave=False):
        model.train()
        loss = train_step(model, opt, *data.batch(cfg.batch_size, cfg.crop, gen), device)
        sched.step()
        bad |= ~torch.isfinite(loss)
        last = step + 1 == cfg.steps
        # sync rarely: a NaN still stops the run within 10 steps
        if ((step + 1) % 10 == 0 or last) and bad.item():
            raise NonFiniteLossError(f"finetune loss became non-finite at step {step + 1}; no result written")
        if (step + 1) % cfg.eval_every == 0 or last:
            aa = Scores.from_confusion(
                predict_confusion(model, val_images, val_labels, ds.classes.num_classes, device)
            ).aa
            if aa > best[0]:
                best = (aa, {k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])
    return model


def run_finetune(
    backbone: SegBackbone,
    ds: Any,
    budget: LabelBudget,
    cfg: FinetuneConfig,
    seed: int,
    device: torch.device,
    progress: bool = True,
    split: str = "test",
) -> np.ndarray:
    """Finetune (best validation checkpoint); the confusion matrix on ``split``: ``test`` (results)
    or ``val`` (the validation patches that also selected the checkpoint, for tuning)."""
    model = finetune(backbone, ds, budget, cfg, seed, device, progress)
    if split == "val":
        val = budget.val_patches
        return predict_confusion(
            model, ds.labelled.images[val], ds.labelled.labels[val], ds.classes.num_classes, device
        )
    return predict_confusion(model, ds.test.images, ds.test.labels, ds.classes.num_classes, device)
