"""Imports point down only (DESIGN 11): a test that walks every import and fails on an upward one.

Layers, bottom to top: the kernel (``bench.core``), the models (``bench.models``), the data and
method packages (``datasets``, ``methods``: peers that never import each other), the protocols,
the harness, the reports, perf, and the CLI on top. An import inside a function counts too: a
lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: Package prefix -> layer rank. The longest matching prefix wins.
LAYERS: dict[str, int] = {
    "bench.core": 0,
    "bench.models": 1,
    "datasets": 2,
    "methods": 2,
    "bench.protocols": 3,
    "bench.harness": 4,
    "bench.report": 5,
    "bench.perf": 6,
    "bench.cli": 7,
    "bench": 7,  # bench/__init__.py and bench/__main__.py sit with the CLI
}
#: Same-rank packages that must stay independent of each other.
PEERS_APART = {("datasets", "methods"), ("methods", "datasets")}


def layer_of(module: str) -> str | None:
    matches = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every (line, absolute module) the file imports, including ``from pkg import submodule``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def source_files() -> list[Path]:
    return sorted(p for pkg in ("bench", "methods", "datasets") for p in (REPO / pkg).rglob("*.py"))


def upward_imports(path: Path) -> list[str]:
    own = layer_of(module_name(path))
    assert own is not None, path
    bad = []
    for line, target in imported_modules(path):
        their = layer_of(target)
        if their is None or their == own or target in ("bench",):
            continue
        # ``from bench import __version__`` resolves to the package, not a layer above
        if target == "bench.__version__":
            continue
        if LAYERS[their] > LAYERS[own] or (own, their) in PEERS_APART:
            bad.append(f"{path.relative_to(REPO)}:{line} ({own}) imports {target} ({their})")
    return bad


def test_every_source_file_has_a_layer() -> None:
    assert all(layer_of(module_name(p)) for p in source_files())


def test_no_import_points_up() -> None:
    bad = [b for p in source_files() for b in upward_imports(p)]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_walker_sees_an_upward_import(tmp_path: Path) -> None:
    """The check itself can fail: a kernel file importing the harness is reported."""
    fake = REPO / "bench" / "core" / "_layer_probe_tmp.py"
    fake.write_text("def f():\n    from bench.harness.runner import CellSpec\n")
    try:
        assert upward_imports(fake) == [
            "bench/core/_layer_probe_tmp.py:2 (bench.core) imports bench.harness.runner (bench.harness)",
            "bench/core/_layer_probe_tmp.py:2 (bench.core) imports bench.harness.runner.CellSpec "
            "(bench.harness)",
        ]
    finally:
        fake.unlink()


@pytest.mark.parametrize("package", ["datasets", "methods"])
def test_data_and_methods_import_only_kernel_and_models(package: str) -> None:
    allowed = ("bench.core", "bench.models", package)
    for path in (REPO / package).rglob("*.py"):
        for line, target in imported_modules(path):
            if layer_of(target) is not None:
                assert layer_of(target) in allowed, f"{path.relative_to(REPO)}:{line} imports {target}"
