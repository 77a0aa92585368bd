"""Where the files of each split are: the supported on-disk layouts, one registered class each.

A layout is a class with its facts as class attributes (folders, file-name patterns, the raster
specs of its modalities, the release's patch counts) and three class methods: ``detect(root)``,
``splits(root, scheme)`` (the labelled pool and the test split) and ``pool(root)`` (an unlabelled
pretraining pool). ``@register_layout("name")`` makes it known to :func:`detect_layout`, to
``load_dataset`` and to ``bench list``, so a new layout is one class and no other edit.

Discovery only lists files and pairs the modalities of each patch; a patch whose s1/s2/dfc partner
is missing becomes a :class:`BadFile` naming the missing file, so that the caller decides (raise or
skip) in one place for every kind of problem.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

from bench.core.errors import DataError

#: The seed's protocol, whatever a copy's own split lists say (DESIGN 2.4).
DEFAULT_SPLIT_SCHEME = "seed"

_NAME = re.compile(r"^(?P<prefix>.+?)_(?P<mod>s1|s2|dfc|lc)_(?P<rest>.+)\.tif$")


@dataclass(frozen=True)
class RasterSpec:
    """What a modality's file must contain."""

    bands: int
    kinds: str  # accepted numpy dtype kinds: "f" float, "u" unsigned, "i" signed
    dtype_hint: str


@dataclass(frozen=True)
class PatchFiles:
    """The files of one patch; ``dfc`` is its label file: DFC ids in DFC2020; in a SEN12MS pool its
    MODIS ``lc`` (read through the IGBP lookup, ``datasets.loader.IGBPAsDFC``), or None without one."""

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


#: The band formats of DFC2020 and SEN12MS (DESIGN 2.1); float S1 and any integer labels are accepted,
#: as the archives that repackage DFC2020 store them (torchgeo's fixtures: float64 S1, int32 labels).
DFC2020_RASTERS: dict[str, RasterSpec] = {
    "s1": RasterSpec(2, "f", "float32 dB (VV, VH)"),
    "s2": RasterSpec(13, "u", "uint16 L1C DN (B1..B12 with B8A)"),
    "dfc": RasterSpec(1, "ui", "integer DFC class ids"),
}


@dataclass(frozen=True)
class SplitSources:
    """The patches of one split, in natural order, the problems found while pairing files, and
    the raster specs their files must meet (the layout's)."""

    name: str
    patches: tuple[PatchFiles, ...]
    bad: tuple[BadFile, ...]
    rasters: dict[str, RasterSpec] = field(default_factory=lambda: DFC2020_RASTERS)


def _natural_key(text: str) -> tuple[object, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def parse_name(path: Path) -> tuple[str, str, str] | None:
    """``ROIs0000_test_s1_0_p7.tif`` -> ("ROIs0000_test", "s1", "0_p7"); None for other names."""
    m = _NAME.match(path.name)
    return (m["prefix"], m["mod"], m["rest"]) if m else None


def pair_patches(
    name: str,
    ids: Iterable[tuple[str, str]],
    path_of: Callable[[str, str, str], Path],
    modalities: tuple[str, ...],
    rasters: dict[str, RasterSpec],
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
    return SplitSources(name, tuple(patches), tuple(bad), rasters)


def patch_ids_in(folders: Iterable[Path]) -> list[tuple[str, str]]:
    ids = []
    for folder in folders:
        for path in folder.glob("*.tif"):
            parsed = parse_name(path)
            if parsed:
                ids.append((parsed[0], parsed[2]))
    return ids


class Layout:
    """Base class of every layout; subclasses set the facts and override what they support."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: Modalities paired into one patch (the label modality last).
    modalities: ClassVar[tuple[str, ...]] = ("s1", "s2", "dfc")
    rasters: ClassVar[dict[str, RasterSpec]] = DFC2020_RASTERS
    #: Ways this layout can split into labelled pool and test (``--split-scheme``); empty: no splits.
    schemes: ClassVar[tuple[str, ...]] = ()
    #: Patches per split of the full release and their size, for ``bench data check``; empty: unknown.
    release_patches: ClassVar[dict[str, int]] = {}
    patch_size: ClassVar[int | None] = None

    @classmethod
    def detect(cls, root: Path) -> bool:
        """Whether ``root`` (an existing folder) is in this layout."""
        raise NotImplementedError

    @classmethod
    def splits(cls, root: Path, scheme: str = DEFAULT_SPLIT_SCHEME) -> dict[str, SplitSources]:
        """The ``labelled`` pool and the ``test`` split under ``scheme``."""
        if not cls.schemes:
            raise DataError(f"{root}: a {cls.name} folder has no DFC2020 labelled/test splits")
        if scheme not in cls.schemes:
            raise DataError(
                f"{root}: split scheme {scheme!r} does not apply to the {cls.name} layout "
                f"(it has: {', '.join(cls.schemes)})"
            )
        return cls.list_splits(root, scheme)

    @classmethod
    def list_splits(cls, root: Path, scheme: str) -> dict[str, SplitSources]:
        """What :meth:`splits` returns once ``scheme`` is known to be one of :attr:`schemes`."""
        raise NotImplementedError

    @classmethod
    def pool(cls, root: Path) -> SplitSources:
        """Every unlabelled patch, for pretraining (``dfc`` None)."""
        raise DataError(f"{root}: a pretraining pool must be a SEN12MS folder, found the {cls.name} layout")

    @classmethod
    def default_pool(cls, root: Path) -> Path | None:
        """The SEN12MS pretraining pool that comes with a dataset in this layout, or None (then the
        user's ``--pretrain-data``, else the labelled pool's inputs, DESIGN 2.4)."""
        return None

    @classmethod
    def pool_identity(cls, root: Path) -> str | None:
        """Text that determines the content of :meth:`default_pool` (cheap: no decoding), or None;
        it enters result keys, as the pool's decoded content enters the weights key."""
        return None


_LAYOUTS: dict[str, type[Layout]] = {}

L = TypeVar("L", bound=type[Layout])


def register_layout(name: str) -> Callable[[L], L]:
    """Class decorator: make a :class:`Layout` known to detection, ``load_dataset`` and ``bench list``."""

    def wrap(cls: L) -> L:
        if name in _LAYOUTS and _LAYOUTS[name] is not cls:
            raise ValueError(f"layout {name!r} is already registered by {_LAYOUTS[name].__module__}")
        cls.name = name
        _LAYOUTS[name] = cls
        return cls

    return wrap


def get_layout(name: str) -> type[Layout]:
    """The registered layout class for ``name``."""
    if name not in _LAYOUTS:
        raise DataError(f"unknown dataset layout {name!r}; known: {', '.join(sorted(_LAYOUTS))}")
    return _LAYOUTS[name]


def list_layouts() -> dict[str, str]:
    """Registered layouts with one-line descriptions (for ``bench list``)."""
    return {name: cls.description for name, cls in _LAYOUTS.items()}


def detect_layout(root: Path) -> type[Layout]:
    """The layout found at ``root``: the most specific of those that recognise it.

    A layout that refines another (the synthetic set is the released layout plus a marker file)
    wins over its base; two unrelated layouts recognising one folder is an error, not a guess.
    """
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder does not exist")
    found = [cls for cls in _LAYOUTS.values() if cls.detect(root)]
    found = [cls for cls in found if not any(other is not cls and issubclass(other, cls) for other in found)]
    if len(found) == 1:
        return found[0]
    if found:
        raise DataError(f"{root}: matches several dataset layouts ({', '.join(c.name for c in found)})")
    expected = "; ".join(f"{cls.name}: {cls.description}" for cls in _LAYOUTS.values())
    raise DataError(f"{root}: no known dataset layout (expected {expected})")


class DFC2020Files(Layout):
    """What every copy of DFC2020 shares, whatever its folders: patch names, band formats, counts."""

    schemes: ClassVar[tuple[str, ...]] = (DEFAULT_SPLIT_SCHEME,)
    #: Split -> the file-name prefix of its patches (``ROIs0000_test_s1_0_p7.tif``): the seed's split.
    split_prefixes: ClassVar[dict[str, str]] = {"labelled": "ROIs0000_validation", "test": "ROIs0000_test"}
    #: A patch's file: ``rest`` is ``0_p<index>`` (:func:`parse_name` reads it back).
    file_name: ClassVar[str] = "{prefix}_{mod}_{rest}.tif"
    release_patches: ClassVar[dict[str, int]] = {"labelled": 986, "test": 5128}
    patch_size = 256


@register_layout("dfc2020")
class ReleasedDFC2020(DFC2020Files):
    """The folders of the contest's release; the folders are the split (the seed's protocol)."""

    description = (
        "DFC2020 as released: ROIs0000_validation/{s1,s2,dfc}_validation, ROIs0000_test/{s1,s2,dfc}_0"
    )
    #: Split -> (split folder, modality-folder suffix): ``ROIs0000_test/s1_0/``; the folder is the prefix.
    split_folders: ClassVar[dict[str, tuple[str, str]]] = {
        name: (DFC2020Files.split_prefixes[name], suffix)
        for name, suffix in (("labelled", "validation"), ("test", "0"))
    }

    @classmethod
    def patch_path(cls, split: str, mod: str, index: int) -> Path:
        """Where patch ``index`` of ``split`` keeps modality ``mod``, relative to the root."""
        folder, suffix = cls.split_folders[split]
        return Path(
            folder, f"{mod}_{suffix}", cls.file_name.format(prefix=folder, mod=mod, rest=f"0_p{index}")
        )

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any((root / folder).is_dir() for folder, _ in cls.split_folders.values())

    @classmethod
    def list_splits(cls, root: Path, scheme: str) -> dict[str, SplitSources]:
        return {name: cls._split(root, name) for name in cls.split_folders}

    @classmethod
    def _split(cls, root: Path, name: str) -> SplitSources:
        folder, suffix = cls.split_folders[name]
        split_dir = root / folder
        if not split_dir.is_dir():
            raise DataError(f"{split_dir}: missing split folder of the DFC2020 layout")
        ids = patch_ids_in(split_dir / f"{mod}_{suffix}" for mod in cls.modalities)

        def path_of(mod: str, prefix: str, rest: str) -> Path:
            return split_dir / f"{mod}_{suffix}" / cls.file_name.format(prefix=prefix, mod=mod, rest=rest)

        return pair_patches(name, ids, path_of, cls.modalities, cls.rasters)


@register_layout("synthetic")
class SyntheticDFC2020(ReleasedDFC2020):
    """The generated default: the released layout plus the generator's marker file."""

    description = (
        "the embedded default: a generated DFC2020-like set in the dfc2020 layout, with its "
        "unlabelled pretraining pool in the SEN12MS layout under sen12ms/ (data synth)"
    )
    marker: ClassVar[str] = "synthetic.json"
    #: The generated SEN12MS-like pretraining pool (generator version 3), inside the set's folder.
    pool_folder: ClassVar[str] = "sen12ms"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return super().detect(root) and (root / cls.marker).is_file()

    @classmethod
    def default_pool(cls, root: Path) -> Path | None:
        pool = root / cls.pool_folder
        return pool if pool.is_dir() else None

    @classmethod
    def pool_identity(cls, root: Path) -> str | None:
        """The generator's record (config, version, counts): it determines the pool's content."""
        return (root / cls.marker).read_text() if cls.default_pool(root) else None


@register_layout("copernicus")
class CopernicusBenchDFC2020(DFC2020Files):
    """The flat Copernicus-Bench archive (the one torchgeo downloads), original file names kept.

    Its CSV lists re-split DFC2020, so two schemes: ``seed`` (default) assigns every patch by its
    file name, the seed's protocol, whatever list names it; ``csv`` follows the lists (train + val
    labelled, test test). Only ``csv`` needs the lists.
    """

    description = (
        "Copernicus-Bench flat DFC2020: dfc2020_s1s2/{s1,s2,dfc}/ + dfc-{train,val,test}-new.csv "
        "(--split-scheme seed: by file name, the seed's protocol; csv: the archive's lists)"
    )
    schemes = (DEFAULT_SPLIT_SCHEME, "csv")
    folder: ClassVar[str] = "dfc2020_s1s2"
    split_list: ClassVar[str] = "dfc-{csv_split}-new.csv"
    csv_splits: ClassVar[dict[str, tuple[str, ...]]] = {"labelled": ("train", "val"), "test": ("test",)}

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / cls.folder).is_dir() or root.name == cls.folder

    @classmethod
    def list_splits(cls, root: Path, scheme: str) -> dict[str, SplitSources]:
        base = root if root.name == cls.folder else root / cls.folder
        listed = cls._listed_ids(base) if scheme == "csv" else cls._named_ids(base)

        def path_of(mod: str, prefix: str, rest: str) -> Path:
            return base / mod / cls.file_name.format(prefix=prefix, mod=mod, rest=rest)

        return {
            name: pair_patches(name, ids, path_of, cls.modalities, cls.rasters)
            for name, ids in listed.items()
        }

    @classmethod
    def _named_ids(cls, base: Path) -> dict[str, list[tuple[str, str]]]:
        """The seed's split: patch ids grouped by their file-name prefix.

        A copy that holds patches but none under one prefix (renamed, or only one split shipped)
        cannot give the seed's protocol; saying so beats an "empty split" error.
        """
        ids = patch_ids_in(base / mod for mod in cls.modalities)
        split_ids = {name: [i for i in ids if i[0] == p] for name, p in cls.split_prefixes.items()}
        for name, prefix in cls.split_prefixes.items():
            if ids and not split_ids[name]:
                raise DataError(
                    f"{base}: no {prefix}_* files for the {name} split of the seed's protocol "
                    "(--split-scheme seed assigns patches by their released names); "
                    "--split-scheme csv follows the archive's lists instead, a different experiment"
                )
        return split_ids

    @classmethod
    def _listed_ids(cls, base: Path) -> dict[str, list[tuple[str, str]]]:
        """The archive's split: patch ids of the files each CSV lists (first column)."""
        split_ids: dict[str, list[tuple[str, str]]] = {}
        for name, csv_splits in cls.csv_splits.items():
            ids = split_ids.setdefault(name, [])
            for csv_split in csv_splits:
                listing = base / cls.split_list.format(csv_split=csv_split)
                if not listing.is_file():
                    raise DataError(f"{listing}: missing split list of the Copernicus-Bench layout")
                with listing.open(newline="") as fh:
                    for row in csv.reader(fh):
                        parsed = parse_name(Path(row[0].strip())) if row else None
                        if parsed:
                            ids.append((parsed[0], parsed[2]))
        return split_ids


#: SEN12MS's formats: DFC2020's s1 and s2, and its MODIS ``lc`` (4 layers, IGBP first) as the label file.
SEN12MS_RASTERS: dict[str, RasterSpec] = {
    "s1": DFC2020_RASTERS["s1"],
    "s2": DFC2020_RASTERS["s2"],
    "dfc": RasterSpec(4, "ui", "integer MODIS lc layers (IGBP, LCCS-LC, LCCS-LU, LCCS-SH)"),
}


@register_layout("sen12ms")
class SEN12MS(Layout):
    """SEN12MS: an unlabelled pretraining pool; its coarse MODIS ``lc`` (not DFC2020's labels) is
    read where every patch has one, for the ``supervised`` control (DESIGN 2.1's IGBP lookup)."""

    description = (
        "SEN12MS (unlabelled pretraining pool; lc read when present): "
        "ROIs1158_spring/{s1,s2,lc}_<scene>/..._s1_<scene>_p<k>.tif"
    )
    modalities = ("s1", "s2")
    rasters = SEN12MS_RASTERS
    season: ClassVar[re.Pattern[str]] = re.compile(r"^ROIs\d{4}_(spring|summer|fall|winter)$")

    @classmethod
    def patch_path(cls, season_folder: str, scene: int | str, mod: str, k: int) -> Path:
        """``ROIs1158_spring/s1_7/ROIs1158_spring_s1_7_p3.tif``, relative to the pool's root."""
        return Path(season_folder, f"{mod}_{scene}", f"{season_folder}_{mod}_{scene}_p{k}.tif")

    @classmethod
    def detect(cls, root: Path) -> bool:
        return bool(cls.season.match(root.name)) or any(
            cls.season.match(p.name) for p in root.iterdir() if p.is_dir()
        )

    @classmethod
    def pool(cls, root: Path) -> SplitSources:
        """Every s1/s2 pair under a season folder (or a folder of season folders)."""
        in_season = bool(cls.season.match(root.name))
        seasons = [root] if in_season else sorted(p for p in root.iterdir() if cls.season.match(p.name))
        ids: list[tuple[str, str]] = []
        for season in seasons:
            ids += patch_ids_in(
                p for p in season.iterdir() if p.is_dir() and p.name.startswith(("s1_", "s2_"))
            )

        def path_of(mod: str, prefix: str, rest: str) -> Path:
            season_dir = root if in_season else root / prefix
            return season_dir / f"{mod}_{rest.split('_p')[0]}" / f"{prefix}_{mod}_{rest}.tif"

        sources = pair_patches("pretrain", ids, path_of, cls.modalities, cls.rasters)
        return cls._with_lc(sources)

    @classmethod
    def _with_lc(cls, sources: SplitSources) -> SplitSources:
        """The pool with each patch's ``lc`` as its label file when every patch has one; else unchanged
        (a copy without the lc archives is still a pool for self-supervision)."""

        def lc_of(patch: PatchFiles) -> Path:
            s1 = patch.s1
            return s1.parent.parent / f"lc{s1.parent.name[2:]}" / s1.name.replace("_s1_", "_lc_", 1)

        lc = [lc_of(p) for p in sources.patches]
        if not lc or not all(path.is_file() for path in lc):
            return sources
        patches = tuple(
            PatchFiles(p.patch_id, p.s1, p.s2, path) for p, path in zip(sources.patches, lc, strict=True)
        )
        return SplitSources(sources.name, patches, sources.bad, sources.rasters)
