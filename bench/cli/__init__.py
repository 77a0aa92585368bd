"""``python -m bench <command>``: each command lives in ``bench/cli/<command>.py``.

A command module exposes ``register(subparsers) -> None``, which adds its parser and sets
``func`` (called with the parsed namespace, returns the exit code). Command modules import only
the standard library and ``bench.cli.common`` at the top; torch, mlflow, pandas and matplotlib are
imported inside ``func``, so that ``--help`` and a typo answer at once (tests/bench/test_cli_import.py).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

COMMANDS = (
    "run",
    "sweep",
    "pretrain",
    "export",
    "table",
    "plot",
    "tune",
    "data",
    "list",
    "perf",
    "doctor",
    "cache",
    "verify",
)


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every command module's subparser."""
    parser = argparse.ArgumentParser(
        # the installed console script is `bench`; `python -m bench` runs from a checkout
        prog="bench" if Path(sys.argv[0]).name == "bench" else "python -m bench",
        description="Compare pretraining strategies for S1+S2 land cover under one backbone and protocol.",
    )
    parser.add_argument(
        "--no-progress",
        dest="global_progress",
        action="store_false",
        help="no progress bars or progress lines in any command",
    )
    plugin_help = "import MODULE first: its methods, protocols and backbones register (repeatable)"
    parser.add_argument(
        "--plugin", dest="global_plugins", action="append", default=[], metavar="MODULE", help=plugin_help
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"bench.cli.{name}").register(sub)
    for command in sub.choices.values():  # `bench run --plugin m` as well as `bench --plugin m run`
        command.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE", help=plugin_help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; a user error prints one line and exits 2."""
    from bench.core.errors import BenchError
    from bench.core.progress import set_enabled

    args = build_parser().parse_args(argv)
    set_enabled(args.global_progress)
    # MLflow's INFO lines ("Creating initial MLflow database tables...") say nothing a user acts on
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # MLflow logs every database error with its traceback before raising it; the raised error
    # reaches the handlers below (one line for a full disk), so the log would only repeat it
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    try:
        from bench.cli.startup import check_environment, request_plugins, resolve_methods

        check_environment()  # before anything imports `datasets` or `methods`
        request_plugins(args)
        resolve_methods(args)
        return int(args.func(args) or 0)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        store_line = _unwritable_store(err)
        if store_line is not None:
            print(f"error: {store_line}", file=sys.stderr)
            return 2
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            line = _resource_line(err)
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            return 2
        from bench.core.paths import bench_home

        print(
            f"error: cannot write {err.filename or 'a file'} ({err.strerror}); BENCH_HOME={bench_home()} "
            "must be writable unless every cache this command needs is already there",
            file=sys.stderr,
        )
        return 2
    except Exception as err:  # out of memory, a full disk wrapped by torch or MLflow, a symlink loop
        line = _unwritable_store(err) or _resource_line(err)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: completed work is kept; re-run the same command to resume", file=sys.stderr)
        return 130


def _resource_line(err: BaseException) -> str | None:
    """The one line for a machine-level failure (disk, memory, open files, symlink loop), else None."""
    from bench.core.errors import resource_problem

    try:
        from bench.core.paths import bench_home

        home = bench_home()
    except (OSError, RuntimeError):  # BENCH_HOME itself may be the loop
        home = None
    store = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{os.path.join(os.getcwd(), 'mlflow.db')}"
    return resource_problem(err, home=home, store=store)


def _tracking_store() -> tuple[str, Path | None, bool]:
    """(tracking URI, its local path or None for a server, whether that path is a sqlite file), as
    ``bench.harness.tracking`` resolves it."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{os.path.join(os.getcwd(), 'mlflow.db')}"
    if uri.startswith("sqlite:///"):
        return uri, Path(uri.removeprefix("sqlite:///")), True
    if uri.startswith("file:"):
        return uri, Path(uri.removeprefix("file:").removeprefix("//")), False
    if "://" not in uri:
        return uri, Path(uri), False
    return uri, None, False


def _in_store(filename: str, path: Path, sqlite: bool) -> bool:
    """Whether a refused ``filename`` is the store's: the sqlite file, its journal, lock or folder
    (not another file beside it, e.g. a ``BENCH_HOME`` in the same directory), or a file-store file."""
    where = Path(filename).resolve()
    path = path.resolve()
    if sqlite:
        return where == path.parent or (where.parent == path.parent and where.name.startswith(path.name))
    return where == path or path in where.parents


def _unwritable_store(err: BaseException) -> str | None:
    """One line naming the MLflow store when it is what refused a write (not ``BENCH_HOME``): a
    permission error on the store's files, or sqlite's "attempt to write a readonly database"."""
    uri, path, sqlite = _tracking_store()
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        text = str(cause)
        readonly = "readonly database" in text
        denied = isinstance(cause, OSError) and cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
        filename = getattr(cause, "filename", None)
        if denied and path is not None and filename:
            readonly = readonly or _in_store(str(filename), path, sqlite)
        if readonly:
            first = text.splitlines()[0][:160] if text else ""
            return (
                f"the MLflow store {uri} is not writable ({type(cause).__name__}: {first}); "
                "make it writable, or point MLFLOW_TRACKING_URI at a store you can write"
            )
        cause = cause.__cause__ or cause.__context__
    return None
