"""The data layer of the harness: DFC2020 / SEN12MS readers, validation, cache, synthetic default.

This package shadows Hugging Face ``datasets`` inside the project's environment on purpose;
nothing here depends on that package.
"""

from datasets.cache import CachedSplit
from datasets.classes import DEFAULT_CLASSES, DFC_NAMES, IGBP_TO_DFC, ClassConfig, igbp_to_dfc
from datasets.layouts import DEFAULT_SPLIT_SCHEME, Layout, get_layout, list_layouts, register_layout
from datasets.loader import Dataset, load_dataset, load_pretrain_pool
from datasets.normalise import BAND_NAMES, DEFAULT_NORMALISATION, Normalisation

__all__ = [
    "BAND_NAMES",
    "DEFAULT_CLASSES",
    "DEFAULT_NORMALISATION",
    "DEFAULT_SPLIT_SCHEME",
    "DFC_NAMES",
    "IGBP_TO_DFC",
    "CachedSplit",
    "ClassConfig",
    "Dataset",
    "Layout",
    "Normalisation",
    "get_layout",
    "igbp_to_dfc",
    "list_layouts",
    "load_dataset",
    "load_pretrain_pool",
    "register_layout",
]
