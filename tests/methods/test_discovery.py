"""Adding a method is one file: a module dropped into ``methods/`` is registered and can pretrain."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import methods
from bench.models.backbones import build_backbone
from methods import PretrainContext, get_method, list_methods
from methods.registry import _METHODS

NEW_METHOD = '''
"""``meanshift``: a toy method written by the test: pull the backbone's mean feature to zero."""

from dataclasses import dataclass

import torch

from methods.registry import PretrainMethod, register_method
from methods.training import TrainConfig, fit


@dataclass
class Config(TrainConfig):
    steps: int = 12
    batch_size: int = 4


@register_method("meanshift_test")
class MeanShift(PretrainMethod):
    description = "test-only method"
    Config = Config

    def pretrain(self, backbone, images, ctx):
        def loss_fn(batch, gen):
            return backbone(batch).mean() ** 2, {}

        fit(self.name, [backbone], backbone.parameters(), images, ctx, self.config, loss_fn)
'''


@pytest.fixture
def dropped_in_module(tmp_path: Path) -> Iterator[None]:
    """A new module on the ``methods`` package path (a temp folder), removed again afterwards."""
    (tmp_path / "meanshift_test.py").write_text(NEW_METHOD)
    methods.__path__.append(str(tmp_path))
    try:
        yield
    finally:
        methods.__path__.remove(str(tmp_path))
        sys.modules.pop("methods.meanshift_test", None)
        _METHODS.pop("meanshift_test", None)


def test_dropped_in_module_is_registered_and_pretrains(
    dropped_in_module: None, images: np.ndarray, ctx: PretrainContext
) -> None:
    assert "meanshift_test" in list_methods()
    torch.manual_seed(0)
    model = build_backbone("tiny", 15)
    before = model.fusion[0].weight.clone()
    get_method("meanshift_test")().pretrain(model, images, ctx)
    assert not torch.equal(before, model.fusion[0].weight)
    assert any("meanshift_test/loss" in m for _, m in ctx.logged)  # type: ignore[attr-defined]


def test_builtin_methods_are_registered() -> None:
    assert {"random", "imagenet", "simsiam", "sscl", "unifeat", "core"} <= set(list_methods())


def test_names_match_in_any_case_and_a_miss_names_the_closest() -> None:
    from bench.core.names import UnknownName

    assert get_method("SSCL") is get_method("sscl")
    with pytest.raises(UnknownName, match=r"unknown method 'simsam'; did you mean simsiam"):
        get_method("simsam")
    with pytest.raises(KeyError):  # callers that treat unknown names as KeyError keep working
        get_method("nope")


def test_an_entry_point_naming_a_class_is_registered_under_its_name() -> None:
    """``bench.methods`` entry point ``name = "pkg.mod:Class"`` on a class without the decorator."""
    from methods.random_init import RandomInit
    from methods.registry import adopt_plugin

    class Undecorated(RandomInit):
        description = "no decorator"
        baseline = False

    try:
        adopt_plugin("undecorated_test", Undecorated)
        assert get_method("undecorated_test") is Undecorated and Undecorated.name == "undecorated_test"
        adopt_plugin("again_test", RandomInit)  # already registered by its decorator: left alone
        assert "again_test" not in _METHODS
    finally:
        _METHODS.pop("undecorated_test", None)
