"""``bench list``: registered methods, protocols, backbones and datasets, one line each.

The method and backbone registries fill up as their modules are imported, and those modules import
torch, timm and lightly (about 10 s on a 2-core machine) only to be named. So the listing reads the
registrations from the source (``@register_method("name")`` with a literal ``description``,
``@register_backbone("name", "description")``) and imports the registry only when a module
registers in a way the source does not show. tests/bench/test_cli_list.py holds the two readings
equal. Plugins (bench.core.plugins: entry points, ``--plugin``, ``BENCH_PLUGINS``) are imported:
their registrations exist only once their modules ran. Every entry is shown with its source.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any


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
    return {name: description for name, (description, _) in _static(package, decorator, skip).items()}


def _static(package: str, decorator: str, skip: frozenset[str] = frozenset()) -> dict[str, tuple[str, str]]:
    """``{name: (description, source file relative to the repository)}``; see :func:`static_registrations`."""
    folder = _package_dir(package)
    if any((d / "__init__.py").is_file() for d in folder.iterdir() if d.is_dir()):
        raise LookupError(f"{package} has sub-packages; their registrations need an import")
    root = folder.parents[len(package.split(".")) - 1]
    found: dict[str, tuple[str, str]] = {}
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
            found[name] = (description, path.relative_to(root).as_posix())
        if calls != decorated:
            raise LookupError(f"{path}: calls {decorator} other than as a decorator")
    return dict(sorted(found.items()))


#: kind -> (package, decorator, modules to skip) of this repository's registrations.
_IN_REPO = {
    "methods": ("methods", "register_method", frozenset({"registry"})),
    "protocols": ("bench.protocols", "register_protocol", frozenset({"registry"})),
    "backbones": ("bench.models", "register_backbone", frozenset()),
}


def _registered(kind: str) -> dict[str, tuple[str, str]]:
    """``{name: (description, module)}`` from the imported registry (torch): plugins, or a repository
    registration the source does not show."""
    if kind == "methods":
        from methods.registry import get_method, list_methods

        return {n: (d, get_method(n).__module__) for n, d in list_methods().items()}
    if kind == "protocols":
        from bench.protocols.registry import get_protocol, list_protocols

        return {n: (d, type(get_protocol(n)).__module__) for n, d in list_protocols().items()}
    from bench.models.backbones import list_backbones
    from bench.models.base import backbone_module

    return {n: (d, backbone_module(n)) for n, d in list_backbones().items()}


def _source_of(kind: str, name: str, module: str) -> str:
    """Where a registration comes from: its entry point, a plugin's way in, else this repository's file."""
    from bench.core import plugins

    by_entry_point = plugins.entry_point_source(kind, name, module)
    if by_entry_point is not None:
        return by_entry_point
    plugin = plugins.origin(module)
    if plugin is not None:
        return plugin.describe()
    return module.replace(".", "/") + ".py"


def entries(kind: str) -> dict[str, tuple[str, str]]:
    """``{name: (description, source)}`` of every registered ``kind`` (methods, protocols, backbones).

    This repository's are read from source (no torch); plugins (bench.core.plugins) are imported,
    which is the only way to know what they register.
    """
    from bench.core import plugins

    package, decorator, skip = _IN_REPO[kind]
    try:
        found = dict(_static(package, decorator, skip))
    except LookupError:
        return {n: (d, _source_of(kind, n, m)) for n, (d, m) in _registered(kind).items()}
    if plugins.any_plugins():
        for name, (description, module) in _registered(kind).items():
            if name not in found:
                found[name] = (description, _source_of(kind, name, module))
    return dict(sorted(found.items()))


def method_names() -> list[str]:
    """Every method name ``--method`` accepts (see :func:`entries`)."""
    return list(entries("methods"))


def protocol_names() -> list[str]:
    """Every protocol name, reference protocols included (see :func:`entries`)."""
    return list(entries("protocols"))


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


def _sourced_section(title: str, found: dict[str, tuple[str, str]]) -> str:
    width = max(map(len, found), default=0)
    dwidth = max((len(d) for d, _ in found.values()), default=0)
    lines = [f"  {name:<{width}}  {desc:<{dwidth}}  [{src}]" for name, (desc, src) in found.items()]
    return "\n".join([f"{title}:", *lines])


def settings_rows(config: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, type, default) of every setting of a config instance, nested configs as dotted keys."""
    rows = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            rows += settings_rows(value, f"{prefix}{f.name}.")
        else:
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            rows.append((prefix + f.name, kind, json.dumps(value, default=str)))
    return rows


def settings_text(name: str) -> str:
    """``bench list --settings NAME``: a method's (or protocol's) settings with types and defaults."""
    from bench.core.names import match_name

    methods = method_names()
    protocols = protocol_names()
    chosen = match_name(name, [*methods, *protocols], "method or protocol")
    if chosen in methods:
        from methods.registry import get_method

        cls = get_method(chosen)
        rows = settings_rows(cls.Config())
        how = (
            f"--set KEY=VALUE with --method {chosen} (run, tune, pretrain), or --set {chosen}.KEY=VALUE "
            "on any command"
        )
        title = f"settings of method {chosen}"
    else:
        from bench.protocols.registry import get_protocol

        rows = settings_rows(get_protocol(chosen).Config())
        how = f"--set {chosen}.KEY=VALUE"
        title = f"settings of protocol {chosen}"
    if not rows:
        return f"{title}: none"
    table = [("KEY", "TYPE", "DEFAULT"), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    lines = [f"  {k:<{widths[0]}}  {t:<{widths[1]}}  {d}" for k, t, d in table]
    return "\n".join([f"{title} ({how}):", *lines])


def run_list(args: argparse.Namespace) -> int:
    """Print what ``--method``, ``--backbone`` and ``--data`` accept, and where each comes from."""
    if args.settings:
        print(settings_text(args.settings))
        return 0
    from datasets import list_layouts

    sections = [
        _sourced_section("methods", entries("methods")),
        _sourced_section("protocols", entries("protocols")),
        _sourced_section("backbones", entries("backbones")),
        _section("datasets", list_layouts()),
    ]
    print("\n\n".join(sections))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "list", help="registered methods, protocols, backbones (with their source) and datasets"
    )
    parser.add_argument(
        "--settings",
        metavar="METHOD",
        help="print the settings of METHOD (or a protocol): keys, types, defaults",
    )
    parser.set_defaults(func=run_list)
