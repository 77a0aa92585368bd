"""Device choice and the CUDA fast paths (bf16 autocast, channels_last) in one place.

Every training and inference loop goes through these helpers so that the CPU path stays plain
float32 and the GPU path gets the DESIGN 8 treatment without each loop re-deciding it.
"""

from __future__ import annotations

import contextlib
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
