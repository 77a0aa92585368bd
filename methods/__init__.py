"""Pretraining methods, one module each; every module in this package is registered on import,
and so is every plugin method (:mod:`bench.core.plugins`)."""

from __future__ import annotations

import importlib
import pkgutil

from bench.core.plugins import load_plugins
from methods.registry import (
    PretrainContext,
    PretrainMethod,
    adopt_plugin,
    get_method,
    list_methods,
    register_method,
)

__all__ = ["PretrainContext", "PretrainMethod", "discover", "get_method", "list_methods", "register_method"]

_SKIP = {"registry"}


def discover() -> None:
    """Import every module of this package, so that dropping in a file registers its method; then
    the plugins (``bench.methods`` entry points, ``--plugin``, ``BENCH_PLUGINS``: bench.core.plugins)."""
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _SKIP and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    load_plugins("methods", adopt=adopt_plugin)
