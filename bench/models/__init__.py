"""The shared backbones (one architecture for every method), above the kernel only.

One module per family (:mod:`~bench.models.tiny`, :mod:`~bench.models.timm_resnet`) on the shared
pieces of :mod:`~bench.models.base`; importing the package registers every family, so
``build_backbone`` knows them all whichever module a caller imports.
"""

from bench.models import timm_resnet, tiny  # noqa: F401  (registers the backbones)
