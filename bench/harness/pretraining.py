"""Pretrained weights, computed once per (method, config, backbone, pretraining data, seed).

Every budget, evaluation seed and protocol of a method reuses the same cached weights, so a sweep
pays for pretraining once. The cache file is written atomically with its digest and guarded by a
file lock, so two workers that need the same weights train them once. A cached file is used only
when it matches its digest and loads (else it is reported, moved aside and trained again), and a
verified hit takes no lock, so a fully cached run works on a read-only ``BENCH_HOME``.

Every run passes its method's health gate (``PretrainMethod.health``, :mod:`methods.health`,
DESIGN 4.1) before its weights are cached as good. A run that fails it is recorded in MLflow as
FAILED with tag ``bench.pretrain_health`` = ``failed: <one line naming method, seed and figure>``,
its weights go to ``<entry>.unhealthy.pt`` beside the good ones (never read as good), and
:class:`UnhealthyPretraining` stops whatever needed it; a later command needing the same weights
stops with the same line at once (no silent retraining, no retry with another seed;
``--force-pretrain`` trains again). With ``allow_unhealthy`` (``--allow-unhealthy``) the unhealthy
weights are used, and :func:`health_of` tells the runner to tag every seed run that uses them.
Beside the gate, never as one, a trained method's run also measures its usefulness (validation
linear-probe AA against its own random init, :mod:`bench.harness.usefulness`): logged on the run,
kept in the weights record, and (:func:`usefulness_of`) tagged on every seed run of its weights.
A pretraining run is FINISHED only once its weights are safely in the cache; a failed save, or
any error before it, leaves it FAILED.

The verdict cannot be forged by editing a file: the record beside an entry (``<entry>.json``: the
verdict, its figures and the MLflow run that judged it) is covered by the entry's digest, and a
record is also checked against the pretraining runs the tracking store holds for its key (when the
store exists and holds any). An entry whose record fails either check is reported in one line
naming the file, moved aside and rebuilt like any corrupt entry (:mod:`bench.core.integrity`).
"""

from __future__ import annotations

import functools
import json
import math
import time
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from filelock import FileLock

from bench.core.distributed import barrier, broadcast_flag, is_main, terminate_as_interrupt
from bench.core.errors import BenchError
from bench.core.integrity import atomic_entry, check_entry, cover_companions, file_digest, move_aside
from bench.core.paths import bench_home
from bench.core.provenance import canonical_json, stable_hash
from bench.core.settings import check_crop
from bench.harness import tracking
from bench.harness.export import log_pretrained
from bench.harness.tracking import close_dead_runs, process_tags, retrying
from bench.harness.usefulness import Usefulness, measure, snapshot
from bench.models.backbones import SegBackbone, build_backbone
from methods import PretrainContext, PretrainMethod, get_method
from methods.health import Verdict, judge

#: The MLflow tag of a pretraining run, and of every seed run evaluated on its weights.
HEALTH_TAG = tracking.HEALTH_TAG
#: The seed runs' tag of the weights' usefulness figure (:mod:`bench.harness.usefulness`).
USEFULNESS_TAG = tracking.USEFULNESS_TAG


class UnhealthyPretraining(BenchError):
    """A pretraining run failed its method's health gate (and ``--allow-unhealthy`` was not given)."""


@dataclass(frozen=True)
class PretrainSpec:
    """What identifies pretrained weights, built once per (cell, pretraining seed).

    The weights cache key (:meth:`cache_key`), the pretraining part of every result key
    (:meth:`identity`, in ``bench.harness.runner``) and the sweep's grouping of units that share
    weights (the spec itself: frozen and hashable) all come from this one object. Fields a method
    ignores are blanked (a method that reads no data has no pretraining data), so two cells that
    load the same weights have equal specs.
    """

    method: str
    backbone: str
    seed: int = 0
    method_overrides: tuple[tuple[str, Any], ...] = ()
    pretrain_data: Path | None = None
    transductive: bool = False
    weights: Path | None = None
    #: Use weights that failed the health gate (marked) instead of stopping: not part of the identity.
    allow_unhealthy: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        needs_data = get_method(self.method).needs_data
        object.__setattr__(self, "method_overrides", tuple(sorted(dict(self.method_overrides).items())))
        data = Path(self.pretrain_data).resolve() if needs_data and self.pretrain_data else None
        object.__setattr__(self, "pretrain_data", data)
        object.__setattr__(self, "transductive", bool(self.transductive and needs_data))
        reads_weights = get_method(self.method).reads_weights
        weights = Path(self.weights).resolve() if reads_weights and self.weights else None
        object.__setattr__(self, "weights", weights)

    def build_method(self) -> PretrainMethod:
        """The method with its full config (defaults + overrides); unknown settings raise."""
        cls = get_method(self.method)
        return cls(cls.config_from_dict(dict(self.method_overrides)))

    def identity(self) -> dict[str, Any]:
        """Everything that changes the weights, nothing that does not (device, workers, budgets)."""
        method = self.build_method()
        return {
            "method": self.method,
            "version": method.version,
            "config": method.config_dict(),
            "backbone": self.backbone,
            "seed": self.seed,
            "pretrain_data": str(self.pretrain_data) if self.pretrain_data else None,
            "transductive": self.transductive,
            "weights": weights_content(self.weights) if self.weights else None,
        }

    def cache_key(self, backbone_spec: Any, data_fingerprint: str) -> str:
        """The weights cache key: the identity, the backbone's architecture spec (its version
        included) and the content fingerprint of the pretraining pool actually read (so a copy of
        the pool at another path keeps its cached weights)."""
        ident = {k: v for k, v in self.identity().items() if k != "pretrain_data"}  # content, not path
        return stable_hash({**ident, "backbone_spec": asdict(backbone_spec), "data": data_fingerprint})


def weights_content(path: Path) -> str:
    """The identity of a ``--weights`` file: the sha256 of its bytes, never its path, so a file
    replaced at the same path gives new keys (and a copy elsewhere keeps its results). Hashed once
    per (path, size, modification time) in a process; a missing file is named in the key, and its
    method then stops with the one-line error that says how to provide it."""
    try:
        stat = path.stat()
    except OSError:
        return f"missing:{path.name}"
    return _sha256_of(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_of(path: Path, size: int, mtime_ns: int) -> str:
    """sha256 over the file's chunk digests (:func:`bench.core.integrity.file_digest`, hashed in
    parallel threads, as every cache entry is)."""
    return "sha256:" + stable_hash(file_digest(path), length=64)


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
    #: ``passed`` or ``failed: <line>`` (the ``bench.pretrain_health`` tag).
    health: str = "passed"


def pretraining_images(ds: Any, pretrain_data: Path | None, transductive: bool) -> tuple[np.ndarray, str]:
    """The unlabelled pool and its fingerprint (DESIGN 2.4).

    ``pretrain_data``: a SEN12MS copy; without it the dataset's own SEN12MS-layout pool
    (``ds.pretrain_pool``: the embedded default's, generator version 3), else the labelled pool's
    inputs (labels unseen). The fingerprint is the pool's content, so it enters the weights key.
    Test inputs join only with ``transductive=True``, the user's explicit request.
    """
    if pretrain_data is None:
        pretrain_data = getattr(ds, "pretrain_pool", None)
    if pretrain_data is not None:
        from datasets import load_pretrain_pool

        pool = load_pretrain_pool(pretrain_data, classes=ds.classes)
        images: np.ndarray = pool.images
        fingerprint = f"sen12ms:{pool.fingerprint}"
    else:
        images, fingerprint = ds.labelled.images, f"labelled:{ds.labelled.fingerprint}"
    if transductive:
        images = np.concatenate([np.asarray(images), np.asarray(ds.test.images)])
        fingerprint = f"{fingerprint}+test:{ds.test.fingerprint}"
    return images, fingerprint


def pretraining_labels(ds: Any, pretrain_data: Path | None, transductive: bool) -> np.ndarray:
    """The pool's own labels, aligned with :func:`pretraining_images`' images, for methods that read
    them (``supervised``): a SEN12MS pool's ``lc`` through the IGBP lookup (DESIGN 2.1), mapped to
    the dataset's classes. Never the labelled pool's or the test's labels: no SEN12MS pool, no labels.
    """
    from datasets import load_pretrain_pool

    path = pretrain_data if pretrain_data is not None else getattr(ds, "pretrain_pool", None)
    if path is None or transductive:
        why = "test inputs have no pool labels (--transductive)" if transductive else "no pool"
        raise BenchError(
            f"{why}: this method trains on a SEN12MS pool's lc labels; pass --pretrain-data <SEN12MS "
            "folder with lc_* files> (the embedded default brings its own)"
        )
    pool = load_pretrain_pool(path, classes=ds.classes)
    if pool.labels is None:
        raise BenchError(f"{path}: no lc file beside every s1/s2 pair (lc_<scene>/..._lc_<scene>_p<k>.tif)")
    return np.asarray(pool.labels)


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
    if broadcast_flag(False):  # rank 0 found the weights cached (or unhealthy ones, allowed)
        if not (
            _load_cached(model, path, follower=True)
            or _load_cached(model, unhealthy_entry(path), follower=True)
        ):
            raise BenchError(f"{path}: rank 0 found these weights cached, this rank cannot load them")
        return model.to(device), PretrainRecord(cached=True, seconds=0.0, **record)
    start = time.perf_counter()
    model.to(device)
    runner.pretrain(model, images if images is not None else np.empty((0,)), PretrainContext(**ctx_args))
    barrier()  # rank 0 has written the cache and closed its run
    return model, PretrainRecord(cached=False, seconds=time.perf_counter() - start, **record)


#: The health tag of every backbone this process loaded or pretrained (for the seed runs' tag).
_HEALTH: weakref.WeakKeyDictionary[SegBackbone, str] = weakref.WeakKeyDictionary()


def health_of(backbone: SegBackbone | None) -> str | None:
    """``passed`` or ``failed: <line>`` for a backbone from :func:`load_or_pretrain`, else None."""
    return None if backbone is None else _HEALTH.get(backbone)


#: The usefulness tag (:data:`USEFULNESS_TAG`) of every trained backbone this process loaded or
#: pretrained whose record holds the figure (:mod:`bench.harness.usefulness`).
_USEFULNESS: weakref.WeakKeyDictionary[SegBackbone, str] = weakref.WeakKeyDictionary()


def usefulness_of(backbone: SegBackbone | None) -> str | None:
    """The :data:`USEFULNESS_TAG` value for a backbone from :func:`load_or_pretrain`: None for a
    method that trains nothing, and for weights recorded before the figure existed."""
    return None if backbone is None else _USEFULNESS.get(backbone)


def recorded_usefulness(entry: Path) -> Usefulness | None:
    """The figure in the record of a weights entry (``PretrainRecord.path``) that was just verified
    and loaded; None without one (a method that trains nothing, a record from before the figure)."""
    try:
        return Usefulness.from_record(json.loads(entry.with_suffix(".json").read_text()))
    except (OSError, ValueError):
        return None


def unhealthy_entry(path: Path) -> Path:
    """Where the weights of a run that failed its gate are kept: beside the good entry, never it."""
    return path.with_name(f"{path.stem}.unhealthy.pt")


def _companions(path: Path) -> tuple[str, ...]:
    """The files the digest of a weights entry covers besides it: its record (``<stem>.json``)."""
    return (path.with_suffix(".json").name,)


#: Records already checked against the tracking store in this process (path, record's mtime).
_CROSS_CHECKED: set[tuple[str, int]] = set()


def _store_verdicts(key: str) -> list[Any]:
    """The pretraining runs of weights ``key`` that recorded a health verdict, newest first; none
    when the local store does not exist (a check must not create a store just to look)."""
    uri = tracking.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return []
    client, exp_id = tracking.setup_tracking()
    runs = client.search_runs(
        [exp_id],
        f"tags.`bench.kind` = 'pretrain' and tags.`bench.pretrain_key` = '{key}'",
        order_by=["attributes.start_time DESC"],
    )
    return [run for run in runs if HEALTH_TAG in run.data.tags]


def _agrees(run: Any, record: dict[str, Any]) -> bool:
    """The run recorded the record's verdict and (to 1e-9) the last value of each of its figures."""
    if run.data.tags.get(HEALTH_TAG) != record.get("health"):
        return False
    figures = record.get("health_figures") or {}
    if not isinstance(figures, dict):
        return False
    for figure, value in figures.items():
        logged = run.data.metrics.get(f"pretrain.{record.get('method')}/{figure}")
        if logged is None or not isinstance(value, int | float):
            return False
        if not math.isclose(float(logged), float(value), rel_tol=1e-9, abs_tol=1e-12):
            return False
    return True


def health_disagreement(record: dict[str, Any]) -> str | None:
    """Why a weights record's health verdict is not what the tracking store recorded for its
    pretraining run, or None when it agrees (or the store has no run of its key that judged one).

    The record names the run that judged it (``run_id``); a record without one, or whose run is not
    in this store, must agree with one of the key's runs."""
    health = record.get("health")
    if not isinstance(health, str):
        return "its record holds no health verdict"
    runs = _store_verdicts(str(record.get("key")))
    own = [run for run in runs if run.info.run_id == record.get("run_id")]
    candidates = own or runs
    if not candidates or any(_agrees(run, record) for run in candidates):
        return None
    run = candidates[0]
    return (
        f"its health verdict {health[:60]!r} disagrees with pretraining run {run.info.run_id} in "
        f"{tracking.tracking_uri()} ({run.data.tags[HEALTH_TAG][:70]!r}): edited or copied from other weights"
    )


def _record_problem(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The entry's record, or why the entry (with its record) cannot be trusted.

    An entry written before its digest covered its record (the weights themselves match) is kept
    when the tracking store confirms its record's verdict, and its digest then covers the record;
    without that confirmation it is refused like any other (and retrained)."""
    problem = check_entry(path, _companions(path))
    legacy = problem is not None and problem.endswith("not this entry") and check_entry(path) is None
    if problem is not None and not legacy:
        return None, problem
    try:
        record = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError) as err:
        return None, f"its record is unreadable ({type(err).__name__})"
    if not isinstance(record, dict):
        return None, "its record is malformed"
    if legacy:
        if not any(_agrees(run, record) for run in _store_verdicts(str(record.get("key")))):
            return None, f"{problem}: its record is not covered and the tracking store does not confirm it"
        cover_companions(path, _companions(path))
    stamp = (str(path), path.with_suffix(".json").stat().st_mtime_ns)
    if stamp not in _CROSS_CHECKED:
        disagreement = health_disagreement(record)
        if disagreement is not None:
            return None, disagreement
        _CROSS_CHECKED.add(stamp)
    return record, None


def _verified_record(path: Path) -> dict[str, Any] | None:
    """The record of a weights entry whose digest (record included) holds and whose verdict agrees
    with the tracking store; None when there is no entry, or (reported, moved aside) a bad one."""
    if not path.exists():
        return None
    record, problem = _record_problem(path)
    if problem is not None:
        move_aside(path, problem, "pretrained weights", _companions(path))
        return None
    return record


def checked_cache_file(path: Path) -> dict[str, Any]:
    """The record of the weights cache file ``path`` (``bench export --from``), after the same checks
    a cache hit passes: its digest, its record's and the verdict's agreement with the tracking
    store; a one-line :class:`BenchError` naming the file otherwise (nothing is moved: the user
    named the file). Unhealthy weights are returned, their record's ``health`` saying so."""
    if not path.is_file():
        raise BenchError(f"--from {path}: no such file")
    record, problem = _record_problem(path)
    if problem is not None:
        raise BenchError(f"--from {path}: {problem}; not exported (`bench cache verify` checks the cache)")
    assert record is not None
    return {**record, "path": str(path)}


def _recorded_health(path: Path) -> str | None:
    """The health tag of a verified cache entry, or None when there is none (or it was moved aside)."""
    record = _verified_record(path)
    health = record.get("health") if record is not None else None
    return health if isinstance(health, str) else None


def _load_good(model: SegBackbone, path: Path, gated: bool) -> bool:
    """Load a good cache entry: one whose digest and record hold and, for a gated method, that passed
    its gate (an entry written before the gate existed has no verdict and is trained again)."""
    if gated and path.exists() and _recorded_health(path) != "passed":
        return False
    return _load_cached(model, path)


def _load_cached(model: SegBackbone, path: Path, *, follower: bool = False) -> bool:
    """Load the verified cache file into ``model``; False (after moving a bad file aside) when unusable.

    ``follower``: a ``torchrun`` rank other than 0, which loads what rank 0 verified (digest only:
    it neither asks the tracking store nor moves files)."""
    if follower:
        if check_entry(path, _companions(path)) is not None:
            return False
    elif _verified_record(path) is None:  # digest (record included), verdict vs the store; bad: moved aside
        return False
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        expected = {k: v.shape for k, v in model.state_dict().items()}
        if {k: v.shape for k, v in state.items()} != expected:
            raise ValueError("parameter names or shapes differ from the backbone")
        model.load_state_dict(state)
    except Exception as err:  # a file that matches its digest but does not load: written wrong
        why = f"does not load ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
        move_aside(path, why, "pretrained weights", _companions(path))
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
    spec = PretrainSpec(
        method, backbone, seed, tuple((method_overrides or {}).items()), pretrain_data, transductive, weights
    )
    return load_or_pretrain(spec, ds, device, force=force, progress=progress)


def load_or_pretrain(
    spec: PretrainSpec, ds: Any, device: torch.device, *, force: bool = False, progress: bool = True
) -> tuple[SegBackbone, PretrainRecord]:
    """The backbone ``spec`` describes: loaded from the cache, or pretrained and cached."""
    method, backbone, seed, weights = spec.method, spec.backbone, spec.seed, spec.weights
    runner = spec.build_method()
    torch.manual_seed(seed)
    model = build_backbone(backbone, in_chans=len(ds.band_names))
    images, fingerprint = (None, "none")
    if runner.needs_data:
        images, fingerprint = pretraining_images(ds, spec.pretrain_data, spec.transductive)
    labels = pretraining_labels(ds, spec.pretrain_data, spec.transductive) if runner.needs_labels else None
    if images is not None and np.ndim(images) == 4:  # crop=1000 on 32 px patches: refused before work
        check_crop(
            runner.config, int(min(np.shape(images)[-2:])), f"method {method!r}", "the pretraining pool"
        )
    key = spec.cache_key(model.spec, fingerprint)
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
        ctx_args = {
            "device": device,
            "seed": seed,
            "progress": False,
            "weights": weights,
            "labels": labels,
            "band_names": tuple(ds.band_names),
        }
        return _follow_rank0(runner, model, images, path, record, device, ctx_args)
    gated = bool(runner.health)
    if not force and _load_good(model, path, gated):  # no lock needed to read a verified entry
        return _cached(model, device, record, "passed")
    if not force and (found := _unhealthy_cached(model, path, spec, device, record)) is not None:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    # terminate_as_interrupt: a SIGTERM (torchrun ending a rank whose peer died) ends the run KILLED
    with FileLock(str(path) + ".lock"), terminate_as_interrupt():
        if not force and _load_good(model, path, gated):  # another worker trained it meanwhile
            return _cached(model, device, record, "passed")
        if not force and (found := _unhealthy_cached(model, path, spec, device, record)) is not None:
            return found
        broadcast_flag(False)  # the other ranks train with this one
        # the same seed's random init, for the usefulness figure (trained methods only)
        init = snapshot(model) if runner.needs_data else None
        start = time.perf_counter()
        model.to(device)
        logged: dict[str, float] = {}

        def log_metrics(metrics: dict[str, float], step: int) -> None:
            logged.update(metrics)  # the last value of every figure, for the health gate
            _log_to_mlflow(metrics, step)

        ctx = PretrainContext(
            device=device, seed=seed, log_metrics=log_metrics, progress=progress, weights=weights
        )
        ctx.labels = labels  # the pool's own labels, for methods that read them (supervised)
        ctx.band_names = tuple(ds.band_names)
        close_dead_runs(pretrain_key=key)  # an earlier attempt killed mid-way
        mlflow.start_run(run_name=f"pretrain {method}/{backbone}", nested=mlflow.active_run() is not None)
        status = "FAILED"
        try:
            mlflow.set_tags(
                {
                    "bench.kind": "pretrain",
                    "bench.pretrain_key": key,
                    "bench.method": method,
                    "bench.pretrain_seed": str(seed),
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
            verdict = judge(method, seed, runner.health, runner.config, logged) if gated else Verdict(True)
            mlflow.set_tag(HEALTH_TAG, verdict.tag)
            # beside the gate, never a gate (bench.harness.usefulness): recorded, whatever it says
            useful = measure(model, init, ds, device) if init is not None else None
            del init
            if useful is not None:
                retrying(mlflow.log_metrics, {**useful.metrics(), "usefulness.seconds": useful.seconds})
            if runner.needs_data and verdict.passed:  # trained, healthy: one weights artifact
                log_pretrained(model, record, ds, version=runner.version)
            entry = path if verdict.passed else unhealthy_entry(path)
            run = mlflow.active_run()
            sidecar = {
                **record,
                "path": str(entry),
                "seconds": seconds,
                "health": verdict.tag,
                "health_figures": dict(verdict.figures),
                "run_id": run.info.run_id if run is not None else None,
                **({"usefulness": useful.record()} if useful is not None else {}),
            }
            # the record (verdict, figures, run) is inside the entry's digest: it cannot be edited apart
            with atomic_entry(entry, {entry.with_suffix(".json").name: canonical_json(sidecar)}) as tmp:
                torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
            status = "FINISHED" if verdict.passed else "FAILED"  # weights safely in the cache
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            mlflow.end_run(status)
    barrier()  # the other ranks return once the cache is written
    if not verdict.passed and not spec.allow_unhealthy:
        raise UnhealthyPretraining(_stop_line(verdict))
    _HEALTH[model] = verdict.tag
    if useful is not None:
        _USEFULNESS[model] = useful.tag(method, seed)
    return model, PretrainRecord(cached=False, seconds=seconds, health=verdict.tag, **record)


def _stop_line(verdict: Verdict) -> str:
    return (
        f"{verdict.line}; its weights are not used (`--allow-unhealthy` evaluates them, marked; "
        "`--force-pretrain` trains again)"
    )


def _cached(
    model: SegBackbone, device: torch.device, record: dict[str, Any], health: str
) -> tuple[SegBackbone, PretrainRecord]:
    broadcast_flag(True)  # the other ranks load it too
    _HEALTH[model] = health
    useful = recorded_usefulness(Path(record["path"]))
    if useful is not None:
        _USEFULNESS[model] = useful.tag(str(record["method"]), int(record["seed"]))
    return model.to(device), PretrainRecord(cached=True, seconds=0.0, health=health, **record)


def _unhealthy_cached(
    model: SegBackbone, path: Path, spec: PretrainSpec, device: torch.device, record: dict[str, Any]
) -> tuple[SegBackbone, PretrainRecord] | None:
    """These weights failed their gate before: stop with the recorded line, or (``allow_unhealthy``)
    use them, marked; None when there is no such verdict (or its weights no longer load)."""
    entry = unhealthy_entry(path)
    health = _recorded_health(entry)
    if health is None or health == "passed":
        return None
    if not spec.allow_unhealthy:
        broadcast_flag(True)  # under torchrun the other ranks must not wait for a training
        raise UnhealthyPretraining(_stop_line(Verdict(False, health.removeprefix("failed: "))))
    if not _load_cached(model, entry):
        return None
    return _cached(model, device, {**record, "path": str(entry)}, health)
