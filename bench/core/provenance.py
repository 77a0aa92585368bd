"""Where a result came from: code version, the code a result depends on, stable hashes of configs.

A result key's code part (:func:`code_digest`) covers what that result depends on (DESIGN 9): the
kernel, models, protocols, datasets, the harness's result-affecting modules, and the method's own
module with what it imports (or a plugin's package with its version), not every file.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib.util
import json
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[2]  # bench/core/provenance.py -> the repository


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(_REPO), *args], capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


@functools.cache
def _commit() -> str | None:
    try:
        return _git("rev-parse", "--short=12", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None


def code_version(modules: Sequence[str] | None = None) -> str:
    """Git commit of the harness, ``+dirty`` when code differs from it; else the package version.

    Recorded with every result so a number can be traced to the code that made it. With
    ``modules`` (what a result depends on, see :func:`code_digest`), only the files those modules
    depend on count, untracked ones included: a half-written method in ``methods/`` marks its own
    results dirty, not the Baseline's. Without, any tracked change marks it (untracked files
    ignored, as before).
    """
    sha = _commit()
    if sha is None:
        from bench import __version__

        return __version__
    return f"{sha}+dirty" if _dirty(tuple(modules) if modules is not None else None) else sha


@functools.cache
def _dirty(modules: tuple[str, ...] | None) -> bool:
    try:
        if modules is None:
            return bool(_git("status", "--porcelain", "--untracked-files=no"))
        files = [p.relative_to(_REPO).as_posix() for p in dependency_files(modules)]
        return bool(_git("status", "--porcelain", "--untracked-files=all", "--", *files))
    except (OSError, subprocess.SubprocessError):
        return False


#: Folders every result depends on: the kernel, the backbones, the protocols, the data.
_SHARED = ("bench/core", "bench/models", "bench/protocols", "datasets")
#: Harness modules that change numbers (the runner seeds and evaluates, pretraining trains and
#: caches weights). The rest of the harness schedules (sweep, claims, executors), records
#: (tracking), presets (their values are hashed as settings) or reports, like bench/report,
#: bench/perf and bench/cli, and is left out so that improving it keeps completed cells.
_HARNESS = ("bench/harness/runner.py", "bench/harness/pretraining.py")
#: Imports are followed into these packages; the harness and the layers above it come in only by
#: the list above (the runner imports tracking, which cannot change a number).
_FOLLOWED = ("bench.core", "bench.models", "bench.protocols", "datasets", "methods")


def _module_of(path: Path, root: Path) -> tuple[str, bool]:
    """(dotted module name, is a package ``__init__``) of ``path`` under ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _file_of(module: str, root: Path) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, root: Path) -> frozenset[str]:
    """Modules ``path`` imports (lazy ones and relative ones included, ``from pkg import mod`` as
    ``pkg.mod`` too), with every package above each."""
    stat = path.stat()
    return _parsed_imports(path, root, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4096)
def _parsed_imports(path: Path, root: Path, mtime_ns: int, size: int) -> frozenset[str]:
    """:func:`_imports`, parsed once per file version (a sweep asks for every unit's key)."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    own, is_package = _module_of(path, root)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = own.split(".") if is_package else own.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            if base:
                found.add(base)
                found |= {f"{base}.{alias.name}" for alias in node.names}
    with_parents = set()
    for name in found:
        parts = name.split(".")
        with_parents |= {".".join(parts[: i + 1]) for i in range(len(parts))}
    return frozenset(with_parents)


def _closure(
    seeds: Sequence[Path], root: Path, follow: Callable[[str], bool], closed: frozenset[Path] = frozenset()
) -> set[Path]:
    """``seeds`` and every file under ``root`` they import, transitively, through modules ``follow``
    accepts; files in ``closed`` (a closure already) are kept but not walked again."""
    seen: set[Path] = set()
    todo = list(seeds)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if path in closed:
            continue
        for module in _imports(path, root):
            target = _file_of(module, root) if follow(module) else None
            if target is not None and target not in seen:
                todo.append(target)
    return seen


def _followed(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in _FOLLOWED)


@functools.cache
def _shared_files() -> frozenset[Path]:
    seeds = [p for folder in _SHARED for p in sorted((_REPO / folder).rglob("*.py"))]
    seeds += [_REPO / name for name in _HARNESS if (_REPO / name).is_file()]
    return frozenset(_closure(seeds, _REPO, _followed))


def dependency_files(modules: Sequence[str] = ()) -> list[Path]:
    """This repository's files a result of ``modules`` depends on (sorted): the shared part (kernel,
    models, protocols, datasets, the runner and pretraining, with what they import) and every file
    each module imports, transitively (``methods/sscl.py`` -> unifeat, core, augment, training,
    monitors, registry). Modules outside the repository (plugins) contribute no file here."""
    shared = _shared_files()
    files = set(shared)
    for module in modules:
        path = _file_of(module, _REPO)
        if path is not None:
            files |= _closure([path], _REPO, _followed, closed=shared)
    return sorted(files)


def _plugin_identity(module: str) -> dict[str, Any] | None:
    """A module outside the repository: its distribution and version, and a digest of its package's
    files it imports (an editable plugin changes without a new version)."""
    if _file_of(module, _REPO) is not None:
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return {"module": module, "distribution": None, "version": None, "digest": None}
    origin = Path(spec.origin).resolve()
    depth = len(module.split(".")) - (0 if origin.name == "__init__.py" else 1)
    root = origin.parents[depth]
    top = module.partition(".")[0]
    files = _closure([origin], root, lambda m: m == top or m.startswith(top + "."))
    from bench.core.plugins import distribution_of

    dist, version = distribution_of(module)
    return {"module": module, "distribution": dist, "version": version, "digest": _hash_files(files, root)}


def _hash_files(files: Iterable[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@functools.cache
def _code_digest(modules: tuple[str, ...]) -> str:
    repo = _hash_files(dependency_files(modules), _REPO)
    plugins = [ident for m in modules if (ident := _plugin_identity(m)) is not None]
    if not plugins:
        return repo
    return stable_hash({"repository": repo, "plugins": plugins}, length=12)


def code_digest(modules: Sequence[str] = ()) -> str:
    """The code part of a result key: a hash of what a result of ``modules`` depends on.

    ``modules``: the method's, the protocol's and the backbone's modules. Their files in this
    repository and the shared part (:func:`dependency_files`) are hashed; a plugin module adds its
    distribution, version and files (:func:`_plugin_identity`). Adding or editing one method's file
    therefore leaves every other method's results valid, while editing what a method builds on
    (``methods/core.py`` for ``core`` and ``sscl``) starts its cells afresh. Docs, tests, results,
    reporting and scheduling code never change it.
    """
    return _code_digest(tuple(sorted(set(modules))))


def source_digest() -> str:
    """:func:`code_digest` of the shared part alone (what every result depends on)."""
    return code_digest(())


def clear_cache() -> None:
    """Forget computed digests and git answers (tests that edit sources)."""
    for fn in (_commit, _dirty, _shared_files, _code_digest):
        fn.cache_clear()


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
