"""Content digests of cache entries: a corrupted, truncated or swapped entry is never used.

Every cache (decoded data, pretrained weights, label budgets, features) writes a digest with each
entry, at creation and atomically with it, and checks it when the entry is opened. A digest is the
size plus one sha256 per chunk of every file of the entry, so a big memmap is verified in
parallel chunks and a mismatch names the chunk. Verification runs once per process per entry
(keyed by the file's identity and mtime). An entry that fails is reported in one line naming the
file, moved aside as ``<name>.corrupt-<time>`` and rebuilt by its cache; ``bench cache clean``
removes what was moved aside.

A single-file entry keeps its digest in a sidecar ``<name>.digest``; a folder entry (the decoded
data cache) keeps it in ``<folder>/digest.json``. Both map file names to their digests. A
single-file entry may have companions (small text files beside it, e.g. the weights cache's record
with its health verdict) that the same digest covers: a companion edited by hand, or one copied from
another entry, makes the whole entry corrupt, so a recorded verdict cannot be changed without the
change being seen.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.core.atomic import atomic_path, atomic_write_text
from bench.core.errors import BenchError

CHUNK_BYTES = 64 * 2**20
SIDECAR_SUFFIX = ".digest"
FOLDER_DIGEST = "digest.json"
CORRUPT_TAG = ".corrupt-"
#: A temporary left by atomic writes is stale once nothing in it changed for this long.
STALE_AFTER_S = 15 * 60

_verified: set[tuple[str, int, int, int]] = set()
_moved = itertools.count()


def _chunk_sha256(path: Path, index: int, chunk: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        fh.seek(index * chunk)
        remaining = chunk
        while remaining:
            block = fh.read(min(remaining, 8 * 2**20))
            if not block:
                break
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def _chunk_hashes(path: Path, size: int, chunk: int) -> list[str]:
    """sha256 of each chunk; hashlib releases the GIL, so threads hash a big memmap in parallel."""
    chunks = max(1, -(-size // chunk))
    if chunks == 1:
        return [_chunk_sha256(path, 0, chunk)]
    with ThreadPoolExecutor(max_workers=min(chunks, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda i: _chunk_sha256(path, i, chunk), range(chunks)))


def file_digest(path: Path) -> dict[str, object]:
    """``{"size", "chunk", "sha256": [per chunk]}`` of ``path``."""
    size = path.stat().st_size
    return {"size": size, "chunk": CHUNK_BYTES, "sha256": _chunk_hashes(path, size, CHUNK_BYTES)}


def _problem(path: Path, expected: object) -> str | None:
    """Why ``path`` does not match ``expected`` (a :func:`file_digest`), or None when it does."""
    if not isinstance(expected, dict) or not {"size", "chunk", "sha256"} <= expected.keys():
        return "its digest record is malformed"
    if not path.is_file():
        return "a file of the entry is missing"
    size = path.stat().st_size
    if size != expected["size"]:
        return f"size {size} bytes, {expected['size']} expected (truncated or overwritten)"
    chunk, hashes = int(expected["chunk"]), list(expected["sha256"])
    found = _chunk_hashes(path, size, chunk)
    if found != hashes:
        if len(hashes) == 1:
            return "content differs from its digest (sha256)"
        first = next((i for i, (a, b) in enumerate(zip(found, hashes, strict=False)) if a != b), 0)
        at = f"{first * chunk}-{(first + 1) * chunk}"
        return f"content differs from its digest (sha256 of the chunk at bytes {at})"
    return None


def _identity(path: Path) -> tuple[str, int, int, int]:
    st = path.stat()
    return (str(path), st.st_ino, st.st_size, st.st_mtime_ns)


def sidecar(path: Path) -> Path:
    """The digest file of a single-file entry."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _read_digest(digest_file: Path) -> dict[str, object] | str:
    """The recorded digests, or why they cannot be read."""
    if not digest_file.is_file():
        return "it has no digest (written before digests were kept, or its writer was killed)"
    try:
        recorded = json.loads(digest_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"its digest {digest_file.name} is unreadable ({type(err).__name__})"
    return recorded if isinstance(recorded, dict) else "its digest record is malformed"


def check_files(folder: Path, digest_file: Path, names: Iterable[str] | None = None) -> str | None:
    """Check every file listed in ``digest_file`` (relative to ``folder``); None when all match.

    ``names``: the files the digest must list (a digest copied from another entry lists others); it
    may list more (an entry's companions), and every file it lists is checked.
    """
    recorded = _read_digest(digest_file)
    if isinstance(recorded, str):
        return recorded
    if names is not None and not set(names) <= set(recorded):
        return f"its digest {digest_file.name} is for {sorted(recorded)}, not this entry"
    for name, expected in sorted(recorded.items()):
        path = folder / name
        try:
            if path.is_file() and _identity(path) in _verified:
                continue
            problem = _problem(path, expected)
        except OSError as err:
            problem = f"unreadable ({err.strerror or type(err).__name__})"
        if problem:
            return f"{name}: {problem}"
        _verified.add(_identity(path))
    return None


def check_entry(path: Path, companions: Iterable[str] = ()) -> str | None:
    """Why the single-file entry ``path`` cannot be used, or None when it and its ``companions``
    (file names beside it, written by :func:`atomic_entry`) match its sidecar."""
    if not path.is_file():
        return "missing"
    problem = check_files(path.parent, sidecar(path), [path.name, *companions])
    return problem.removeprefix(f"{path.name}: ") if problem else None


def cover_companions(path: Path, companions: Iterable[str]) -> None:
    """Extend the digest of the single-file entry ``path`` (already verified) to cover
    ``companions`` as they are now: for an entry written before its companions were covered, once
    its caller has confirmed them another way (the weights cache: with the tracking store)."""
    recorded = _read_digest(sidecar(path))
    if isinstance(recorded, str) or path.name not in recorded:
        raise BenchError(f"{path}: {recorded if isinstance(recorded, str) else 'its digest is not for it'}")
    digests = {**recorded, **{name: file_digest(path.with_name(name)) for name in companions}}
    atomic_write_text(sidecar(path), json.dumps(digests))
    for name in companions:
        _verified.add(_identity(path.with_name(name)))


def check_folder(folder: Path) -> str | None:
    """Why the folder entry cannot be used (names the bad file), or None when every file matches."""
    return check_files(folder, folder / FOLDER_DIGEST)


def write_folder_digest(folder: Path, names: Iterable[str]) -> None:
    """Record the digests of ``names`` in ``folder`` (called on the temporary folder before its rename)."""
    digests = {name: file_digest(folder / name) for name in sorted(names)}
    atomic_write_text(folder / FOLDER_DIGEST, json.dumps(digests, indent=1))
    for name in digests:
        _verified.add(_identity(folder / name))


@contextlib.contextmanager
def atomic_entry(target: Path, companions: Mapping[str, str] | None = None) -> Iterator[Path]:
    """Like :func:`bench.core.atomic.atomic_path`, plus the entry's digest, written before the rename.

    ``companions``: ``{file name: text}`` written beside ``target`` (each atomically) before the
    digest, which covers them too (check with ``check_entry(target, companions)``).
    A kill between the writes leaves a digest without its entry, or companions without a digest
    that matches them (rebuilt and overwritten next time), never an entry that passes without one.
    """
    target = Path(target)
    companions = dict(companions or {})
    with atomic_path(target) as tmp:
        yield tmp
        digests = {target.name: file_digest(tmp)}
        for name, text in sorted(companions.items()):
            atomic_write_text(target.with_name(name), text)
            digests[name] = file_digest(target.with_name(name))
        atomic_write_text(sidecar(target), json.dumps(digests))
    for name in [target.name, *companions]:
        _verified.add(_identity(target.with_name(name)))


def _now_tag() -> str:
    """UTC time, pid and a per-process count: two entries moved aside never collide."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}-{next(_moved)}"


def move_aside(
    path: Path, problem: str, what: str = "cache entry", companions: Iterable[str] = ()
) -> Path | None:
    """Report ``path`` in one line and move it (its sidecar and companions) to ``<name>.corrupt-<time>``.

    Returns where it went, or None when another process moved it first. Raises :class:`BenchError`
    when it cannot be moved (a read-only ``BENCH_HOME``): a bad entry must not be used.
    """
    tag = f"{CORRUPT_TAG}{_now_tag()}"
    aside = path.with_name(f"{path.name}{tag}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise BenchError(
            f"{what} {path} is corrupt ({problem}) and cannot be moved aside ({err.strerror}); "
            "delete it or make its folder writable"
        ) from err
    with contextlib.suppress(OSError):
        os.rename(sidecar(path), sidecar(aside))
    for name in companions:
        with contextlib.suppress(OSError):
            os.rename(path.with_name(name), path.with_name(f"{name}{tag}"))
    print(f"warning: {what} {path}: {problem}; moved aside to {aside.name}, rebuilding", file=sys.stderr)
    return aside


def usable_entry(path: Path, what: str = "cache entry", companions: Iterable[str] = ()) -> bool:
    """True when the single-file entry exists and matches its digest (``companions`` included); a
    bad one is moved aside."""
    if not path.exists():
        return False
    companions = tuple(companions)
    problem = check_entry(path, companions)
    if problem is None:
        return True
    move_aside(path, problem, what, companions)
    return False


def usable_folder(folder: Path, what: str = "cache folder") -> bool:
    """True when the folder entry exists and every file matches; a bad one is moved aside."""
    if not folder.exists():
        return False
    problem = check_folder(folder)
    if problem is None:
        return True
    move_aside(folder, problem, what)
    return False


def is_temporary(path: Path) -> bool:
    """Names made by :mod:`bench.core.atomic` (``.<target>.<random>.tmp``)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for inner in path.rglob("*"):
            with contextlib.suppress(OSError):
                newest = max(newest, inner.lstat().st_mtime)
    return newest


def stale_temporaries(
    root: Path, older_than_s: float = STALE_AFTER_S, *, tag: str = "", recursive: bool = True
) -> list[Path]:
    """Temporaries under ``root`` in which nothing changed for ``older_than_s`` (their writer is gone).

    ``tag``: only those whose name starts ``.<tag>`` (one writer's, in a folder others use too);
    ``recursive=False``: only those directly in ``root`` (a user's output folder is not walked).
    """
    if not root.is_dir():
        return []
    now = time.time()
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            with contextlib.suppress(OSError):
                if (
                    is_temporary(path)
                    and name.startswith(f".{tag}")
                    and now - _newest_mtime(path) > older_than_s
                ):
                    found.append(path)
        dirnames[:] = [d for d in dirnames if recursive and not is_temporary(Path(d))]
    return found


def remove(path: Path) -> None:
    """Delete a file or a folder tree (already gone is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale_temporaries(
    root: Path, older_than_s: float = STALE_AFTER_S, *, tag: str = "", recursive: bool = True
) -> list[Path]:
    """Remove stale temporaries under ``root`` (``tag``, ``recursive``: as :func:`stale_temporaries`
    picks them); a read-only tree is left as it is."""
    removed = []
    for path in stale_temporaries(root, older_than_s, tag=tag, recursive=recursive):
        try:
            remove(path)
        except OSError:
            continue
        removed.append(path)
    return removed
