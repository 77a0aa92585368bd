"""``bench perf --stage train``: how close the training loops come to the model's own limit.

- finetune: images/s of the harness step (crop sampling + GPU-side augmentation + forward/backward/
  AdamW) against the bare model's forward+backward+step on one batch already on the device; the
  ratio is the share of the limit the harness reaches.
- linear: one probe fit from cached features against the same fit if every L-BFGS loss evaluation
  (an epoch over the labelled pixels) had to re-run the backbone over the labelled patches. The
  backbone pass is timed; the epoch count is the one the fit used. Also the test split streamed
  through backbone + probe (patches/s), and the disk the budget's feature cache takes against what
  caching the test split's features would (DESIGN 5: disk grows with the budget, not the test set).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings
from collections.abc import Callable

import torch

from bench.core.device import host_tensor, resolve_device, to_device
from bench.models.backbones import build_backbone
from bench.perf.stages import PerfRow, register_stage, stage_dataset
from bench.protocols.budget import draw_budget
from bench.protocols.features import cached_pixel_features, pixel_features
from bench.protocols.finetune import FinetuneConfig, Segmenter, TrainingPatches, train_step
from bench.protocols.linear import LinearConfig, fit_linear, stream_confusion

_WARMUP, _STEPS, _SAMPLES = 3, 20, 200


def _timed(fn: Callable[[], object], device: torch.device, repeat: int = 1) -> float:
    """Seconds per call of ``fn`` (CUDA-synchronised), after one untimed warm-up call."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeat


@register_stage("train")
def train_stage(args: argparse.Namespace) -> list[PerfRow]:
    """Finetune images/s (harness vs bare model) and the linear probe's cached-feature speed-up."""
    ds = stage_dataset(args)
    labels = ds.labelled.labels
    assert labels is not None  # the labelled pool always has labels
    device = resolve_device(getattr(args, "device", "auto"))
    torch.manual_seed(0)
    backbone = build_backbone(getattr(args, "backbone", "tiny"), len(ds.band_names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short class is fine for timing
        budget = draw_budget(
            labels, fingerprint=ds.fingerprint, class_names=ds.classes.names, samples=_SAMPLES
        )
    sizes = {"crop": getattr(args, "crop", None), "batch_size": getattr(args, "batch", None)}
    cfg = dataclasses.replace(FinetuneConfig(), **{k: v for k, v in sizes.items() if v is not None})
    model = to_device(Segmenter(backbone, ds.classes.num_classes), device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    data = TrainingPatches.from_budget(ds.labelled.images, budget, device)
    gen = torch.Generator(data.images.device).manual_seed(0)
    steps = getattr(args, "steps", None) or _STEPS
    harness_s = _timed(
        lambda: train_step(model, opt, *data.batch(cfg.batch_size, cfg.crop, gen), device), device, steps
    )
    x, y = (t.to(device) for t in data.batch(cfg.batch_size, cfg.crop, gen))
    bare_s = _timed(lambda: train_step(model, opt, x, y, device), device, steps)
    harness, bare = cfg.batch_size / harness_s, cfg.batch_size / bare_s

    backbone.eval()
    pool = ds.labelled
    pixels = (budget.patch, budget.row, budget.col)
    feats = cached_pixel_features(
        backbone, pool.images, *pixels, split_fingerprint=pool.fingerprint, device=device, progress=False
    )
    targets = torch.from_numpy(budget.label).to(device)

    def cached_fit() -> int:
        return fit_linear(
            host_tensor(feats).to(device), targets, ds.classes.num_classes, LinearConfig()
        ).evals

    cached_s = _timed(cached_fit, device)
    epochs = cached_fit()
    patches = budget.labelled_patches
    epoch_s = _timed(lambda: pixel_features(backbone, pool.images, *pixels, device), device)
    uncached_s = cached_s + epochs * epoch_s
    probe = fit_linear(host_tensor(feats).to(device), targets, ds.classes.num_classes, LinearConfig())
    test_images, test_labels = ds.test.images, ds.test.labels
    assert test_labels is not None  # the test split always has labels
    stream_s = _timed(
        lambda: stream_confusion(backbone, probe, test_images, test_labels, ds.classes.num_classes, device),
        device,
    )
    n_test, _, h, w = test_images.shape
    whole_test_mib = n_test * h * w * backbone.out_dim * 2 / 2**20  # what caching the test split would take
    crop = f"{cfg.batch_size}x{cfg.crop}x{cfg.crop}"
    return [
        PerfRow("train", f"finetune harness step ({crop}, {device.type})", harness, "images/s"),
        PerfRow("train", f"bare model fwd+bwd+step ({crop}, {device.type})", bare, "images/s"),
        PerfRow("train", "harness / bare", harness / bare, "ratio"),
        PerfRow("train", f"linear fit, cached features ({epochs} epochs)", cached_s, "s"),
        PerfRow("train", f"linear fit, backbone re-run each epoch ({patches.size} patches)", uncached_s, "s"),
        PerfRow("train", "linear cached-feature speed-up", uncached_s / cached_s, "x"),
        PerfRow(
            "train",
            f"linear test stream, backbone + probe ({n_test} patches)",
            n_test / stream_s,
            "patches/s",
        ),
        PerfRow(
            "train", f"linear feature cache ({budget.label.size} budget pixels)", feats.nbytes / 2**20, "MiB"
        ),
        PerfRow("train", "test-split features if they were cached (not written)", whole_test_mib, "MiB"),
    ]
