"""``sscl``: Spatial-Spectral Context Learning, UniFeat then CoRe on the same backbone.

The two stages of the published method. UniFeat first makes the band-shared stem band-invariant
(``methods.unifeat``); CoRe then trains stem + fusion + trunk to restore clean inputs from
degraded ones (``methods.core``), starting from that stem. Each stage keeps its own config,
nested here (``unifeat.*``, ``core.*``), with the defaults and reasons given in those modules;
metrics are logged as ``sscl/unifeat/...`` and ``sscl/core/...``.

Health gate (``SSCL.health``, ``methods.health``): both stages' checks, on the figures each logs;
a run whose UniFeat stem collapsed or whose CoRe restores no better than the per-band mean is
never cached as good (DESIGN 4.1).

Schedule (issue 20, ``scripts/choose_pretrain_schedules.py``): the compute rule of every
self-supervised method, 4800 images seen (steps x batch_size); sscl gives a third to UniFeat
(100 steps of 16: it trains the stem alone, and its rank is as high at 50 steps of 32) and two
thirds to CoRe (200 steps of 16). Candidates at pretraining seed 0, linear-probe AA on validation
pixels (200 px/class, budget seeds 0-1): lr 1e-3 batch 16: 57.2; lr 3e-3 batch 16: 56.7; lr 1e-3
batch 32: 57.2. Differences under 1 pp count as ties and keep the previous lr and batch.
At pretraining seeds 0-4 (``choose_pretrain_schedules.py seeds --methods sscl``) every run passes
the gate: UniFeat effective rank 17.2-23.6, CoRe skill 0.18-0.22 (optical 0.18-0.22, SAR
0.26-0.41), restored std 1.26-1.55 against the held-out targets' 1.37, validation AA 48.1-60.2.
Cost: a UniFeat step of 16 takes about 66 ms of one core, a CoRe step 162 ms, so the two stages
are about 39 s of CPU (v2's 150 + 150 steps: 34 s); the main command's cold time is mostly the
embedded default's generation and the nine linear probes.
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

    #: The compute rule's split (``scripts/choose_pretrain_schedules.py``): of 4800 images, a third
    #: to UniFeat (100 steps of 16) and two thirds to CoRe (200 steps of 16).
    unifeat: UniFeatConfig = field(default_factory=lambda: UniFeatConfig(steps=100, batch_size=16))
    #: CoRe refines UniFeat's stem at a tenth of the learning rate (``CoReConfig.stem_lr_factor``).
    core: CoReConfig = field(default_factory=lambda: CoReConfig(steps=200, stem_lr_factor=0.1))


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
    needs_band_stem = True

    def pretrain(self, backbone: SegBackbone, images: np.ndarray, ctx: PretrainContext) -> None:
        """Both stages in sequence; CoRe's stem is UniFeat's result."""
        train_unifeat(backbone, images, ctx, self.config.unifeat, f"{self.name}/unifeat")
        train_core(backbone, images, ctx, self.config.core, f"{self.name}/core")
