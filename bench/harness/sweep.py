"""The whole grid (methods x protocols x budgets x seeds), resumable and shareable between workers.

A *unit* is one (cell, seed): the smallest piece of work with its own result key
(:func:`bench.harness.runner.result_key`). For each unit a worker

1. skips it when the tracking store already holds a complete run with its key (resume);
2. otherwise claims it atomically (:mod:`bench.harness.claims`); a unit claimed by a live worker is put
   back and retried later, so its result is waited for, never recomputed;
3. re-checks the store under the claim (another worker may have finished it meanwhile), runs it,
   and releases the claim. The runner marks a run complete only after everything is logged, so a
   killed worker leaves no half result and its unit is redone by the next sweep or worker.

Units are ordered method-major, so a worker pretrains (or loads cached weights) once per method;
two workers that need the same weights at the same time train them once (the pretraining cache
holds a file lock). A method that cannot run (``imagenet`` on ``tiny``, or without reachable weights)
is screened out before the grid starts (:mod:`bench.harness.availability`, called by ``bench sweep``);
one that fails anyway fails its units with the reason and the sweep carries on.

Scaling beyond one machine, with the same command on every worker:

- results: point every worker at one MLflow tracking server (``MLFLOW_TRACKING_URI=http://host:5000``,
  started with ``mlflow server --backend-store-uri postgresql://...``) or one shared database;
- claims: put ``BENCH_HOME`` (claims, budget indices, weight cache) on a filesystem every worker
  mounts (NFS, Lustre); claims heartbeat, so a dead machine's units are taken over after
  :data:`bench.harness.claims.STALE_AFTER_S`;
- launching: any executor that starts N copies of ``python -m bench sweep ...`` works, e.g. a SLURM
  array (``sbatch --array=0-7 --wrap "python -m bench sweep ... --worker-id $SLURM_ARRAY_TASK_ID"``),
  ``submitit`` (``executor.map_array`` over worker ids calling :func:`bench.cli.main`), or Ray tasks
  doing the same. No coordinator is needed: the claims and the store are the coordination.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.core.errors import BenchError, resource_problem
from bench.core.progress import Progress, progress_of
from bench.harness import runner, tracking
from bench.harness.availability import record_unavailable
from bench.harness.claims import ClaimStore
from bench.harness.pretraining import PretrainSpec, UnhealthyPretraining
from bench.harness.runner import CellSpec
from bench.models.backbones import SegBackbone

POLL_S = 5.0


@dataclass(frozen=True)
class Unit:
    """One seed of one cell."""

    spec: CellSpec
    seed: int

    @property
    def label(self) -> str:
        s = self.spec
        return f"{s.method} {s.protocol} {s.samples} {s.budget_unit} seed {self.seed}"


@dataclass
class SweepReport:
    """What this worker did: unit labels done, skipped (already complete) and failed (with reasons)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    wall_time_s: float = 0.0
    #: Why the sweep stopped before the end (the tracking server stayed unreachable), else None.
    stopped: str | None = None

    def summary(self) -> str:
        lines = [
            f"sweep: {len(self.done)} done, {len(self.skipped)} skipped (already complete), "
            f"{len(self.failed)} failed, {self.wall_time_s:.0f} s"
        ]
        reasons: dict[str, list[str]] = {}
        for unit, reason in self.failed.items():
            reasons.setdefault(reason, []).append(unit)
        for reason, units in reasons.items():
            lines.append(f"  failed ({len(units)}): {units[0]}{' ...' if len(units) > 1 else ''}: {reason}")
        return "\n".join(lines)


def grid(
    methods: Sequence[str],
    samples: Sequence[int],
    seeds: Sequence[int],
    protocols: Sequence[str],
    **common: Any,
) -> list[Unit]:
    """Units in method -> protocol -> budget -> seed order (one pretraining per method).

    A reference row (``raw``, ``rf``) is evaluated once per budget and seed, whatever the protocols:
    its specs all normalise to protocol ``reference``, and duplicates are dropped here.
    ``protocol_overrides`` maps a protocol name to its ``--set`` settings.
    """
    overrides = common.pop("protocol_overrides", {})
    units = [
        Unit(runner.cell_spec(m, p, overrides, samples=n, **common), s)
        for m in methods
        for p in protocols
        for n in samples
        for s in seeds
    ]
    return list(dict.fromkeys(units))


def pretrain_identity(spec: CellSpec, seed: int = 0) -> PretrainSpec:
    """The weights evaluation seed ``seed`` of ``spec`` needs (pretraining seed ``seed mod K``):
    units with equal identities share one pretraining."""
    return spec.for_seed(seed).pretrain_spec()


class _Weights:
    """The pretrained backbones of the current method, one per pretraining seed (units come
    method-major, so only one method's K backbones are held at a time)."""

    def __init__(self, ds: Any, device: torch.device, progress: bool) -> None:
        self.ds, self.device, self.progress = ds, device, progress
        self.held: dict[PretrainSpec, SegBackbone] = {}
        self.failed: dict[PretrainSpec, str] = {}

    def get(self, spec: CellSpec, seed: int) -> SegBackbone | None:
        """The weights evaluation seed ``seed`` uses (pretraining seed ``seed mod K``); None for a
        reference row, which has no backbone."""
        if spec.is_reference:
            return None
        seed_spec = spec.for_seed(seed)
        key = seed_spec.pretrain_spec()
        if key in self.failed:
            raise BenchError(self.failed[key])
        if key not in self.held:
            if self.held and next(iter(self.held)).method != key.method:
                self.held.clear()  # a new method: drop the previous one's backbones
            try:
                self.held[key], _ = runner.pretrain_in_cell(  # nested under the cell, as `run` does
                    seed_spec, self.ds, self.device, progress=self.progress
                )
            except UnhealthyPretraining as err:  # stopped by its gate: an n/a column with the reason
                self.failed[key] = str(err)
                gate = str(err).partition("; its weights are not used")[0]
                record_unavailable(key.method, key.backbone, self.ds.fingerprint, f"stopped: {gate}")
                raise
            except BenchError as err:
                self.failed[key] = str(err)
                raise
        return self.held[key]


def run_sweep(
    units: Sequence[Unit],
    ds: Any,
    device: torch.device,
    claims: ClaimStore,
    *,
    worker: str | None = None,
    progress: bool = True,
    poll_s: float = POLL_S,
) -> SweepReport:
    """Do every unit not yet complete and not held by another worker; wait for those that are."""
    start = time.perf_counter()
    report = SweepReport()
    weights = _Weights(ds, device, progress)
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    pending = list(units)
    try:
        _share_grid(pending, ds, device, claims, weights, report, worker, progress, poll_s)
    except tracking.TrackingUnavailable as err:  # every unit needs the store: stop, keep the summary
        report.stopped = str(err)
    report.wall_time_s = time.perf_counter() - start
    return report


def _share_grid(
    pending: list[Unit],
    ds: Any,
    device: torch.device,
    claims: ClaimStore,
    weights: _Weights,
    report: SweepReport,
    worker: str,
    progress: bool,
    poll_s: float,
) -> None:
    """The claim loop of :func:`run_sweep` (units done, skipped or failed go into ``report``)."""
    units = list(pending)
    tracking.setup_tracking()
    bar: Progress[int]
    with progress_of(total=len(units), desc=f"sweep [{worker}]", unit="unit", enabled=progress) as bar:
        while pending:
            held_elsewhere = []
            for unit in pending:
                bar.note(unit.label)
                try:
                    key = runner.result_key(unit.spec, unit.seed, ds)
                except (BenchError, KeyError) as err:  # unknown method or setting
                    report.failed[unit.label] = str(err).strip("'\"")
                    bar.update()
                    continue
                if tracking.find_completed(key) is not None:
                    report.skipped.append(unit.label)
                    bar.update()
                    continue
                claim = claims.try_claim(key)
                if claim is None:
                    held_elsewhere.append(unit)
                    continue
                with claim:
                    if tracking.find_completed(key) is not None:
                        report.skipped.append(unit.label)
                    else:
                        _run_unit(unit, ds, device, weights, report)
                bar.update()
            if held_elsewhere:
                time.sleep(poll_s)  # other workers hold these: wait for their results (or stale claims)
            pending = held_elsewhere


def _run_unit(unit: Unit, ds: Any, device: torch.device, weights: _Weights, report: SweepReport) -> None:
    """Run one claimed unit; any failure is recorded for the summary instead of stopping the sweep."""
    try:
        backbone = weights.get(unit.spec, unit.seed)
        runner.run_seed(unit.spec, unit.seed, ds, device, backbone=backbone, progress=False)
    except tracking.TrackingUnavailable:
        raise
    except Exception as err:  # reported per unit; KeyboardInterrupt still stops the sweep
        if resource_problem(err) is not None:  # a full disk or no memory fails every unit: stop
            raise
        if tracking.is_unreachable(err):  # a fluent MLflow call (pretraining run) met a dead server
            raise tracking.TrackingUnavailable(f"tracking server {tracking.tracking_uri()}: {err}") from None
        report.failed[unit.label] = (
            f"{type(err).__name__}: {err}" if not isinstance(err, BenchError) else str(err)
        )
        return
    report.done.append(unit.label)
