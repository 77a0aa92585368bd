"""``bench perf``'s bare models come from the methods (no method names in the perf stage)."""

from __future__ import annotations

import torch

from bench.models.backbones import build_backbone
from methods import get_method
from methods.registry import method_labels


def test_trained_methods_contribute_a_bare_model_of_their_step() -> None:
    backbone = build_backbone("tiny", 15)
    cpu = torch.device("cpu")
    with_bare = set()
    for name in method_labels():
        forward = get_method(name)().bare_forward(backbone, cpu)
        if forward is not None:
            with_bare.add(name)
            out = forward()
            out.float().mean().backward()  # differentiable, as the perf stage needs
    assert with_bare == {"simsiam", "unifeat", "core", "supervised"}
