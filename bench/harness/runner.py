"""One benchmark cell (method x protocol x budget) over seeds: pretrain once, evaluate each seed.

A seed's identity is :func:`result_key`, a hash of an explicit allow-list of everything that
changes its numbers (dataset, method + full config, pretraining data and seed, backbone, protocol
+ config, budget + unit, evaluation seed, code version) and nothing that does not (device, worker
count, progress bars). A seed whose key already has a complete MLflow run is skipped, so an
interrupted run or sweep resumes where it stopped and nothing is counted twice.

Seed ``s`` draws budget ``s`` (its own generator, see :mod:`bench.protocols.budget`) and trains with
``torch.manual_seed(s)``. Pretraining variance is part of the result: with ``pretrain_seeds`` K,
seed ``s`` evaluates the weights of pretraining seed ``s mod K`` (each pretrained once and cached),
so the spread over seeds includes K pretraining runs, not only label draws. The default
(``pretrain_seeds=None``, :data:`PER_SEED`) is one pretraining run per evaluation seed (K = n; the
Baseline its own initialisation per seed): seed ``s`` uses pretraining seed ``s``, so the seeds
are independent replicates of the whole pipeline and the paired test's unit is the seed
(:mod:`bench.report.statistics`). A smaller K is cheaper but tests over K run means. Protocols come from
the registry (:mod:`bench.protocols.registry`); reference rows (``raw``, ``rf``) skip pretraining
and go to their reference protocol, recorded under protocol ``reference``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.core.paths import bench_home
from bench.core.progress import Progress, progress_of
from bench.core.provenance import code_digest, code_version, stable_hash
from bench.core.settings import cast_settings, check_crop, check_ranges, flat_settings
from bench.harness import tracking
from bench.harness.claims import ClaimStore
from bench.harness.pretraining import (
    HEALTH_TAG,
    USEFULNESS_TAG,
    PretrainRecord,
    PretrainSpec,
    UnhealthyPretraining,
    health_of,
    load_or_pretrain,
    usefulness_of,
)
from bench.models.backbones import SegBackbone
from bench.models.base import backbone_module
from bench.protocols.budget import UNITS, VAL_FRACTION, LabelBudget, draw_budget
from bench.protocols.metrics import Scores
from bench.protocols.registry import get_protocol, list_protocols
from methods import get_method
from methods.registry import images_seen

#: The deep-model protocols (name -> config class), from the protocol registry.
PROTOCOLS: dict[str, type] = {name: get_protocol(name).Config for name in list_protocols(reference=False)}
#: What ``--protocol both`` runs, and the paper's cells: linear probe and fine-tuning (kNN and
#: plugins' protocols run when named).
BOTH: tuple[str, ...] = ("linear", "finetune")
#: The protocol name recorded for reference rows, whatever protocol a command asked for.
REFERENCE = "reference"
#: How often :func:`run_cell` looks again at a seed another process is computing.
CLAIM_POLL_S = 1.0
Overrides = tuple[tuple[str, Any], ...]
#: How ``pretrain_seeds=None`` (one pretraining run per evaluation seed) is recorded in cell
#: identities and the ``bench.pretrain_seeds`` tag.
PER_SEED = "per seed"


def _frozen(overrides: Mapping[str, Any] | Overrides | None) -> Overrides:
    """Overrides as a sorted tuple of pairs, so a spec is hashable and order-insensitive; list
    values (``--set 'augment.scale=[0.5,1.0]'``) become tuples and nested dicts dotted keys."""
    return tuple(sorted(flat_settings(dict(overrides or ())).items()))


def config_with(cls: type, overrides: Mapping[str, Any]) -> Any:
    """``cls(**overrides)`` with a one-line error naming unknown keys."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise BenchError(f"{cls.__name__} has no setting(s) {unknown}; known: {sorted(known)}")
    config = cls(**cast_settings(cls, dict(overrides), cls.__name__))
    check_ranges(config, cls.__name__)  # max_iter=0 would record chance-level AA as complete
    return config


def check_crops(spec: CellSpec, ds: Any) -> None:
    """The protocol's ``crop`` fits the labelled patches (and, for the pretraining pool, the method's
    is checked where the pool is read): a one-line :class:`SettingError` before any work."""
    size = int(min(ds.labelled.images.shape[-2:]))
    check_crop(spec.protocol_config(), size, f"protocol {spec.evaluator!r}", "the labelled set")


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
    #: K: seed ``s`` uses pretraining seed ``s mod K``; None (the default) one run per seed (K = n).
    pretrain_seeds: int | None = None
    transductive: bool = False
    pretrain_data: Path | None = None
    weights: Path | None = None
    #: Evaluate weights that failed their health gate (``--allow-unhealthy``), tagging every seed run
    #: ``bench.pretrain_health=failed: ...``; not part of any key (the weights are the same).
    allow_unhealthy: bool = field(default=False, compare=False)
    #: A row of its own under the user's name (``--label SSL4EO`` for ``--method imagenet --weights
    #: ssl4eo.pth``): shown in tables instead of the method's label, and part of the cell identity.
    label: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "method_overrides", _frozen(self.method_overrides))
        object.__setattr__(self, "protocol_overrides", _frozen(self.protocol_overrides))
        for name in ("pretrain_data", "weights"):
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else Path(value))
        if self.is_reference:  # one evaluation whatever protocol was asked: recorded as "reference"
            object.__setattr__(self, "protocol", REFERENCE)
        elif self.protocol not in PROTOCOLS and self.protocol not in list_protocols(reference=False):
            # the registry itself for names beyond the import-time list: a plugin registered later
            known = ", ".join(list_protocols(reference=False))
            raise BenchError(f"unknown protocol {self.protocol!r}; choose one of {known}")
        if self.pretrain_seeds is not None and self.pretrain_seeds < 1:
            raise BenchError(f"--pretrain-seeds must be at least 1, got {self.pretrain_seeds}")
        if self.budget_unit not in UNITS:
            raise BenchError(f"unknown budget unit {self.budget_unit!r}; choose one of {', '.join(UNITS)}")

    @property
    def is_reference(self) -> bool:
        """A reference row (``raw``, ``rf``): no backbone, evaluated by its reference protocol."""
        return _evaluated_by(self.method) is not None

    @property
    def evaluator(self) -> str:
        """The registered protocol that evaluates this cell."""
        return _evaluated_by(self.method) or self.protocol

    def for_seed(self, seed: int) -> CellSpec:
        """The spec of evaluation seed ``seed``: pretraining seed ``seed mod pretrain_seeds``, or
        ``seed`` itself by default (one pretraining run per evaluation seed)."""
        k = self.pretrain_seeds
        return dataclasses.replace(self, pretrain_seed=seed if k is None else seed % k)

    @property
    def pretrain_images(self) -> int:
        """Images this spec's pretraining sees (steps x batch, stages summed; 0 when it trains nothing)."""
        if self.is_reference:
            return 0
        return images_seen(get_method(self.method).config_from_dict(dict(self.method_overrides)))

    def pretrain_spec(self) -> PretrainSpec:
        """The identity of the weights this spec evaluates (its ``pretrain_seed``; see :meth:`for_seed`)."""
        return PretrainSpec(
            self.method,
            self.backbone,
            self.pretrain_seed,
            cast(Overrides, self.method_overrides),  # sorted pairs since __post_init__
            self.pretrain_data,
            self.transductive,
            self.weights,
            allow_unhealthy=self.allow_unhealthy,
        )

    def method_config(self) -> dict[str, Any]:
        """The method's full config (defaults + overrides)."""
        try:
            cls = get_method(self.method)
            return dataclasses.asdict(cls.config_from_dict(dict(self.method_overrides)))
        except (KeyError, ValueError) as err:
            raise BenchError(str(err).strip("'\"")) from err

    def protocol_config(self) -> Any:
        """The evaluating protocol's full config (defaults + overrides)."""
        return config_with(get_protocol(self.evaluator).Config, dict(self.protocol_overrides))


def _evaluated_by(method: str) -> str | None:
    """The reference protocol of a reference row; None for a method, or for an unknown name (whose
    error comes, naming it, when its config is built, so a sweep reports it per unit)."""
    try:
        return get_method(method).evaluated_by
    except KeyError:
        return None


def code_modules(spec: CellSpec) -> tuple[str, ...]:
    """The modules whose code a result of ``spec`` depends on beyond the shared part: the method's,
    the evaluating protocol's and the backbone's (a plugin's, or a repository file), for
    :func:`bench.core.provenance.code_digest`. Another method's file is not among them."""
    try:
        method = get_method(spec.method).__module__
    except KeyError as err:
        raise BenchError(str(err).strip("'\"")) from err
    return (method, type(get_protocol(spec.evaluator)).__module__, backbone_module(spec.backbone))


def cell_spec(
    method: str, protocol: str, protocol_overrides: Mapping[str, Mapping[str, Any]], **fields: Any
) -> CellSpec:
    """A cell for ``method`` under ``protocol``, with the ``--set`` settings of the protocol that
    really evaluates it (a reference row's own, e.g. ``rf.trees``, whatever ``protocol`` says)."""
    evaluator = _evaluated_by(method) or protocol
    return CellSpec(
        method=method, protocol=protocol, protocol_overrides=protocol_overrides.get(evaluator, {}), **fields
    )


def _identity(spec: CellSpec, ds: Any) -> dict[str, Any]:
    """The allow-list of result-affecting fields of one seed's evaluation (the seed is added by
    :func:`result_key`): ``spec`` is a :meth:`CellSpec.for_seed` spec, its pretraining seed fixed.
    The weights enter through their one identity, :class:`PretrainSpec` (none for reference rows)."""
    try:
        pretraining = None if spec.is_reference else spec.pretrain_spec().identity()
    except (KeyError, ValueError) as err:
        raise BenchError(str(err).strip("'\"")) from err
    pool = getattr(ds, "pretrain_pool_id", None)  # the dataset's own pretraining pool, if any
    own_pool = pool is not None and get_method(spec.method).needs_data
    if own_pool and pretraining is not None and pretraining["pretrain_data"] is None:
        pretraining["pool"] = pool  # pretrained on that pool (no --pretrain-data)
    return {
        "dataset": ds.fingerprint,
        "method": spec.method,
        "pretraining": pretraining,
        "backbone": spec.backbone,
        "protocol": spec.evaluator,
        "protocol_config": dataclasses.asdict(spec.protocol_config()),
        "budget": {"samples": spec.samples, "unit": spec.budget_unit, "val_fraction": VAL_FRACTION},
        "code_version": code_digest(code_modules(spec)),
        **({"label": spec.label} if spec.label else {}),  # unlabelled rows keep their keys
    }


def _cell_identity(spec: CellSpec, ds: Any) -> dict[str, Any]:
    """The cell's identity: how many pretraining seeds instead of which one."""
    ident = _identity(spec, ds)
    if ident["pretraining"] is not None:
        ident["pretraining"] = {k: v for k, v in ident["pretraining"].items() if k != "seed"}
    k = PER_SEED if spec.pretrain_seeds is None else spec.pretrain_seeds
    return {**ident, "pretrain_seeds": None if spec.is_reference else k}


def cell_key(spec: CellSpec, ds: Any) -> str:
    """Key of the cell (all seeds)."""
    return stable_hash(_cell_identity(spec, ds))


def result_key(spec: CellSpec, seed: int, ds: Any) -> str:
    """Key of one seed's result: what produced it (its pretraining seed included) plus the seed.

    K itself is not part of it: seed 3 with K=3 uses pretraining seed 0, exactly as seed 3 with
    K=1 does, so raising K keeps the seeds whose pretraining seed is unchanged.
    """
    return stable_hash({**_identity(spec.for_seed(seed), ds), "seed": seed})


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
    realised_val: dict[str, int] = field(default_factory=dict)
    #: The weights' health tag (``passed`` or ``failed: <line>``), None when not recorded.
    health: str | None = None


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


def _records(spec: CellSpec, ds: Any, seed: int | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(tags, params) of a cell's parent run, or of seed ``seed``'s run (its pretraining seed)."""
    ident = _cell_identity(spec, ds) if seed is None else _identity(spec.for_seed(seed), ds)
    tags = {
        "bench.cell_key": cell_key(spec, ds),
        "bench.method": spec.method,
        "bench.protocol": spec.protocol,
        "bench.evaluator": spec.evaluator,
        "bench.pretrain_seeds": PER_SEED if spec.pretrain_seeds is None else str(spec.pretrain_seeds),
        "bench.budget": str(spec.samples),
        "bench.budget_unit": spec.budget_unit,
        "bench.backbone": spec.backbone,
        "bench.dataset_fingerprint": ds.fingerprint,
        **({"bench.label": spec.label} if spec.label else {}),
    }
    config = {k: v for k, v in ident.items() if k not in ("dataset", "code_version")}
    params = {
        "config_hash": stable_hash(config),
        "code_version": code_version(code_modules(spec)),
        "code_digest": ident["code_version"],
        **tracking.flatten(config),
    }
    if seed is not None and not spec.is_reference:  # which of the K pretrainings this seed used
        params["pretrain_seed"] = str(spec.for_seed(seed).pretrain_seed)
        # the compute rule's level (``--pretrain-images``; 0 for a method that trains nothing):
        # tables are split by it like by the budget (``bench.report.aggregate.TABLE_KEYS``)
        params["pretrain_images"] = str(spec.pretrain_images)
    return tags, params


def _run_name(spec: CellSpec) -> str:
    return f"{spec.label or spec.method} {spec.protocol} {spec.samples} {spec.budget_unit}"


def _from_mlflow(run_id: str, seed: int, key: str, class_names: Sequence[str]) -> SeedResult:
    """A completed seed rebuilt from its logged metrics."""
    m = tracking.seed_metrics(run_id)
    per_class = tuple(m.get(f"acc.{tracking.metric_name(n)}", float("nan")) for n in class_names)
    realised = {n: int(m.get(f"realised.{tracking.metric_name(n)}", 0)) for n in class_names}
    realised_val = {n: int(m.get(f"realised_val.{tracking.metric_name(n)}", 0)) for n in class_names}
    scores = Scores(per_class, m["AA"], m["OA"])
    wall = m.get("wall_time_s", 0.0)
    client, _ = tracking.setup_tracking()
    health = client.get_run(run_id).data.tags.get(HEALTH_TAG)
    return SeedResult(
        seed, key, run_id, scores, realised, wall, skipped=True, realised_val=realised_val, health=health
    )


def _stop_if_unhealthy(run_id: str) -> None:
    """A seed recorded earlier (with ``--allow-unhealthy``) on weights that failed their health gate
    is not reused silently: without the flag its cell stops with the gate's line."""
    client, _ = tracking.setup_tracking()
    health = client.get_run(run_id).data.tags.get(HEALTH_TAG, "")
    if health.startswith("failed: "):
        raise UnhealthyPretraining(
            f"{health.removeprefix('failed: ')}; recorded seeds use these weights "
            "(`--allow-unhealthy` reports them, marked)"
        )


#: Seed-run tag, ``"true"`` when some class had fewer labelled pixels than ``--samples`` (all it had
#: were drawn), else ``"false"``; tables and titles mark such budgets as capped (``--samples 100000``
#: is not "100000 pixels per class"). :data:`REALISED_TAG` then holds the realised range.
CAPPED_TAG = "bench.budget_capped"
#: ``"lo-hi"``: the fewest and most labelled pixels per class realised (training + validation).
REALISED_TAG = "bench.budget_realised"


def capped_range(
    samples: int, unit: str, draws: Sequence[tuple[Mapping[str, int], Mapping[str, int]]]
) -> str | None:
    """``"lo-hi"`` labelled pixels per class realised over ``draws`` ((training, validation) counts per
    class, one pair per seed) when a class got fewer than ``samples``; None when every class got
    its budget, or for an image budget (whole images: never capped, refused when too large)."""
    if unit != "pixels":
        return None
    totals = [n + val.get(name, 0) for train, val in draws for name, n in train.items()]
    if not totals or min(totals) >= samples:
        return None
    return f"{min(totals)}-{max(totals)}"


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
    """The cell's pretrained backbone (cached by :func:`bench.harness.pretraining.pretrained_backbone`).

    ``spec.pretrain_seed`` is the pretraining seed: pass ``spec.for_seed(seed)`` for a seed's weights.
    """
    if spec.is_reference:
        raise BenchError(f"{spec.method} is a reference row: it has no backbone to pretrain")
    try:
        return load_or_pretrain(spec.pretrain_spec(), ds, device, force=force, progress=progress)
    except (KeyError, ValueError) as err:
        raise BenchError(str(err).strip("'\"")) from err


def pretrain_in_cell(
    spec: CellSpec,
    ds: Any,
    device: torch.device,
    *,
    parent_run_id: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> tuple[SegBackbone, PretrainRecord]:
    """:func:`pretrain`, with a pretraining run (when one is needed) nested under the cell's parent
    run (``parent_run_id``, else the cell's, found or created): ``run`` and ``sweep`` alike."""
    if parent_run_id is None:
        tags, params = _records(spec, ds)
        parent_run_id = tracking.cell_run(tags["bench.cell_key"], tags, params, _run_name(spec), ds)
    with tracking.active_parent(parent_run_id):
        return pretrain(spec, ds, device, force=force, progress=progress)


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
    """Evaluate one seed (or read it back when complete).

    ``backbone``: the weights of this seed's pretraining seed (``spec.for_seed(seed)``), when the
    caller already has them; otherwise they are loaded or pretrained here.
    """
    key = result_key(spec, seed, ds)
    done = None if force else tracking.find_completed(key)
    if done is not None:
        if not spec.allow_unhealthy:
            _stop_if_unhealthy(done)
        return _from_mlflow(done, seed, key, ds.classes.names)
    check_crops(spec, ds)
    if backbone is None and not spec.is_reference:
        backbone, _ = pretrain(spec.for_seed(seed), ds, device, progress=progress)
    tags, params = _records(spec, ds, seed)
    health = health_of(backbone)
    if health is not None:  # how the weights fared at their health gate (tables mark failed ones)
        tags[HEALTH_TAG] = health
    useful = usefulness_of(backbone)
    if useful is not None:  # validation AA against their own init (tables mark runs below it)
        tags[USEFULNESS_TAG] = useful
    if parent_run_id is None:
        parent_tags, parent_params = _records(spec, ds)
        parent_run_id = tracking.cell_run(
            tags["bench.cell_key"], parent_tags, parent_params, _run_name(spec), ds
        )
    run_id = tracking.start_seed(  # before the work: the run's duration is the work's
        parent_run_id,
        run_name=f"{_run_name(spec)} seed {seed}",
        tags={**tags, "bench.result_key": key, "bench.seed": str(seed)},
        params={**params, "seed": str(seed)},
        ds=ds,
    )
    start = time.perf_counter()
    try:
        budget = budget_for(spec, seed, ds)
        confusion = get_protocol(spec.evaluator).evaluate(
            backbone, ds, budget, spec.protocol_config(), seed=seed, device=device, progress=progress
        )
    except BaseException:
        tracking.fail_run(run_id, parent_id=parent_run_id)  # the cell is not FINISHED either
        raise
    wall = time.perf_counter() - start
    scores = Scores.from_confusion(confusion)
    names = ds.classes.names
    metrics = {f"acc.{tracking.metric_name(n)}": a for n, a in zip(names, scores.per_class, strict=True)}
    metrics |= {f"iou.{tracking.metric_name(n)}": v for n, v in zip(names, scores.iou, strict=True)}
    metrics = {k: v for k, v in metrics.items() if not np.isnan(v)}  # classes absent from the test set
    metrics |= {"AA": scores.aa, "OA": scores.oa, "mIoU": scores.miou, "macroF1": scores.macro_f1}
    metrics["wall_time_s"] = wall
    metrics |= {f"realised.{tracking.metric_name(n)}": float(c) for n, c in budget.realised.items()}
    metrics |= {f"realised_val.{tracking.metric_name(n)}": float(c) for n, c in budget.realised_val.items()}
    capped = capped_range(spec.samples, spec.budget_unit, [(budget.realised, budget.realised_val)])
    tags[CAPPED_TAG] = "true" if capped else "false"
    if capped:
        tags[REALISED_TAG] = capped
    run_id = tracking.record_seed(
        parent_run_id,
        run_name=f"{_run_name(spec)} seed {seed}" + (f" (capped: {capped} realised)" if capped else ""),
        tags={**tags, "bench.result_key": key, "bench.seed": str(seed)},
        params={**params, "seed": str(seed), "budget_file": budget.path.name},
        metrics=metrics,
        confusion=confusion,
        class_names=names,
        run_id=run_id,
    )
    return SeedResult(
        seed,
        key,
        run_id,
        scores,
        budget.realised,
        wall,
        skipped=False,
        confusion=confusion,
        realised_val=budget.realised_val,
        health=health,
    )


def run_cell(
    spec: CellSpec,
    seeds: Sequence[int],
    ds: Any,
    device: torch.device,
    *,
    force_pretrain: bool = False,
    progress: bool = True,
    poll_s: float = CLAIM_POLL_S,
) -> CellResult:
    """Evaluate every seed; each pretraining seed (``seed mod K``) is pretrained once, and only when
    one of its seeds is missing. ``force_pretrain`` redoes both.

    Each missing seed is claimed first (:mod:`bench.harness.claims`, as a sweep does), so two
    commands running the same cell at once do each seed once: a seed another live process holds is
    waited for (every ``poll_s``) and read back when it completes, or taken over if its owner dies.
    """
    start = time.perf_counter()
    check_crops(spec, ds)
    tags, params = _records(spec, ds)
    parent = tracking.cell_run(tags["bench.cell_key"], tags, params, _run_name(spec), ds)
    result = CellResult(spec, tags["bench.cell_key"], parent)
    by_pretrain_seed: dict[int, list[int]] = {}
    for seed in seeds:
        by_pretrain_seed.setdefault(spec.for_seed(seed).pretrain_seed, []).append(seed)
    done: dict[int, SeedResult] = {}
    label = f"{spec.method} {spec.protocol} seeds"
    bar: Progress[Any] = progress_of(total=len(seeds), desc=label, unit="seed", enabled=progress)
    claims = ClaimStore(bench_home() / "claims")  # the sweep's claims: a run and a sweep share them too
    for pretrain_seed, group in by_pretrain_seed.items():
        backbone: SegBackbone | None = None
        pending = list(group)
        while pending:  # seeds another process holds are waited for, then read back (or taken over)
            held_elsewhere = []
            for seed in pending:
                key = result_key(spec, seed, ds)
                if force_pretrain or tracking.find_completed(key) is None:
                    claim = claims.try_claim(key)
                    if claim is None:
                        held_elsewhere.append(seed)
                        continue
                    with claim:
                        todo = force_pretrain or tracking.find_completed(key) is None
                        if todo and backbone is None and not spec.is_reference:
                            backbone, record = pretrain_in_cell(  # its run nests under the cell
                                dataclasses.replace(spec, pretrain_seed=pretrain_seed),
                                ds,
                                device,
                                parent_run_id=parent,
                                force=force_pretrain,
                                progress=progress,
                            )
                            result.pretrain = result.pretrain or record
                        done[seed] = run_seed(
                            spec,
                            seed,
                            ds,
                            device,
                            backbone=backbone,
                            parent_run_id=parent,
                            force=force_pretrain,
                            progress=progress,
                        )
                else:  # complete: read back
                    done[seed] = run_seed(spec, seed, ds, device, parent_run_id=parent, progress=progress)
                bar.update()
            if held_elsewhere:
                time.sleep(poll_s)
            pending = held_elsewhere
    bar.close()
    result.seeds = [done[s] for s in seeds]
    result.wall_time_s = time.perf_counter() - start
    return result


def parse_overrides(pairs: Sequence[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``--set key=value`` pairs -> (method overrides, {protocol: overrides}).

    ``<protocol>.<key>`` (``linear``, ``finetune``, or a reference protocol ``raw``/``rf``) sets a
    protocol setting, ``method.<key>`` or a bare key a method setting. Values are read as JSON
    (numbers, booleans, lists), else kept as strings.
    """
    method: dict[str, Any] = {}
    protocol: dict[str, dict[str, Any]] = {name: {} for name in list_protocols()}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise BenchError(f"--set expects key=value, got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        scope, dot, name = key.partition(".")
        if dot and scope in protocol:
            protocol[scope][name] = value
        else:
            method[name if dot and scope == "method" else key] = value
    return method, protocol


def scope_overrides(pairs: Sequence[str], method: str, methods: Sequence[str]) -> list[str]:
    """The ``--set`` pairs of a sweep over ``methods`` that apply to ``method``.

    ``<name>.<key>`` with ``name`` one of the swept methods sets ``key`` of that method only (a
    nested setting of another method keeps its full path: ``sscl.unifeat.steps``); a plain method
    setting goes to the methods whose config has it, and is an error only when none has it;
    protocol settings go to every method.
    """
    protocols = set(list_protocols())
    kept = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        head, dot, rest = key.partition(".")
        if not sep or (dot and head in protocols):
            kept.append(pair)  # malformed pairs are reported by parse_overrides
        elif dot and head in methods:
            if head == method:
                kept.append(f"{rest}={raw}")
        else:
            setting = (rest if dot and head == "method" else key).partition(".")[0]
            having = [
                m for m in methods if setting in {f.name for f in dataclasses.fields(get_method(m).Config)}
            ]
            if not having:
                raise BenchError(
                    f"--set {key}: none of the methods {', '.join(methods)} has a setting {setting!r}"
                )
            if method in having:
                kept.append(pair)
    return kept
