"""The protocol registry: ``@register_protocol("name")`` on an :class:`EvalProtocol` subclass.

Every evaluation protocol has one contract, so the runner, the sweep and tuning dispatch through
the registry instead of switching on config types, and a new protocol (kNN, a frozen decoder) is
one module in ``bench/protocols/`` with a config dataclass and a ``fit`` method that trains on the
budget's training pixels and returns a predictor (``x (B, C, H, W) -> (B, H, W)`` classes). The
shared ``evaluate`` scores it:

    evaluate(backbone, ds, budget, cfg, *, seed, device, progress=True, split="test") -> confusion

``split="test"`` scores every valid pixel of the test split (results), streamed batch by batch;
``split="val"`` scores only the budget's validation pixels (tuning), never dense validation labels
and never the test split.
Reference protocols (``reference = True``) need no backbone: they classify the normalised bands.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.core.names import RegistrationError, check_name, match_name, refuse_taken
from bench.core.plugins import load_plugins
from bench.protocols.validation import Predict, confusion_on_split, validation_confusion

if TYPE_CHECKING:
    from bench.models.backbones import SegBackbone
    from bench.protocols.budget import LabelBudget

_PROTOCOLS: dict[str, type[EvalProtocol]] = {}
P = TypeVar("P", bound="type[EvalProtocol]")
SPLITS = ("test", "val")


@dataclass(frozen=True)
class FitJob:
    """What a protocol trains on: the frozen or initial backbone (None for reference rows), the
    dataset, the budget (only its training pixels may be read), the protocol config, the
    evaluation seed, the device and whether to show progress."""

    backbone: SegBackbone | None
    ds: Any
    budget: LabelBudget
    cfg: Any
    seed: int
    device: torch.device
    progress: bool = True


class EvalProtocol(ABC):
    """Base class of every protocol. Subclasses set ``description`` and ``Config`` and implement
    :meth:`fit`; scoring (every valid test pixel, or the budget's validation pixels) is shared."""

    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type]
    #: True for the reference rows (raw bands, random forest): no backbone, no pretraining.
    reference: ClassVar[bool] = False

    @abstractmethod
    def fit(self, job: FitJob) -> Predict:
        """Train on ``job.budget``'s training pixels only; return ``x (B, C, H, W) -> (B, H, W)``."""

    def evaluate(
        self,
        backbone: SegBackbone | None,
        ds: Any,
        budget: LabelBudget,
        cfg: Any,
        *,
        seed: int,
        device: torch.device,
        progress: bool = True,
        split: str = "test",
    ) -> np.ndarray:
        """:meth:`fit`, then the (K, K) confusion matrix on ``split`` (see the module doc)."""
        if split not in SPLITS:
            raise BenchError(f"unknown evaluation split {split!r}; choose one of {', '.join(SPLITS)}")
        predict = self.fit(FitJob(backbone, ds, budget, cfg, seed, device, progress))
        k = ds.classes.num_classes
        if split == "val":
            return validation_confusion(predict, ds.labelled.images, budget, k, device)
        return confusion_on_split(predict, ds.test.images, ds.test.labels, k, device, progress=progress)


def register_protocol(name: str) -> Callable[[P], P]:
    """Class decorator: make an :class:`EvalProtocol` available as ``--protocol name``."""

    def wrap(cls: P) -> P:
        where = f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)!s}"
        if not (isinstance(cls, type) and issubclass(cls, EvalProtocol)):
            raise RegistrationError(f"protocol {name!r} ({where}) is not a subclass of EvalProtocol")
        check_name(name, f"protocol ({where})")
        refuse_taken("protocol", name, where, _PROTOCOLS, cls)
        cls.name = name
        _PROTOCOLS[name] = cls
        return cls

    return wrap


def discover() -> None:
    """Import every module of ``bench.protocols`` so their protocols register themselves."""
    import bench.protocols as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"bench.protocols.{info.name}")
    load_plugins("protocols", adopt=_adopt_plugin)


def _adopt_plugin(name: str, obj: Any) -> None:
    """Register a ``bench.protocols`` entry point's class unless its decorator did (bench.core.plugins)."""
    if isinstance(obj, type) and obj not in _PROTOCOLS.values():
        register_protocol(name)(obj)  # a class of the wrong base is refused there, in one line


def get_protocol(name: str) -> EvalProtocol:
    """The protocol registered as ``name``, with a one-line error listing the known ones."""
    discover()
    return _PROTOCOLS[match_name(name, _PROTOCOLS, "protocol")]()


def list_protocols(reference: bool | None = None) -> dict[str, str]:
    """Registered protocols with descriptions (only reference or only deep ones when asked)."""
    discover()
    return {
        name: cls.description
        for name, cls in sorted(_PROTOCOLS.items())
        if reference is None or cls.reference == reference
    }
