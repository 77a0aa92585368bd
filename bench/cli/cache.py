"""``python -m bench cache verify|clean``: check every cache entry's digest; remove what is left over.

``verify`` re-hashes every entry of ``BENCH_HOME`` (decoded data, weights, budgets, features) against
the digest written with it and prints one line per bad entry (``--fix`` moves them aside, so the
next command rebuilds them). ``clean`` removes what killed or failed commands left behind:
temporaries nothing wrote to for a while, entries moved aside as corrupt, and orphaned digests,
lock files and records whose entry is gone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: Where each cache keeps its entries under ``BENCH_HOME``: (kind, folder, pattern, folder entries).
CACHE_KINDS: tuple[tuple[str, str, str, bool], ...] = (
    ("decoded data", "cache", "*", True),
    ("pretrained weights", "weights", "*.pt", False),
    ("label budget", "budgets", "*.npz", False),
    ("feature cache", "features", "*.npy", False),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="verify cache entries against their digests; clean leftovers")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", help="re-hash every cache entry; one line per bad one (exit 1)")
    verify.add_argument("--fix", action="store_true", help="move bad entries aside so they are rebuilt")
    verify.set_defaults(func=run_verify)
    clean = actions.add_parser(
        "clean", help="remove stale temporaries, entries moved aside as corrupt, and orphaned files"
    )
    clean.add_argument(
        "--older-than",
        type=float,
        default=15.0,
        metavar="MINUTES",
        help="a temporary is stale when nothing in it changed for this long (default 15)",
    )
    clean.set_defaults(func=run_clean)


def entries(home: Path) -> list[tuple[str, Path, bool]]:
    """Every cache entry under ``home``: (kind, path, is a folder); temporaries and corrupt ones left out."""
    from bench.core.integrity import CORRUPT_TAG, is_temporary

    found = []
    for kind, folder, pattern, is_folder in CACHE_KINDS:
        for path in sorted((home / folder).glob(pattern)):
            if is_temporary(path) or CORRUPT_TAG in path.name or path.is_dir() != is_folder:
                continue
            found.append((kind, path, is_folder))
    return found


def _budget_ident_problem(path: Path) -> str | None:
    """A budget index must hold the draw its name's key was made for (a renamed file does not)."""
    import json

    import numpy as np

    from bench.core.provenance import stable_hash

    key = path.stem.rpartition("-")[2]
    try:
        with np.load(path) as z:
            stored = json.loads(str(z["ident"]))
    except Exception as err:
        return f"unreadable ({type(err).__name__})"
    return None if stable_hash(stored) == key else "drawn for another budget (its stored ident differs)"


def run_verify(args: argparse.Namespace) -> int:
    from bench.cli.common import check_bench_home
    from bench.core.integrity import check_entry, check_folder, move_aside

    home = check_bench_home()
    bad = 0
    counts: dict[str, int] = {}
    for kind, path, is_folder in entries(home):
        counts[kind] = counts.get(kind, 0) + 1
        problem = check_folder(path) if is_folder else check_entry(path)
        if problem is None and kind == "label budget":
            problem = _budget_ident_problem(path)
        if problem is None:
            continue
        bad += 1
        if args.fix:
            move_aside(path, problem, kind)
        else:
            print(f"bad {kind} {path}: {problem}")
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "no entries"
    print(f"checked {summary} under {home}: {bad} bad" + (" (moved aside)" if bad and args.fix else ""))
    return 1 if bad and not args.fix else 0


def _is_orphan(path: Path) -> bool:
    """Moved aside as corrupt, or a digest, weights record or free lock file whose entry is gone."""
    from filelock import FileLock, Timeout

    from bench.core.integrity import CORRUPT_TAG, SIDECAR_SUFFIX

    if CORRUPT_TAG in path.name:
        return True
    entry = path.with_suffix(".pt") if path.suffix == ".json" else path.with_suffix("")
    if path.suffix not in (SIDECAR_SUFFIX, ".json", ".lock") or entry.exists():
        return False
    if path.suffix == ".lock":
        try:
            with FileLock(str(path), timeout=0):
                return True
        except Timeout:  # held: its entry is being built right now
            return False
    return True


def _orphans(home: Path) -> list[Path]:
    """Left-overs in the single-file caches, plus data cache folders moved aside as corrupt."""
    from bench.core.integrity import CORRUPT_TAG

    found = [
        path for folder in ("weights", "budgets", "features") for path in sorted((home / folder).glob("*"))
    ]
    return [p for p in found if _is_orphan(p)] + sorted((home / "cache").glob(f"*{CORRUPT_TAG}*"))


def run_clean(args: argparse.Namespace) -> int:
    from bench.cli.common import check_bench_home
    from bench.core.integrity import remove, stale_temporaries

    home = check_bench_home()
    stale = stale_temporaries(home, args.older_than * 60)
    orphans = _orphans(home)
    freed = 0
    for path in [*stale, *orphans]:
        inside = [path, *path.rglob("*")] if path.is_dir() else [path]
        freed += sum(p.stat().st_size for p in inside if p.is_file())
        remove(path)
    print(
        f"removed {len(stale)} stale temporaries and {len(orphans)} corrupt or orphaned files "
        f"under {home} ({freed / 2**20:.1f} MiB)"
    )
    return 0
