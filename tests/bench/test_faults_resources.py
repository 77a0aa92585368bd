"""Machine-level failures end in one line naming the place and what to do, exit 2, nothing half-written.

Issue 25 item 1. A full disk is simulated by patching one writer per cache to raise what the real
one raises on a full disk (an ``OSError(ENOSPC)`` without a file name, as a buffered write gives;
torch's zip-writer ``RuntimeError``; MLflow's wrapped sqlite "database or disk is full"); memory by
patching the allocator (``np.memmap`` refusing the mapping, numpy's ``_ArrayMemoryError``); too
many open files by a reader raising EMFILE; a symlink loop is real.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from bench.cli import main
from bench.core.errors import resource_problem
from bench.core.paths import bench_home
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401

pytestmark = pytest.mark.usefixtures("mlflow_store")


def _run(data: Path, command: str = "run") -> list[str]:
    method = "--methods" if command == "sweep" else "--method"
    argv = [command, method, "random", "--data", str(data), "--device", "cpu", "--no-progress"]
    if command == "pretrain":
        return argv
    return [*argv, "--samples", "5", "--seeds", "1", "--protocol", "linear", "--set", "linear.max_iter=5"]


def _one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _temporaries() -> list[Path]:
    return list(bench_home().rglob(".*.tmp*")) if bench_home().exists() else []


def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a buffered write names no file


def test_full_disk_while_decoding_the_data(
    tiny_data_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("datasets.cache.write_folder_digest", _enospc)
    line = _one_line(_run(tiny_data_root), capsys)
    assert f"no space left on the device holding {bench_home() / 'cache'}" in line
    assert "free space at" in line and "re-run" in line
    assert not _temporaries() and not list((bench_home() / "cache").iterdir())  # no half cache


def test_full_disk_while_saving_weights(
    tiny_data_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def torch_full(*args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 288640 vs 288536")

    monkeypatch.setattr(torch, "save", torch_full)
    line = _one_line(_run(tiny_data_root, "pretrain"), capsys)
    assert f"no space left on the device holding {bench_home() / 'weights'}/random-tiny-" in line
    assert not _temporaries() and not list((bench_home() / "weights").glob("*.pt"))


def test_full_disk_while_writing_a_budget_stops_a_sweep(
    tiny_data_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("bench.protocols.budget.np.savez", _enospc)
    line = _one_line(_run(tiny_data_root, "sweep"), capsys)  # one line, not "1 failed" per unit
    assert f"no space left on the device holding {bench_home() / 'budgets'}/pixels-5-seed0-" in line
    assert not _temporaries() and not list((bench_home() / "budgets").glob("*.npz"))


def test_full_tracking_database(
    tiny_data_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log_batch = MlflowClient.log_batch

    def full(self: MlflowClient, run_id: str, metrics: object = (), **kwargs: object) -> None:
        if metrics:
            raise MlflowException("(sqlite3.OperationalError) database or disk is full")
        log_batch(self, run_id, metrics=metrics, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(MlflowClient, "log_batch", full)
    line = _one_line(_run(tiny_data_root), capsys)
    store = os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")
    assert f"no space left on the device holding {store}" in line


def test_memory_refused(
    tiny_data_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_map(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))  # mmap under `ulimit -v`

    monkeypatch.setattr("datasets.cache.np.memmap", no_map)
    line = _one_line(_run(tiny_data_root), capsys)
    assert "out of memory (mapping " in line and "images.f16" in line
    assert "lower the batch size (--set batch_size=N)" in line and "ulimit -v" in line
    monkeypatch.undo()

    def no_array(*args: object, **kwargs: object) -> None:
        raise np._core._exceptions._ArrayMemoryError((10**6, 10**6), np.dtype("float32"))

    monkeypatch.setattr("bench.harness.runner.budget_for", no_array)
    line = _one_line(_run(tiny_data_root), capsys)
    assert "out of memory (Unable to allocate 3.64 TiB" in line and "batch_size" in line


def test_too_many_open_files(
    tiny_data_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def emfile(patch: object, *args: object) -> None:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE), str(getattr(patch, "s2", "")))

    monkeypatch.setattr("datasets.cache.read_patch", emfile)
    line = _one_line(_run(tiny_data_root), capsys)
    assert "too many open files opening " in line and "ulimit -n" in line
    assert not _temporaries()


def test_symlink_loop_as_data_and_as_bench_home(
    tmp_path: Path, tiny_data_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    line = _one_line(_run(loop), capsys)
    assert f"symlink loop at {loop}" in line and f"ls -l {loop}" in line
    monkeypatch.setenv("BENCH_HOME", str(loop / "home"))
    line = _one_line(_run(tiny_data_root), capsys)
    assert f"symlink loop at {loop}:" in line  # the link to fix, not the path under it


def test_other_errors_are_not_resource_failures() -> None:
    assert resource_problem(RuntimeError("shapes do not match")) is None
    assert resource_problem(OSError(errno.ENOENT, "No such file", "x")) is None
    wrapped = MlflowException("write failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device", "/x/mlruns/a")
    assert "holding /x/mlruns/a" in (resource_problem(wrapped) or "")
