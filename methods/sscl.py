"""``sscl``: UniFeat then CoRe on the same backbone (the two stages of the published method).

UniFeat first makes the band-shared stem band-invariant (``methods.unifeat``); CoRe then trains
stem + fusion + trunk to restore clean inputs from degraded ones (``methods.core``), starting from
that stem. Each stage keeps its own config, nested here (``unifeat.*``, ``core.*``), with the
defaults and reasons given in those modules; metrics are logged as ``sscl/unifeat/...`` and
``sscl/core/...``. Total on the embedded default with ``tiny`` on 2 CPU cores: about 1-2 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.models.backbones import SegBackbone
from methods.core import CORE_HEALTH, CoReConfig, train_core
from methods.health import prefixed
from methods.registry import PretrainContext, PretrainMethod, register_method
from methods.unifeat import UNIFEAT_HEALTH, UniFeatConfig, train_unifeat


@dataclass
class SSCLConfig:
    """The two stages' configs; override one setting as e.g. ``core.p_band``."""

    unifeat: UniFeatConfig = field(default_factory=UniFeatConfig)
    #: CoRe refines UniFeat's stem at a tenth of the learning rate (``CoReConfig.stem_lr_factor``).
    core: CoReConfig = field(default_factory=lambda: CoReConfig(stem_lr_factor=0.1))


@register_method("sscl")
class SSCL(PretrainMethod):
    """Spatial-Spectral Context Learning: UniFeat (stem) then CoRe (whole backbone)."""

    description = "SSCL: UniFeat (cross-band pixel SimSiam on the stem) then CoRe (restore degraded S1+S2)"
    label = "SSCL"
    Config = SSCLConfig
    #: v2: UniFeat pairs the bands of one image; CoRe v2 (standardised loss, missing marker).
    #: v3: CoRe v3 (missing data marked in feature space), health gate of both stages.
    version = "3"
    #: Both stages' gates, on the figures each stage logs (``sscl/unifeat/...``, ``sscl/core/...``).
    health = (*prefixed(UNIFEAT_HEALTH, "unifeat"), *prefixed(CORE_HEALTH, "core"))

    def pretrain(self, backbone: SegBackbone, images: np.ndarray, ctx: PretrainContext) -> None:
        """Both stages in sequence; CoRe's stem is UniFeat's result."""
        train_unifeat(backbone, images, ctx, self.config.unifeat, f"{self.name}/unifeat")
        train_core(backbone, images, ctx, self.config.core, f"{self.name}/core")
