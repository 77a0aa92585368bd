"""What the MLflow UI needs to compare cells, read back from a real store after tiny commands:
parent metrics, real seed durations, git tags, the dataset input, the PNG and the cell's table."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.cli import main
from bench.harness import tracking
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401

TINY_LINEAR = ["--no-progress", "--protocol", "linear"]


def _runs(kind: str) -> list:
    client, exp_id = tracking.setup_tracking()
    return client.search_runs([exp_id], f"tags.`bench.kind` = '{kind}'")


@pytest.mark.usefixtures("mlflow_store")
def test_a_run_leaves_what_the_ui_compares_cells_by(tiny_data_root: Path) -> None:
    argv = ["run", "--method", "random", "--samples", "20", "--seeds", "2", "--data", str(tiny_data_root)]
    assert main([*argv, *TINY_LINEAR]) == 0
    client, exp_id = tracking.setup_tracking()
    assert client.get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"
    (cell,) = _runs("cell")
    seeds = _runs("seed")
    assert len(seeds) == 2 and all(s.data.tags["mlflow.parentRunId"] == cell.info.run_id for s in seeds)

    # parent metrics: mean and std over the seeds, for the summaries and every class
    aa = [s.data.metrics["AA"] for s in seeds]
    assert cell.data.metrics["seeds_complete"] == 2
    assert cell.data.metrics["AA_mean"] == pytest.approx(sum(aa) / 2)
    assert cell.data.metrics["AA_std"] == pytest.approx(abs(aa[0] - aa[1]) / 2**0.5)
    assert {"OA_mean", "OA_std", "mIoU_mean", "acc.Forest_mean", "iou.Forest_std"} <= set(cell.data.metrics)
    history = client.get_metric_history(cell.info.run_id, "AA_mean")
    assert sorted(m.step for m in history) == [1, 2]  # updated as each seed finished

    for seed in seeds:
        # the run spans its work: opened before, closed after (was created after it: 66 ms)
        duration_s = (seed.info.end_time - seed.info.start_time) / 1000
        assert duration_s >= seed.data.metrics["wall_time_s"] > 0
        metric = client.get_metric_history(seed.info.run_id, "AA")[0]
        assert metric.timestamp >= seed.info.start_time  # not 1970
        artifacts = {a.path for a in client.list_artifacts(seed.info.run_id)}
        assert {"confusion_matrix.csv", "confusion_matrix.png"} <= artifacts

    commits = {run.data.tags["mlflow.source.git.commit"] for run in (cell, *seeds)}
    (commit,) = commits
    repo = str(Path(__file__).parents[2])
    assert (
        len(commit) == 40
    )  # the full sha, the commit checked out (HEAD, or its ancestor if one was added since)
    assert subprocess.run(["git", "-C", repo, "merge-base", "--is-ancestor", commit, "HEAD"]).returncode == 0
    for run in (cell, *seeds):
        assert run.data.tags["bench.git_dirty"] in ("true", "false")
        (inp,) = run.inputs.dataset_inputs
        assert inp.dataset.digest == run.data.tags["bench.dataset_fingerprint"][:36]
        assert json.loads(inp.dataset.profile)["patches"] == {"labelled": 12, "test": 8}
        assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "evaluation"

    local = client.download_artifacts(cell.info.run_id, "cell_table.md", str(tiny_data_root.parent / "dl"))
    table = Path(local).read_text()
    assert "| AA |" in table and "random" in table and "n = 2" in table


@pytest.mark.usefixtures("mlflow_store")
def test_a_sweep_nests_its_pretraining_runs_under_the_cell(tiny_data_root: Path) -> None:
    argv = ["sweep", "--methods", "random", "--samples", "20", "--seeds", "1", "--data", str(tiny_data_root)]
    assert main([*argv, *TINY_LINEAR]) == 0
    (cell,) = _runs("cell")
    (pretrain,) = _runs("pretrain")
    assert pretrain.data.tags.get("mlflow.parentRunId") == cell.info.run_id
    assert cell.info.status == "FINISHED"  # nesting did not leave the cell RUNNING
    client, _ = tracking.setup_tracking()
    assert client.list_artifacts(pretrain.info.run_id) == []  # random trains nothing: no weights artifact
