"""Which warnings the command line routes to the log: those raised in installed libraries, not ours or the user's."""

from __future__ import annotations

import transformers

import posttrain.cli
from posttrain.library_warnings import is_library_file


def test_library_files_are_told_from_ours_and_the_users(tmp_path):
    assert is_library_file(transformers.__file__)
    assert is_library_file("<frozen importlib._bootstrap>")
    assert not is_library_file(posttrain.cli.__file__)  # our own warnings still show
    assert not is_library_file(str(tmp_path / "rewards.py"))  # so do a user's reward function's
