"""Health gates (methods.health): every gated method declares its figures with reasons, and a run is
judged on the last value it logged of each."""

from __future__ import annotations

import re

import pytest

from methods import get_method
from methods.health import HealthCheck, judge, prefixed


def test_every_self_supervised_method_declares_reasoned_checks() -> None:
    figures = {
        name: {c.figure for c in get_method(name).health} for name in ("simsiam", "unifeat", "core", "sscl")
    }
    assert figures["core"] == {"recon_skill", "recon_skill_optical", "restored_std_ratio"}
    assert figures["unifeat"] == figures["simsiam"] == {"effective_rank", "collapse_std"}
    assert figures["sscl"] == {f"unifeat/{f}" for f in figures["unifeat"]} | {
        f"core/{f}" for f in figures["core"]
    }
    for name in ("simsiam", "unifeat", "core", "sscl"):
        assert all(len(c.reason) > 20 for c in get_method(name).health), name
    assert get_method("random").health == ()


@pytest.mark.parametrize("name", ["simsiam", "unifeat", "core", "sscl"])
def test_every_reason_states_its_threshold_and_no_range_of_healthy_runs(name: str) -> None:
    """A reason says why the threshold is where it is; a range healthy runs scored goes stale as
    the method changes (CoRe's said 0.3-0.4 when healthy runs scored 0.18-0.24)."""
    cls = get_method(name)
    for check in cls.health:
        low, high = check.bounds(cls().config)
        for bound, rule in ((check.minimum, low), (check.maximum, high)):
            if bound is None:
                continue
            # a number is written as the line writes it; a function of the config by its rule
            said = f"{rule:g}" if not callable(bound) else "1/sqrt(d)"
            assert said in check.reason, (name, check.figure, check.reason)
        assert "healthy runs score" not in check.reason, (name, check.figure)
        assert not re.search(r"healthy runs[^.;(]*\d", check.reason), (name, check.figure)


def test_judge_names_method_seed_and_figure_in_one_line() -> None:
    cls = get_method("sscl")
    cfg = cls().config
    healthy = {
        "sscl/unifeat/effective_rank": 19.0,
        "sscl/unifeat/collapse_std": 0.12,
        "sscl/core/recon_skill": 0.3,
        "sscl/core/recon_skill_optical": 0.3,
        "sscl/core/restored_std_ratio": 1.0,
    }
    assert judge("sscl", 1, cls.health, cfg, healthy).tag == "passed"
    # the dead run of issue 20: CoRe settled at the per-band mean
    dead = judge("sscl", 1, cls.health, cfg, {**healthy, "sscl/core/recon_skill": -0.008})
    assert not dead.passed and "\n" not in dead.line
    assert dead.line.startswith(
        "pretraining sscl seed 1 failed its health gate: core/recon_skill -0.008 < 0.1 ("
    )
    assert dead.tag == f"failed: {dead.line}"
    unmeasured = {k: v for k, v in healthy.items() if "restored" not in k}
    assert "core/restored_std_ratio was not measured" in judge("sscl", 0, cls.health, cfg, unmeasured).line
    # a threshold that is a function of the stage's config (1/sqrt(d) of UniFeat's projection)
    collapsed = judge("sscl", 0, cls.health, cfg, {**healthy, "sscl/unifeat/collapse_std": 0.02})
    assert "unifeat/collapse_std 0.02 < 0.0312 (" in collapsed.line


@pytest.mark.parametrize("value, passed", [(0.5, True), (2.0, False)])
def test_a_maximum_bounds_from_above(value: float, passed: bool) -> None:
    checks = prefixed([HealthCheck("x", "a reason long enough to read", maximum=1.0)], "stage")
    assert judge("m", 0, checks, None, {"m/stage/x": value}).passed is passed
