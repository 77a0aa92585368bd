"""Typed settings: a ``--set`` value is cast to its config field's declared type up front.

``--set`` values arrive as JSON or plain strings; a value of the wrong type used to travel into
the training loop and fail there (``--set steps=abc``: a ``TypeError`` after pretraining began).
Casting against the dataclass's annotations when the config is built turns that into one line
naming the setting and the type it expects, before any work starts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from bench.core.errors import BenchError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class SettingError(BenchError):
    """A setting's value does not fit its declared type (a user error: one line, no traceback)."""


def field_types(config_cls: type) -> dict[str, Any]:
    """Declared type of each field of a dataclass (string annotations resolved)."""
    try:
        return typing.get_type_hints(config_cls)
    except (NameError, TypeError):  # an annotation that cannot be resolved: leave values as given
        return {f.name: Any for f in dataclasses.fields(config_cls)}


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return f"list[{_type_name(args[0])}]" if args else "list"
    if origin is tuple:
        inner = f"{_type_name(args[0])}, ..." if len(args) == 2 and args[1] is Ellipsis else None
        return f"tuple[{inner or ', '.join(_type_name(a) for a in args)}]"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _cast(value: Any, hint: Any) -> Any:
    """``value`` as ``hint``; ValueError/TypeError when it does not fit."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_none and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _cast(value, arg)
            except (ValueError, TypeError):
                continue
        raise ValueError(value)
    if origin is typing.Literal:
        if value in args:
            return value
        raise ValueError(value)
    if origin is list:  # list[X]: a JSON list, a tuple (a frozen override) or "a,b"
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise TypeError(value)
        return [_cast(item, args[0]) for item in items] if args else list(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(value)
        key_hint, value_hint = args or (Any, Any)
        return {_cast(k, key_hint): _cast(v, value_hint) for k, v in value.items()}
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise TypeError(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_cast(item, args[0]) for item in items)
        if args and len(items) != len(args):
            raise ValueError(value)
        return tuple(_cast(item, arg) for item, arg in zip(items, args or [Any] * len(items), strict=True))
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ValueError(value)
    if hint is int:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return int(value) if isinstance(value, int) else int(str(value).strip())
    if hint is float:
        if isinstance(value, bool):
            raise TypeError(value)
        return float(value) if isinstance(value, int | float) else float(str(value).strip())
    if hint is str:
        return value if isinstance(value, str) else str(value)
    if isinstance(hint, type) and not dataclasses.is_dataclass(hint) and not isinstance(value, hint):
        return hint(value)
    return value


def frozen_value(value: Any) -> Any:
    """``value`` made hashable and order-free: lists become tuples, dicts sorted pairs.

    A spec that carries settings is a dict key and a set member (the sweep's grid, ``run``'s
    cells); a JSON list from ``--set 'augment.scale=[0.5,1.0]'`` or a ``--config`` file must not
    make it unhashable. Casting to the field's type (:func:`cast_setting`) undoes it.
    """
    if isinstance(value, list | tuple):
        return tuple(frozen_value(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), frozen_value(v)) for k, v in value.items()))
    return value


def flat_settings(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (``{"core": {"p_band": 0.3}}`` -> ``{"core.p_band": 0.3}``), other
    values frozen (:func:`frozen_value`): one form for the same settings, whichever way they came."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(flat_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = frozen_value(value)
    return flat


def cast_setting(value: Any, hint: Any, key: str, owner: str) -> Any:
    """``value`` cast to ``hint``, or :class:`SettingError`: "setting 'steps' of method 'simsiam'
    expects int, got 'abc'"."""
    try:
        return _cast(value, hint)
    except (ValueError, TypeError):
        raise SettingError(f"setting {key!r} of {owner} expects {_type_name(hint)}, got {value!r}") from None


def cast_settings(config_cls: type, values: dict[str, Any], owner: str, prefix: str = "") -> dict[str, Any]:
    """Every value of ``values`` (field name -> value) cast to its field's type in ``config_cls``."""
    hints = field_types(config_cls)
    return {
        key: cast_setting(value, hints.get(key, Any), f"{prefix}{key}", owner)
        for key, value in values.items()
    }


#: Ranges by field name, for every config (methods', protocols', plugins'), checked once the config
#: is built and before any work (issue 35: ``linear.max_iter=0`` recorded chance-level AA as
#: complete, ``finetune.steps=0`` failed inside the loop). A field's own
#: ``metadata={"range": (low, high)}`` (None: unbounded) takes precedence over these rules.
#: Counts of things that must happen at least once (steps, iterations, sizes, intervals):
AT_LEAST_ONE = frozenset(
    {
        "steps",
        "batch_size",
        "crop",
        "max_iter",
        "eval_every",
        "log_every",
        "trees",
        "max_depth",
        "epochs",
        "proj_dim",
        "pred_hidden",
        "head_hidden",
        "stats_patches",
    }
)
AT_LEAST_ONE_SUFFIXES = ("_every", "_iter", "_batch_size")
#: Counts that may be zero (a stage skipped: ``probe_steps=0`` fine-tunes without a linear probe).
AT_LEAST_ZERO_SUFFIXES = ("_steps", "_epochs", "_boxes")
#: Probabilities and fractions: names ``p_*``, ``*_p``, ``*_prob``, ``*_fraction``, ``*_frac``, and
#: these (``warmup``: the fraction of steps spent warming up; ``scale``: a crop's area fraction).
UNIT_INTERVAL = frozenset({"warmup", "scale"})
#: Weight decay above 1 shrinks the weights to zero in a step or two: a run that learns nothing.
WEIGHT_DECAY_MAX = 1.0


def setting_range(name: str, hint: Any, metadata: Any = None) -> tuple[float | None, float | None] | None:
    """``(low, high)`` a setting must lie in (inclusive; None: unbounded), or None when unchecked."""
    if metadata and "range" in metadata:
        low, high = metadata["range"]
        return low, high
    if name in AT_LEAST_ONE or name.endswith(AT_LEAST_ONE_SUFFIXES):
        return 1, None
    if name.endswith(AT_LEAST_ZERO_SUFFIXES):
        return 0, None
    is_probability = name.startswith("p_") or name.endswith(("_p", "_prob", "_fraction", "_frac"))
    if is_probability or name in UNIT_INTERVAL:
        return 0.0, 1.0
    if name == "weight_decay" or name.endswith("_weight_decay"):
        return 0.0, WEIGHT_DECAY_MAX
    if name == "lr" or name.endswith(("_lr", "_std", "_factor", "_sigma")):
        return 0.0, None
    return None


def _numbers(value: Any) -> list[float] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return [float(value)]
    if (
        isinstance(value, tuple | list)
        and value
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return [float(v) for v in value]
    return None


def check_ranges(config: Any, owner: str, prefix: str = "") -> None:
    """Every numeric setting of the dataclass ``config`` (nested ones too) is finite and in its range
    (:func:`setting_range`), and a ``(low, high)`` pair is ordered; else :class:`SettingError`
    naming the setting, its owner and what it expects."""
    import math

    hints = field_types(type(config))
    for f in dataclasses.fields(config):
        value, key = getattr(config, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_ranges(value, owner, f"{key}.")
            continue
        numbers = _numbers(value)
        if numbers is None:
            continue
        if not all(math.isfinite(v) for v in numbers):
            raise SettingError(f"setting {key!r} of {owner} expects a finite number, got {value!r}")
        bounds = setting_range(f.name, hints.get(f.name), f.metadata)
        if bounds is not None:
            low, high = bounds
            if any((low is not None and v < low) or (high is not None and v > high) for v in numbers):
                expects = (
                    f">= {low:g}"
                    if high is None
                    else f"<= {high:g}"
                    if low is None
                    else f"in [{low:g}, {high:g}]"
                )
                raise SettingError(f"setting {key!r} of {owner} expects a value {expects}, got {value!r}")
        if isinstance(value, tuple | list) and len(numbers) == 2 and numbers[0] > numbers[1]:
            raise SettingError(
                f"setting {key!r} of {owner} expects (low, high) with low <= high, got {value!r}"
            )


def check_crop(config: Any, size: int, owner: str, where: str, prefix: str = "") -> None:
    """A ``crop`` setting (nested ones too) no larger than the patches it is cut from (``size`` px,
    the smaller side of ``where``'s patches): known only once the data is, still before any work."""
    for f in dataclasses.fields(config):
        value, key = getattr(config, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_crop(value, size, owner, where, f"{key}.")
        elif f.name == "crop" and isinstance(value, int) and value > size:
            raise SettingError(
                f"setting {key!r} of {owner} is {value} px, larger than the {size} px patches of {where}; "
                f"set {key}<={size}"
            )
