"""Processes that must not outlive this one: a watcher kills them once this process is gone.

A local Ray instance started by a sweep's driver (:mod:`bench.harness.executors`) runs its GCS,
raylet and, under the raylet, a dashboard agent and a runtime-env agent. When the driver is killed
(``kill -9``, an OOM kill) the raylet goes with it, but the orphaned agents only notice about two
minutes later, holding memory and ports. :func:`reap_on_exit` starts a small watcher in its own
session; while this process lives it notes, every :data:`POLL_S`, the descendants of the given
root processes (with their start times, so a reused pid is never hit); once this process is gone
(the watcher is re-parented) it SIGKILLs those it noted and any descendants still alive, then
exits. A normal shutdown ends the watcher with :func:`stop_reaper` first. Linux only (it reads
``/proc``); elsewhere it does nothing and Ray's own clean-up applies.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

POLL_S = 0.25

_WATCHER = r"""
import os, signal, sys, time

parent, poll = int(sys.argv[1]), float(sys.argv[2])
roots = {int(p) for p in sys.argv[3:]}
me = os.getpid()


def table():
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[int(entry)] = (int(fields[1]), fields[19])  # ppid, start time
    return out


def tree(procs, known):
    found = {p: procs[p][1] for p in roots if p in procs}
    found.update({p: t for p, t in known.items() if procs.get(p, (0, None))[1] == t})
    grew = True
    while grew:
        grew = False
        for pid, (ppid, start) in procs.items():
            if ppid in found and pid not in found and pid != me:
                found[pid] = start
                grew = True
    return found


known = {}
while os.getppid() == parent:
    known = tree(table(), known)
    time.sleep(poll)
for _ in range(3):  # a dying raylet may still start a worker: sweep a few times
    procs = table()
    for pid, start in tree(procs, known).items():
        if procs.get(pid, (0, None))[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    time.sleep(poll)
"""


def reap_on_exit(roots: Sequence[int]) -> subprocess.Popen[bytes] | None:
    """Kill ``roots`` and their descendants once this process is gone; the watcher (None off Linux)."""
    if not Path("/proc/self/stat").exists() or not roots:
        return None
    args = [sys.executable, "-c", _WATCHER, str(os.getpid()), str(POLL_S), *map(str, roots)]
    return subprocess.Popen(
        args,
        start_new_session=True,  # a Ctrl-C to the driver's process group leaves it to clean up
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )


def stop_reaper(watcher: subprocess.Popen[bytes] | None) -> None:
    """End the watcher after a normal shutdown (the processes it watched are already gone)."""
    if watcher is None:
        return
    watcher.kill()
    watcher.wait()
