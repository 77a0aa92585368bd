"""Method roles and the comparison tables' column order, importable without torch.

The method registry (``methods.registry``: ``PretrainMethod.role``) and ``bench table``'s reading
of the methods' source (which spares a table the 10 s of importing torch, lightly and timm) order
columns with the same key: the baseline, then by role, by label within one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Method roles in table column order: the competitors (the seed's Baseline, ImageNet, SimSiam,
#: SSCL), ablations (one stage of a method), reference rows, controls (compared against, never ranked).
ROLES: tuple[str, ...] = ("competitor", "ablation", "reference", "control")


@dataclass(frozen=True)
class MethodInfo:
    """What a table needs of a registered method: its name, column label, role and baseline flag."""

    name: str
    label: str
    role: str
    baseline: bool = False


def default_role(evaluated_by: str | None) -> str:
    """The role of a method that sets none: reference rows (``evaluated_by`` set) are references."""
    return "reference" if evaluated_by is not None else "competitor"


def table_order(infos: Iterable[MethodInfo]) -> list[MethodInfo]:
    """The baseline first, then by role (:data:`ROLES`), then by label (case-insensitive)."""
    rank = {role: i for i, role in enumerate(ROLES)}
    return sorted(infos, key=lambda m: (not m.baseline, rank[m.role], m.label.casefold()))
