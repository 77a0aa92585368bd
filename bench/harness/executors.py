"""Sweeps on the engines a cluster already runs: Ray tasks and SLURM job arrays (submitit).

The local executor (:func:`bench.harness.sweep.run_sweep` in N plain processes) needs nothing but
a shared ``BENCH_HOME``. The two here hand the same units to an engine instead:

- **ray**: one task per (method, pretraining seed) that pretrains (or finds the cached weights),
  and one task per unit (method x protocol x budget x seed) that depends on its pretraining task,
  so Ray starts a unit only once its weights exist. Tasks ask for ``gpus_per_unit`` GPUs (default:
  1 when the cluster has GPUs). A worker lost mid-task is retried by Ray (``max_retries``).
- **submitit**: a job array of the pretraining tasks, then a job array of the units
  (``--slurm-partition``, ``--slurm-time``, ``--gpus-per-unit``). Where ``srun`` is missing,
  submitit's local executor runs the same arrays as local processes (what the tests use).

A remote unit runs :func:`bench.harness.sweep.run_sweep` on that one unit, so everything a local
worker guarantees holds there too: a unit already complete in the tracking store is skipped, a
unit is claimed under ``BENCH_HOME/claims`` before it runs (a retried task whose first attempt
died finds the dead claim and takes it over, a unit held by another sweep is waited for), and a
run is marked complete only after all its metrics. So an engine's retry, a second sweep or a
re-run never records a unit twice.

Every remote process gets the driver's ``BENCH_HOME``, tracking URI and experiment explicitly
(:class:`RemoteContext`): on a cluster, ``BENCH_HOME`` must be on a filesystem every node mounts
and the tracking URI a server or database every node reaches (README, "Scale beyond one machine").
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.core.device import resolve_device
from bench.core.errors import BenchError, resource_problem
from bench.core.paths import bench_home
from bench.core.provenance import canonical_json
from bench.core.reaper import reap_on_exit, stop_reaper
from bench.harness import runner, tracking
from bench.harness.claims import ClaimStore
from bench.harness.pretraining import PretrainSpec, load_or_pretrain
from bench.harness.sweep import SweepReport, Unit, pretrain_identity, run_sweep

EXECUTORS = ("local", "ray", "submitit")
#: Ray's retries of a task whose worker died (not of a Python error: those are reported per unit).
RAY_MAX_RETRIES = 3
#: What a remote process must see exactly as the driver does.
_FORWARDED_ENV = ("BENCH_EXPERIMENT", tracking.PATIENCE_ENV, "MLFLOW_HTTP_REQUEST_TIMEOUT")


@dataclass
class RemoteContext:
    """What a remote task needs to see the driver's dataset, caches and tracking store."""

    dataset_args: dict[str, Any]
    device: str
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_driver(cls, dataset_args: dict[str, Any], device: str) -> RemoteContext:
        """The driver's settings, made absolute (a remote process starts in another directory)."""
        args = {k: (Path(v).resolve() if isinstance(v, Path) else v) for k, v in dataset_args.items()}
        env = {"BENCH_HOME": str(bench_home().resolve()), "MLFLOW_TRACKING_URI": tracking.tracking_uri()}
        env.update({k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ})
        env.setdefault("BENCH_EXPERIMENT", tracking.experiment_name())
        return cls(args, device, env)

    def enter(self) -> tuple[Any, torch.device]:
        """Adopt the driver's environment; the dataset (loaded once per process) and the device."""
        from datasets import load_dataset

        os.environ.update(self.env)
        identity = canonical_json({"env": self.env, **{k: str(v) for k, v in self.dataset_args.items()}})
        if identity not in _LOADED:  # a worker process serves one sweep at a time: keep one
            _LOADED.clear()
            _LOADED[identity] = load_dataset(**self.dataset_args, progress=False)
        return _LOADED[identity], resolve_device(self.device)


#: The dataset of the sweep this worker process serves (Ray reuses worker processes).
_LOADED: dict[str, Any] = {}


def pretrain_task(spec: PretrainSpec | None, ctx: RemoteContext) -> str | None:
    """Pretrain (or find in the cache) the weights ``spec`` names (None: a reference row needs
    none); the failure reason or None."""
    if spec is None:
        return None
    ds, device = ctx.enter()
    try:
        load_or_pretrain(spec, ds, device, progress=False)
    except tracking.TrackingUnavailable as err:
        return str(err)
    except Exception as err:  # the units report it; the sweep carries on with other methods
        line = resource_problem(err)  # a full disk, no memory: the one line a local sweep prints
        if line is not None:
            return line
        return str(err) if isinstance(err, BenchError) else f"{type(err).__name__}: {err}"
    return None


def unit_task(unit: Unit, ctx: RemoteContext, pretrain_failure: str | None) -> SweepReport:
    """One unit, exactly as a local sweep worker does it (skip if complete, claim, run, record)."""
    if pretrain_failure is not None:
        return SweepReport(failed={unit.label: pretrain_failure})
    ds, device = ctx.enter()
    claims = ClaimStore(bench_home() / "claims")
    try:
        return run_sweep([unit], ds, device, claims, progress=False)
    except Exception as err:  # a full disk or no memory stops the sweep with its one line
        line = resource_problem(err)
        if line is None:
            raise
        return SweepReport(stopped=line)


def merge(reports: Sequence[SweepReport], start: float) -> SweepReport:
    """One summary of many per-unit reports (the first reason to stop, if any, is kept)."""
    merged = SweepReport()
    for report in reports:
        merged.done += report.done
        merged.skipped += report.skipped
        merged.failed |= report.failed
        merged.stopped = merged.stopped or report.stopped
    merged.wall_time_s = time.perf_counter() - start
    return merged


def _pending(units: Sequence[Unit], ds: Any, report: SweepReport) -> list[Unit]:
    """Units not yet complete (checked by the driver, so no task is started for finished work)."""
    pending = []
    for unit in units:
        try:
            key = runner.result_key(unit.spec, unit.seed, ds)
        except (BenchError, KeyError) as err:  # unknown method or setting: reported, never sent
            report.failed[unit.label] = str(err).strip("'\"")
            continue
        if tracking.find_completed(key) is not None:
            report.skipped.append(unit.label)
        else:
            pending.append(unit)
    return pending


def _groups(units: Sequence[Unit]) -> dict[PretrainSpec | None, list[Unit]]:
    """Units by the pretrained weights they need (``PretrainSpec``: method, its config, pretraining
    seed ``seed mod K`` and data); reference rows need none (key None)."""
    groups: dict[PretrainSpec | None, list[Unit]] = {}
    for unit in units:
        key = None if unit.spec.is_reference else pretrain_identity(unit.spec, unit.seed)
        groups.setdefault(key, []).append(unit)
    return groups


def run_ray(
    units: Sequence[Unit],
    ds: Any,
    ctx: RemoteContext,
    *,
    address: str | None = None,
    gpus_per_unit: float | None = None,
    num_cpus: int | None = None,
    max_retries: int = RAY_MAX_RETRIES,
) -> SweepReport:
    """The grid as Ray tasks: pretraining per group, then one task per unit depending on it.

    ``address``: an existing cluster (``auto``, ``ray://host:10001``, ``host:6379``); None starts
    a local instance (``num_cpus``: default all cores) and shuts it down afterwards.
    """
    import ray

    start = time.perf_counter()
    report = SweepReport()
    try:
        pending = _pending(units, ds, report)
    except tracking.TrackingUnavailable as err:
        report.stopped = str(err)
        return merge([report], start)
    if not pending:
        return merge([report], start)
    started_here = not ray.is_initialized()
    reaper = None
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            reaper = start_local_ray(num_cpus)
    try:
        if gpus_per_unit is None:
            gpus_per_unit = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        options = {"num_gpus": gpus_per_unit, "max_retries": max_retries, "retry_exceptions": False}
        pretrain_remote = ray.remote(pretrain_task).options(**options)
        unit_remote = ray.remote(unit_task).options(**options)
        refs: dict[Any, str] = {}
        for spec, members in _groups(pending).items():
            weights = pretrain_remote.remote(spec, ctx)  # units start once this has finished
            refs.update({unit_remote.remote(unit, ctx, weights): unit.label for unit in members})
        reports = [report]
        for ref, label in refs.items():
            try:
                reports.append(ray.get(ref))
            except ray.exceptions.RayError as err:  # retries exhausted: the unit is not recorded
                reason = str(err).strip().splitlines()[0][:200]
                reports.append(SweepReport(failed={label: f"ray: {type(err).__name__}: {reason}"}))
    finally:
        if started_here:
            ray.shutdown()
        stop_reaper(reaper)
    return merge(reports, start)


def start_local_ray(num_cpus: int | None = None) -> Any:
    """``ray.init`` of a local instance whose processes die with this driver.

    Ray's GCS and raylet share the driver's fate, but the agents under the raylet (dashboard,
    runtime env) outlived a killed driver by about two minutes; a watcher
    (:func:`bench.core.reaper.reap_on_exit`) kills the instance's process tree as soon as the
    driver is gone. Returns the watcher, for :func:`bench.core.reaper.stop_reaper`.
    """
    import ray

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:  # the instance's own processes (private API: without it, nothing is watched)
        node: Any = ray._private.worker._global_node
        roots = [info.process.pid for infos in node.all_processes.values() for info in infos]
    except Exception:
        return None
    return reap_on_exit(roots)


def run_submitit(
    units: Sequence[Unit],
    ds: Any,
    ctx: RemoteContext,
    *,
    folder: Path,
    partition: str | None = None,
    time_min: int = 60,
    gpus_per_unit: int = 0,
    cluster: str | None = None,
) -> SweepReport:
    """The grid as two job arrays (pretraining, then units), on SLURM or, without it, locally.

    ``cluster``: submitit's executor name (``slurm``, ``local``); None picks SLURM where ``srun``
    exists. Logs and pickles of every job go under ``folder``.
    """
    import submitit

    start = time.perf_counter()
    report = SweepReport()
    try:
        pending = _pending(units, ds, report)
    except tracking.TrackingUnavailable as err:
        report.stopped = str(err)
        return merge([report], start)
    if not pending:
        return merge([report], start)
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: dict[str, Any] = {"timeout_min": time_min, "gpus_per_node": gpus_per_unit, "tasks_per_node": 1}
    if partition:
        params["slurm_partition"] = partition
    executor.update_parameters(name="bench-sweep", **params)
    groups = _groups(pending)
    specs = list(groups)
    pretrain_jobs = executor.map_array(pretrain_task, specs, [ctx] * len(specs))
    failure: dict[PretrainSpec | None, str | None] = {}
    for spec, job in zip(specs, pretrain_jobs, strict=True):
        try:
            failure[spec] = job.result()
        except Exception as err:  # the job itself died (time limit, node failure)
            failure[spec] = f"submitit pretraining job {job.job_id}: {type(err).__name__}"
    flat = [(unit, failure[spec]) for spec, members in groups.items() for unit in members]
    unit_jobs = executor.map_array(unit_task, [u for u, _ in flat], [ctx] * len(flat), [f for _, f in flat])
    reports = [report]
    for (unit, _), unit_job in zip(flat, unit_jobs, strict=True):
        try:
            reports.append(unit_job.result())
        except Exception as err:  # the job died; its claim goes stale, the next sweep redoes it
            reports.append(
                SweepReport(failed={unit.label: f"submitit job {unit_job.job_id}: {type(err).__name__}"})
            )
    return merge(reports, start)
