"""A tiny optuna study on the validation split, in journal storage, and its settings file."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch

from bench.core.paths import bench_home
from bench.harness.runner import CellSpec, parse_overrides
from bench.harness.tracking import setup_tracking
from bench.harness.tune import load_config, suggest, tune
from bench.protocols.linear import LinearConfig
from datasets import Dataset


def test_suggest_ranges_follow_field_names_and_defaults() -> None:
    trial = optuna.trial.FixedTrial({"linear.weight_decay": 1e-3, "linear.max_iter": 150})
    assert suggest(trial, "linear", LinearConfig) == {"weight_decay": 1e-3, "max_iter": 150}


def test_two_trial_study_in_journal_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_dataset: Dataset
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("BENCH_EXPERIMENT", "test-tune")
    spec = CellSpec(method="random", samples=5, protocol="linear")
    study, path = tune(spec, tiny_dataset, torch.device("cpu"), trials=2, study="tiny")
    journal = bench_home() / "optuna" / "tiny.journal"
    assert journal.exists() and len(study.trials) == 2
    assert 0.0 <= study.best_value <= 1.0

    # a second worker joins the same study through the journal
    study, _ = tune(spec, tiny_dataset, torch.device("cpu"), trials=1, study="tiny", storage=str(journal))
    assert len(study.trials) == 3

    record = json.loads(path.read_text())
    assert path == bench_home() / "tuned" / f"random-linear-5pixels-tiny-{tiny_dataset.fingerprint[:12]}.json"
    assert record["trials"] == 3 and record["dataset_fingerprint"] == tiny_dataset.fingerprint
    assert record["method"] == "random" and set(record["overrides"]["linear"]) == {"weight_decay", "max_iter"}
    cfg = load_config(path)
    method, protocol = parse_overrides(cfg.set_pairs())
    assert method == {} and protocol["linear"] == record["overrides"]["linear"]

    client, exp_id = setup_tracking()
    trials = client.search_runs([exp_id], "tags.`bench.kind` = 'trial'")
    parents = client.search_runs([exp_id], "tags.`bench.kind` = 'tune'")
    assert len(trials) == 3 and len(parents) == 1
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parents[0].info.run_id}
    assert all("val_AA" in t.data.metrics for t in trials)
