"""The method registry: ``@register_method("name")`` on a :class:`PretrainMethod` subclass.

A method turns unlabelled images into initial backbone weights, in place. The harness owns
everything around it (building the backbone, caching the weights, MLflow, evaluation), so a new
method is one module in ``methods/`` with a config dataclass and a ``pretrain`` method.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from bench.core.names import RegistrationError, check_label, check_name, clash, match_name, refuse_taken
from bench.core.roles import ROLES, MethodInfo, default_role, table_order
from bench.core.settings import cast_settings, check_ranges
from bench.models.backbones import SegBackbone

_METHODS: dict[str, type[PretrainMethod]] = {}

M = TypeVar("M", bound="type[PretrainMethod]")


@dataclass
class NoConfig:
    """Config of a method that has no settings."""


def _no_metrics(metrics: dict[str, float], step: int) -> None:
    """Default metric sink: drop them (the harness passes an MLflow logger)."""


@dataclass
class PretrainContext:
    """What the harness hands a method besides the backbone and the data."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    log_metrics: Callable[[dict[str, float], int], None] = _no_metrics
    progress: bool = True
    weights: Path | None = None  # a local checkpoint for methods that load one (imagenet)
    #: (N, H, W) class indices of the pool's own labels (a SEN12MS pool's lc), aligned with the
    #: images; handed only to methods with ``needs_labels`` (the ``supervised`` control).
    labels: np.ndarray | None = None
    #: The input's band names in order (``VV``, ..., ``B12``): where a checkpoint's band-specific
    #: ``conv1`` goes on a standard-stem backbone (``methods.imagenet``).
    band_names: tuple[str, ...] | None = None


class PretrainMethod(ABC):
    """Base class of every method. Subclasses set ``name``, ``description``, ``label`` and ``Config``."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: Column header in tables and legends ("Baseline", "SSCL"); the registered name when unset.
    label: ClassVar[str]
    #: The method every other is compared against (paired differences in the tables): exactly one.
    baseline: ClassVar[bool] = False
    Config: ClassVar[type] = NoConfig
    #: Bump when the algorithm changes in a way that invalidates cached weights.
    version: ClassVar[str] = "1"
    #: Methods that do not train (random, imagenet) skip the pretraining data entirely.
    needs_data: ClassVar[bool] = True
    #: Methods that also read the pretraining pool's own labels (``PretrainContext.labels``).
    needs_labels: ClassVar[bool] = False
    #: Methods that read a ``--weights`` file (``PretrainContext.weights``): only theirs enter the
    #: weights identity (by content), so a stray ``--weights`` does not re-key ``random``.
    reads_weights: ClassVar[bool] = False
    #: Methods that train the band-shared stem itself (UniFeat, CoRe, SSCL): they cannot run on a
    #: backbone with timm's standard stem (``resnet18-stdstem``), and say so before any work.
    needs_band_stem: ClassVar[bool] = False
    #: Set on reference rows (``raw``, ``rf``): the reference protocol that evaluates them on the raw
    #: bands instead of a pretrained backbone. None for every pretraining method.
    evaluated_by: ClassVar[str | None] = None
    #: The health gate of every run (``methods.health.HealthCheck`` each, DESIGN 4.1): figures the
    #: method logs, with thresholds and reasons; a run that fails one is never cached as good.
    health: ClassVar[tuple[Any, ...]] = ()
    #: Where the method's column sits in tables (one of :data:`ROLES`): the competitors (the seed's
    #: Baseline, ImageNet, SimSiam, SSCL), then ablations (one stage of a method), then reference
    #: rows and controls (compared against, never competitors). Reference rows default to
    #: ``"reference"``, every other method to ``"competitor"``.
    role: ClassVar[str]

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @classmethod
    def config_from_dict(cls, overrides: dict[str, Any]) -> Any:
        """Defaults updated with ``overrides``; unknown keys are an error, not silently ignored.

        Nested configs (``sscl``'s stages, ``simsiam``'s augmentations) take a nested dict or
        dotted keys: ``{"core": {"p_band": 0.3}}`` or ``{"core.p_band": 0.3}``.
        """
        config = _build_config(cls.Config, overrides, cls.name)
        check_ranges(config, f"method {cls.name!r}")  # steps=0, p_band=2.0: refused before any work
        return config

    @classmethod
    def unavailable_reason(cls, backbone: str, weights: Path | None) -> str | None:
        """Why this method cannot run on ``backbone`` with ``weights`` here, or None when it can.

        Asked once per sweep before any work, so that a method that cannot run (imagenet on the
        ``tiny`` backbone, or with no weights reachable) is reported once and skipped instead of
        failing unit by unit. Cheap checks only: no training, no download.
        """
        from bench.models.base import has_band_stem

        try:
            band_stem = not cls.needs_band_stem or has_band_stem(backbone)
        except KeyError:  # an unknown backbone: reported by the registry's own message
            return None
        if not band_stem:
            return (
                f"trains the band-shared stem: backbone {backbone!r} has timm's standard stem "
                "(conv1 on all bands); use a band-shared one (tiny, resnet18, resnet50)"
            )
        return None

    @classmethod
    def weights_origin(cls, backbone: str) -> str | None:
        """One line for ``bench doctor``: where this method's weights for ``backbone`` would come
        from when they are not made here (a download, a hub cache), or None for a method that
        makes its own. Cheap: no download."""
        return None

    def config_dict(self) -> dict[str, Any]:
        """The full config (defaults included) as recorded with results and in cache keys."""
        return dataclasses.asdict(self.config)

    def bare_forward(self, backbone: SegBackbone, device: torch.device) -> Callable[[], torch.Tensor] | None:
        """``bench perf``'s bare model: one forward of what one training step computes (same batch
        and crop as the config), on random inputs already on ``device``; None for methods that do
        not train. The perf stage compares the harness's step with its forward+backward."""
        return None

    @abstractmethod
    def pretrain(self, backbone: SegBackbone, images: np.ndarray, ctx: PretrainContext) -> None:
        """Update ``backbone`` in place from unlabelled ``images`` (N, C, H, W), normalised."""


def _build_config(config_cls: type, overrides: dict[str, Any], where: str, base: Any = None) -> Any:
    """``config_cls()`` (or ``base``) with ``overrides`` applied, recursing into nested dataclass fields.

    A nested config starts from its parent's default instance, not from its class's defaults:
    ``sscl``'s CoRe stage defaults to ``stem_lr_factor=0.1`` and keeps it under ``--set core.steps=...``.
    """
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        head, dot, rest = key.partition(".")
        if dot or isinstance(value, dict):
            nested.setdefault(head, {}).update({rest: value} if dot else value)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = {k.partition(".")[0] for k in overrides} - set(fields)
    if unknown:
        raise ValueError(f"method {where!r} has no setting(s) {sorted(unknown)}; known: {sorted(fields)}")
    method, _, path = where.partition(".")
    values = cast_settings(
        config_cls,
        {k: v for k, v in overrides.items() if k.partition(".")[0] not in nested},
        f"method {method!r}",
        f"{path}." if path else "",
    )
    for key, sub in nested.items():
        factory = fields[key].default_factory
        if base is not None:
            default = getattr(base, key)
        else:
            default = factory() if callable(factory) else fields[key].default
        if not dataclasses.is_dataclass(default):
            raise ValueError(f"method {where!r}: setting {key!r} has no sub-settings")
        values[key] = _build_config(type(default), sub, f"{where}.{key}", default)
    return dataclasses.replace(base, **values) if base is not None else config_cls(**values)


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: make a :class:`PretrainMethod` available as ``--method name``."""

    def wrap(cls: M) -> M:
        _check_registration(name, cls)
        cls.name = name
        if "label" not in vars(cls):
            cls.label = name
        if "role" not in vars(cls):
            cls.role = default_role(cls.evaluated_by)
        if cls.role not in ROLES:
            raise RegistrationError(f"method {name!r}: role {cls.role!r} is not one of {', '.join(ROLES)}")
        _METHODS[name] = cls
        return cls

    return wrap


def _check_registration(name: str, cls: Any) -> None:
    """Refuse, in one line, what would misbehave later (issue 35): a name that is not a file name,
    one equal to another's ignoring case, a label that another method's name or label already is
    (a plugin labelled "Baseline" would be a second Baseline column), a second baseline, a Config
    that is not a dataclass, a class that is not a :class:`PretrainMethod`."""
    where = f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)!s}"
    if not (isinstance(cls, type) and issubclass(cls, PretrainMethod)):
        raise RegistrationError(
            f"method {name!r} ({where}) is not a subclass of methods.registry.PretrainMethod; "
            "derive it from PretrainMethod"
        )
    check_name(name, f"method ({where})")
    refuse_taken("method", name, where, _METHODS, cls)
    others = {n: c for n, c in _METHODS.items() if c is not cls}
    label = check_label(vars(cls).get("label", name), f"method {name!r}")
    taken = {f"the name of method {n!r}": n for n in others} | {
        f"the label of method {n!r}": c.label for n, c in others.items()
    }
    if (who := clash(label, taken)) is not None:
        raise RegistrationError(
            f"method {name!r} ({where}): label {label!r} is already {who} (ignoring case); one label, "
            "one column: set another label"
        )
    if getattr(cls, "baseline", False) and (
        first := next((n for n, c in others.items() if c.baseline), None)
    ):
        raise RegistrationError(
            f"method {name!r} ({where}) sets baseline = True, but {first!r} is the baseline already; "
            "exactly one method is the baseline (paired differences are taken against it)"
        )
    if not (isinstance(cls.Config, type) and dataclasses.is_dataclass(cls.Config)):
        raise RegistrationError(
            f"method {name!r} ({where}): Config {cls.Config!r} is not a dataclass; declare it with "
            "@dataclasses.dataclass (its fields are the method's settings)"
        )


def get_method(name: str) -> type[PretrainMethod]:
    """The registered method class for ``name`` (any case when unambiguous: ``SSCL``).

    An unknown name raises :class:`bench.core.names.UnknownName` (a ``KeyError``) with the closest
    registered names.
    """
    from methods import discover

    discover()
    return _METHODS[match_name(name, _METHODS)]


def adopt_plugin(name: str, obj: Any) -> None:
    """Register a ``bench.methods`` entry point's object under the entry point's name, unless its
    own ``@register_method`` did (an entry point naming a module registers through its decorators)."""
    if isinstance(obj, type) and obj not in _METHODS.values():
        register_method(name)(obj)  # a class of the wrong base is refused there, in one line


def method_labels() -> dict[str, str]:
    """Registered method names with their display labels in table column order: the baseline, then
    by role (:data:`ROLES`: competitors, ablations, reference rows, controls), by label within one."""
    from methods import discover

    discover()
    return {cls.name: cls.label for cls in _in_table_order()}


def method_roles() -> dict[str, str]:
    """Registered method names with their roles (:data:`ROLES`), in table column order."""
    from methods import discover

    discover()
    return {cls.name: cls.role for cls in _in_table_order()}


def method_infos() -> list[MethodInfo]:
    """Every registered method's name, label, role and baseline flag, in table column order."""
    from methods import discover

    discover()
    return [MethodInfo(m.name, m.label, m.role, m.baseline) for m in _in_table_order()]


def _in_table_order() -> list[type[PretrainMethod]]:
    infos = {cls.name: MethodInfo(cls.name, cls.label, cls.role, cls.baseline) for cls in _METHODS.values()}
    return [_METHODS[info.name] for info in table_order(infos.values())]


def baseline_method() -> str:
    """Name of the method flagged ``baseline`` (the one paired differences are taken against)."""
    from methods import discover

    discover()
    flagged = [name for name, cls in _METHODS.items() if cls.baseline]
    if len(flagged) != 1:
        raise ValueError(f"exactly one registered method must set baseline = True; found {flagged}")
    return flagged[0]


def list_methods() -> dict[str, str]:
    """Registered method names with their one-line descriptions."""
    from methods import discover

    discover()
    return {name: cls.description for name, cls in sorted(_METHODS.items())}


def images_seen(cfg: object) -> int:
    """Images a pretraining config sees (the compute rule's figure): ``steps x batch_size`` of a
    one-stage config (a dataclass with both fields, every ``methods.training.TrainConfig``), summed
    over the stages (nested dataclass fields) of a composite one; 0 for a method that trains
    nothing (``random``, ``imagenet``). Here, beside the registry, so the harness reads it without
    importing the training loop."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        return 0
    names = {f.name for f in dataclasses.fields(cfg)}
    if {"steps", "batch_size"} <= names:
        stage: Any = cfg
        return int(stage.steps) * int(stage.batch_size)
    return sum(images_seen(getattr(cfg, name)) for name in names)
