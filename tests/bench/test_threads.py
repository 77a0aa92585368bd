"""Each process takes its share of the cores: cores // BENCH_LOCAL_WORKERS torch threads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench.core.device import LOCAL_WORKERS_ENV, local_workers, thread_share, usable_cores, use_thread_share
from bench.core.errors import BenchError


@pytest.mark.parametrize(("cores", "workers", "threads"), [(2, 1, 2), (2, 2, 1), (16, 3, 5), (1, 4, 1)])
def test_thread_share_splits_the_cores_and_keeps_one(cores: int, workers: int, threads: int) -> None:
    assert thread_share(cores, workers) == threads


@pytest.mark.parametrize("raw", ["0", "two", "-1"])
def test_bad_worker_count_is_one_line_naming_the_variable(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOCAL_WORKERS_ENV, raw)
    with pytest.raises(BenchError, match=f"{LOCAL_WORKERS_ENV}='{raw}': expects"):
        local_workers()


def test_a_container_cpu_quota_caps_the_cores(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("100000 100000\n")  # one core's worth
    assert usable_cores(quota) == 1
    quota.write_text("max 100000\n")
    assert usable_cores(quota) == affinity
    assert usable_cores(tmp_path / "absent") == affinity


@pytest.fixture
def restore_torch_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("restore_torch_threads")
def test_a_worker_takes_its_share_unless_omp_num_threads_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = usable_cores()
    for workers, threads in [("1", cores), ("2", max(1, cores // 2)), (str(cores + 5), 1)]:
        monkeypatch.setenv(LOCAL_WORKERS_ENV, workers)
        assert use_thread_share() == threads == torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv(LOCAL_WORKERS_ENV, "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's explicit choice is left alone
    assert use_thread_share() == 1 == torch.get_num_threads()
