"""``bench list``: registered methods, protocols, backbones and datasets, one line each.

The method and backbone registries fill up as their modules are imported, and those modules import
torch, timm and lightly (about 10 s on a 2-core machine) only to be named. So the listing reads the
registrations from the source (``@register_method("name")`` with a literal ``description``,
``@register_backbone("name", "description")``) and imports the registry only when a module
registers in a way the source does not show. tests/bench/test_cli_list.py holds the two readings
equal.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
from pathlib import Path


def _section(title: str, entries: dict[str, str]) -> str:
    width = max(map(len, entries), default=0)
    return "\n".join([f"{title}:", *(f"  {name:<{width}}  {desc}" for name, desc in entries.items())])


def _package_dir(package: str) -> Path:
    """The folder of ``package``, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"package {package!r} not found")
    return Path(next(iter(spec.submodule_search_locations)))


def _literal(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _decorator_args(node: ast.ClassDef | ast.FunctionDef, decorator: str) -> list[ast.expr] | None:
    for deco in node.decorator_list:
        if isinstance(deco, ast.Call) and isinstance(deco.func, ast.Name) and deco.func.id == decorator:
            return list(deco.args)
    return None


def _class_description(node: ast.ClassDef) -> str | None:
    for stmt in node.body:
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "description" for t in stmt.targets
        ):
            return _literal(stmt.value)
    return None


def static_registrations(package: str, decorator: str, skip: frozenset[str] = frozenset()) -> dict[str, str]:
    """``{name: description}`` of every ``@decorator("name"...)`` in the package's modules, from source.

    Methods: a decorated class with a literal ``description`` attribute. Backbones: a decorated
    function whose second decorator argument is the description. Raises ``LookupError`` when a
    registration cannot be read this way (a sub-package, a computed name or description), so the
    caller imports the registry instead of listing half of it.
    """
    folder = _package_dir(package)
    if any((d / "__init__.py").is_file() for d in folder.iterdir() if d.is_dir()):
        raise LookupError(f"{package} has sub-packages; their registrations need an import")
    found: dict[str, str] = {}
    for path in sorted(folder.glob("*.py")):
        if path.stem in skip or path.stem.startswith("_"):
            continue
        source = path.read_text(encoding="utf-8")
        if decorator not in source:
            continue
        tree = ast.parse(source, filename=str(path))
        calls = sum(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == decorator
            for n in ast.walk(tree)
        )
        decorated = 0
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef | ast.FunctionDef):
                continue
            args = _decorator_args(node, decorator)
            if args is None:
                continue
            decorated += 1
            name = _literal(args[0]) if args else None
            if isinstance(node, ast.ClassDef):
                description = _class_description(node)
            else:
                description = _literal(args[1]) if len(args) > 1 else None
            if name is None or description is None:
                raise LookupError(f"{path}: a {decorator} registration is not literal")
            found[name] = description
        if calls != decorated:
            raise LookupError(f"{path}: calls {decorator} other than as a decorator")
    return dict(sorted(found.items()))


def listed_methods() -> dict[str, str]:
    """Method names and descriptions, from source when possible (see the module doc)."""
    try:
        return static_registrations("methods", "register_method", skip=frozenset({"registry"}))
    except LookupError:
        from methods import list_methods

        return list_methods()


def listed_backbones() -> dict[str, str]:
    """Backbone names and descriptions, from source when possible (see the module doc)."""
    try:
        return static_registrations("bench.models", "register_backbone")
    except LookupError:
        from bench.models.backbones import list_backbones

        return list_backbones()


def listed_protocols() -> dict[str, str]:
    """Evaluation protocols (reference rows included), from source when possible."""
    try:
        return static_registrations("bench.protocols", "register_protocol", skip=frozenset({"registry"}))
    except LookupError:
        from bench.protocols.registry import list_protocols

        return list_protocols()


def run_list(args: argparse.Namespace) -> int:
    """Print what ``--method``, ``--backbone`` and ``--data`` accept."""
    from datasets import list_layouts

    sections = [
        _section("methods", listed_methods()),
        _section("protocols", listed_protocols()),
        _section("backbones", listed_backbones()),
        _section("datasets", list_layouts()),
    ]
    print("\n\n".join(sections))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("list", help="registered methods, backbones and datasets")
    parser.set_defaults(func=run_list)
