"""One benchmark cell (method x protocol x budget) over seeds: pretrain once, evaluate each seed.

A seed's identity is :func:`result_key`, a hash of an explicit allow-list of everything that
changes its numbers (dataset, method + full config, pretraining data and seed, backbone, protocol
+ config, budget + unit, evaluation seed, code version) and nothing that does not (device, worker
count, progress bars). A seed whose key already has a complete MLflow run is skipped, so an
interrupted run or sweep resumes where it stopped and nothing is counted twice.

Seed ``s`` draws budget ``s`` (its own generator, see :mod:`bench.protocols.budget`) and trains with
``torch.manual_seed(s)``; the pretrained weights are shared by every seed of the cell.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from tqdm.auto import tqdm

from bench.core.errors import BenchError
from bench.core.provenance import code_version, source_digest, stable_hash
from bench.harness import tracking
from bench.harness.pretraining import PretrainRecord, pretrained_backbone
from bench.models.backbones import SegBackbone
from bench.protocols.budget import UNITS, VAL_FRACTION, LabelBudget, draw_budget
from bench.protocols.finetune import FinetuneConfig, run_finetune
from bench.protocols.linear import LinearConfig, run_linear
from bench.protocols.metrics import Scores
from methods import get_method

PROTOCOLS: dict[str, type] = {"linear": LinearConfig, "finetune": FinetuneConfig}
Overrides = tuple[tuple[str, Any], ...]


def _frozen(overrides: Mapping[str, Any] | Overrides | None) -> Overrides:
    """Overrides as a sorted tuple of pairs, so a spec is hashable and order-insensitive."""
    return tuple(sorted(dict(overrides or ()).items()))


def config_with(cls: type, overrides: Mapping[str, Any]) -> Any:
    """``cls(**overrides)`` with a one-line error naming unknown keys."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise BenchError(f"{cls.__name__} has no setting(s) {unknown}; known: {sorted(known)}")
    return cls(**overrides)


@dataclass(frozen=True)
class CellSpec:
    """What one cell evaluates. Dict overrides are accepted and stored as sorted pairs."""

    method: str
    samples: int
    budget_unit: str = "pixels"
    protocol: str = "linear"
    backbone: str = "tiny"
    method_overrides: Overrides | Mapping[str, Any] = ()
    protocol_overrides: Overrides | Mapping[str, Any] = ()
    pretrain_seed: int = 0
    transductive: bool = False
    pretrain_data: Path | None = None
    weights: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "method_overrides", _frozen(self.method_overrides))
        object.__setattr__(self, "protocol_overrides", _frozen(self.protocol_overrides))
        for name in ("pretrain_data", "weights"):
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else Path(value))
        if self.protocol not in PROTOCOLS:
            raise BenchError(f"unknown protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        if self.budget_unit not in UNITS:
            raise BenchError(f"unknown budget unit {self.budget_unit!r}; choose one of {', '.join(UNITS)}")

    def method_config(self) -> dict[str, Any]:
        """The method's full config (defaults + overrides)."""
        try:
            cls = get_method(self.method)
            return dataclasses.asdict(cls.config_from_dict(dict(self.method_overrides)))
        except (KeyError, ValueError) as err:
            raise BenchError(str(err).strip("'\"")) from err

    def protocol_config(self) -> LinearConfig | FinetuneConfig:
        """The protocol's full config (defaults + overrides)."""
        return config_with(PROTOCOLS[self.protocol], dict(self.protocol_overrides))


def _identity(spec: CellSpec, ds: Any) -> dict[str, Any]:
    """The allow-list of result-affecting fields of a cell (the seed is added per seed)."""
    needs_data = get_method(spec.method).needs_data
    return {
        "dataset": ds.fingerprint,
        "method": spec.method,
        "method_version": get_method(spec.method).version,
        "method_config": spec.method_config(),
        "pretrain_seed": spec.pretrain_seed,
        "pretrain_data": str(spec.pretrain_data.resolve()) if needs_data and spec.pretrain_data else None,
        "transductive": spec.transductive and needs_data,
        "weights": str(spec.weights.resolve()) if spec.weights else None,
        "backbone": spec.backbone,
        "protocol": spec.protocol,
        "protocol_config": dataclasses.asdict(spec.protocol_config()),
        "budget": {"samples": spec.samples, "unit": spec.budget_unit, "val_fraction": VAL_FRACTION},
        "code_version": source_digest(),
    }


def cell_key(spec: CellSpec, ds: Any) -> str:
    """Key of the cell (all seeds)."""
    return stable_hash(_identity(spec, ds))


def result_key(spec: CellSpec, seed: int, ds: Any) -> str:
    """Key of one seed's result: the cell identity plus the seed."""
    return stable_hash({**_identity(spec, ds), "seed": seed})


@dataclass(frozen=True)
class SeedResult:
    """One seed's scores; ``skipped`` when they were read back from MLflow instead of computed."""

    seed: int
    result_key: str
    run_id: str
    scores: Scores
    realised: dict[str, int]
    wall_time_s: float
    skipped: bool
    confusion: np.ndarray | None = None


@dataclass
class CellResult:
    """Every seed of a cell, plus how its weights were obtained (None when nothing was pretrained)."""

    spec: CellSpec
    cell_key: str
    parent_run_id: str
    seeds: list[SeedResult] = field(default_factory=list)
    pretrain: PretrainRecord | None = None
    wall_time_s: float = 0.0

    @property
    def scores(self) -> list[Scores]:
        return [s.scores for s in self.seeds]


def _records(spec: CellSpec, ds: Any) -> tuple[dict[str, str], dict[str, str]]:
    """(tags, params) shared by a cell's parent run and its seed runs."""
    ident = _identity(spec, ds)
    tags = {
        "bench.cell_key": cell_key(spec, ds),
        "bench.method": spec.method,
        "bench.protocol": spec.protocol,
        "bench.budget": str(spec.samples),
        "bench.budget_unit": spec.budget_unit,
        "bench.backbone": spec.backbone,
        "bench.dataset_fingerprint": ds.fingerprint,
    }
    config = {k: v for k, v in ident.items() if k not in ("dataset", "code_version")}
    params = {
        "config_hash": stable_hash(config),
        "code_version": code_version(),
        "code_digest": ident["code_version"],
        **tracking.flatten(config),
    }
    return tags, params


def _run_name(spec: CellSpec) -> str:
    return f"{spec.method} {spec.protocol} {spec.samples} {spec.budget_unit}"


def _from_mlflow(run_id: str, seed: int, key: str, class_names: Sequence[str]) -> SeedResult:
    """A completed seed rebuilt from its logged metrics."""
    m = tracking.seed_metrics(run_id)
    per_class = tuple(m.get(f"acc.{tracking.metric_name(n)}", float("nan")) for n in class_names)
    realised = {n: int(m.get(f"realised.{tracking.metric_name(n)}", 0)) for n in class_names}
    scores = Scores(per_class, m["AA"], m["OA"])
    return SeedResult(seed, key, run_id, scores, realised, m.get("wall_time_s", 0.0), skipped=True)


def budget_for(spec: CellSpec, seed: int, ds: Any) -> LabelBudget:
    """The labelled pixels (or images) of evaluation seed ``seed``: the same for every method."""
    return draw_budget(
        ds.labelled.labels,
        fingerprint=ds.fingerprint,
        class_names=ds.classes.names,
        samples=spec.samples,
        unit=spec.budget_unit,
        seed=seed,
    )


def pretrain(
    spec: CellSpec, ds: Any, device: torch.device, *, force: bool = False, progress: bool = True
) -> tuple[SegBackbone, PretrainRecord]:
    """The cell's pretrained backbone (cached by :func:`bench.harness.pretraining.pretrained_backbone`)."""
    try:
        return pretrained_backbone(
            spec.method,
            backbone=spec.backbone,
            ds=ds,
            seed=spec.pretrain_seed,
            method_overrides=dict(spec.method_overrides),
            pretrain_data=spec.pretrain_data,
            transductive=spec.transductive,
            device=device,
            weights=spec.weights,
            force=force,
            progress=progress,
        )
    except (KeyError, ValueError) as err:
        raise BenchError(str(err).strip("'\"")) from err


def run_seed(
    spec: CellSpec,
    seed: int,
    ds: Any,
    device: torch.device,
    *,
    backbone: SegBackbone | None = None,
    parent_run_id: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> SeedResult:
    """Evaluate one seed (or read it back when complete). ``backbone``: the cell's pretrained weights."""
    key = result_key(spec, seed, ds)
    done = None if force else tracking.find_completed(key)
    if done is not None:
        return _from_mlflow(done, seed, key, ds.classes.names)
    if backbone is None:
        backbone, _ = pretrain(spec, ds, device, progress=progress)
    tags, params = _records(spec, ds)
    if parent_run_id is None:
        parent_run_id = tracking.cell_run(tags["bench.cell_key"], tags, params, _run_name(spec))
    start = time.perf_counter()
    budget = budget_for(spec, seed, ds)
    cfg = spec.protocol_config()
    if isinstance(cfg, LinearConfig):
        confusion = run_linear(backbone, ds, budget, cfg, device, progress)
    else:
        confusion = run_finetune(backbone, ds, budget, cfg, seed, device, progress)
    wall = time.perf_counter() - start
    scores = Scores.from_confusion(confusion)
    names = ds.classes.names
    metrics = {f"acc.{tracking.metric_name(n)}": a for n, a in zip(names, scores.per_class, strict=True)}
    metrics |= {f"iou.{tracking.metric_name(n)}": v for n, v in zip(names, scores.iou, strict=True)}
    metrics = {k: v for k, v in metrics.items() if not np.isnan(v)}  # classes absent from the test set
    metrics |= {"AA": scores.aa, "OA": scores.oa, "mIoU": scores.miou, "macroF1": scores.macro_f1}
    metrics["wall_time_s"] = wall
    metrics |= {f"realised.{tracking.metric_name(n)}": float(c) for n, c in budget.realised.items()}
    run_id = tracking.record_seed(
        parent_run_id,
        run_name=f"{_run_name(spec)} seed {seed}",
        tags={**tags, "bench.result_key": key, "bench.seed": str(seed)},
        params={**params, "seed": str(seed), "budget_file": budget.path.name},
        metrics=metrics,
        confusion=confusion,
        class_names=names,
    )
    return SeedResult(seed, key, run_id, scores, budget.realised, wall, skipped=False, confusion=confusion)


def run_cell(
    spec: CellSpec,
    seeds: Sequence[int],
    ds: Any,
    device: torch.device,
    *,
    force_pretrain: bool = False,
    progress: bool = True,
) -> CellResult:
    """Pretrain once (only if a seed is missing), then evaluate every seed; ``force_pretrain`` redoes both."""
    start = time.perf_counter()
    tags, params = _records(spec, ds)
    parent = tracking.cell_run(tags["bench.cell_key"], tags, params, _run_name(spec))
    result = CellResult(spec, tags["bench.cell_key"], parent)
    missing = force_pretrain or any(tracking.find_completed(result_key(spec, s, ds)) is None for s in seeds)
    backbone = None
    if missing:
        with mlflow.start_run(run_id=parent):  # the pretraining run nests under the cell
            backbone, result.pretrain = pretrain(spec, ds, device, force=force_pretrain, progress=progress)
    for seed in tqdm(seeds, desc=f"{spec.method} {spec.protocol} seeds", disable=not progress):
        result.seeds.append(
            run_seed(
                spec,
                seed,
                ds,
                device,
                backbone=backbone,
                parent_run_id=parent,
                force=force_pretrain,
                progress=progress,
            )
        )
    result.wall_time_s = time.perf_counter() - start
    return result


def parse_overrides(pairs: Sequence[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``--set key=value`` pairs -> (method overrides, {protocol: overrides}).

    ``linear.<key>`` / ``finetune.<key>`` set a protocol setting, ``method.<key>`` or a bare key a
    method setting. Values are read as JSON (numbers, booleans, lists), else kept as strings.
    """
    method: dict[str, Any] = {}
    protocol: dict[str, dict[str, Any]] = {name: {} for name in PROTOCOLS}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise BenchError(f"--set expects key=value, got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        scope, dot, name = key.partition(".")
        if dot and scope in PROTOCOLS:
            protocol[scope][name] = value
        else:
            method[name if dot and scope == "method" else key] = value
    return method, protocol
