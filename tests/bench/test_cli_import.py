"""Parsing any command's arguments imports no heavy library, so ``--help`` and typos answer at once."""

from __future__ import annotations

import json
import subprocess
import sys

from bench.cli.common import BOTH_NAMES, PROTOCOL_NAMES, TABLE_FORMATS

HEAVY = ("torch", "mlflow", "pandas", "matplotlib", "timm", "lightly", "optuna")

#: One valid command line per command (sub-actions included), parsed but not run.
COMMAND_LINES = [
    ["run", "--method", "sscl", "--samples", "800", "--protocol", "both"],
    ["sweep", "--methods", "random,sscl", "--samples", "200,400", "--seeds", "2"],
    ["pretrain", "--method", "sscl", "--pretrain-seed", "1"],
    ["export", "--method", "sscl", "--backbone", "resnet18", "--out", "x"],
    ["table", "--format", "latex"],
    ["plot", "--protocol", "linear"],
    ["tune", "--method", "sscl", "--trials", "3"],
    ["data", "synth", "--out", "x"],
    ["data", "check"],
    ["data", "cache"],
    ["list"],
    ["perf", "--stage", "cli"],
    ["doctor"],
    ["cache", "verify", "--fix"],
    ["cache", "clean", "--older-than", "5"],
    ["verify", "--cells", "2", "--protocol", "reference"],
    ["--no-progress", "run", "--method", "sscl", "--samples", "800"],
]

_PROBE = """
import json, sys
from bench.cli import build_parser, COMMANDS
parser = build_parser()
for line in json.loads(sys.argv[1]):
    parser.parse_args(line)
print(json.dumps({"heavy": sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules),
                  "commands": list(COMMANDS)}))
"""


def test_parsing_every_command_imports_no_heavy_library() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(COMMAND_LINES), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
    )
    probe = json.loads(out.stdout)
    assert probe["heavy"] == []
    covered = {next(arg for arg in line if not arg.startswith("-")) for line in COMMAND_LINES}
    assert covered == set(probe["commands"])  # a new command gets a line here


def test_the_light_copies_of_choices_match_their_sources() -> None:
    from bench.harness.runner import BOTH, PROTOCOLS
    from bench.report.table import FORMATS

    assert set(PROTOCOLS) == set(PROTOCOL_NAMES)
    assert BOTH == BOTH_NAMES and set(BOTH) < set(PROTOCOLS)  # `both` is not every protocol
    assert tuple(FORMATS) == TABLE_FORMATS


def test_global_no_progress_switches_progress_off_and_a_command_still_sees_its_own_flag() -> None:
    from bench.cli import build_parser

    args = build_parser().parse_args(["--no-progress", "run", "--method", "sscl", "--samples", "8"])
    assert args.global_progress is False and args.progress is True
    args = build_parser().parse_args(["run", "--method", "sscl", "--samples", "8", "--no-progress"])
    assert args.global_progress is True and args.progress is False
