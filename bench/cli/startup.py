"""What ``bench.cli.main`` checks after parsing and before a command imports anything heavy.

- The environment: ``datasets`` and ``methods`` must be this harness's packages. Hugging Face's
  ``datasets`` is common in this field's environments; when it comes first on ``sys.path`` every
  command would die with that package's error, far from the cause.
- Plugins named by ``--plugin`` (before or after the command) are requested (bench.core.plugins).
- Method and protocol names: ``--method``/``--methods``/``--protocol`` are matched against the
  registered names (read from source, no torch; plugins' too) in any case, or refused in one line
  naming the closest ones: a typo must not cost the 15 s of importing torch, timm and lightly
  before a traceback.
- ``--set METHOD.key=value`` with ``--method METHOD`` means ``method.key=value`` on every command
  (``sweep`` scopes such pairs itself, see ``bench.harness.runner.scope_overrides``).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from bench.core.errors import BenchError

#: Top-level packages of this harness that share their name with packages elsewhere.
OWN_PACKAGES = ("datasets", "methods")


def check_environment() -> None:
    """Refuse to run when ``datasets`` or ``methods`` resolves to another package (one line)."""
    import bench

    home = Path(bench.__file__).resolve().parent.parent  # the folder that holds bench/, methods/, ...
    for name in OWN_PACKAGES:
        module = sys.modules.get(name)
        if module is not None:
            found = getattr(module, "__file__", None)
        else:
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                spec = None
            found = spec.origin if spec is not None else None
        expected = home / name / "__init__.py"
        if found is not None and Path(found).resolve() == expected:
            continue
        if found is None:
            raise BenchError(
                f"the harness's package {name!r} is not importable (expected {expected}); "
                f"reinstall the harness (pip install -e {home}) or run from {home}"
            )
        where = Path(found).resolve()
        raise BenchError(
            f"`import {name}` finds {where}, another package than this harness's {expected}: it comes "
            f"earlier on sys.path; run from {home}, put {home} first on PYTHONPATH, or use an environment "
            f"without that package (pip uninstall {name} if it is Hugging Face's)"
        )


def request_plugins(args: argparse.Namespace) -> None:
    """``--plugin`` modules (global and per command) go to bench.core.plugins."""
    from bench.core import plugins

    modules = [*(getattr(args, "global_plugins", None) or []), *(getattr(args, "plugins", None) or [])]
    if modules:
        plugins.request(modules, how="--plugin")


def resolve_methods(args: argparse.Namespace) -> None:
    """Match ``--method``/``--methods`` to registered names (any case) or fail in one line, and read
    ``--set METHOD.key`` as ``method.key`` for a single-method command."""
    from bench.cli.list import method_names, protocol_names
    from bench.core.names import match_name

    protocol = getattr(args, "protocol", None)
    registered = getattr(args, "protocol_from_registry", False)  # add_protocol_arg's (not verify's filter)
    if registered and isinstance(protocol, str) and protocol != "both":  # any registered, a plugin's too
        args.protocol = match_name(protocol, protocol_names(), "protocol")
    method = getattr(args, "method", None)
    methods = getattr(args, "methods", None)
    if not isinstance(method, str) and not methods:
        return
    known = method_names()
    if isinstance(method, str):
        args.method = method = match_name(method, known)
    if methods:
        args.methods = [match_name(m, known) for m in methods]
    overrides = getattr(args, "overrides", None)
    if isinstance(method, str) and overrides:
        protocols = set(protocol_names())
        scoped = []
        for pair in overrides:
            key, sep, value = pair.partition("=")
            head, dot, rest = key.partition(".")
            if sep and dot and head not in protocols and head.casefold() == method.casefold():
                pair = f"method.{rest}={value}"
            scoped.append(pair)
        args.overrides = scoped
