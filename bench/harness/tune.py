"""Hyperparameter search with optuna, scored on the validation split, never on the test set.

Each trial trains with the suggested settings on a label budget (:mod:`bench.protocols.budget`)
and scores the AA at that budget's validation pixels (the 20 % of the budget drawn from held-out
validation patches): the dense labels of those patches and the test split are never read.
Searched: the downstream protocol's settings, and with ``pretrain=True`` the method's own (its
``Config`` fields), which re-pretrains per trial. Ranges are derived from each field's name and
default (:func:`suggest`), so a new config field with a known name is searched without changes.

Storage: an optuna journal file under ``bench_home()/optuna/`` by default (safe for several local
processes, and on a shared filesystem for several machines), or any RDB URL (``sqlite:///...``,
``postgresql://...``) for a study shared through a database server. Start the same command on
several workers to search in parallel. Every trial is an MLflow run nested under one parent per
study; the best settings are written as JSON that ``run --config`` and ``sweep --config`` apply,
one file per (method, protocol, budget, backbone, dataset), so tuning another budget or dataset
never overwrites it.

Resuming: a trial holds a claim (:mod:`bench.harness.claims`, as a sweep's unit does) while it
runs, and records its host and pid. A trial left RUNNING by a process that died (its claim is
stale: the pid is gone on this host, or no heartbeat for ``STALE_AFTER_S`` elsewhere) is marked
FAILED when the study is next opened and its settings are asked again; its MLflow run is closed
like a dead seed run's. ``study_trials`` counts completed trials, so a killed trial is made up for.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from bench.core.atomic import atomic_write_text
from bench.core.errors import BenchError, NonFiniteLossError
from bench.core.names import check_name
from bench.core.paths import bench_home
from bench.core.provenance import code_version, stable_hash
from bench.harness import runner, tracking
from bench.harness.claims import ClaimStore, owner_gone
from bench.harness.runner import CellSpec
from bench.protocols.metrics import Scores
from bench.protocols.registry import get_protocol
from methods import get_method

_ITERATIONS = ("steps", "max_iter", "epochs")
#: Integer settings searched ÷2..x2 (log) around the default like the counts: kNN's neighbours.
_COUNTS = (*_ITERATIONS, "k")


def suggest(trial: optuna.Trial, prefix: str, config_cls: type) -> dict[str, Any]:
    """Settings of ``config_cls`` for this trial: lr x/÷10 (log), weight decay 1e-6..1e-1 (log),
    learning-rate factors (``backbone_lr_factor``) 0.01..1 (log), step/iteration counts and kNN's
    ``k`` ÷2..x2 (log) around the defaults, a ``temperature`` ÷3..x3 (log); other fields keep
    their defaults."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config_cls):
        default = f.default
        name = f"{prefix}.{f.name}"
        if f.name == "lr" and isinstance(default, float) and default > 0:
            out[f.name] = trial.suggest_float(name, default / 10, default * 10, log=True)
        elif f.name == "weight_decay" and isinstance(default, float):
            out[f.name] = trial.suggest_float(name, 1e-6, 1e-1, log=True)
        elif f.name.endswith("lr_factor") and isinstance(default, float):
            out[f.name] = trial.suggest_float(name, 0.01, 1.0, log=True)
        elif f.name in _COUNTS and isinstance(default, int) and default > 1:
            out[f.name] = trial.suggest_int(name, max(1, default // 2), default * 2, log=True)
        elif f.name == "temperature" and isinstance(default, float) and default > 0:
            out[f.name] = trial.suggest_float(name, default / 3, default * 3, log=True)
    return out


def validation_aa(spec: CellSpec, seeds: range, ds: Any, device: torch.device) -> float:
    """Mean validation AA over budget seeds: train on each budget, score its validation pixels.

    Seed ``s`` uses pretraining seed ``s mod K`` as in :func:`bench.harness.runner.run_cell`; only
    the budget's validation pixels are scored (never dense validation labels, never test).
    """
    protocol = get_protocol(spec.evaluator)
    cfg = spec.protocol_config()
    backbones: dict[int, Any] = {}
    scores = []
    for seed in seeds:
        seed_spec = spec.for_seed(seed)
        if not spec.is_reference and seed_spec.pretrain_seed not in backbones:
            backbones[seed_spec.pretrain_seed] = runner.pretrain(seed_spec, ds, device, progress=False)[0]
        budget = runner.budget_for(spec, seed, ds)
        confusion = protocol.evaluate(
            backbones.get(seed_spec.pretrain_seed),
            ds,
            budget,
            cfg,
            seed=seed,
            device=device,
            progress=False,
            split="val",
        )
        scores.append(Scores.from_confusion(confusion).aa)
    return float(np.mean(scores))


def storage_for(url: str | None, study: str) -> optuna.storages.BaseStorage | str:
    """An RDB URL as given; otherwise a journal file (``url`` as its path, or the default one)."""
    check_name(study, "tune study", any_case=True)  # it names the journal file and is stored with results
    if url and "://" in url:
        return url
    path = Path(url) if url else bench_home() / "optuna" / f"{study}.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


@dataclass(frozen=True)
class TunedConfig:
    """Settings loaded from a tuned JSON file: which method they are for, and the overrides."""

    method: str | None
    overrides: dict[str, dict[str, Any]]  # {"method": {...}, "linear": {...}, "finetune": {...}}

    def applies_to(self, method: str) -> bool:
        return self.method is None or self.method == method

    def set_pairs(self) -> list[str]:
        """The settings as ``--set`` pairs (``key=json``, ``linear.key=json``), for the runner's parser."""
        return [
            f"{scope}.{key}={json.dumps(value)}"
            for scope, values in self.overrides.items()
            for key, value in values.items()
        ]


def load_config(path: Path) -> TunedConfig:
    """Read a ``--config`` file: ``{"method": name or absent, "overrides": {scope: {key: value}}}``."""
    try:
        data = json.loads(Path(path).read_text())
        return TunedConfig(data.get("method"), {str(k): dict(v) for k, v in data["overrides"].items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise BenchError(f"--config {path}: not a settings file ({err})") from err


def trial_claims(study: str, storage: str | None = None) -> ClaimStore:
    """The claims of the running trials of ``study`` in ``storage`` (one file per trial number)."""
    return ClaimStore(bench_home() / "claims" / f"tune-{stable_hash([study, storage or ''])[:16]}")


def _owner_dead(trial: optuna.trial.FrozenTrial, claims: ClaimStore) -> bool:
    """True when the process running ``trial`` is gone: its claim is stale, or (no claim: killed
    before it claimed) its recorded pid is gone on this host, or it started ``stale_after`` ago."""
    path = claims.root / str(trial.number)
    if path.exists():
        return claims.is_stale(path)
    attrs = trial.user_attrs
    if "bench.pid" in attrs:
        return owner_gone(attrs.get("bench.host"), attrs.get("bench.pid"))
    started = trial.datetime_start
    return started is not None and (datetime.datetime.now() - started).total_seconds() > claims.stale_after


def retry_dead_trials(study: optuna.Study, claims: ClaimStore) -> list[int]:
    """Mark FAILED the trials left RUNNING by dead processes and ask their settings again.

    Each is failed under the claims' lock and re-queued only by the process whose state change
    succeeded, so two workers opening the study at once re-queue it once. Returns their numbers.
    """
    from filelock import FileLock
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    retried = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _owner_dead(trial, claims):
            continue
        claims.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(claims.root / ".reclaim.lock")):
            current = study._storage.get_trial(trial._trial_id)
            if current.state != TrialState.RUNNING or not _owner_dead(current, claims):
                continue
            try:
                study._storage.set_trial_system_attr(trial._trial_id, "bench.failed", "owner process died")
                if not study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                    continue
            except UpdateFinishedTrialError:
                continue
            (claims.root / str(trial.number)).unlink(missing_ok=True)
        study.enqueue_trial(trial.params, user_attrs={"bench.retry_of": trial.number}, skip_if_exists=False)
        retried.append(trial.number)
    return retried


def trial_states(study: optuna.Study) -> dict[str, int]:
    """How many trials of ``study`` are in each state (``complete``, ``fail``, ``pruned``, ...)."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return counts


def completed(study: optuna.Study) -> int:
    """The study's completed trials (what ``study_trials`` counts)."""
    return trial_states(study).get("complete", 0)


def tune(
    spec: CellSpec,
    ds: Any,
    device: torch.device,
    *,
    trials: int,
    study: str,
    storage: str | None = None,
    pretrain: bool = False,
    budget_seeds: int = 1,
    study_trials: int | None = None,
) -> tuple[optuna.Study, Path]:
    """Run ``trials`` trials of ``study`` (joining or resuming it if it exists); write the best settings.

    ``study_trials``: the completed trials the study needs, over all workers. A new trial counts
    the completed ones plus those running that were started before it; when they reach
    ``study_trials`` it is pruned at once and this worker stops, so N workers complete exactly
    ``study_trials`` between them, and a trial that fails or was killed is made up for.
    """
    method_cls = get_method(spec.method)
    protocol_cls = get_protocol(spec.evaluator).Config
    claims = trial_claims(study, storage)

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("bench.host", socket.gethostname())
        trial.set_user_attr("bench.pid", os.getpid())
        claim = claims.try_claim(str(trial.number))
        try:
            if study_trials is not None and _taken(trial.study, trial.number) >= study_trials:
                trial.study.stop()  # the study's trials are all done or under way, here or elsewhere
                raise optuna.TrialPruned(f"study {study!r} has its {study_trials} trials")
            method = suggest(trial, "method", method_cls.Config) if pretrain else {}
            protocol = suggest(trial, spec.evaluator, protocol_cls)
            trial_spec = dataclasses.replace(
                spec,
                method_overrides={**dict(spec.method_overrides), **method},
                protocol_overrides={**dict(spec.protocol_overrides), **protocol},
            )
            with mlflow.start_run(run_name=f"trial {trial.number}", nested=True):
                mlflow.set_tags(
                    {
                        "bench.kind": "trial",
                        "bench.study": study,
                        "bench.trial": str(trial.number),
                        "bench.method": spec.method,
                        **tracking.process_tags(),  # a run this process leaves RUNNING is closed later
                    }
                )
                mlflow.log_params(trial.params)
                value = validation_aa(trial_spec, range(budget_seeds), ds, device)
                mlflow.log_metric("val_AA", value)
            return value
        finally:
            if claim is not None:
                claim.release()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opt_study = optuna.create_study(
        study_name=study, storage=storage_for(storage, study), direction="maximize", load_if_exists=True
    )
    retry_dead_trials(opt_study, claims)
    tags = {"bench.method": spec.method, "bench.protocol": spec.protocol}
    parent = tracking.parent_run("tune", "bench.study", study, f"tune {study}", tags)
    tracking.close_dead_runs(parent)  # trial runs of a killed process
    with mlflow.start_run(run_id=parent):
        opt_study.optimize(objective, n_trials=trials, catch=(NonFiniteLossError,))
    if not completed(opt_study):
        counts = ", ".join(f"{n} {state}" for state, n in sorted(trial_states(opt_study).items()))
        raise BenchError(f"study {study!r} has no completed trial ({counts or 'no trials'})")
    return opt_study, save_best(opt_study, spec, pretrain, ds)


def _taken(study: optuna.Study, number: int) -> int:
    """Trials that count against ``study_trials`` for trial ``number``: completed ones, and running
    ones numbered before it (started earlier; a dead one is failed and re-asked on resume)."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.RUNNING)
    return sum(
        1
        for t in study.get_trials(deepcopy=False, states=states)
        if t.state == TrialState.COMPLETE or t.number < number
    )


def tuned_path(spec: CellSpec, ds: Any, pretrain: bool) -> Path:
    """``bench_home()/tuned/<method>-<protocol>-<budget><unit>-<backbone>-<dataset>[-pretrain].json``:
    one file per (method, protocol, budget, backbone, dataset fingerprint), never overwritten by
    tuning another of them."""
    budget = f"{spec.samples}{spec.budget_unit}"
    name = f"{spec.method}-{spec.protocol}-{budget}-{spec.backbone}-{ds.fingerprint[:12]}"
    return bench_home() / "tuned" / f"{name}{'-pretrain' if pretrain else ''}.json"


def save_best(study: optuna.Study, spec: CellSpec, pretrain: bool, ds: Any) -> Path:
    """Write the best trial's settings to :func:`tuned_path`."""
    overrides: dict[str, dict[str, Any]] = {
        "method": dict(spec.method_overrides),
        spec.protocol: dict(spec.protocol_overrides),
    }
    for name, value in study.best_params.items():
        scope, _, key = name.partition(".")
        overrides[scope][key] = value
    states = trial_states(study)
    record = {
        "method": spec.method,
        "overrides": {k: v for k, v in overrides.items() if v},
        "objective": "validation AA at the budget's validation pixels (test and dense labels never read)",
        "best_value": study.best_value,
        "study": study.study_name,
        "trials": states.get("complete", 0),
        "trials_failed": states.get("fail", 0),
        "trials_pruned": states.get("pruned", 0),
        "searched_pretraining": pretrain,
        "protocol": spec.protocol,
        "samples": spec.samples,
        "budget_unit": spec.budget_unit,
        "backbone": spec.backbone,
        "dataset_fingerprint": ds.fingerprint,
        "code_version": code_version(),
    }
    path = tuned_path(spec, ds, pretrain)
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def default_study_name(spec: CellSpec, ds: Any, pretrain: bool) -> str:
    """One study per (dataset, method, protocol, budget, backbone); separate when pretraining is searched."""
    base = (
        f"{spec.method}-{spec.protocol}-{spec.samples}{spec.budget_unit}-{spec.backbone}-{ds.fingerprint[:8]}"
    )
    return base + ("-pretrain" if pretrain else "")
