"""Reading a ``bench export`` file back: its card, and the whole backbone it holds.

Here, below the methods, so that ``--weights <export>.safetensors`` (``methods.imagenet``) and
``bench.harness.export`` share one reader. An export's ``.safetensors`` is the backbone's complete
state dict (stem, fusion, trunk, decoder) with the card (JSON) in its metadata under
:data:`CARD_KEY`; what is written and why is in :mod:`bench.harness.export`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError
from bench.models.base import SegBackbone, build_backbone

#: Version of the export's layout (files, card keys); readers check it.
EXPORT_FORMAT = "bench-export/1"
#: The safetensors metadata key that holds the card.
CARD_KEY = "bench.card"
#: The metadata key that says which file of an export this is: :data:`BACKBONE` (the whole backbone,
#: what ``--weights`` loads whole) or ``timm_trunk`` (a plain timm state dict, loaded by name).
ROLE_KEY = "bench.role"
BACKBONE = "backbone"


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:  # safetensors raises its own types for a bad file
        raise BenchError(f"{path}: not a safetensors file ({str(exc).splitlines()[0][:120]})") from exc


def is_export(path: Path) -> bool:
    """Whether ``path`` is a ``bench export`` backbone file (a safetensors file with a card)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    try:
        meta = _metadata(path)
    except BenchError:
        return False
    return CARD_KEY in meta and meta.get(ROLE_KEY, BACKBONE) == BACKBONE


def read_card(path: Path) -> dict[str, Any]:
    """The card of an exported ``.safetensors`` file (from its metadata)."""
    meta = _metadata(path)
    if CARD_KEY not in meta:
        raise BenchError(f"{path}: no bench card in its metadata; it is not a `bench export` file")
    card: dict[str, Any] = json.loads(meta[CARD_KEY])
    return card


def load_export_into(model: SegBackbone, path: Path) -> dict[str, Any]:
    """Load the backbone an export holds into ``model`` (every tensor: stem, fusion, trunk, decoder);
    returns the card. A one-line error when the export is of another backbone, band count or
    architecture revision."""
    from safetensors.torch import load_file

    if not is_export(path):
        raise BenchError(
            f"{path}: not the whole-backbone file of a `bench export` (the .timm.safetensors trunk "
            "loads as a timm checkpoint; the backbone is the plain <name>.safetensors)"
        )
    card = read_card(path)
    spec = card["backbone"]
    if dataclasses.asdict(model.spec) != spec:
        ours = dataclasses.asdict(model.spec)
        differ = ", ".join(f"{k} {spec.get(k)!r} (here {v!r})" for k, v in ours.items() if spec.get(k) != v)
        raise BenchError(
            f"{path}: exported for backbone {spec.get('name')!r}, this run builds {model.spec.name!r}: "
            f"{differ}; pass --backbone {spec.get('name')} (with its {spec.get('in_chans')} bands)"
        )
    model.load_state_dict(load_file(str(path)))
    return card


def load_export(path: Path) -> tuple[SegBackbone, dict[str, Any]]:
    """The harness backbone an export holds, with its card; one-line errors for a file that is not
    one or was written for another architecture revision."""
    spec = read_card(path)["backbone"]
    model = build_backbone(spec["name"], in_chans=int(spec["in_chans"]))
    return model, load_export_into(model, path)
