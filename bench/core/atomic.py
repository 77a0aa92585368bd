"""Atomic file writes: a reader never sees a half-written cache, index or result file.

A write that fails (a full disk included) removes its temporary, so nothing half-written is left;
a full disk reported without a file name (torch's zip writer, a buffered ``write``) is re-raised
as ``OSError(ENOSPC)`` naming the target, so the user's one line says where space ran out.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from bench.core.errors import disk_full, enospc, filename_of


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result gets the usual mode
        os.replace(tmp, target)
    except Exception as err:
        if disk_full(err) and filename_of(err) in (None, str(tmp)):
            raise enospc(target, err) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_paths(targets: Mapping[str, Path], tag: str = "") -> Iterator[dict[str, Path]]:
    """Yield a temporary path beside each of ``targets`` (by the same keys); all or nothing: only
    when the block succeeds are they moved into place, in order (put last the file whose presence
    says the set is complete); any failure removes every temporary and every target already moved.

    ``tag`` starts each temporary's name (``.<tag><target>.<random>.tmp``), so a cleaner of a
    folder that is not the harness's own can recognise its writer's leftovers and nothing else.
    """
    temps: dict[str, Path] = {}
    moved: list[Path] = []
    try:
        for key, target in targets.items():
            target = Path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{tag}{target.name}.", suffix=".tmp", dir=target.parent)
            os.close(fd)
            temps[key] = Path(name)
        yield dict(temps)
        for key, target in targets.items():
            os.chmod(temps[key], 0o666 & ~_umask())  # mkstemp makes 0600; the results get the usual mode
            os.replace(temps[key], target)
            moved.append(Path(target))
    except BaseException as err:
        for path in moved:
            path.unlink(missing_ok=True)
        named = filename_of(err)
        if isinstance(err, Exception) and disk_full(err) and named in (None, *map(str, temps.values())):
            at = next((targets[k] for k, t in temps.items() if str(t) == named), None)
            raise enospc(at or Path(next(iter(targets.values()))).parent, err) from err
        raise
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def atomic_write_text(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def atomic_dir(target: Path, marker: str) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; rename it into place if the block succeeds.

    When a concurrent builder got there first (``target/marker`` exists), its folder is kept and
    ours discarded, so readers only ever see one whole folder.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / marker).is_file():
                raise
    except Exception as err:
        named = filename_of(err)
        if disk_full(err) and (named is None or named.startswith(str(tmp))):
            raise enospc(target, err) from err
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
