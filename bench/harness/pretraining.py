"""Pretrained weights, computed once per (method, config, backbone, pretraining data, seed).

Every budget, evaluation seed and protocol of a method reuses the same cached weights, so a sweep
pays for pretraining once. The cache file is written atomically with its digest and guarded by a
file lock, so two workers that need the same weights train them once. A cached file is used only
when it matches its digest and loads (else it is reported, moved aside and trained again), and a
verified hit takes no lock, so a fully cached run works on a read-only ``BENCH_HOME``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from filelock import FileLock

from bench.core.atomic import atomic_write_text
from bench.core.distributed import barrier, broadcast_flag, is_main
from bench.core.errors import BenchError
from bench.core.integrity import atomic_entry, move_aside, usable_entry
from bench.core.paths import bench_home
from bench.core.provenance import canonical_json, stable_hash
from bench.harness.tracking import process_tags, retrying
from bench.models.backbones import SegBackbone, build_backbone
from methods import PretrainContext, PretrainMethod, get_method


@dataclass(frozen=True)
class PretrainRecord:
    """How a backbone's initial weights were produced (recorded with every result)."""

    key: str
    method: str
    config: dict[str, Any]
    backbone: str
    data_fingerprint: str
    seed: int
    cached: bool
    seconds: float
    path: str


def pretraining_images(ds: Any, pretrain_data: Path | None, transductive: bool) -> tuple[np.ndarray, str]:
    """The unlabelled pool and its fingerprint (DESIGN 2.4).

    Default: the labelled pool's inputs (labels unseen). ``pretrain_data``: a SEN12MS copy.
    Test inputs join only with ``transductive=True``, the user's explicit request.
    """
    if pretrain_data is not None:
        from datasets import load_pretrain_pool

        pool = load_pretrain_pool(pretrain_data)
        images: np.ndarray = pool.images
        fingerprint = f"sen12ms:{pool.fingerprint}"
    else:
        images, fingerprint = ds.labelled.images, f"labelled:{ds.labelled.fingerprint}"
    if transductive:
        images = np.concatenate([np.asarray(images), np.asarray(ds.test.images)])
        fingerprint = f"{fingerprint}+test:{ds.test.fingerprint}"
    return images, fingerprint


def pretrain_key(method: PretrainMethod, backbone: SegBackbone, data_fingerprint: str, seed: int) -> str:
    """Cache key: everything that changes the weights, nothing that does not (device, workers)."""
    return stable_hash(
        {
            "method": method.name,
            "version": method.version,
            "config": method.config_dict(),
            "backbone": asdict(backbone.spec),
            "data": data_fingerprint if method.needs_data else None,
            "seed": seed,
        }
    )


def _log_to_mlflow(metrics: dict[str, float], step: int) -> None:
    retrying(mlflow.log_metrics, {f"pretrain.{k}": float(v) for k, v in metrics.items()}, step=step)


def _follow_rank0(
    runner: PretrainMethod,
    model: SegBackbone,
    images: np.ndarray | None,
    path: Path,
    record: dict[str, Any],
    device: torch.device,
    ctx_args: dict[str, Any],
) -> tuple[SegBackbone, PretrainRecord]:
    """A ``torchrun`` rank other than 0: load what rank 0 found in the cache, or train alongside it
    (same steps, its share of each batch) and write nothing; rank 0 writes the cache and the run."""
    if broadcast_flag(False):  # rank 0 found the weights cached
        if not _load_cached(model, path):
            raise BenchError(f"{path}: rank 0 found these weights cached, this rank cannot load them")
        return model.to(device), PretrainRecord(cached=True, seconds=0.0, **record)
    start = time.perf_counter()
    model.to(device)
    runner.pretrain(model, images if images is not None else np.empty((0,)), PretrainContext(**ctx_args))
    barrier()  # rank 0 has written the cache and closed its run
    return model, PretrainRecord(cached=False, seconds=time.perf_counter() - start, **record)


def _load_cached(model: SegBackbone, path: Path) -> bool:
    """Load the verified cache file into ``model``; False (after moving a bad file aside) when unusable."""
    if not usable_entry(path, "pretrained weights"):
        return False
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        expected = {k: v.shape for k, v in model.state_dict().items()}
        if {k: v.shape for k, v in state.items()} != expected:
            raise ValueError("parameter names or shapes differ from the backbone")
        model.load_state_dict(state)
    except Exception as err:  # a file that matches its digest but does not load: written wrong
        move_aside(path, f"does not load ({type(err).__name__}: {str(err).splitlines()[0][:120]})")
        return False
    return True


def pretrained_backbone(
    method: str,
    *,
    backbone: str,
    ds: Any,
    seed: int = 0,
    method_overrides: dict[str, Any] | None = None,
    pretrain_data: Path | None = None,
    transductive: bool = False,
    device: torch.device,
    weights: Path | None = None,
    force: bool = False,
    progress: bool = True,
) -> tuple[SegBackbone, PretrainRecord]:
    """The backbone initialised by ``method``: loaded from the cache, or pretrained and cached."""
    method_cls = get_method(method)
    runner = method_cls(method_cls.config_from_dict(method_overrides or {}))
    torch.manual_seed(seed)
    model = build_backbone(backbone, in_chans=len(ds.band_names))
    images, fingerprint = (None, "none")
    if runner.needs_data:
        images, fingerprint = pretraining_images(ds, pretrain_data, transductive)
    key = pretrain_key(runner, model, fingerprint, seed)
    if weights is not None:
        # a local checkpoint changes the result: it belongs in the key
        key = stable_hash({"key": key, "weights": str(Path(weights).resolve())})
    path = bench_home() / "weights" / f"{method}-{backbone}-{key}.pt"
    record: dict[str, Any] = {
        "key": key,
        "method": method,
        "config": runner.config_dict(),
        "backbone": backbone,
        "data_fingerprint": fingerprint,
        "seed": seed,
        "path": str(path),
    }
    if not is_main():  # under torchrun only rank 0 reads and writes the cache and MLflow
        ctx_args = {"device": device, "seed": seed, "progress": False, "weights": weights}
        return _follow_rank0(runner, model, images, path, record, device, ctx_args)
    if not force and _load_cached(model, path):  # no lock needed to read a verified entry
        broadcast_flag(True)
        return model.to(device), PretrainRecord(cached=True, seconds=0.0, **record)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not force and _load_cached(model, path):  # another worker trained it meanwhile
            broadcast_flag(True)
            return model.to(device), PretrainRecord(cached=True, seconds=0.0, **record)
        broadcast_flag(False)  # the other ranks train with this one
        start = time.perf_counter()
        model.to(device)
        ctx = PretrainContext(
            device=device, seed=seed, log_metrics=_log_to_mlflow, progress=progress, weights=weights
        )
        with mlflow.start_run(
            run_name=f"pretrain {method}/{backbone}", nested=mlflow.active_run() is not None
        ):
            mlflow.set_tags(
                {
                    "bench.kind": "pretrain",
                    "bench.pretrain_key": key,
                    "bench.method": method,
                    **process_tags(),
                }
            )
            mlflow.log_params(
                {
                    "pretrain_config": canonical_json(runner.config_dict())[:6000],
                    "backbone": backbone,
                    "data_fingerprint": fingerprint,
                    "seed": seed,
                }
            )
            runner.pretrain(model, images if images is not None else np.empty((0,)), ctx)
            seconds = time.perf_counter() - start
            mlflow.log_metric("pretrain.seconds", seconds)
        with atomic_entry(path) as tmp:
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
        atomic_write_text(path.with_suffix(".json"), canonical_json({**record, "seconds": seconds}))
    barrier()  # the other ranks return once the cache is written
    return model, PretrainRecord(cached=False, seconds=seconds, **record)
