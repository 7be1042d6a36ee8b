"""Which warnings the command line routes to the log: those raised in installed libraries, not ours or the user's."""

from __future__ import annotations

import sys

import transformers

import posttrain.cli
from posttrain.library_warnings import _after_import, is_library_file


def test_library_files_are_told_from_ours_and_the_users(tmp_path):
    assert is_library_file(transformers.__file__)
    assert is_library_file("<frozen importlib._bootstrap>")
    assert not is_library_file(posttrain.cli.__file__)  # our own warnings still show
    assert not is_library_file(str(tmp_path / "rewards.py"))  # so do a user's reward function's


def test_a_setting_waits_for_its_module_to_be_imported(tmp_path, monkeypatch):
    (tmp_path / "late_library.py").write_text("SETTING = 'default'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    finders = list(sys.meta_path)
    _after_import("late_library", lambda module: setattr(module, "SETTING", "ours"))
    assert "late_library" not in sys.modules  # nothing imported early (`--help` stays fast)
    import late_library

    assert late_library.SETTING == "ours"
    assert sys.meta_path == finders  # the watcher is gone after the one import
    _after_import("late_library", lambda module: setattr(module, "SETTING", "again"))  # imported already: at once
    assert late_library.SETTING == "again"
    del sys.modules["late_library"]
