"""``bench doctor`` prints every section, reads the caches and the store, and creates nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.cli import main
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401


@pytest.fixture(autouse=True)
def offline_empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))


@pytest.mark.usefixtures("mlflow_store")
def test_doctor_prints_every_section(bench_home_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (bench_home_dir / "weights").mkdir(parents=True)
    (bench_home_dir / "weights" / "w.pt").write_bytes(b"x" * 3 * 1024 * 1024)
    (bench_home_dir / "budgets").mkdir()
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for heading in ("versions:", "device:", "caches (BENCH_HOME):", "MLflow:", "weights from outside"):
        assert f"\n{heading}" in f"\n{out}", heading
    for line in (
        "  torch    ",
        "  numpy    ",
        "  mlflow   ",
        "cuda",
        f"{bench_home_dir} ($BENCH_HOME): 3.0 MiB",
    ):
        assert line in out, line
    assert re.search(r"\n {4}weights +3\.0 MiB\n", out) and re.search(r"\n {4}budgets +0 B\n", out)
    assert "store       not created yet" in out
    assert not (Path.cwd() / "mlflow.db").exists()  # doctor looked, it did not create the store
    assert re.search(r"\n  imagenet on resnet18 +timm resnet18: none \(offline", out)  # columns align
    assert re.search(r"\n  imagenet on tiny +not a timm trunk", out)


def test_doctor_says_when_the_tracking_server_does_not_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # the discard port: nothing listens
    assert main(["doctor"]) == 0
    assert "store       does not answer" in capsys.readouterr().out
