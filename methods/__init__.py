"""Pretraining methods, one module each; every module in this package is registered on import."""

from __future__ import annotations

import importlib
import pkgutil

from methods.registry import PretrainContext, PretrainMethod, get_method, list_methods, register_method

__all__ = ["PretrainContext", "PretrainMethod", "discover", "get_method", "list_methods", "register_method"]

_SKIP = {"registry"}


def discover() -> None:
    """Import every module of this package, so that dropping in a file registers its method."""
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _SKIP and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
