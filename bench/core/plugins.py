"""Plugins: methods, protocols and backbones from outside this repository (DESIGN 4, end).

Three ways in, all importing a module whose decorators (``@register_method``, ``@register_protocol``,
``@register_backbone``) register what it defines:

- the entry-point groups ``bench.methods``, ``bench.protocols``, ``bench.backbones`` of any installed
  distribution (``[project.entry-points."bench.methods"] mymethod = "mypkg.mymethod"``); an entry
  point may also name the object itself (``"mypkg.mymethod:MyMethod"``), which the registry adopts
  under the entry point's name when no decorator registered it;
- ``python -m bench --plugin mypkg.mymethod ...`` (or ``--plugin`` after the command);
- ``BENCH_PLUGINS=mypkg.a,mypkg.b``, which child processes (executors, torchrun) inherit: ``--plugin``
  adds its modules there too, so a Ray task or a SLURM job sees the same registries as its driver.

Entry points are loaded by kind, the first time a registry is asked (``methods.discover()``,
``bench.protocols.registry.discover()``, ``bench.models.base.list_backbones()``); named modules
are loaded with every kind, since one module may register a method and a backbone. Nothing is
imported at start-up, so ``bench list`` stays torch-free when no plugin is installed.

A plugin that fails to import is a :class:`BenchError` naming it and where it came from: silently
dropping a method would make a sweep quietly smaller. The kernel imports no registry; each registry
passes ``adopt`` to register an entry point's object.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.core.errors import BenchError

#: kind -> entry-point group.
GROUPS = {"methods": "bench.methods", "protocols": "bench.protocols", "backbones": "bench.backbones"}
ENV = "BENCH_PLUGINS"


@dataclass(frozen=True)
class Plugin:
    """One plugin module and how it was asked for (shown by ``bench list``)."""

    module: str
    how: str  # "--plugin", "BENCH_PLUGINS", or "entry point NAME of DIST VERSION"
    distribution: str | None = None
    version: str | None = None

    def describe(self) -> str:
        return f"{self.how} ({self.module})" if self.how in ("--plugin", ENV) else self.how


_requested: dict[str, str] = {}  # module -> "--plugin" (from the command line)
_loaded: dict[str, Plugin] = {}  # module -> how it came
_done_kinds: set[str] = set()


def request(modules: list[str], how: str = "--plugin") -> None:
    """Modules named on the command line; also exported in ``BENCH_PLUGINS`` for child processes.

    A module that cannot be found is refused here, in one line, before any registry imports torch.
    """
    env = _env_modules()
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise BenchError(
                f"plugin {module!r} ({how}) is not importable: no such module on sys.path; install its "
                "package or add its folder to PYTHONPATH"
            )
        _requested.setdefault(module, how)
        if module not in env:
            env.append(module)
    if env:
        os.environ[ENV] = ",".join(env)
    _done_kinds.clear()


def _env_modules() -> list[str]:
    return [m.strip() for m in os.environ.get(ENV, "").split(",") if m.strip()]


def named_modules() -> dict[str, str]:
    """``{module: how}`` of ``--plugin`` and ``BENCH_PLUGINS`` modules, in the order given."""
    named = dict(_requested)
    for module in _env_modules():
        named.setdefault(module, ENV)
    return named


def entry_points(kind: str) -> list[importlib.metadata.EntryPoint]:
    """The installed entry points of ``kind``'s group (read from metadata, nothing imported)."""
    return sorted(importlib.metadata.entry_points(group=GROUPS[kind]), key=lambda ep: ep.name)


def any_plugins() -> bool:
    """Whether any plugin could register something (so a listing must import the registries)."""
    return bool(named_modules()) or any(entry_points(kind) for kind in GROUPS)


def _import(module: str, how: str) -> Any:
    try:
        return importlib.import_module(module)
    except BenchError:
        raise
    except Exception as err:
        raise BenchError(
            f"plugin {module!r} ({how}) does not import: {type(err).__name__}: {err}; "
            f"check the module path{' and its installation' if how.startswith('entry') else ''}"
        ) from err


def load_plugins(kind: str, adopt: Callable[[str, Any], None] | None = None) -> None:
    """Import the plugins that may register a ``kind`` (once per process and kind).

    ``adopt(name, obj)`` is called with each entry point's loaded object (a module or the object it
    names); the registry registers the object under ``name`` when its decorator did not.
    """
    if kind in _done_kinds:
        return
    _done_kinds.add(kind)  # before importing: a plugin may ask the registry while it loads
    for module, how in named_modules().items():
        if module not in _loaded:
            _loaded[module] = Plugin(module, how, *_distribution_of(module))
            _import(module, how)
    for ep in entry_points(kind):
        how, dist_name, version = _how(ep)
        _loaded.setdefault(ep.module, Plugin(ep.module, how, dist_name, version))
        _import(ep.module, how)
        try:
            obj = ep.load()
        except Exception as err:
            raise BenchError(
                f"plugin {ep.value!r} ({how}) does not load: {type(err).__name__}: {err}"
            ) from err
        if adopt is not None:
            adopt(ep.name, obj)


def _how(ep: importlib.metadata.EntryPoint) -> tuple[str, str | None, str | None]:
    """("entry point NAME of DIST VERSION", dist, version) of an entry point."""
    dist = getattr(ep, "dist", None)
    dist_name = dist.metadata["Name"] if dist is not None else None
    version = dist.version if dist is not None else None
    how = f"entry point {ep.name!r} of {dist_name or 'an installed package'}" + (
        f" {version}" if version else ""
    )
    return how, dist_name, version


def entry_point_source(kind: str, name: str, module: str) -> str | None:
    """How registration ``name`` of ``kind`` came, when an entry point of that name and module did."""
    for ep in entry_points(kind):
        if ep.name == name and (ep.module == module or module.startswith(ep.module + ".")):
            return _how(ep)[0]
    return None


def origin(module: str) -> Plugin | None:
    """The plugin that brought ``module`` (itself or a package above it), None for this repository's."""
    best = None
    for name, plugin in _loaded.items():
        if (module == name or module.startswith(name + ".")) and (
            best is None or len(name) > len(best.module)
        ):
            best = plugin
    if best is None:  # a module a plugin package imported: same top-level package
        top = module.partition(".")[0]
        best = next((p for n, p in _loaded.items() if n.partition(".")[0] == top), None)
    return best


def _distribution_of(module: str) -> tuple[str | None, str | None]:
    """(distribution, version) that installed ``module``'s top-level package, when one did."""
    top = module.partition(".")[0]
    try:
        names = importlib.metadata.packages_distributions().get(top, [])
        if names:
            return names[0], importlib.metadata.version(names[0])
    except Exception:  # broken metadata of some unrelated package: the module is still usable
        pass
    return None, None


def distribution_of(module: str) -> tuple[str | None, str | None]:
    """(distribution, version) of a plugin module: from its entry point, else from the metadata."""
    plugin = origin(module)
    if plugin is not None and plugin.distribution:
        return plugin.distribution, plugin.version
    return _distribution_of(module)


def reset() -> None:
    """Forget what was requested and loaded (tests; the modules stay imported)."""
    _requested.clear()
    _loaded.clear()
    _done_kinds.clear()


def loaded() -> dict[str, Plugin]:
    return dict(_loaded)


__all__ = [
    "ENV",
    "GROUPS",
    "Plugin",
    "any_plugins",
    "distribution_of",
    "entry_point_source",
    "entry_points",
    "load_plugins",
    "loaded",
    "named_modules",
    "origin",
    "request",
    "reset",
]
