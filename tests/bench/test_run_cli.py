"""``bench run`` end to end on the tiny fixture set: table printed, MLflow records, resume."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest

from bench.cli import main
from bench.harness.runner import CellSpec, parse_overrides, result_key
from bench.harness.tracking import completed_runs
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401

TAGS = (
    "kind",
    "result_key",
    "cell_key",
    "method",
    "protocol",
    "budget",
    "budget_unit",
    "seed",
    "backbone",
    "dataset_fingerprint",
    "status",
)


@pytest.mark.usefixtures("mlflow_store")
def test_run_end_to_end_and_resume(tiny_data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "run",
        "--method",
        "random",
        "--samples",
        "30",
        "--seeds",
        "2",
        "--protocol",
        "both",
        "--data",
        str(tiny_data_root),
        "--no-progress",
        "--set",
        "finetune.steps=6",
        "--set",
        "finetune.eval_every=3",
        "--set",
        "finetune.crop=16",
        "--set",
        "finetune.batch_size=4",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("Baseline") == 2 and "ddof=1" in out
    # 30 per class in all: 24 from training patches, up to 6 from validation patches
    assert "realised labelled pixels per class (training + validation): Forest 24+" in out
    runs = completed_runs()
    assert len(runs) == 4 and set(runs["tags.bench.protocol"]) == {"linear", "finetune"}
    for tag in TAGS:
        assert runs[f"tags.bench.{tag}"].notna().all(), tag
    assert set(runs["tags.bench.seed"]) == {"0", "1"} and set(runs["tags.bench.budget"]) == {"30"}
    for metric in ("AA", "OA", "wall_time_s", "acc.Forest", "acc.Urban_Built-up", "realised.Forest"):
        assert runs[f"metrics.{metric}"].notna().all(), metric
    assert runs["metrics.AA"].between(0, 1).all() and (runs["metrics.realised.Forest"] == 24).all()
    assert (runs["metrics.realised.Forest"] + runs["metrics.realised_val.Forest"] <= 30).all()
    assert runs["params.code_version"].notna().all() and runs["params.config_hash"].notna().all()
    assert set(runs["params.protocol_config.steps"].dropna()) == {"6"}

    assert main(argv) == 0  # resume: every seed is complete, nothing is recomputed or counted twice
    again = capsys.readouterr().out
    assert again.count("2 seed(s) already complete") == 2 and "not needed" in again
    assert len(completed_runs()) == 4
    table = [line for line in out.splitlines() if line.startswith(("Forest", "AA", "OA"))]
    assert table == [line for line in again.splitlines() if line.startswith(("Forest", "AA", "OA"))]


@pytest.mark.usefixtures("mlflow_store")
def test_main_command_sscl_end_to_end(tiny_data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's first command (`run --method sscl`), with both SSCL stages cut to a few steps."""
    short = [
        f"{stage}.{k}={v}" for stage in ("unifeat", "core") for k, v in (("steps", 4), ("batch_size", 4))
    ]
    argv = ["run", "--method", "sscl", "--samples", "20", "--seeds", "2", "--data", str(tiny_data_root)]
    argv += ["--no-progress", *(arg for pair in short for arg in ("--set", pair))]
    argv += ["--allow-unhealthy"]  # 4 steps cannot pass the health gate (issue 20); marked, not stopped
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "SSCL" in out and "AA " in out and "OA " in out
    runs = completed_runs()
    assert len(runs) == 2 and set(runs["tags.bench.method"]) == {"sscl"}
    assert set(runs["params.pretraining.config.unifeat.steps"]) == {"4"}
    pretrain = mlflow.search_runs(filter_string="tags.`bench.kind` = 'pretrain'")
    # one pretraining run per evaluation seed by default (K = n): 2 seeds, 2 runs, pretraining seeds 0, 1
    assert len(pretrain) == 2 and "metrics.pretrain.sscl/core/loss" in pretrain.columns
    assert sorted(runs["params.pretrain_seed"]) == ["0", "1"]
    assert set(runs["params.pretrain_images"]) == {"32"}  # the compute level: 4 x 4 per stage, summed


def test_config_file_for_another_method_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "simsiam-linear.json"
    config.write_text(json.dumps({"method": "simsiam", "overrides": {"linear": {"weight_decay": 0.001}}}))
    assert main(["run", "--method", "random", "--samples", "5", "--config", str(config)]) == 2
    assert "settings are for method 'simsiam', not 'random'" in capsys.readouterr().err


def test_bad_override_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--method", "random", "--samples", "5", "--set", "linear.nope=1"]) == 2
    assert "LinearConfig has no setting(s) ['nope']" in capsys.readouterr().err


def test_result_key_allow_list() -> None:
    ds = SimpleNamespace(fingerprint="fp")
    spec = CellSpec("random", 100, protocol_overrides={"weight_decay": 0.1, "max_iter": 50})
    same = CellSpec("random", 100, protocol_overrides={"max_iter": 50, "weight_decay": 0.1})
    assert result_key(spec, 0, ds) == result_key(same, 0, ds)
    assert result_key(spec, 0, ds) != result_key(spec, 1, ds)
    assert result_key(spec, 0, ds) != result_key(CellSpec("random", 200), 0, ds)
    # random ignores pretraining data, so the unused setting does not split its results
    assert result_key(CellSpec("random", 1), 0, ds) == result_key(
        CellSpec("random", 1, transductive=True), 0, ds
    )


def test_parse_overrides() -> None:
    pairs = ["lr=1e-3", "method.epochs=2", "finetune.steps=5", "linear.x=abc", "knn.k=5"]
    method, protocol = parse_overrides(pairs)
    assert method == {"lr": 0.001, "epochs": 2}
    assert protocol == {
        "linear": {"x": "abc"},
        "finetune": {"steps": 5},
        "knn": {"k": 5},
        "raw": {},
        "rf": {},
    }
