"""Progress output: plain lines in a log (never ``\\r``), one bar in a terminal, nothing when off."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core import progress as progress_module
from bench.core.progress import progress_of, set_enabled


class Terminal(io.StringIO):
    """A text stream that says it is a TTY, as a terminal's stderr does."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def every_step_is_news(monkeypatch: pytest.MonkeyPatch) -> None:
    """No minimum gap and no quiet period, so a fast loop shows the line rhythm of a slow one."""
    monkeypatch.setattr(progress_module, "MIN_GAP_S", 0.0)
    monkeypatch.setattr(progress_module, "QUIET_S", 0.0)


@pytest.mark.usefixtures("every_step_is_news")
def test_a_log_gets_a_line_per_quarter_and_a_closing_line_never_a_carriage_return() -> None:
    log = io.StringIO()
    assert list(progress_of(range(100), desc="finetune", unit="step", stream=log)) == list(range(100))
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [line.split(" (")[0] for line in lines[:-1]] == [f"finetune: {n}/100 step" for n in (25, 50, 75)]
    assert "left" in lines[0] and lines[-1].startswith("finetune: 100/100 step in ")


@pytest.mark.usefixtures("every_step_is_news")
def test_a_stage_inside_another_stays_quiet_in_a_log_until_it_runs_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = io.StringIO()
    with progress_of(total=2, desc="seeds", unit="seed", stream=log) as seeds:
        for _ in progress_of(range(8), desc="features", stream=log):
            pass
        seeds.update()
        monkeypatch.setattr(progress_module, "MAX_GAP_S", 0.0)  # now every inner step has run "long"
        for _ in progress_of(range(2), desc="finetune", stream=log):
            pass
        seeds.update()
    lines = log.getvalue().splitlines()
    assert not [line for line in lines if line.startswith("features")]
    assert [line.split(",")[0] for line in lines if line.startswith("finetune")] == [
        "finetune: 1/2 it (50%)",
        "finetune: 2/2 it in 0.0 s",  # a stage at its total gets the closing line only
    ]
    assert lines[0].startswith("seeds: 1/2 seed (50%)") and lines[-1].startswith("seeds: 2/2 seed in ")


def test_a_fast_stage_leaves_no_line_in_a_log() -> None:
    log = io.StringIO()
    for _ in progress_of(range(1000), desc="features", stream=log):
        pass
    assert log.getvalue() == ""


def test_a_slow_stage_without_a_total_still_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "MAX_GAP_S", 0.0)
    log = io.StringIO()
    with progress_of(desc="sweep", unit="unit", stream=log) as bar:
        bar.note("sscl linear 800 seed 0")
        bar.update()
    first, closing = log.getvalue().splitlines()
    assert first.startswith("sweep: 1 unit, ") and first.endswith("[sscl linear 800 seed 0]")
    assert closing.startswith("sweep: 1 unit in ")


@pytest.mark.usefixtures("every_step_is_news")
def test_off_per_stage_or_for_the_whole_process_shows_nothing() -> None:
    log, terminal = io.StringIO(), Terminal()
    for stream in (log, terminal):
        assert list(progress_of(range(5), desc="a", enabled=False, stream=stream)) == list(range(5))
    set_enabled(False)
    try:
        for stream in (log, terminal):
            list(progress_of(range(5), desc="b", stream=stream))
    finally:
        set_enabled(True)
    assert log.getvalue() == terminal.getvalue() == ""


def test_a_terminal_shows_one_bar_and_the_inner_stage_in_its_postfix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "POSTFIX_REFRESH_S", 0.0)
    terminal = Terminal()
    with progress_of(total=2, desc="sscl linear seeds", unit="seed", stream=terminal) as outer:
        inner = progress_of(range(3), desc="finetune", stream=terminal)
        for _ in inner:
            assert inner.bar is None  # no second bar
        assert outer.bar is not None
        outer.update(2)
    text = terminal.getvalue()
    assert "sscl linear seeds" in text and "finetune 3/3" in text
    frames = [frame for frame in text.split("\r") if "finetune" in frame]
    assert frames and all(frame.startswith("sscl linear seeds: ") for frame in frames)  # in the outer bar


@pytest.mark.slow
def test_the_main_command_logged_to_a_file_is_short_and_says_what_happened(
    tiny_data_root: Path, tmp_path: Path
) -> None:
    """README's main command (``run --method sscl --samples 800``) on the tiny set, steps cut short."""
    short = [
        f"{stage}.{key}={value}"
        for stage in ("unifeat", "core")
        for key, value in (("steps", 4), ("batch_size", 4))
    ]
    argv = ["run", "--method", "sscl", "--samples", "20", "--seeds", "2", "--data", str(tiny_data_root)]
    argv += [arg for pair in short for arg in ("--set", pair)]
    argv += ["--allow-unhealthy"]  # 4 steps cannot pass the health gate (issue 20); marked, not stopped
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "BENCH_HOME": str(tmp_path / "home"),
    }
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        subprocess.run(
            [sys.executable, "-m", "bench", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
            check=True,
        )
    log_text = log_path.read_text()
    assert "\r" not in log_text
    assert len(log_text) < 3000, log_text
    for what in ("SSCL", "AA ", "OA ", "realised labelled pixels per class", "pretraining: ", "wall time"):
        assert what in log_text, what
