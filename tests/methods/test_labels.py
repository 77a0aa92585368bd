"""Display labels and the baseline come from the registry, so a new method needs no edit elsewhere."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from methods.registry import _METHODS, PretrainMethod, baseline_method, method_labels, register_method


@pytest.fixture
def unlabelled_method() -> Iterator[str]:
    """A method registered without a ``label`` (removed from the registry again afterwards)."""

    @register_method("zz_unlabelled_test")
    class Unlabelled(PretrainMethod):
        description = "test-only method"

        def pretrain(self, backbone, images, ctx) -> None:  # type: ignore[no-untyped-def]
            """Does nothing: only its registration is under test."""

    yield "zz_unlabelled_test"
    _METHODS.pop("zz_unlabelled_test")


def test_seed_methods_have_the_papers_labels_baseline_first() -> None:
    labels = method_labels()
    assert next(iter(labels)) == "random" == baseline_method()
    assert {labels[m] for m in ("random", "imagenet", "simsiam", "sscl")} == {
        "Baseline",
        "ImageNet",
        "SimSiam",
        "SSCL",
    }
    assert labels["unifeat"] == "UniFeat" and labels["core"] == "CoRe"
    order = list(labels)  # then the ablations, the reference rows (Random forest, Raw bands), controls
    assert order.index("unifeat") < order.index("rf") < order.index("raw")
    assert all(order.index("raw") < i for i, m in enumerate(order) if labels[m].startswith("Supervised"))


def test_a_method_without_label_is_shown_by_its_name(unlabelled_method: str) -> None:
    assert method_labels()[unlabelled_method] == unlabelled_method
    order = list(method_labels())  # a competitor by default: sorted by label, before the ablations
    assert order.index(unlabelled_method) == order.index("core") - 1


def test_two_baselines_are_refused(unlabelled_method: str) -> None:
    _METHODS[unlabelled_method].baseline = True
    try:
        with pytest.raises(ValueError, match="exactly one"):
            baseline_method()
    finally:
        _METHODS[unlabelled_method].baseline = False
