"""Presets (DESIGN 8): named sets of defaults for where a benchmark runs, ``--preset cpu|paper``.

A preset is a list of ``--set`` pairs put *before* the user's own, so any explicit ``--set`` (or
``--config`` from ``bench tune``) still wins. Its values end up in the method and protocol configs,
which are hashed into result keys and pretrained-weights keys like any setting: two presets never
share a result, and a preset changed later starts its cells afresh.

A preset also names the sweep's default label budgets per unit (:attr:`Preset.budgets`):
``bench sweep`` without ``--samples`` runs them. Both grids start where labels are scarce (10, 25,
50 px per class): at 200 px per class the embedded default is already near its ceiling (the test
shift, not the labels, bounds it), so budgets below it are where an initialisation can matter
and where the fine-tuned baseline still gains from more labels. ``images`` budgets are whole
labelled patches, so their grid is its own (the embedded default has 128 labelled training patches).

- ``cpu`` (the default): today's defaults, no pairs at all, so result keys are the ones recorded
  before presets existed. Sized for the embedded default (64 px patches) on 2 CPU cores with the
  ``tiny`` backbone: the main command runs cold in about a minute. Budgets 10, 25, 50, 200, 600,
  1000 px per class (1, 2, 5, 10, 25, 50 images).
- ``paper``: real DFC2020 (986 labelled + 5128 test patches of 256 px) on one GPU with resnet18,
  bf16. The DESIGN 8 grid (4 deep methods x 5 budgets x 5 seeds x 2 protocols x 3 pretraining
  seeds = 600 evaluations, plus 6 pretraining runs) must fit in an hour, so about 5 s per
  evaluation and well under 10 min of pretraining in all. Per setting:

  - pretraining batch 64 (SimSiam, UniFeat, CoRe): a GPU batch; SimSiam's BatchNorm heads want
    more than the CPU's 16 samples.
  - SimSiam and CoRe crop 128 px of the 256 px patches: SimSiam's two views need room to differ and
    CoRe's cutout needs context to fill; 1/4 of a patch per view costs a quarter of a full patch.
  - UniFeat crop 64 px: its loss is per pixel, no context needed; 64 x 64 x 64 = 262k pixel pairs
    a step is plenty.
  - steps SimSiam 3000, UniFeat 1000, CoRe 2000: about 200, 65 and 130 passes over the 986-patch
    pool; at the backbone's estimated ~10k crops of 128 px a second (fwd+bwd, resnet18, H100/H200)
    about 40 s, 5 s and 15 s per run.
  - finetune crop 128, batch 32, 1000 steps, validation every 100: 8 full patches' worth of
    pixels a step; ~3 ms a step, ~3 s a unit plus streaming the 5128 test patches (~1 s).
  - linear: unchanged (L-BFGS on the budget's cached pixel features converges in < 200
    iterations; the test split is streamed once).

  - budgets: DESIGN's 200-1000 grid and the scarce 10, 25, 50 px per class (1-100 images).

  The per-step figures are estimates from the FLOPs ``bench perf --stage backbone`` counts; check
  them with ``bench perf --device cuda --backbone resnet18 --crop 128 --batch 64`` on the GPU.

A method's stages get their schedule by config class wherever they appear (``unifeat`` alone and
``sscl``'s ``unifeat.*`` alike). The schedules are data beside each stage's config class (its
``presets`` class attribute, e.g. ``SimSiamConfig.presets["paper"]``), so the harness reaches
methods through the registry alone; a trained method without an entry keeps its steps and gets
the generic GPU batch and crop (``TrainConfig.presets``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.core.errors import BenchError
from methods import get_method


@dataclass(frozen=True)
class Preset:
    """Default overrides: per pretraining stage (from its config class, see :meth:`stage_settings`),
    and per protocol."""

    name: str
    description: str
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The sweep's default label budgets per budget unit (``--samples`` overrides).
    budgets: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def stage_settings(self, config: Any) -> dict[str, Any]:
        """The settings for one stage config: its own class's entry for this preset, else the
        nearest base class's (``TrainConfig``'s generic one), else none."""
        for cls in type(config).__mro__:
            own = vars(cls).get("presets", {})
            if self.name in own:
                return dict(own[self.name])
        return {}


PRESETS: dict[str, Preset] = {
    "cpu": Preset(
        "cpu",
        "today's defaults: embedded default, tiny backbone, 2 CPU cores (about a minute)",
        budgets={"pixels": (10, 25, 50, 200, 600, 1000), "images": (1, 2, 5, 10, 25, 50)},
    ),
    "paper": Preset(
        "paper",
        "real DFC2020 on one GPU: 256 px patches, resnet18, GPU batches and longer schedules",
        protocols={"finetune": {"steps": 1000, "batch_size": 32, "crop": 128, "eval_every": 100}},
        budgets={
            "pixels": (10, 25, 50, 200, 400, 600, 800, 1000),
            "images": (1, 2, 5, 10, 25, 50, 100),
        },
    ),
}
DEFAULT_PRESET = "cpu"


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise BenchError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_budgets(name: str, unit: str) -> tuple[int, ...]:
    """The default budgets of preset ``name`` in ``unit`` (``pixels`` or ``images``)."""
    budgets = get_preset(name).budgets
    if unit not in budgets:
        raise BenchError(f"preset {name!r} has no default budgets in {unit!r}; give --samples")
    return budgets[unit]


def _stage_configs(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted prefix, config) of every trained stage in a method's config tree: a config whose
    class declares ``presets`` (every ``methods.training.TrainConfig``)."""
    if isinstance(getattr(type(config), "presets", None), dict):
        yield prefix, config
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from _stage_configs(value, f"{prefix}{f.name}.")


def preset_pairs(name: str, method: str) -> list[str]:
    """``--set`` pairs of preset ``name`` for ``method`` (its stages) and for every protocol.

    Method settings are written ``method.<key>`` and protocol settings ``<protocol>.<key>``;
    put them before the user's pairs so that the user's win.
    """
    preset = get_preset(name)
    pairs = []
    for prefix, config in _stage_configs(get_method(method).Config()):
        pairs += [f"method.{prefix}{k}={json.dumps(v)}" for k, v in preset.stage_settings(config).items()]
    for protocol, settings in preset.protocols.items():
        pairs += [f"{protocol}.{k}={json.dumps(v)}" for k, v in settings.items()]
    return pairs
