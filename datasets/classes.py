"""Class configuration: which DFC classes are evaluated, in which order, and what is ignored.

The evaluated class set is data, not code: every mapping from stored DFC ids to training indices
goes through a :class:`ClassConfig`, so a 10-class or 9-class protocol is a different config.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: DFC2020 class ids as stored in the ``dfc`` files (0 = no label).
DFC_NAMES: dict[int, str] = {
    1: "Forest",
    2: "Shrubland",
    3: "Savanna",
    4: "Grassland",
    5: "Wetlands",
    6: "Croplands",
    7: "Urban/Built-up",
    8: "Snow/Ice",
    9: "Barren",
    10: "Water",
}

#: IGBP 0..17 (MODIS ``lc`` band 1, as in SEN12MS) -> DFC id; the lookup every public loader uses.
IGBP_TO_DFC: tuple[int, ...] = (0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 6, 8, 9, 10)


@dataclass(frozen=True)
class ClassConfig:
    """Evaluated DFC ids in index order; any other stored id maps to ``ignore_index``."""

    dfc_ids: tuple[int, ...]
    ignore_index: int = 255

    def __post_init__(self) -> None:
        unknown = [i for i in self.dfc_ids if i not in DFC_NAMES]
        if unknown:
            raise ValueError(f"unknown DFC class ids {unknown}; known: {sorted(DFC_NAMES)}")
        if len(set(self.dfc_ids)) != len(self.dfc_ids):
            raise ValueError(f"duplicate DFC class ids in {self.dfc_ids}")
        if not len(self.dfc_ids) <= self.ignore_index <= 255:
            raise ValueError(f"ignore_index {self.ignore_index} must be in [{len(self.dfc_ids)}, 255]")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(DFC_NAMES[i] for i in self.dfc_ids)

    @property
    def num_classes(self) -> int:
        return len(self.dfc_ids)

    @property
    def stored_codes(self) -> tuple[int, ...]:
        """The codes a label file of this kind may hold (0 = no label, the DFC ids 1-10); any other
        is a wrong file or another dataset's codes, and the reader says so once per file."""
        return (0, *DFC_NAMES)

    def lookup(self) -> np.ndarray:
        """uint8 table indexed by any stored uint8/uint16 label value -> class index or ignore."""
        table = np.full(65536, self.ignore_index, dtype=np.uint8)
        table[list(self.dfc_ids)] = np.arange(self.num_classes, dtype=np.uint8)
        return table

    def to_index(self, dfc: np.ndarray) -> np.ndarray:
        """Map stored DFC ids (any integer dtype) to class indices; out-of-range ids are ignored."""
        dfc = np.asarray(dfc)
        valid = (dfc >= 0) & (dfc < 65536)
        out = np.full(dfc.shape, self.ignore_index, dtype=np.uint8)
        out[valid] = self.lookup()[dfc[valid].astype(np.int64)]
        return out


#: The 8 classes present in DFC2020's evaluation data; 0 (no label), 3 (Savanna), 8 (Snow/Ice) ignored.
DEFAULT_CLASSES = ClassConfig(dfc_ids=(1, 2, 4, 5, 6, 7, 9, 10))


def igbp_to_dfc(igbp: np.ndarray) -> np.ndarray:
    """Map MODIS IGBP codes (SEN12MS ``lc`` band 1) to DFC ids; codes outside 0..17 become 0."""
    igbp = np.asarray(igbp).astype(np.int64)
    table = np.asarray(IGBP_TO_DFC, dtype=np.uint8)
    out = np.zeros(igbp.shape, dtype=np.uint8)
    valid = (igbp >= 0) & (igbp < len(table))
    out[valid] = table[igbp[valid]]
    return out
