"""A driver that dies takes its local Ray instance's processes with it (issue 25 item 7).

Ray's raylet dies with a killed driver, but the agents under it (dashboard, runtime env) lived on
for about two minutes. The fast test builds the same shape without Ray: a "driver" whose "raylet"
has a child; driver and raylet are SIGKILLed together and the orphan must be gone within a second
or two. The slow test does it with a real local Ray instance started by the executor.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FAKE_DRIVER = """
import subprocess, sys, time
from bench.core.reaper import reap_on_exit
raylet = subprocess.Popen(["sh", "-c", "sleep 300 & wait"])
reap_on_exit([raylet.pid])
time.sleep(1.0)  # the watcher notes the tree
print(raylet.pid, flush=True)
time.sleep(300)
"""

RAY_DRIVER = """
import os, time
import ray
from bench.harness.executors import start_local_ray
start_local_ray(1)
@ray.remote
def pid():
    return os.getpid()
print(ray.get(pid.remote()), flush=True)
time.sleep(1.0)  # the watcher notes the tree
print("ready", flush=True)
time.sleep(300)
"""


def _env() -> dict[str, str]:
    python_path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return os.environ | {"PYTHONPATH": python_path}


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"  # killed, not yet reaped by init
    except FileNotFoundError:
        return True


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError):
                continue
    return out


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        found += kids
        todo += kids
    return found


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if not _gone(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return [p for p in pids if not _gone(p)]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the watcher reads /proc (Linux)")
def test_orphans_of_a_killed_driver_are_reaped() -> None:
    driver = subprocess.Popen(
        [sys.executable, "-c", FAKE_DRIVER], env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert driver.stdout is not None
        raylet = int(driver.stdout.readline())
        orphans = _children(raylet)
        assert orphans  # the "agent"
        os.kill(driver.pid, signal.SIGKILL)
        os.kill(raylet, signal.SIGKILL)  # Ray's raylet shares its driver's fate
        driver.wait()
        assert _wait_gone(orphans, 3.0) == []
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


@pytest.mark.slow  # a real local Ray instance: ~20 s to start
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the watcher reads /proc (Linux)")
def test_a_killed_ray_driver_takes_its_agents_with_it() -> None:
    driver = subprocess.Popen(
        [sys.executable, "-c", RAY_DRIVER], env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert driver.stdout is not None
        worker = int(driver.stdout.readline())
        driver.stdout.readline()
        tree = _descendants(driver.pid)
        assert worker in tree and len(tree) >= 5  # gcs, raylet, agents, the worker, the watcher
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        assert _wait_gone(tree, 10.0) == []  # not the ~2 minutes the agents took before
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
