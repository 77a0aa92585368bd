"""Two ``bench tune`` workers on one RDB (sqlite URL) study: the requested trials between them, each once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[2]
STUDY_TRIALS = 4


def test_two_workers_share_one_rdb_study(tmp_path: Path, tiny_data_root: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="shared", storage=storage, direction="maximize")  # the schema, once
    cmd = [sys.executable, "-m", "bench", "tune", "--method", "random", "--samples", "5"]
    cmd += ["--data", str(tiny_data_root), "--device", "cpu", "--storage", storage, "--study", "shared"]
    cmd += ["--trials", str(STUDY_TRIALS), "--study-trials", str(STUDY_TRIALS)]  # each could do them all
    python_path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = os.environ | {
        "BENCH_HOME": str(tmp_path / "home"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PYTHONPATH": python_path,
        "OMP_NUM_THREADS": "1",
    }
    workers = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    trials = optuna.load_study(study_name="shared", storage=storage).trials
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.number for t in complete) == list(range(STUDY_TRIALS))  # exactly the requested ones
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))  # no trial number twice
    extra = [t for t in trials if t.number >= STUDY_TRIALS]
    assert all(t.state == optuna.trial.TrialState.PRUNED for t in extra)  # a late worker's, stopped at once
