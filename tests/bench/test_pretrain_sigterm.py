"""A pretraining process ended with SIGTERM (``torchrun`` ending a rank whose peer died, a scheduler
stopping a job) closes its MLflow run KILLED instead of leaving it RUNNING (issue 35, smaller cases)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import tracking

REPO = Path(__file__).resolve().parents[2]

SLEEPY = '''"""A plugin method that takes its time: long enough to be stopped mid-run."""
import time
from dataclasses import dataclass

from methods.registry import PretrainMethod, register_method


@dataclass
class Config:
    seconds: float = 120.0


@register_method("test-sleepy")
class Sleepy(PretrainMethod):
    description = "test method: sleeps"
    Config = Config
    needs_data = False

    def pretrain(self, backbone, images, ctx):
        print("pretraining started", flush=True)
        time.sleep(self.config.seconds)
'''


@pytest.mark.slow  # a subprocess that imports torch and starts a run: about 35 s on 2 busy cores
def test_sigterm_during_pretraining_ends_its_run_killed(
    tiny_data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sleepy_probe.py").write_text(SLEEPY)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "BENCH_EXPERIMENT": "sigterm",
        "BENCH_HOME": str(tmp_path / "home"),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "bench", "--plugin", "sleepy_probe", "pretrain", "--method", "test-sleepy"]
    cmd += ["--data", str(tiny_data_root), "--no-progress"]
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait until the run has started
            if "pretraining started" in line:
                break
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    for key in ("MLFLOW_TRACKING_URI", "BENCH_EXPERIMENT"):
        monkeypatch.setenv(key, env[key])
    client, exp_id = tracking.setup_tracking()
    (run,) = client.search_runs([exp_id], "tags.`bench.kind` = 'pretrain'")
    assert run.info.status == "KILLED"  # was RUNNING: nothing closed it
    assert not list((tmp_path / "home" / "weights").glob("*.pt"))  # nothing half-written
