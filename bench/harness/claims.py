"""Atomic claims, so several sweep workers share one grid without running a unit twice.

A claim is a file ``<root>/<key>`` created with ``O_CREAT | O_EXCL``: of any number of processes
(or machines on one shared filesystem) that try at the same moment, exactly one succeeds. The file
holds the owner's host, pid and start time. While the owner works, a heartbeat thread touches the
file, so a claim whose heartbeat stopped is stale:

- on the owner's host, immediately when its pid is gone (a killed worker's units are redone at once);
- on any host, when the file has not been touched for ``stale_after`` seconds (a dead machine).

Stale claims are taken over under a lock file (``<root>/.reclaim.lock``) and re-read before removal,
so two workers never both take over the same claim. A claim only prevents *concurrent* duplicates;
the sweep checks the tracking store before and after claiming, so a unit finished by another
worker is never redone (see :mod:`bench.harness.sweep`).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

from filelock import FileLock

HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def owner_gone(host: object, pid: object) -> bool:
    """True only when ``host`` is this machine and process ``pid`` no longer exists."""
    return host == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid)


class Claim:
    """A held claim; release it with :meth:`release` or by leaving the ``with`` block."""

    def __init__(self, path: Path, heartbeat_s: float) -> None:
        self.path = path
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, args=(heartbeat_s,), daemon=True)
        self._beat.start()

    def _heartbeat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                os.utime(self.path)
            except FileNotFoundError:  # released or taken over after we were presumed dead
                return

    def release(self) -> None:
        """Stop the heartbeat and remove the claim file."""
        self._stop.set()
        self._beat.join()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class _Unshared(Claim):
    """What :meth:`ClaimStore.try_claim` returns where no claim can be written (a read-only
    ``BENCH_HOME``): the work goes ahead unclaimed, since no other writer can share that home."""

    def __init__(self, path: Path) -> None:  # no file, no heartbeat
        self.path = path

    def release(self) -> None:
        return None


class ClaimStore:
    """Claims under one directory (``bench_home()/claims`` for a sweep; shared across machines)."""

    def __init__(
        self, root: Path, *, stale_after: float = STALE_AFTER_S, heartbeat_s: float = HEARTBEAT_S
    ) -> None:
        self.root = Path(root)  # made at the first claim: a fully cached run writes nothing
        self.stale_after = stale_after
        self.heartbeat_s = heartbeat_s
        self.host = socket.gethostname()

    def _create(self, path: Path) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump({"host": self.host, "pid": os.getpid(), "time": time.time()}, fh)
        return True

    def is_stale(self, path: Path) -> bool:
        """True when the claim's owner is dead (same host) or silent for ``stale_after`` seconds."""
        try:
            text, mtime = path.read_text(), path.stat().st_mtime
        except FileNotFoundError:
            return False
        try:
            owner = json.loads(text)
        except json.JSONDecodeError:  # the owner died between create and write
            owner = {}
        if owner_gone(owner.get("host"), owner.get("pid")):
            return True
        return time.time() - mtime > self.stale_after

    def try_claim(self, key: str) -> Claim | None:
        """The claim on ``key`` if nobody else holds a live one; None otherwise (never blocks long)."""
        path = self.root / key
        try:
            created = self._create(path)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                return _Unshared(path)
            raise
        if not created:
            if not self.is_stale(path):
                return None
            with FileLock(str(self.root / ".reclaim.lock")):
                if not self.is_stale(path):  # re-check: someone else took it over meanwhile
                    return None
                path.unlink(missing_ok=True)
                if not self._create(path):
                    return None
        return Claim(path, self.heartbeat_s)
