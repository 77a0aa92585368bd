"""The one training loop every pretraining method uses, and its batch sampler.

A method supplies its trainable modules and a loss function ``(batch, gen) -> (loss, monitors)``;
:func:`fit` does the rest the same way for every method: data resident on the device when it
fits, random index batches without a DataLoader, bf16 autocast and channels_last on CUDA
(``bench.core.device``), data-parallel gradients under torchrun, and MLflow metrics every
``log_every`` steps. The optimisation itself (AdamW, warm-up + cosine, the non-finite guard naming
the method and the step, progress) is :func:`bench.core.loop.run_steps`, which fine-tuning uses too.

**The compute rule** (DESIGN 4): every trained pretraining (the self-supervised methods and the
supervised control alike) sees the same number of images, ``steps x batch_size`` summed over a
method's stages (:func:`images_seen`; SimSiam's two views of an image count as one image, a crop as
the image). The number lives here, per preset, in :data:`PRETRAIN_IMAGES`: each method's default
config sees the ``cpu`` figure, ``bench.harness.presets`` derives every stage's steps under other
presets from it (a composite method keeps its defaults' split between stages: ``sscl`` a third
UniFeat, two thirds CoRe), and ``scripts/choose_pretrain_schedules.py`` and
``tests/methods/test_compute_rule.py`` read it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from bench.core.device import as_input, autocast, fits_on_device, to_device
from bench.core.distributed import average_, broadcast_, world
from bench.core.errors import BenchError
from bench.core.loop import run_steps
from methods.registry import PretrainContext
from methods.registry import images_seen as images_seen  # the compute rule's figure, re-exported

#: Images seen by every trained method's pretraining, per preset (``bench.harness.presets``).
#: ``cpu``: 4800 (issue 20: 150 steps of 32 for SimSiam, its candidates' best on validation pixels;
#: a few hundred steps on 2 cores). ``paper``: 192,000, SimSiam's 3000 steps of 64 on a GPU (about
#: 200 passes over DFC2020's 986 labelled-pool patches), now every method's (issue 32: UniFeat and
#: CoRe alone saw 64,000 and 128,000, the control 19,200).
PRETRAIN_IMAGES: dict[str, int] = {"cpu": 4_800, "paper": 192_000}

#: A monitor: a tensor, or a zero-argument callable evaluated only at logging points (for costly
#: monitors such as an SVD, which would otherwise run, and sync a GPU, at every step).
Monitor = torch.Tensor | Callable[[], torch.Tensor]
#: A loss and the monitors (e.g. collapse std, effective rank) logged with it.
StepOutput = tuple[torch.Tensor, dict[str, Monitor]]
#: ``loss_fn(batch, gen) -> (loss, monitors)``: batch (B, C, H, W) float32 on the device.
LossFn = Callable[[torch.Tensor, torch.Generator], StepOutput]


@dataclass
class TrainConfig:
    """Schedule fields shared by every trained method (methods subclass this and change defaults).

    AdamW rather than SimSiam's SGD: the CPU schedules are a few hundred steps, where an adaptive
    optimiser converges much faster; ``warmup`` is a fraction of ``steps`` before cosine decay.
    """

    #: Settings per preset (``bench --preset NAME``, :mod:`bench.harness.presets`) for a stage of
    #: this class; a subclass without its own entry for a preset gets this generic one.
    presets: ClassVar[dict[str, dict[str, Any]]] = {"paper": {"batch_size": 64, "crop": 128}}

    steps: int = 200
    batch_size: int = 32
    crop: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05
    log_every: int = 10


class ImageBatches:
    """Random batches of the unlabelled pool, drawn by index (with replacement), no DataLoader.

    On CUDA the whole pool is copied to the device once as float16 when it fits
    (``bench.core.device.fits_on_device``); otherwise (CPU, or too large) each batch is gathered from
    the memmap, in sorted index order for locality, and moved.
    """

    def __init__(self, images: np.ndarray, device: torch.device, gen: torch.Generator) -> None:
        if len(images) == 0:
            raise BenchError("pretraining needs unlabelled images, got an empty pool")
        self.images = images
        self.device = device
        self.gen = gen
        self.resident: torch.Tensor | None = None
        if device.type == "cuda" and fits_on_device(images.nbytes, device):
            self.resident = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float16)).to(device)

    def __len__(self) -> int:
        return len(self.images)

    def draw(self, batch_size: int, part: tuple[int, int] = (0, 1)) -> torch.Tensor:
        """A (batch_size, C, H, W) float32 batch on the device; with ``part=(rank, ranks)``, that
        rank's share of it (every rank draws the same global batch and keeps its slice)."""
        idx = torch.randint(len(self.images), (batch_size,), generator=self.gen, device=self.device)
        if part[1] > 1:
            share = batch_size // part[1]
            idx = idx[part[0] * share : (part[0] + 1) * share]
        if self.resident is not None:
            return as_input(self.resident[idx], self.device)
        rows = np.sort(idx.cpu().numpy())
        return as_input(torch.from_numpy(np.asarray(self.images[rows], dtype=np.float32)), self.device)


def make_generator(ctx: PretrainContext, salt: int = 0) -> torch.Generator:
    """The seeded generator for batch indices and augmentations, on the context's device."""
    return torch.Generator(device=ctx.device).manual_seed(ctx.seed * 1_000_003 + salt)


def fit(
    label: str,
    modules: Iterable[nn.Module],
    params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
    images: np.ndarray,
    ctx: PretrainContext,
    cfg: TrainConfig,
    loss_fn: LossFn,
    salt: int = 0,
) -> list[float]:
    """Train ``params`` for ``cfg.steps`` on batches of ``images``; returns the loss of every step.

    ``modules`` are moved to the device and put in train mode (everything ``loss_fn`` runs);
    ``params`` is what the optimiser updates (a subset, for methods that train part of a model), or
    optimiser parameter groups (dicts with their own ``lr``, e.g. a pretrained stem trained slower;
    the schedule scales every group alike).
    ``label`` names the method (or ``sscl/unifeat`` for a stage) in metric keys and errors.
    Finiteness is checked at every logging point, without a device sync per step, and the error
    names the first non-finite step.
    """
    if min(cfg.steps, cfg.batch_size, cfg.log_every) < 1:
        raise BenchError(f"{label}: steps, batch_size and log_every must be positive, got {cfg}")
    for module in modules:
        to_device(module, ctx.device).train()
    gen = make_generator(ctx, salt)
    batches = ImageBatches(images, ctx.device, gen)
    rank, ranks = world()
    if ranks > 1:  # data parallel under torchrun (bench.core.distributed): the global batch is split
        if cfg.batch_size % ranks:
            raise BenchError(f"{label}: batch_size {cfg.batch_size} does not split over {ranks} processes")
        # batch indices: the shared generator above; augmentations: one generator per rank
        gen = make_generator(ctx, salt + 7_919 * (rank + 1))
    given: list[Any] = list(params)
    groups = given if given and isinstance(given[0], dict) else [{"params": given}]
    broadcast_([p.data for group in groups for p in group["params"]])  # every rank starts from rank 0's
    monitors: dict[str, Monitor] = {}

    def loss_at(step: int) -> torch.Tensor:
        batch = batches.draw(cfg.batch_size, (rank, ranks))
        with autocast(ctx.device):
            loss, latest = loss_fn(batch, gen)
        monitors.clear()
        monitors.update(latest)  # only the last step's monitors are evaluated, at logging points
        return loss

    def log(steps_done: int, losses: torch.Tensor, lr: float) -> str:
        metrics = {"loss": float(losses.mean()), "lr": lr}
        values = {k: v() if callable(v) else v for k, v in monitors.items()}
        metrics.update({k: float(v.detach().float()) for k, v in values.items()})
        ctx.log_metrics({f"{label}/{k}": v for k, v in metrics.items()}, steps_done - 1)
        return f"loss {metrics['loss']:.4f}"

    def average_gradients(trained: list[nn.Parameter]) -> None:
        # the mean gradient over ranks = the gradient of the global batch's mean loss
        average_([p.grad for p in trained if p.grad is not None])

    return run_steps(
        f"pretrain {label}",
        groups,
        cfg,
        loss_at,
        device=ctx.device,
        check_every=cfg.log_every,
        on_check=log,
        after_backward=average_gradients if ranks > 1 else None,
        reduce_losses=lambda losses: average_([losses]),  # the global batch's loss, alike on every rank
        progress=ctx.progress,
    )


@torch.no_grad()
def recompute_bn_statistics(
    backbone: nn.Module, images: np.ndarray, device: torch.device, batches: int = 16, batch_size: int = 16
) -> None:
    """Re-estimate every BatchNorm's running mean and variance on clean patches of ``images``.

    A pretraining method estimates them on what it fed the network (CoRe: degraded inputs, two
    thirds of its stem's batch; SimSiam: augmented crops), while downstream sees clean full
    patches. This replaces them by a cumulative average over ``batches`` evenly spaced batches of
    whole clean patches, weights untouched.

    Decision (issue 20 item 4, for every method alike): **not done**; the transferred backbone keeps
    the statistics its pretraining estimated. ``scripts/choose_pretrain_schedules.py`` scores every
    run both ways (linear-probe AA on the v3 embedded default's validation pixels, 200 px/class,
    budget seeds 0-1). Paired, as trained -> recomputed, over 20 runs of simsiam, unifeat, core and
    sscl (every candidate schedule, and the chosen defaults of sscl and core at pretraining seeds
    0-4): mean +0.6 pp, 14 up and 6 down, range -1.9 to +3.3. At the chosen defaults: sscl 56.5 ->
    57.1 (per seed +1.4, +0.5, -0.2, +3.1, -1.9), core 59.9 -> 59.9 (+1.9, -0.6, +0.1, +0.6,
    -1.7). That is below the spread between pretraining seeds (sscl 48.1-60.2) and not consistent
    in sign, so it is not worth a step the published recipes do not have. Note also: the dead
    -1-marker run (sscl seed 1, AA 20.3) scores 51.9 with recomputed statistics, so recomputing
    would hide a dead pretraining from the probe; the health gate is what must catch it.
    """
    norms = [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or len(images) == 0:
        return
    momenta = [m.momentum for m in norms]
    was_training = backbone.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    backbone.train()
    rows = np.linspace(0, len(images) - 1, min(len(images), batches * batch_size)).astype(int)
    for start in range(0, len(rows), batch_size):
        batch = np.asarray(images[np.sort(rows[start : start + batch_size])], dtype=np.float32)
        backbone(as_input(torch.from_numpy(batch), device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    backbone.train(was_training)
