"""Device choice, the CUDA fast paths (bf16 autocast, channels_last) and CPU threads in one place.

Every training and inference loop goes through these helpers so that the CPU path stays plain
float32 and the GPU path gets the DESIGN 8 treatment without each loop re-deciding it.

Threads: torch starts one intra-op thread per core in every process, so N worker processes on one
machine run N x cores threads that preempt each other (issue 12: a 34 s pretraining took 161 s on
2 cores at load 4). :func:`use_thread_share` gives each process its share, ``cores //
BENCH_LOCAL_WORKERS`` (at least 1); whoever starts several workers on one machine sets
``BENCH_LOCAL_WORKERS`` to their number. An explicit ``OMP_NUM_THREADS`` is the user's choice and wins.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from bench.core.errors import BenchError

M = TypeVar("M", bound=nn.Module)


def resolve_device(choice: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a user error."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    return device


def autocast(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast on CUDA (no loss scaling needed); full precision on CPU, where bf16 is slower."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(model: M, device: torch.device) -> M:
    """Move ``model`` to ``device``; channels_last on CUDA, where cuDNN convolutions prefer it."""
    if device.type == "cuda":
        return model.to(device).to(memory_format=torch.channels_last)
    return model.to(device)


def as_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A float32 image batch on ``device`` in the memory format :func:`to_device` chose."""
    x = x.to(device=device, dtype=torch.float32, non_blocking=True)
    if device.type == "cuda":
        return x.contiguous(memory_format=torch.channels_last)
    return x


def host_tensor(array: np.ndarray) -> torch.Tensor:
    """A writable CPU tensor copy of (a slice of) a read-only memmap."""
    return torch.from_numpy(np.array(array))


def fits_on_device(nbytes: int, device: torch.device, fraction: float = 0.5) -> bool:
    """Whether ``nbytes`` of data may live on ``device`` (CUDA: within ``fraction`` of free memory)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= fraction * free


#: How many worker processes share this machine's cores (set by whoever starts them; default 1).
LOCAL_WORKERS_ENV = "BENCH_LOCAL_WORKERS"


def local_workers() -> int:
    """``$BENCH_LOCAL_WORKERS`` (default 1); anything but an integer >= 1 is a one-line error."""
    raw = os.environ.get(LOCAL_WORKERS_ENV, "1")
    try:
        workers = int(raw)
    except ValueError:
        workers = 0
    if workers < 1:
        raise BenchError(f"{LOCAL_WORKERS_ENV}={raw!r}: expects the number of local worker processes (>= 1)")
    return workers


def usable_cores(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup (container) CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota here
    return cores


def thread_share(cores: int, workers: int) -> int:
    """Threads for one of ``workers`` processes on ``cores`` cores: an equal share, at least one."""
    return max(1, cores // workers)


def use_thread_share() -> int:
    """Set torch's intra-op threads to this process's share of the cores; returns the count.

    Left alone when ``OMP_NUM_THREADS`` is set: the user (or a test harness) already decided.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = thread_share(usable_cores(), local_workers())
    torch.set_num_threads(threads)
    return threads
