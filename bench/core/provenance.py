"""Where a result came from: code version and stable hashes of configurations."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[2]  # bench/core/provenance.py -> the repository


@functools.cache
def code_version() -> str:
    """Git commit of the harness (``+dirty`` when the tree has changes), or the package version.

    Recorded with every result so a number can be traced to the code that made it.
    """
    try:
        sha = subprocess.run(
            ["git", "-C", str(_REPO), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(_REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return f"{sha}+dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        from bench import __version__

        return __version__


_SOURCE_PACKAGES = ("bench", "methods", "datasets")
#: Code that reports, schedules or times results but cannot change a number: left out of the digest,
#: so improving a table or the CLI does not throw completed cells away.
_REPORTING_ONLY = (
    "bench/cli/",
    "bench/report/",
    "bench/perf/",
    "bench/harness/sweep.py",
    "bench/harness/claims.py",
)


@functools.cache
def source_digest() -> str:
    """Hash of the harness's result-affecting Python sources: the code version that keys results.

    Unlike the git commit, it does not change when only docs, tests, results or reporting code are
    committed, so completed cells stay complete; any edit to code that could change a number (data,
    backbones, methods, budgets, protocols, metrics, the runner) starts them afresh.
    """
    digest = hashlib.sha256()
    for package in _SOURCE_PACKAGES:
        for path in sorted((_REPO / package).rglob("*.py")):
            name = path.relative_to(_REPO).as_posix()
            if not name.startswith(_REPORTING_ONLY):
                digest.update(name.encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _canonical(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _canonical(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    return obj


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and normalised containers, so equal configs serialise equally."""
    return json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"))


def stable_hash(obj: Any, length: int = 16) -> str:
    """Short sha256 of :func:`canonical_json`: the key of caches and completed cells."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]
