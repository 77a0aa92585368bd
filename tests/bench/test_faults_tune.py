"""`bench tune` resumes a study whose process was killed mid-trial (issue 25 item 3).

The killed trial is left RUNNING in the journal (and its MLflow run RUNNING); on resume it is
marked FAILED, its settings are asked again, ``--study-trials`` counts completed trials only, the
saved settings file reports that count, and no trial or trial run is left RUNNING. The tuned file
is per (method, protocol, budget, backbone, dataset): tuning another budget does not overwrite it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from bench.cli import main
from bench.core.paths import bench_home
from bench.harness.tracking import setup_tracking
from bench.harness.tune import trial_claims
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


def _tune_args(data: Path, study: str, samples: int = 5) -> list[str]:
    args = ["tune", "--method", "random", "--samples", str(samples), "--data", str(data), "--device", "cpu"]
    return [*args, "--study", study, "--trials", "4", "--study-trials", "2"]


def _journal_trials(study: str) -> list[optuna.trial.FrozenTrial]:
    journal = bench_home() / "optuna" / f"{study}.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    return optuna.load_study(study_name=study, storage=storage).trials


def _check_resumed(study: str, tuned: Path) -> None:
    trials = _journal_trials(study)
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 2, states  # the killed trial was made up for
    assert TrialState.RUNNING not in states and states[0] == TrialState.FAIL
    retry = next(t for t in trials if t.user_attrs.get("bench.retry_of") == 0)
    assert trials[0].params.items() <= retry.params.items()  # asked again with the killed trial's settings
    assert json.loads(tuned.read_text())["trials"] == 2
    client, exp_id = setup_tracking()
    runs = client.search_runs([exp_id], "tags.`bench.kind` = 'trial'")
    assert not [r for r in runs if r.info.status == "RUNNING"]


@pytest.mark.slow  # a subprocess importing torch and mlflow, then a resumed study: ~20 s
@pytest.mark.usefixtures("mlflow_store")
def test_a_trial_killed_by_sigkill_is_failed_and_asked_again(
    tiny_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real ``bench tune`` subprocess, SIGKILLed while its first trial holds its claim."""
    python_path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = os.environ | {"PYTHONPATH": python_path, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", *_tune_args(tiny_data_root, "killed")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    claims = trial_claims("killed").root
    deadline = time.monotonic() + 120
    while not (claims.is_dir() and any(p.name == "0" for p in claims.iterdir())):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the tune subprocess never started a trial"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _journal_trials("killed")[0].state == TrialState.RUNNING  # what the old code kept forever

    assert main(_tune_args(tiny_data_root, "killed")) == 0
    out = capsys.readouterr().out
    assert "study killed: 2 completed trials" in out
    tuned = bench_home() / "tuned"
    (path,) = tuned.glob("random-linear-5pixels-tiny-*.json")
    _check_resumed("killed", path)


@pytest.mark.usefixtures("mlflow_store")
def test_dead_owner_without_heartbeat_and_tuned_files_per_budget(tiny_data_root: Path) -> None:
    """A RUNNING trial whose process is gone (recorded pid, stale claim): failed, re-asked; and a
    second budget writes its own settings file."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    journal = bench_home() / "optuna" / "dead.journal"
    journal.parent.mkdir(parents=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="dead", storage=storage, direction="maximize")
    trial = study.ask()
    trial.suggest_float("linear.weight_decay", 1e-6, 1e-1, log=True)
    trial.suggest_int("linear.max_iter", 50, 200, log=True)
    trial.set_user_attr("bench.host", socket.gethostname())
    trial.set_user_attr("bench.pid", int(dead.stdout))
    claims = trial_claims("dead").root
    claims.mkdir(parents=True)
    owner = {"host": socket.gethostname(), "pid": int(dead.stdout), "time": time.time()}
    (claims / "0").write_text(json.dumps(owner))

    assert main(_tune_args(tiny_data_root, "dead")) == 0
    (first,) = (bench_home() / "tuned").glob("*.json")
    _check_resumed("dead", first)
    assert not (claims / "0").exists()

    before = first.read_text()
    assert main(_tune_args(tiny_data_root, "dead-7", samples=7)) == 0
    assert len(list((bench_home() / "tuned").glob("random-linear-*pixels-tiny-*.json"))) == 2
    assert first.read_text() == before  # another budget never overwrites it
