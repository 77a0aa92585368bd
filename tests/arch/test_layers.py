"""Imports point down only (DESIGN 11): a test that walks every import and fails on an upward one.

Layers, bottom to top: the kernel (``bench.core``), the models (``bench.models``), the data and
method packages (``datasets``, ``methods``: peers that never import each other), the protocols,
the harness, the reports, perf, the CLI, and ``scripts/`` on top. An import inside a function
counts too: a lazy import is still a dependency.

Module by module as well as package by package: outside ``methods/``, a method is reached through
the registry (``methods``, ``methods.registry``, ``methods.health``), never by importing its module
(DESIGN 11: method names, labels and defaults come from the registry), so a method's file can change
or go without the layers above noticing. Scripts that study one method's internals are declared.
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
    "scripts": 8,  # the project's own commands (regenerating results, choosing defaults)
}
#: Same-rank packages that must stay independent of each other.
PEERS_APART = {("datasets", "methods"), ("methods", "datasets")}
#: The modules of ``methods`` the rest of the project may import: the registry and its health gates.
METHODS_PUBLIC = ("methods", "methods.registry", "methods.health")
#: Scripts allowed a method's own modules, each with why.
METHOD_STUDIES: dict[str, str] = {
    "scripts/sscl_before_after.py": "reruns SSCL's version 1 by patching CoRe and UniFeat internals",
    "scripts/choose_pretrain_schedules.py": "recomputes BatchNorm statistics as methods.training does",
}


def layer_of(module: str) -> str | None:
    matches = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
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


def source_files(root: Path = REPO) -> list[Path]:
    return sorted(
        p for pkg in ("bench", "methods", "datasets", "scripts") for p in (root / pkg).rglob("*.py")
    )


def upward_imports(path: Path, root: Path = REPO) -> list[str]:
    own = layer_of(module_name(path, root))
    assert own is not None, path
    where = path.relative_to(root).as_posix()
    bad = []
    for line, target in imported_modules(path):
        if own != "methods" and _is_method_module(target, root) and where not in METHOD_STUDIES:
            bad.append(f"{where}:{line} ({own}) imports {target} (a method module: use the registry)")
            continue
        their = layer_of(target)
        if their is None or their == own or target in ("bench",):
            continue
        # ``from bench import __version__`` resolves to the package, not a layer above
        if target == "bench.__version__":
            continue
        if LAYERS[their] > LAYERS[own] or (own, their) in PEERS_APART:
            bad.append(f"{where}:{line} ({own}) imports {target} ({their})")
    return bad


def _is_method_module(target: str, root: Path) -> bool:
    """``methods.core`` or ``methods.core.CoReConfig``: a module of ``methods/`` other than the
    registry's (``from methods import get_method`` names the package's export, not a module)."""
    parts = target.split(".")
    if parts[0] != "methods" or len(parts) < 2 or ".".join(parts[:2]) in METHODS_PUBLIC:
        return False
    return (root / "methods" / f"{parts[1]}.py").is_file() or (root / "methods" / parts[1]).is_dir()


def test_every_source_file_has_a_layer() -> None:
    assert all(layer_of(module_name(p)) for p in source_files())


def test_no_import_points_up() -> None:
    bad = [b for p in source_files() for b in upward_imports(p)]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_walker_sees_an_upward_import(tmp_path: Path) -> None:
    """The check itself can fail: a kernel file importing the harness is reported (in a copy: the
    real tree is never written)."""
    fake = tmp_path / "bench" / "core" / "_layer_probe.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from bench.harness.runner import CellSpec\n")
    assert [b for p in source_files(tmp_path) for b in upward_imports(p, tmp_path)] == [
        "bench/core/_layer_probe.py:2 (bench.core) imports bench.harness.runner (bench.harness)",
        "bench/core/_layer_probe.py:2 (bench.core) imports bench.harness.runner.CellSpec (bench.harness)",
    ]


def test_the_walker_sees_a_method_module_imported_from_above(tmp_path: Path) -> None:
    """A harness or script file importing one method's module is reported; the registry is not."""
    harness = tmp_path / "bench" / "harness" / "probe.py"
    script = tmp_path / "scripts" / "probe.py"
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "core.py").write_text("x = 1\n")
    for path in (harness, script):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "from methods import get_method\nfrom methods.registry import method_labels\n"
            "from methods.core import CoReConfig\n"
        )
    assert [b for p in source_files(tmp_path) for b in upward_imports(p, tmp_path)] == [
        "bench/harness/probe.py:3 (bench.harness) imports methods.core (a method module: use the registry)",
        "bench/harness/probe.py:3 (bench.harness) imports methods.core.CoReConfig "
        "(a method module: use the registry)",
        "scripts/probe.py:3 (scripts) imports methods.core (a method module: use the registry)",
        "scripts/probe.py:3 (scripts) imports methods.core.CoReConfig (a method module: use the registry)",
    ]


def test_declared_method_studies_exist() -> None:
    assert all((REPO / name).is_file() for name in METHOD_STUDIES)


@pytest.mark.parametrize("package", ["datasets", "methods"])
def test_data_and_methods_import_only_kernel_and_models(package: str) -> None:
    allowed = ("bench.core", "bench.models", package)
    for path in (REPO / package).rglob("*.py"):
        for line, target in imported_modules(path):
            if layer_of(target) is not None:
                assert layer_of(target) in allowed, f"{path.relative_to(REPO)}:{line} imports {target}"
