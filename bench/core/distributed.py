"""Data-parallel pretraining under ``torchrun``: the process group and the few collectives we use.

``torchrun --nproc-per-node N -m bench pretrain ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous address in the environment;
:func:`init_from_env` joins them (NCCL on GPUs, gloo on CPUs). Everything else asks
:func:`world` and behaves exactly as a single process when there is none, so the training loop
and the cache code have one path. Rank 0 alone writes files and tracking runs; the others wait
for it at :func:`barrier`.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from bench.core.errors import BenchError


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (or without a process group): the one process that writes."""
    return world()[0] == 0


def init_from_env(device_choice: str = "auto") -> torch.device:
    """Join the ``torchrun`` process group when its variables are set; this rank's device.

    One GPU per process (``cuda:LOCAL_RANK``) with NCCL where CUDA is present and not refused,
    otherwise CPU with gloo. Without ``WORLD_SIZE`` (a plain process) nothing is initialised.
    """
    from bench.core.device import resolve_device

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_choice)
    if world_size <= 1 or (dist.is_available() and dist.is_initialized()):
        return device
    if not dist.is_available():
        raise BenchError("WORLD_SIZE is set, but this torch build has no torch.distributed")
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise BenchError(
                f"LOCAL_RANK {local}, but only {torch.cuda.device_count()} CUDA devices are visible"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=30))
    return device


def shutdown() -> None:
    """Leave the process group (if any), so the process exits cleanly."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    if world()[1] > 1:
        dist.barrier()


def broadcast_flag(value: bool) -> bool:
    """Rank 0's ``value`` on every rank, so all ranks take the same branch."""
    if world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def average_(tensors: list[torch.Tensor]) -> None:
    """Replace each tensor by its mean over ranks, in place, with one all-reduce for all of them.

    Used on gradients after ``backward`` (what ``DistributedDataParallel``'s reducer does, without
    requiring the methods' loss functions to call a wrapped module) and on the loss history.
    """
    world_size = world()[1]
    if world_size == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def broadcast_(tensors: list[torch.Tensor]) -> None:
    """Overwrite each tensor with rank 0's, in place (identical starting weights on every rank)."""
    if world()[1] == 1:
        return
    for t in tensors:
        dist.broadcast(t, src=0)
