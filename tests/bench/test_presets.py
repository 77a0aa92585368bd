"""Presets: default settings under the user's own, part of every config they touch."""

from __future__ import annotations

import pytest

from bench.cli.common import PRESET_NAMES
from bench.core.errors import BenchError
from bench.harness.presets import PRESETS, preset_pairs
from bench.harness.runner import parse_overrides
from methods import get_method, list_methods


def test_the_cli_offers_exactly_the_registered_presets() -> None:
    assert tuple(PRESETS) == PRESET_NAMES


@pytest.mark.parametrize("method", sorted(list_methods()))
def test_cpu_preset_is_todays_defaults(method: str) -> None:
    """No pairs at all: result keys recorded before presets existed stay valid."""
    assert preset_pairs("cpu", method) == []


def test_paper_preset_sets_each_stage_and_keeps_the_parents_defaults() -> None:
    method, protocols = parse_overrides(preset_pairs("paper", "sscl"))
    cfg = get_method("sscl").config_from_dict(method)
    assert (cfg.unifeat.steps, cfg.unifeat.batch_size, cfg.unifeat.crop) == (1000, 64, 64)
    assert (cfg.core.steps, cfg.core.batch_size, cfg.core.crop) == (2000, 64, 128)
    assert cfg.core.stem_lr_factor == 0.1  # sscl's own CoRe default survives the nested overrides
    alone = get_method("unifeat").config_from_dict(parse_overrides(preset_pairs("paper", "unifeat"))[0])
    assert alone == cfg.unifeat  # the same stage gets the same schedule alone and inside sscl
    assert protocols["finetune"]["crop"] == 128


def test_user_settings_win_over_the_preset() -> None:
    pairs = [*preset_pairs("paper", "simsiam"), "method.steps=7", "finetune.crop=64"]
    method, protocols = parse_overrides(pairs)
    cfg = get_method("simsiam").config_from_dict(method)
    assert (cfg.steps, cfg.batch_size) == (7, 64)
    assert protocols["finetune"]["crop"] == 64 and protocols["finetune"]["steps"] == 1000


@pytest.mark.parametrize("method", ["random", "imagenet"])
def test_untrained_methods_get_protocol_settings_only(method: str) -> None:
    assert all(pair.startswith("finetune.") for pair in preset_pairs("paper", method))


def test_unknown_preset_is_one_line() -> None:
    with pytest.raises(BenchError, match="unknown preset 'gpu'; choose one of cpu, paper"):
        preset_pairs("gpu", "random")


def test_budget_grids_start_where_labels_are_scarce() -> None:
    from bench.harness.presets import preset_budgets

    for name in PRESETS:
        pixels = preset_budgets(name, "pixels")
        assert {10, 25, 50, 200, 600, 1000} <= set(pixels) and list(pixels) == sorted(pixels)
    # whole patches: the embedded default's labelled pool has 128 training + 32 validation patches
    assert max(preset_budgets("cpu", "images")) <= 128 and min(preset_budgets("cpu", "images")) == 1


def test_sweep_without_samples_runs_the_presets_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bench sweep`` hands the preset's grid (per unit) to the grid builder."""
    import bench.harness.sweep as sweep
    from bench.cli import main

    seen: list[list[int]] = []

    def stop(methods: object, samples: list[int], *args: object, **kwargs: object) -> list[object]:
        seen.append(list(samples))
        raise SystemExit(0)

    monkeypatch.setattr(sweep, "grid", stop)
    for unit, expected in (("pixels", [10, 25, 50, 200, 600, 1000]), ("images", [1, 2, 5, 10, 25, 50])):
        with pytest.raises(SystemExit):
            main(["sweep", "--methods", "random", "--budget-unit", unit])
        assert seen[-1] == expected


class _Stop(Exception):
    """Raised by the patched work functions: the test wants the spec, not the training."""


@pytest.mark.parametrize("method", ["simsiam", "sscl", "random"])
def test_pretrain_under_a_preset_caches_the_weights_run_reads(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bench pretrain --preset paper`` and ``bench run --preset paper`` compute one weights cache
    key, so pretraining once makes the later run a cache hit (specs captured, nothing trained)."""
    from collections.abc import Callable
    from types import SimpleNamespace

    import datasets
    from bench.cli import main
    from bench.harness import runner, tracking
    from bench.models.backbones import build_backbone

    seen: dict[str, runner.CellSpec] = {}

    def capture(name: str) -> Callable[..., None]:
        def work(spec: runner.CellSpec, *args: object, **kwargs: object) -> None:
            seen[name] = spec
            raise _Stop

        return work

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: SimpleNamespace(fingerprint="fp"))
    monkeypatch.setattr(tracking, "setup_tracking", lambda: None)
    monkeypatch.setattr(runner, "pretrain", capture("pretrain"))
    monkeypatch.setattr(runner, "run_cell", capture("run"))
    common = ["--method", method, "--backbone", "resnet18", "--device", "cpu"]
    paper = [*common, "--preset", "paper"]
    for command in (["pretrain", *paper], ["run", *paper, "--samples", "10", "--protocol", "finetune"]):
        with pytest.raises(_Stop):
            main(command)
    arch = build_backbone("resnet18", in_chans=15).spec
    keys = {name: spec.for_seed(0).pretrain_spec().cache_key(arch, "fp") for name, spec in seen.items()}
    assert keys["pretrain"] == keys["run"]
    # and the preset is in it: without --preset the weights of a trained method are others
    if method != "random":
        with pytest.raises(_Stop):
            main(["pretrain", *common])
        assert seen["pretrain"].for_seed(0).pretrain_spec().cache_key(arch, "fp") != keys["run"]
