"""Errors meant for the user: the CLI prints them as one line, without a traceback.

Besides the harness's own errors, the machine itself can refuse: a full disk, no memory left, too
many open files, a path that loops. Those arrive as whatever the failing library raises (an
``OSError`` with an errno, numpy's ``_ArrayMemoryError``, torch's ``RuntimeError`` from its zip
writer, MLflow wrapping sqlite's "database or disk is full", ``pathlib``'s "Symlink loop").
:func:`resource_problem` recognises them anywhere in an exception's chain and says in one line
what ran out, where, and what to do; ``bench.cli.main`` prints that line and exits 2.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path


class BenchError(Exception):
    """A problem the user can fix (bad input, missing weights, impossible budget)."""


class DataError(BenchError):
    """A dataset file is missing, unreadable or malformed; the message names the file."""


class NonFiniteLossError(BenchError):
    """Training produced NaN/inf; the run stops and writes no result."""


#: Texts of libraries that report a full disk without an errno (torch's zip writer, sqlite).
_DISK_FULL_TEXTS = (
    "no space left on device",
    "database or disk is full",
    "disk quota exceeded",
    "pytorchstreamwriter failed writing",
)
_TORCH_WRITER = re.compile(r"inline_container\.cc.*unexpected pos", re.IGNORECASE | re.DOTALL)
_MEMORY_TEXTS = ("out of memory", "can't allocate memory", "cannot allocate memory", "unable to allocate")
_LOOP = re.compile(r"Symlink loop from '?([^']*)'?")


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and its causes/contexts, each once (libraries wrap the OS error they met)."""
    seen: set[int] = set()
    todo: list[BaseException] = [err]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [c for c in (e.__cause__, e.__context__) if c is not None]


def disk_full(err: BaseException) -> bool:
    """True when ``err`` (or what it wraps) says the disk or quota is full."""
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(e).lower()
        if any(t in text for t in _DISK_FULL_TEXTS) or _TORCH_WRITER.search(str(e)):
            return True
    return False


def filename_of(err: BaseException) -> str | None:
    for e in _chain(err):
        name = getattr(e, "filename", None)
        if name:
            return str(name)
    return None


def _kind(err: BaseException) -> str | None:
    """``disk``, ``memory``, ``files`` or ``loop`` when ``err`` is such a failure, else None."""
    if disk_full(err):
        return "disk"
    for e in _chain(err):
        if isinstance(e, MemoryError) or (isinstance(e, OSError) and e.errno == errno.ENOMEM):
            return "memory"
        if isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE):
            return "files"
        if isinstance(e, OSError) and e.errno == errno.ELOOP:
            return "loop"
        if isinstance(e, RuntimeError) and _LOOP.search(str(e)):
            return "loop"
        if isinstance(e, RuntimeError) and "too many open files" in str(e).lower():
            return "files"
        if isinstance(e, RuntimeError) and any(t in str(e).lower() for t in _MEMORY_TEXTS):
            return "memory"  # torch's allocators (CPU "can't allocate memory", CUDA "out of memory")
    return None


def _free_space_at(path: str) -> str:
    """The nearest existing folder of ``path`` (where ``df`` tells how full the disk is)."""
    p = Path(path)
    for folder in (p, *p.parents):
        if folder.is_dir():
            return str(folder)
    return str(p.parent)


def _limit(resource_name: str) -> str:
    try:
        import resource

        soft, _ = resource.getrlimit(getattr(resource, resource_name))
    except (ImportError, AttributeError, ValueError, OSError):
        return "unknown"
    return "unlimited" if soft == getattr(resource, "RLIM_INFINITY", -1) else str(soft)


def _first_line(err: BaseException, limit: int = 160) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:limit]


def resource_problem(err: BaseException, *, home: Path | None = None, store: str | None = None) -> str | None:
    """One line saying what ran out, where, and what to do; None when ``err`` is something else.

    ``home`` (``BENCH_HOME``) and ``store`` (the tracking URI) name the place when the error itself
    names no file (sqlite's "database or disk is full" comes from the tracking store).
    """
    kind = _kind(err)
    if kind is None:
        return None
    name = filename_of(err)
    if kind == "disk":
        texts = " ".join(str(e).lower() for e in _chain(err))
        if name is None and "database or disk is full" in texts and store:
            name = store.removeprefix("sqlite:///")
        where = name or (str(home) if home else "the output folder")
        return (
            f"no space left on the device holding {where}: free space at {_free_space_at(where)} "
            f"(df -h {_free_space_at(where)}), or point BENCH_HOME / MLFLOW_TRACKING_URI at a disk with "
            "room, then re-run the same command (complete work is kept, nothing half-written was left)"
        )
    if kind == "memory":
        detail = next(
            (_first_line(e) for e in _chain(err) if isinstance(e, MemoryError) and str(e)), None
        ) or (f"mapping {name}" if name else _first_line(err))
        return (
            f"out of memory ({detail}): lower the batch size (--set batch_size=N), use fewer or smaller "
            f"patches, or raise the memory limit (ulimit -v, now {_limit('RLIMIT_AS')})"
        )
    if kind == "files":
        now = _limit("RLIMIT_NOFILE")
        suggestion = max(4096, 2 * int(now)) if now.isdigit() else 4096
        at = f" opening {name}" if name else ""
        return (
            f"too many open files{at} (limit {now}): raise the limit (ulimit -n {suggestion}) "
            "or run fewer workers at once (BENCH_LOCAL_WORKERS)"
        )
    loop = _loop_point(name or next((m.group(1) for e in _chain(err) if (m := _LOOP.search(str(e)))), ""))
    return (
        f"symlink loop at {loop}: a symlink on this path points back to itself; fix or remove it "
        f"(ls -l {loop}), then re-run"
    )


def _loop_point(path: str) -> str:
    """The shortest prefix of ``path`` that loops (the symlink to fix), else ``path`` itself."""
    if not path:
        return "a path of this command"
    p = Path(path)
    for prefix in (*reversed(p.parents), p):
        try:
            os.stat(prefix)
        except OSError as err:
            if err.errno == errno.ELOOP:
                return str(prefix)
    return path


def enospc(target: os.PathLike[str] | str, cause: BaseException) -> OSError:
    """An ``OSError(ENOSPC)`` naming ``target``, for a writer whose error named no file."""
    err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
    err.__cause__ = cause
    return err
