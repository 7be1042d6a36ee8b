"""What `posttrain <stage> --help` prints: text a user can act on, with no pointers to files the package
does not ship (design notes, source excerpts by line number, the repository's docs/ and scripts/)."""

from __future__ import annotations

import re

import pytest

from posttrain.cli import main
from posttrain.stages import STAGES

# Pointers into material that exists only in the project's working tree, never in an installed package.
UNSHIPPED = re.compile(r"DESIGN|SEED_NOTES|\bseeds? \d{3}\b|\bS\d L\d|\bL\d{2,}(-\d+)?\b|\bdocs/|\bscripts/|\bbenchmarks/")


def help_text(command: str, capsys) -> str:
    try:
        code = main([command, "--help"])
    except SystemExit as exc:  # `posttrain report` is argparse's: --help exits
        code = exc.code
    assert code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", [*STAGES, "pipeline", "report"])
def test_help_cites_nothing_the_user_does_not_have(command, capsys):
    text = help_text(command, capsys)
    assert "DESIGN" not in text and "SEED_NOTES" not in text
    assert [m.group(0) for m in UNSHIPPED.finditer(text)] == []
