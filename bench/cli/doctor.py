"""``python -m bench doctor``: one screen that says whether this machine can run the benchmark.

What a bug report needs and what a new user asks first: the versions of the stack, the device (and
whether it does bf16), where the caches are and how big, whether the MLflow store answers, and
whether ImageNet weights are reachable for each backbone. It only reads: no store or cache is
created, and every network check has a short timeout.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import threading
import urllib.request
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

#: Distributions whose versions decide results or failures.
PACKAGES = ("torch", "timm", "lightly", "mlflow", "optuna", "numpy")
#: Seconds a tracking server gets to answer.
ANSWER_TIMEOUT_S = 3.0


def _versions() -> list[str]:
    lines = [f"python   {platform.python_version()} ({platform.python_implementation()})"]
    for name in PACKAGES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "not installed"
        lines.append(f"{name:<8} {version}")
    return lines


def _device() -> list[str]:
    import torch

    lines = [f"cpu threads {torch.get_num_threads()} (of {os.cpu_count()} cores)"]
    if not torch.cuda.is_available():
        return [*lines, "cuda        not available (runs use the CPU)"]
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        lines.append(f"cuda:{index}      {props.name}, {props.total_memory / 2**30:.0f} GiB")
    bf16 = "yes" if torch.cuda.is_bf16_supported() else "no (float32 autocast off)"
    return [*lines, f"bf16        {bf16}"]


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _caches() -> list[str]:
    from bench.core.paths import bench_home

    home = bench_home()
    source = "$BENCH_HOME" if os.environ.get("BENCH_HOME") else "default ./.bench"
    if not home.is_dir():
        return [f"{home} ({source}): not created yet"]
    folders = sorted(p for p in home.iterdir() if p.is_dir())
    sizes = {p.name: _size(p) for p in folders}
    loose = sum(p.stat().st_size for p in home.iterdir() if p.is_file())
    lines = [f"{home} ({source}): {_format_bytes(sum(sizes.values()) + loose)}"]
    lines += [f"  {name:<14}{_format_bytes(size):>12}" for name, size in sizes.items()]
    return lines


def _with_timeout(check: Callable[[], str], seconds: float) -> str:
    """``check()``, or a timeout note when it has not answered in ``seconds`` (DNS can hang)."""
    answer: list[str] = []

    def target() -> None:
        try:
            answer.append(check())
        except Exception as exc:  # doctor reports every failure instead of stopping at one
            answer.append(f"does not answer: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    return answer[0] if answer else f"does not answer within {seconds:.0f} s"


def _sqlite_answer(path: Path) -> str:
    if not path.is_file():
        return "not created yet (the first run creates it)"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=ANSWER_TIMEOUT_S) as db:
        (n,) = db.execute("select count(*) from runs").fetchone()
    return f"answers ({n} runs, {_format_bytes(path.stat().st_size)})"


def _server_answer(uri: str) -> str:
    with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=ANSWER_TIMEOUT_S) as response:
        return f"answers (HTTP {response.status})"


def _client_answer(uri: str) -> str:
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    return "answers"


def _mlflow() -> list[str]:
    from bench.harness.tracking import experiment_name, tracking_uri

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        check: Callable[[], str] = lambda: _sqlite_answer(Path(uri.removeprefix("sqlite:///")))  # noqa: E731
    elif uri.startswith(("http://", "https://")):
        check = lambda: _server_answer(uri)  # noqa: E731
    else:
        check = lambda: _client_answer(uri)  # noqa: E731
    return [
        f"uri         {uri}",
        f"experiment  {experiment_name()}",
        f"store       {_with_timeout(check, 5.0)}",
    ]


def _weights_from_outside() -> list[str]:
    """Per method whose weights come from outside (``imagenet``) and backbone, where from."""
    from bench.models.backbones import list_backbones
    from methods import get_method, list_methods

    names = list(list_backbones())
    width = max(map(len, names), default=0)
    lines = []
    for method in list_methods():
        for name in names:
            origin = get_method(method).weights_origin(name)
            if origin is not None:
                lines.append(f"{method} on {name:<{width}}  {origin}")
    return lines


SECTIONS: tuple[tuple[str, Callable[[], list[str]]], ...] = (
    ("versions", _versions),
    ("device", _device),
    ("caches (BENCH_HOME)", _caches),
    ("MLflow", _mlflow),
    ("weights from outside the harness", _weights_from_outside),
)


def run_doctor(args: argparse.Namespace) -> int:
    """Print every section; a section that fails says so and the others still print."""
    for index, (title, lines) in enumerate(SECTIONS):
        print(("\n" if index else "") + f"{title}:")
        try:
            body = lines()
        except Exception as exc:  # a broken part is exactly what doctor must report, not hide
            body = [f"could not check: {type(exc).__name__}: {exc}"]
        print("\n".join(f"  {line}" for line in body), flush=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "doctor", help="versions, device, caches, MLflow store and ImageNet weights on one screen"
    )
    parser.set_defaults(func=run_doctor)
