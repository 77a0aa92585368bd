"""One compute rule for every pretraining (issue 20): 4800 crops seen, steps x batch_size summed
over a method's stages, the positive control included, so no method, and not the control, is
stronger or weaker by training longer. Against the control's old 150 x 16 (2400) it fails."""

from __future__ import annotations

import dataclasses

import pytest

from methods import get_method
from methods.registry import list_methods
from methods.training import TrainConfig

#: ``scripts/choose_pretrain_schedules.py``'s IMAGES (the script is not a package to import).
IMAGES = 4800


def images_seen(cfg: object) -> int:
    """steps x batch_size of a one-stage config, or the sum over the stages of a composite one."""
    if isinstance(cfg, TrainConfig):
        return cfg.steps * cfg.batch_size
    if not dataclasses.is_dataclass(cfg):
        return 0
    return sum(images_seen(getattr(cfg, f.name)) for f in dataclasses.fields(cfg))


#: Methods that train (random, imagenet and the reference rows see no pretraining crops).
TRAINED = [m for m in list_methods() if images_seen(get_method(m).Config())]


def test_the_trained_methods_are_all_checked() -> None:
    assert {"simsiam", "unifeat", "core", "sscl", "supervised"} <= set(TRAINED)


@pytest.mark.parametrize("method", TRAINED)
def test_every_pretraining_sees_the_same_number_of_crops(method: str) -> None:
    assert images_seen(get_method(method).Config()) == IMAGES, method
