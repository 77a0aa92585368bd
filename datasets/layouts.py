"""Where the files of each split are: detection and listing of the supported on-disk layouts.

Discovery only lists files and pairs the modalities of each patch; a patch whose s1/s2/dfc partner
is missing becomes a :class:`BadFile` naming the missing file, so that the caller decides (raise or
skip) in one place for every kind of problem.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import DataError

LAYOUTS: dict[str, str] = {
    "dfc2020": "DFC2020 as released: ROIs0000_validation/{s1,s2,dfc}_validation, ROIs0000_test/{s1,s2,dfc}_0",
    "copernicus": "Copernicus-Bench flat DFC2020: dfc2020_s1s2/{s1,s2,dfc}/ + dfc-{train,val,test}-new.csv",
    "sen12ms": "SEN12MS (unlabelled pretraining pool): ROIs1158_spring/s1_<scene>/..._s1_<scene>_p<k>.tif",
    "synthetic": "the embedded default: a generated DFC2020-like set in the dfc2020 layout (data synth)",
}

_NAME = re.compile(r"^(?P<prefix>.+?)_(?P<mod>s1|s2|dfc|lc)_(?P<rest>.+)\.tif$")
_SEASON = re.compile(r"^ROIs\d{4}_[a-z]+$")
_COPERNICUS_DIR = "dfc2020_s1s2"
_COPERNICUS_SPLITS = {"labelled": ("train", "val"), "test": ("test",)}


@dataclass(frozen=True)
class PatchFiles:
    """The files of one patch; ``dfc`` is None in an unlabelled pool."""

    patch_id: str
    s1: Path
    s2: Path
    dfc: Path | None


@dataclass(frozen=True)
class BadFile:
    """A file that cannot be used, and why (the message names the file)."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class SplitSources:
    """The patches of one split, in natural order, plus the problems found while pairing files."""

    name: str
    patches: tuple[PatchFiles, ...]
    bad: tuple[BadFile, ...]


def _natural_key(text: str) -> tuple[object, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def parse_name(path: Path) -> tuple[str, str, str] | None:
    """``ROIs0000_test_s1_0_p7.tif`` -> ("ROIs0000_test", "s1", "0_p7"); None for other names."""
    m = _NAME.match(path.name)
    return (m["prefix"], m["mod"], m["rest"]) if m else None


def detect_layout(root: Path) -> str:
    """Name of the layout found at ``root`` (a key of :data:`LAYOUTS`, never ``synthetic``)."""
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder does not exist")
    if (root / "ROIs0000_validation").is_dir() or (root / "ROIs0000_test").is_dir():
        return "dfc2020"
    if (root / _COPERNICUS_DIR).is_dir() or root.name == _COPERNICUS_DIR:
        return "copernicus"
    if _SEASON.match(root.name) or any(_SEASON.match(p.name) for p in root.iterdir() if p.is_dir()):
        return "sen12ms"
    raise DataError(
        f"{root}: no known dataset layout (expected ROIs0000_validation/ROIs0000_test, "
        f"{_COPERNICUS_DIR}/, or SEN12MS ROIs<nnnn>_<season>/ folders)"
    )


def _pair(
    name: str,
    ids: Iterable[tuple[str, str]],
    path_of: Callable[[str, str, str], Path],
    modalities: tuple[str, ...],
) -> SplitSources:
    """Pair the modalities of every (prefix, rest) id; a missing file becomes a BadFile."""
    patches: list[PatchFiles] = []
    bad: list[BadFile] = []
    for prefix, rest in sorted(set(ids), key=lambda pr: _natural_key(f"{pr[0]}_{pr[1]}")):
        paths = {mod: path_of(mod, prefix, rest) for mod in modalities}
        missing = [mod for mod, p in paths.items() if not p.is_file()]
        if missing:
            present = [str(p) for mod, p in paths.items() if mod not in missing]
            partner = f" (partner of {present[0]})" if present else ""
            bad.extend(BadFile(paths[mod], f"missing {mod} file{partner}") for mod in missing)
            continue
        patches.append(PatchFiles(f"{prefix}_{rest}", paths["s1"], paths["s2"], paths.get("dfc")))
    return SplitSources(name, tuple(patches), tuple(bad))


def _ids_in(folders: Iterable[Path]) -> list[tuple[str, str]]:
    ids = []
    for folder in folders:
        for path in folder.glob("*.tif"):
            parsed = parse_name(path)
            if parsed:
                ids.append((parsed[0], parsed[2]))
    return ids


def _released_split(root: Path, name: str, folder: str, suffix: str) -> SplitSources:
    split_dir = root / folder
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: missing split folder of the DFC2020 layout")
    mods = ("s1", "s2", "dfc")
    ids = _ids_in(split_dir / f"{mod}_{suffix}" for mod in mods)
    return _pair(
        name,
        ids,
        lambda mod, prefix, rest: split_dir / f"{mod}_{suffix}" / f"{prefix}_{mod}_{rest}.tif",
        mods,
    )


def _copernicus_dir(root: Path) -> Path:
    return root if root.name == _COPERNICUS_DIR else root / _COPERNICUS_DIR


def _copernicus_split(root: Path, name: str) -> SplitSources:
    base = _copernicus_dir(root)
    ids: list[tuple[str, str]] = []
    for csv_split in _COPERNICUS_SPLITS[name]:
        listing = base / f"dfc-{csv_split}-new.csv"
        if not listing.is_file():
            raise DataError(f"{listing}: missing split list of the Copernicus-Bench layout")
        with listing.open(newline="") as fh:
            for row in csv.reader(fh):
                parsed = parse_name(Path(row[0].strip())) if row else None
                if parsed:
                    ids.append((parsed[0], parsed[2]))
    mods = ("s1", "s2", "dfc")
    return _pair(name, ids, lambda mod, prefix, rest: base / mod / f"{prefix}_{mod}_{rest}.tif", mods)


def labelled_sources(root: Path, layout: str) -> dict[str, SplitSources]:
    """The labelled pool and the test split of a DFC2020-like dataset."""
    if layout == "dfc2020":
        return {
            "labelled": _released_split(root, "labelled", "ROIs0000_validation", "validation"),
            "test": _released_split(root, "test", "ROIs0000_test", "0"),
        }
    if layout == "copernicus":
        return {name: _copernicus_split(root, name) for name in _COPERNICUS_SPLITS}
    raise DataError(f"{root}: a {layout} folder has no DFC2020 labelled/test splits")


def sen12ms_sources(root: Path) -> SplitSources:
    """Every s1/s2 pair under a SEN12MS season folder (or a folder of season folders)."""
    seasons = (
        [root] if _SEASON.match(root.name) else sorted(p for p in root.iterdir() if _SEASON.match(p.name))
    )
    ids: list[tuple[str, str]] = []
    for season in seasons:
        ids += _ids_in(p for p in season.iterdir() if p.is_dir() and p.name.startswith(("s1_", "s2_")))
    base = root if _SEASON.match(root.name) else None

    def path_of(mod: str, prefix: str, rest: str) -> Path:
        season_dir = base or root / prefix
        return season_dir / f"{mod}_{rest.split('_p')[0]}" / f"{prefix}_{mod}_{rest}.tif"

    return _pair("pretrain", ids, path_of, ("s1", "s2"))
