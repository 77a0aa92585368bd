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
study; the best settings are written as JSON that ``run --config`` and ``sweep --config`` apply.
"""

from __future__ import annotations

import dataclasses
import json
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
from bench.core.paths import bench_home
from bench.core.provenance import code_version
from bench.harness import runner, tracking
from bench.harness.runner import CellSpec
from bench.protocols.metrics import Scores
from bench.protocols.registry import get_protocol
from methods import get_method

_ITERATIONS = ("steps", "max_iter", "epochs")


def suggest(trial: optuna.Trial, prefix: str, config_cls: type) -> dict[str, Any]:
    """Settings of ``config_cls`` for this trial: lr x/÷10 (log), weight decay 1e-6..1e-1 (log),
    learning-rate factors (``backbone_lr_factor``) 0.01..1 (log), step/iteration counts ÷2..x2
    (log) around the defaults; other fields keep their defaults."""
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
        elif f.name in _ITERATIONS and isinstance(default, int) and default > 1:
            out[f.name] = trial.suggest_int(name, max(1, default // 2), default * 2, log=True)
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
    """Run ``trials`` trials of ``study`` (joining it if it exists) and write the best settings.

    ``study_trials``: the study's total over all workers. The storage numbers trials atomically
    (0, 1, ...), so a worker whose new trial is numbered ``study_trials`` or above prunes it at once
    and stops: N workers on one study run exactly trials 0..study_trials-1 between them.
    """
    method_cls = get_method(spec.method)
    protocol_cls = get_protocol(spec.evaluator).Config

    def objective(trial: optuna.Trial) -> float:
        if study_trials is not None and trial.number >= study_trials:
            trial.study.stop()  # the study's trials are all taken, by this worker or others
            raise optuna.TrialPruned(f"study {study!r} has its {study_trials} trials")
        method = suggest(trial, "method", method_cls.Config) if pretrain else {}
        protocol = suggest(trial, spec.evaluator, protocol_cls)
        trial_spec = dataclasses.replace(
            spec,
            method_overrides={**dict(spec.method_overrides), **method},
            protocol_overrides={**dict(spec.protocol_overrides), **protocol},
        )
        with mlflow.start_run(run_name=f"trial {trial.number}", nested=True):
            mlflow.set_tags({"bench.kind": "trial", "bench.study": study, "bench.method": spec.method})
            mlflow.log_params(trial.params)
            value = validation_aa(trial_spec, range(budget_seeds), ds, device)
            mlflow.log_metric("val_AA", value)
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opt_study = optuna.create_study(
        study_name=study, storage=storage_for(storage, study), direction="maximize", load_if_exists=True
    )
    tags = {"bench.method": spec.method, "bench.protocol": spec.protocol}
    with mlflow.start_run(run_id=tracking.parent_run("tune", "bench.study", study, f"tune {study}", tags)):
        opt_study.optimize(objective, n_trials=trials, catch=(NonFiniteLossError,))
    done = [t for t in opt_study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise BenchError(f"study {study!r} has no completed trial (every trial diverged)")
    return opt_study, save_best(opt_study, spec, pretrain)


def save_best(study: optuna.Study, spec: CellSpec, pretrain: bool) -> Path:
    """Write the best trial's settings to ``bench_home()/tuned/<method>-<protocol>.json``."""
    overrides: dict[str, dict[str, Any]] = {
        "method": dict(spec.method_overrides),
        spec.protocol: dict(spec.protocol_overrides),
    }
    for name, value in study.best_params.items():
        scope, _, key = name.partition(".")
        overrides[scope][key] = value
    record = {
        "method": spec.method,
        "overrides": {k: v for k, v in overrides.items() if v},
        "objective": "validation AA at the budget's validation pixels (test and dense labels never read)",
        "best_value": study.best_value,
        "study": study.study_name,
        "trials": len(study.trials),
        "searched_pretraining": pretrain,
        "samples": spec.samples,
        "budget_unit": spec.budget_unit,
        "backbone": spec.backbone,
        "code_version": code_version(),
    }
    path = bench_home() / "tuned" / f"{spec.method}-{spec.protocol}.json"
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def default_study_name(spec: CellSpec, ds: Any, pretrain: bool) -> str:
    """One study per (dataset, method, protocol, budget, backbone); separate when pretraining is searched."""
    base = (
        f"{spec.method}-{spec.protocol}-{spec.samples}{spec.budget_unit}-{spec.backbone}-{ds.fingerprint[:8]}"
    )
    return base + ("-pretrain" if pretrain else "")
