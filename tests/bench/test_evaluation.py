"""Evaluation you can trust: selection blind to test and to dense validation labels, the budget
as the whole label budget, reference rows, and every protocol learning on the tiny set."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from bench.harness.runner import CellSpec, budget_for, cell_key, result_key, run_cell
from bench.models.backbones import build_backbone
from bench.protocols.finetune import FinetuneConfig, finetune, predictor
from bench.protocols.linear import LinearConfig
from bench.protocols.metrics import Scores
from bench.protocols.reference import training_pixels
from bench.protocols.registry import get_protocol, list_protocols
from bench.protocols.validation import validation_confusion
from datasets import Dataset
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401

CPU = torch.device("cpu")
QUICK_FT = FinetuneConfig(steps=40, batch_size=4, crop=16, eval_every=10)


def _poisoned(ds: Dataset, budget) -> SimpleNamespace:  # type: ignore[no-untyped-def]
    """``ds`` with every label a budget does not own scrambled: dense validation labels and the
    whole test split. A protocol that reads them selects differently."""
    rng = np.random.default_rng(0)
    k = ds.classes.num_classes
    pool = rng.integers(0, k, ds.labelled.labels.shape).astype(np.uint8)
    pool[budget.patch, budget.row, budget.col] = budget.label
    pool[budget.val_patch, budget.val_row, budget.val_col] = budget.val_label
    test = rng.integers(0, k, ds.test.labels.shape).astype(np.uint8)
    return SimpleNamespace(
        classes=ds.classes,
        band_names=ds.band_names,
        fingerprint=ds.fingerprint,
        labelled=SimpleNamespace(images=ds.labelled.images, labels=pool, fingerprint=ds.labelled.fingerprint),
        test=SimpleNamespace(images=ds.test.images, labels=test, fingerprint=ds.test.fingerprint),
    )


def test_finetune_selection_reads_only_the_budgets_validation_pixels(tiny_dataset: Dataset) -> None:
    spec = CellSpec("random", 20, protocol="finetune")
    budget = budget_for(spec, 0, tiny_dataset)
    assert budget.val_label.size > 0
    torch.manual_seed(0)
    backbone = build_backbone("tiny", len(tiny_dataset.band_names))
    cfg = dataclasses.replace(QUICK_FT, min_val_pixels=1)  # 4 per class at 20: select anyway here
    clean = finetune(backbone, tiny_dataset, budget, cfg, 0, CPU, progress=False)
    poisoned = finetune(backbone, _poisoned(tiny_dataset, budget), budget, cfg, 0, CPU, progress=False)
    assert clean.validation_history == poisoned.validation_history
    for name, value in clean.state_dict().items():
        torch.testing.assert_close(value, poisoned.state_dict()[name], msg=name)
    # the restored checkpoint is the best one seen
    aa = Scores.from_confusion(
        validation_confusion(predictor(clean, CPU), tiny_dataset.labelled.images, budget, 8, CPU)
    ).aa
    assert aa == pytest.approx(max(a for _, a in clean.validation_history))
    assert len(clean.validation_history) == 4


def test_too_few_validation_pixels_to_rank_checkpoints_use_the_fixed_schedule(tiny_dataset: Dataset) -> None:
    """20 px per class holds 4 validation pixels per class (AA steps of 100 / (8 x 4) = 3.1 points):
    below the default floor of 10 the fixed schedule's last step is tested, exactly as with
    selection off; lowering the floor to 4 selects again."""
    from bench.protocols.validation import can_rank_checkpoints, fewest_validation_pixels

    budget = budget_for(CellSpec("random", 20, protocol="finetune"), 0, tiny_dataset)
    fewest = fewest_validation_pixels(budget)
    assert 0 < fewest < FinetuneConfig().min_val_pixels == 10
    assert not can_rank_checkpoints(budget, 10) and can_rank_checkpoints(budget, fewest)
    backbone = build_backbone("tiny", len(tiny_dataset.band_names))
    default = finetune(backbone, tiny_dataset, budget, QUICK_FT, 0, CPU, progress=False)
    fixed = finetune(
        backbone, tiny_dataset, budget, dataclasses.replace(QUICK_FT, selection=False), 0, CPU, False
    )
    assert default.validation_history == [] and default.selected == "fixed schedule (last step)"
    for name, value in default.state_dict().items():
        torch.testing.assert_close(value, fixed.state_dict()[name], msg=name)
    floor = dataclasses.replace(QUICK_FT, min_val_pixels=fewest)
    selected = finetune(backbone, tiny_dataset, budget, floor, 0, CPU, progress=False)
    assert len(selected.validation_history) == 4 and selected.selected == "best validation checkpoint"


def test_no_selection_tests_the_last_step(tiny_dataset: Dataset) -> None:
    budget = budget_for(CellSpec("random", 20), 0, tiny_dataset)
    backbone = build_backbone("tiny", len(tiny_dataset.band_names))
    fixed = finetune(
        backbone, tiny_dataset, budget, dataclasses.replace(QUICK_FT, selection=False), 0, CPU, False
    )
    assert fixed.validation_history == []


@pytest.mark.parametrize("name", ["linear", "knn", "raw", "rf"])
def test_tuning_scores_never_read_test_or_dense_validation_labels(tiny_dataset: Dataset, name: str) -> None:
    budget = budget_for(CellSpec("random", 20), 1, tiny_dataset)
    protocol = get_protocol(name)
    backbone = None if protocol.reference else build_backbone("tiny", len(tiny_dataset.band_names))
    cfg = protocol.Config()
    kwargs = {"seed": 1, "device": CPU, "progress": False, "split": "val"}
    clean = protocol.evaluate(backbone, tiny_dataset, budget, cfg, **kwargs)
    poisoned = protocol.evaluate(backbone, _poisoned(tiny_dataset, budget), budget, cfg, **kwargs)
    np.testing.assert_array_equal(clean, poisoned)
    assert clean.sum() == budget.val_label.size


def test_raw_reference_matches_scikit_learn(tiny_dataset: Dataset) -> None:
    """``raw`` is the linear probe on the bands: scikit-learn's logistic regression on the same
    standardised pixels and penalty predicts (almost) every test pixel the same way."""
    budget = budget_for(CellSpec("raw", 50), 0, tiny_dataset)
    cfg = LinearConfig(weight_decay=1e-3, max_iter=500)
    ours = get_protocol("raw").evaluate(None, tiny_dataset, budget, cfg, seed=0, device=CPU, progress=False)
    x, y = training_pixels(tiny_dataset, budget)
    mean, std = x.mean(0), x.std(0, ddof=1)
    model = LogisticRegression(C=1 / (len(y) * cfg.weight_decay), max_iter=5000, tol=1e-8)
    model.fit((x - mean) / std, y)
    images = np.asarray(tiny_dataset.test.images, dtype=np.float32)
    labels = np.asarray(tiny_dataset.test.labels).reshape(-1)
    pixels = np.moveaxis(images, 1, -1).reshape(-1, images.shape[1])
    valid = labels < tiny_dataset.classes.num_classes
    theirs = np.zeros_like(ours)
    np.add.at(theirs, (labels[valid], model.predict((pixels[valid] - mean) / std)), 1)
    agree = np.trace(ours) / ours.sum() - np.trace(theirs) / theirs.sum()
    assert abs(agree) < 0.01  # OA within one point


def test_reference_rows_are_registered_and_need_no_backbone() -> None:
    assert set(list_protocols(reference=True)) == {"raw", "rf"}
    assert {"linear", "finetune"} <= set(list_protocols(reference=False))
    spec = CellSpec("rf", 20, protocol="finetune")
    assert spec.protocol == "reference" and spec.evaluator == "rf"
    assert CellSpec("rf", 20, protocol="linear") == spec  # one cell whatever the protocol


@pytest.mark.usefixtures("mlflow_store")
def test_every_protocol_and_reference_learns_and_all_share_one_draw(tiny_dataset: Dataset) -> None:
    """Learning sanity on the tiny set: AA at least 1.5x chance (1/8) for fine-tuning and both
    references, and every method's seed trains on the very same budget file. The references score
    0.25-0.26 here and sklearn's solvers follow the BLAS kernel (0.23 was seen under another one),
    so "twice chance" held on one CPU only; 1.5x is a margin every kernel clears."""
    fast = {"finetune": {"steps": 200, "crop": 32, "eval_every": 50}}
    cells = {}
    for method, protocol in [("random", "finetune"), ("raw", "linear"), ("rf", "linear")]:
        spec = CellSpec(method, 30, protocol=protocol, protocol_overrides=fast.get(protocol, {}))
        cells[method] = run_cell(spec, [0], tiny_dataset, CPU, progress=False)
    for key, cell in cells.items():
        assert cell.scores[0].aa > 1.5 / 8, (key, cell.scores[0].aa)  # 1.5x chance, for any BLAS kernel
        assert sum(cell.seeds[0].realised_val.values()) > 0
    files = {budget_for(c.spec, 0, tiny_dataset).path for c in cells.values()}
    assert len(files) == 1


def test_the_linear_probe_reads_informative_features(tiny_dataset: Dataset) -> None:
    """Random-init features of 32-px patches are weak (AA ~0.17), so the linear protocol is checked
    on a backbone that learned something: a fine-tuned one must probe far above chance."""
    budget = budget_for(CellSpec("random", 30), 0, tiny_dataset)
    torch.manual_seed(0)
    backbone = build_backbone("tiny", len(tiny_dataset.band_names))
    cfg = dataclasses.replace(
        QUICK_FT, steps=200, crop=32, eval_every=50, probe_steps=0
    )  # all learning in the trunk
    trained = finetune(backbone, tiny_dataset, budget, cfg, 0, CPU, progress=False).backbone
    confusion = get_protocol("linear").evaluate(
        trained, tiny_dataset, budget, LinearConfig(), seed=0, device=CPU, progress=False
    )
    assert Scores.from_confusion(confusion).aa > 2 / 8  # twice chance


def test_pretraining_seed_is_seed_mod_k_and_k_is_part_of_the_cell_only(tiny_dataset: Dataset) -> None:
    one = CellSpec("simsiam", 20, pretrain_seeds=1)
    three = dataclasses.replace(one, pretrain_seeds=3)
    assert [three.for_seed(s).pretrain_seed for s in range(5)] == [0, 1, 2, 0, 1]
    assert cell_key(one, tiny_dataset) != cell_key(three, tiny_dataset)
    assert result_key(one, 3, tiny_dataset) == result_key(three, 3, tiny_dataset)  # pretraining seed 0 both
    assert result_key(one, 1, tiny_dataset) != result_key(three, 1, tiny_dataset)  # 0 vs 1


def test_by_default_every_evaluation_seed_has_its_own_pretraining_run(tiny_dataset: Dataset) -> None:
    """K = n by default (issue 32): seed s uses pretraining seed s, for a method and the Baseline's
    initialisation alike, in the spec and in every command that takes --pretrain-seeds."""
    import argparse

    from bench.cli import common

    for method in ("simsiam", "random"):
        spec = CellSpec(method, 20)
        assert [spec.for_seed(s).pretrain_seed for s in range(5)] == [0, 1, 2, 3, 4]
        nine = dataclasses.replace(spec, pretrain_seeds=9)
        assert all(result_key(spec, s, tiny_dataset) == result_key(nine, s, tiny_dataset) for s in range(9))
    parser = argparse.ArgumentParser()
    common.add_evaluation_args(parser)
    assert parser.parse_args([]).pretrain_seeds is None is common.DEFAULT_PRETRAIN_SEEDS
    assert parser.parse_args(["--pretrain-seeds", "3"]).pretrain_seeds == 3
