"""Data-parallel pretraining under ``torchrun``: the process group and the few collectives we use.

``torchrun --nproc-per-node N -m bench pretrain ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous address in the environment;
:func:`init_from_env` joins them (NCCL on GPUs, gloo on CPUs). Everything else asks
:func:`world` and behaves exactly as a single process when there is none, so the training loop
and the cache code have one path. Rank 0 alone writes files and tracking runs; the others wait
for it at :func:`barrier`.

A stalled or dead peer must not hold the others for the process group's default 30 minutes:
every collective here waits at most ``BENCH_DIST_TIMEOUT_S`` seconds (default
:data:`DEFAULT_TIMEOUT_S`), then raises :class:`PeerTimeout`, one line naming the rank(s) that
stopped answering, and the command exits 2 on every rank that is still alive (``torchrun`` then
ends the stalled one). The culprit is found from heartbeats: each rank bumps a counter in the
rendezvous store from a thread every few seconds; a SIGSTOPped or dead rank's counter stands
still. On GPUs NCCL is put in blocking-wait mode so that its timeout is raised the same way.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import torch
import torch.distributed as dist

from bench.core.errors import BenchError

TIMEOUT_ENV = "BENCH_DIST_TIMEOUT_S"
#: Seconds a rank waits for its peers in one collective before every rank stops.
DEFAULT_TIMEOUT_S = 300.0
_ALIVE = "bench.alive."
_heartbeat: dict[str, object] = {}


class PeerTimeout(BenchError):
    """A peer rank stalled or died: one line naming it (every live rank stops)."""


def timeout_s() -> float:
    """``$BENCH_DIST_TIMEOUT_S`` or :data:`DEFAULT_TIMEOUT_S`; a bad value is a one-line error."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        value = -1.0
    if value <= 0:
        raise BenchError(f"{TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return value


def _beat_every() -> float:
    return max(0.2, min(5.0, timeout_s() / 10))


def _start_heartbeat(rank: int) -> None:
    """Bump ``bench.alive.<rank>`` in the rendezvous store every :func:`_beat_every` seconds."""
    try:
        store = dist.distributed_c10d._get_default_store()
    except Exception:  # no store to share (an unusual init method): the error names no culprit
        return
    stop = threading.Event()

    def beat() -> None:
        count = 0
        while not stop.is_set():
            count += 1
            try:
                store.set(f"{_ALIVE}{rank}", str(count))
            except Exception:  # the store went away with its host rank: nothing to report to
                return
            stop.wait(_beat_every())

    thread = threading.Thread(target=beat, name="bench-heartbeat", daemon=True)
    thread.start()
    _heartbeat.update(store=store, stop=stop, thread=thread)


def _silent_ranks(rank: int, ranks: int) -> list[int]:
    """Peers whose heartbeat did not move over three beats (stalled or dead); [] if unknown."""
    store = _heartbeat.get("store")
    if store is None:
        return []

    def counters() -> dict[int, str]:
        out = {}
        for r in range(ranks):
            if r == rank:
                continue
            try:
                out[r] = store.get(f"{_ALIVE}{r}").decode()  # type: ignore[attr-defined]
            except Exception:
                out[r] = ""
        return out

    try:
        before = counters()
        time.sleep(3 * _beat_every())
        after = counters()
    except Exception:  # the store's host is the dead one
        return []
    return [r for r in before if before[r] == after.get(r)]


_PEER_FAILURE = (
    "timed out",
    "timeout",
    "connection reset",
    "connection closed",
    "pair closure",
    "broken pipe",
)


@contextlib.contextmanager
def _guard(op: str) -> Iterator[None]:
    """Turn a collective that timed out or lost its peer into :class:`PeerTimeout`."""
    try:
        yield
    except RuntimeError as err:
        text = str(err).lower()
        if not any(t in text for t in _PEER_FAILURE):
            raise
        rank, ranks = world()
        silent = _silent_ranks(rank, ranks)
        who = (
            f"rank{'s' if len(silent) > 1 else ''} {', '.join(map(str, silent))}" if silent else "a peer rank"
        )
        raise PeerTimeout(
            f"rank {rank} of {ranks}: {who} stopped answering in {op} (stalled or dead; waited up to "
            f"{timeout_s():g} s, {TIMEOUT_ENV} sets it); every rank stops, re-run the same command"
        ) from err


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
    if device.type == "cuda":  # raise NCCL's timeout in the waiting call, like gloo, instead of aborting
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s()))
    _start_heartbeat(dist.get_rank())
    return device


def shutdown() -> None:
    """Leave the process group (if any), so the process exits cleanly."""
    stop = _heartbeat.pop("stop", None)
    if isinstance(stop, threading.Event):
        stop.set()
    _heartbeat.clear()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    if world()[1] > 1:
        with _guard("a barrier"):
            dist.barrier()


def broadcast_flag(value: bool) -> bool:
    """Rank 0's ``value`` on every rank, so all ranks take the same branch."""
    if world()[1] == 1:
        return value
    box = [value]
    with _guard("a broadcast from rank 0"):
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
    with _guard("the gradient all-reduce"):
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
    with _guard("the weights broadcast from rank 0"):
        for t in tensors:
            dist.broadcast(t, src=0)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`KeyboardInterrupt` in the main thread, so the code
    around a run closes it (``KILLED``) instead of dying with it RUNNING: ``torchrun`` ends the other
    ranks with SIGTERM when one of them dies, and schedulers stop jobs so. Nothing changes off the
    main thread or where the handler cannot be set; the previous handler is restored on exit."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum} (SIGTERM)")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except (ValueError, OSError):  # not the main thread (a Ray task's worker thread, a test thread)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
