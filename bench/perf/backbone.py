"""``bench perf --stage backbone``: the project's backbone against a standard segmentation model.

DESIGN 3 asks the whole :class:`~bench.models.base.SegBackbone` (band-shared stem, fusion, trunk,
decoder) to train at no less than half the throughput of its timm trunk plus a standard light
decoder, in at most 4x its memory. Measured in one run, on the same random batch shape
(``--batch`` x bands x ``--crop`` x ``--crop``), each model with a 1x1 classifier over 8 classes,
cross-entropy, AdamW; forward + backward + step, bf16 autocast and channels_last on CUDA:

- *project*: the backbone with the finetune protocol's classifier (:class:`Segmenter`);
- *standard*: the timm trunk on all bands + the same FPN-lite decoder at 1/4 + logits upsampled
  (:class:`~bench.models.timm_resnet.StandardSegmenter`; resnet18 for ``tiny``);
- *trunk alone*: the timm classification network on all bands (what issue 12's table started from);
- *plain stem*: the project model with ``lean_stem=False`` (:class:`~bench.models.base.SegBackbone`):
  what the memory-lean stem path saves in memory and costs in throughput, on this device.

Memory: CUDA's peak allocated memory per model. On CPU there is no peak counter worth the name, so
the rows say n/a there; on every device the stage also counts the activations each model holds
for its backward pass (distinct storages, weights left out, fp32, 2 images): the part of training
memory that grows with batch and crop, exact and independent of load.
Defaults: 256 px x 64 on CUDA, 64 px x 8 on CPU.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.core.device import as_input, autocast, resolve_device, to_device
from bench.models.backbones import build_backbone
from bench.models.timm_resnet import StandardSegmenter
from bench.perf.stages import PerfRow, register_stage
from bench.protocols.finetune import Segmenter

_CLASSES = 8
_BANDS = 15


@dataclass(frozen=True)
class TrainingCost:
    """Device-independent cost of one training forward + backward."""

    flops: float
    held_bytes: int  # distinct non-parameter storages saved for backward: the activations


def training_cost(model: nn.Module, x: torch.Tensor) -> TrainingCost:
    """FLOPs of ``model(x).mean().backward()`` and the activation bytes its forward pass saves
    for the backward pass (counted, not timed)."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    held: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            held[storage.data_ptr()] = storage.nbytes()
        return t

    with FlopCounterMode(display=False) as flops:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model(x).float().mean()
        # outside the hooks: what a backward pass recomputes (and frees) is not held from the
        # forward pass (bench.models.base's lean stem recomputes BatchNorm + ReLU there)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return TrainingCost(float(flops.get_total_flops()), sum(held.values()))


@dataclass(frozen=True)
class Measured:
    images_per_s: float
    peak_gib: float  # nan off CUDA
    cost: TrainingCost


def _measure(model: nn.Module, batch: int, crop: int, device: torch.device, steps: int) -> Measured:
    """Throughput of ``steps`` AdamW training steps (after 2 warm-up steps) and peak memory."""
    gen = torch.Generator().manual_seed(0)
    x_host = torch.rand(batch, _BANDS, crop, crop, generator=gen)
    y_host = torch.randint(_CLASSES, (batch, crop, crop), generator=gen)
    cost = training_cost(model.train(), x_host[:2].clone())  # 2: BatchNorm needs more than one value;
    # a copy: a slice would count the whole batch's storage as held
    model = to_device(model, device).train()
    x, y = as_input(x_host, device), y_host.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        opt.step()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan
    return Measured(steps * batch / seconds, peak, cost)


@register_stage("backbone")
def backbone_stage(args: argparse.Namespace) -> list[PerfRow]:
    """Project backbone vs standard segmenter vs trunk alone: images/s, peak memory, cost ratios."""
    import timm

    device = resolve_device(getattr(args, "device", "auto"))
    cuda = device.type == "cuda"
    name = getattr(args, "backbone", None) or "tiny"
    crop = getattr(args, "crop", None) or (256 if cuda else 64)
    batch = getattr(args, "batch", None) or (64 if cuda else 8)
    steps = getattr(args, "steps", None) or (20 if cuda else 3)
    torch.manual_seed(0)
    backbone = build_backbone(name, _BANDS)
    timm_name = str(backbone.spec.extra.get("timm", "resnet18"))
    models: dict[str, nn.Module] = {
        f"project {name} (stem + fusion + trunk + decoder)": Segmenter(backbone, _CLASSES),
        f"standard {timm_name} (trunk + FPN-lite at 1/4, logits upsampled)": StandardSegmenter(
            timm_name, _BANDS, _CLASSES
        ),
        f"{timm_name} trunk alone (classifier)": timm.create_model(
            timm_name, in_chans=_BANDS, num_classes=_CLASSES
        ),
    }
    plain = copy.deepcopy(backbone)
    plain.lean_stem = False  # the stem and fusion as plain layers: what the lean path saves and costs
    models[f"project {name}, plain stem (lean_stem=False)"] = Segmenter(plain, _CLASSES)
    shape = f"{batch}x{_BANDS}x{crop}x{crop}, {device.type}{', bf16' if cuda else ', fp32'}"
    rows: list[PerfRow] = []
    results: list[Measured] = []
    for label, model in models.items():
        if label.endswith("(classifier)"):  # image-level logits: the loss needs (B,) targets
            model = _ImageLevel(model)
        measured = _measure(model, batch, crop, device, steps)
        model.cpu()  # the next model's peak is its own
        if cuda:
            torch.cuda.empty_cache()
        results.append(measured)
        rows += [
            PerfRow("backbone", f"{label} ({shape})", measured.images_per_s, "images/s"),
            PerfRow("backbone", f"{label} peak memory", measured.peak_gib, "GiB"),
            PerfRow(
                "backbone",
                f"{label} activations held for backward, 2 images",
                measured.cost.held_bytes / 2**20,
                "MiB",
            ),
            PerfRow("backbone", f"{label} fwd+bwd, 2 images", measured.cost.flops / 1e9, "GFLOP"),
        ]
    ours, standard, plain_stem = results[0], results[1], results[3]
    rows += [
        PerfRow(
            "backbone",
            "project / standard throughput (goal >= 0.5)",
            ours.images_per_s / standard.images_per_s,
            "ratio",
        ),
        PerfRow(
            "backbone",
            "project / standard peak memory (goal <= 4)",
            ours.peak_gib / standard.peak_gib,
            "ratio",
        ),
        PerfRow(
            "backbone",
            "project / standard activations held for backward",
            ours.cost.held_bytes / standard.cost.held_bytes,
            "ratio",
        ),
        PerfRow("backbone", "project / standard FLOPs", ours.cost.flops / standard.cost.flops, "ratio"),
        PerfRow(
            "backbone",
            "lean / plain stem throughput",
            ours.images_per_s / plain_stem.images_per_s,
            "ratio",
        ),
        PerfRow("backbone", "lean / plain stem peak memory", ours.peak_gib / plain_stem.peak_gib, "ratio"),
        PerfRow(
            "backbone",
            "lean / plain stem activations held for backward",
            ours.cost.held_bytes / plain_stem.cost.held_bytes,
            "ratio",
        ),
    ]
    return rows


class _ImageLevel(nn.Module):
    """A classification network as a dense one (its logits broadcast to every pixel): the same
    loss code times it; the broadcast costs nothing next to the network."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        return logits[:, :, None, None].expand(-1, -1, *x.shape[-2:])
