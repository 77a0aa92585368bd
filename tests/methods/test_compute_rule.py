"""One compute rule for every pretraining (issues 20 and 32): the same images seen, steps x
batch_size summed over a method's stages, the positive control included, under every preset, so no
method, and not the control, is stronger or weaker by training longer. The number lives in
``methods.training.PRETRAIN_IMAGES``. Against the control's old 150 x 16 (2400) the cpu check
fails; against the old paper preset (SimSiam and SSCL 192,000, CoRe 128,000, UniFeat 64,000, the
control 19,200) the preset check fails."""

from __future__ import annotations

import pytest

from bench.core.errors import BenchError
from bench.harness.presets import PRESETS, preset_pairs, stage_steps
from bench.harness.runner import CellSpec, parse_overrides
from methods import get_method
from methods.registry import list_methods
from methods.training import PRETRAIN_IMAGES, TrainConfig, images_seen

#: Methods that train (random, imagenet and the reference rows see no pretraining crops).
TRAINED = [m for m in list_methods() if images_seen(get_method(m).Config())]


def test_the_trained_methods_are_all_checked() -> None:
    assert {"simsiam", "unifeat", "core", "sscl", "supervised"} <= set(TRAINED)
    assert set(PRETRAIN_IMAGES) == set(PRESETS)  # every preset has its number, in one place


@pytest.mark.parametrize("method", TRAINED)
def test_every_pretraining_sees_the_same_number_of_crops(method: str) -> None:
    assert images_seen(get_method(method).Config()) == PRETRAIN_IMAGES["cpu"], method


def preset_images(preset: str, method: str) -> int:
    """Images ``method``'s pretraining sees under ``preset``: its pairs applied as a run applies them."""
    overrides, _ = parse_overrides(preset_pairs(preset, method))
    spec = CellSpec(method, 10, method_overrides=overrides)  # as a run normalises its overrides
    return images_seen(get_method(method).config_from_dict(dict(spec.method_overrides)))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_gives_every_trained_method_the_same_images(preset: str) -> None:
    seen = {method: preset_images(preset, method) for method in TRAINED}
    assert set(seen.values()) == {PRETRAIN_IMAGES[preset]}, seen


def test_sscl_keeps_its_split_between_stages_under_the_paper_preset() -> None:
    cfg = get_method("sscl").config_from_dict(parse_overrides(preset_pairs("paper", "sscl"))[0])
    assert cfg.unifeat.steps * cfg.unifeat.batch_size * 3 == PRETRAIN_IMAGES["paper"]  # a third
    assert cfg.core.steps * cfg.core.batch_size * 3 == 2 * PRETRAIN_IMAGES["paper"]


def test_a_budget_that_cannot_be_split_exactly_is_refused() -> None:
    stage = TrainConfig(steps=100, batch_size=16)  # a third of a 4800-image method
    assert stage_steps(stage, 64, 4800, 192_000) == 1000
    with pytest.raises(BenchError, match=r"cannot be split exactly.*choose a multiple of 192"):
        stage_steps(stage, 64, 4800, 1000)
