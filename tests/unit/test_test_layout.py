"""Where a test file goes. The rule, which these tests enforce:

- A unit test of `src/posttrain/<package>/<module>.py` is `tests/unit/<package>/test_<module>.py`
  (a top-level module such as `config.py`: `tests/unit/test_config.py`; a package's `__init__.py`:
  `tests/unit/test_<package>.py`). A file may add a suffix, `test_<module>_<suffix>.py`
  (`test_policy_trl_parity.py`, `test_sandbox_security.py`); `<module>` must exist in src.
- A test that runs a whole stage, recipe or training run (`run_cli` / `python -m posttrain`, the API's
  stage functions, `run_*` runners, `run_pipeline`, torchrun, or anything that writes a run dir) is
  end-to-end: `tests/e2e/test_<name>.py`, where `<name>` starts with a stage (`sft`, `dpo`, ...), a
  shipped recipe (`rlaif`, ...) or a top-level module (`api`, `pipeline`, ...). tests/conftest.py
  marks them `e2e`, so `pytest -m "not e2e"` is the unit suite.
- Nothing named `test_*.py` at the root of tests/; every folder under tests/unit and tests/e2e is a
  package (`__init__.py`), so equal basenames (unit/losses/test_ppo.py, e2e/test_ppo.py) don't clash.
- A fixture or helper that a unit file and an e2e file both use lives once, in tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src" / "posttrain"
E2E = TESTS / "e2e"
UNIT = TESTS / "unit"

# Checks over the whole source or test tree rather than one module.
WHOLE_TREE = {UNIT / "test_layers.py", UNIT / "test_test_layout.py"}


def all_test_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if "__pycache__" not in p.parts)


def names_and_prefixes(stem: str) -> list[str]:
    """`policy_trl_parity` -> [`policy_trl_parity`, `policy_trl`, `policy`]: the module a name may start with."""
    parts = stem.split("_")
    return ["_".join(parts[:k]) for k in range(len(parts), 0, -1)]


def unit_target(path: Path) -> str | None:
    """The src module or package a unit test file is named after, or None."""
    folder = SRC.joinpath(*path.parent.relative_to(UNIT).parts)
    if not (folder / "__init__.py").is_file():
        return None
    for name in names_and_prefixes(path.stem.removeprefix("test_")):
        if (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file():
            return str((folder / name).relative_to(SRC.parent))
    return None


def e2e_subjects() -> set[str]:
    from posttrain.stages import STAGES

    recipes = {p.stem for p in (SRC / "recipes").glob("*.yaml")}
    modules = {p.stem for p in SRC.glob("*.py") if not p.stem.startswith("_")} | {
        p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    return set(STAGES) | recipes | modules


def test_no_test_file_at_the_root_of_tests():
    stray = [p.name for p in all_test_files() if p.parent == TESTS]
    assert not stray, (f"{stray}: a unit test goes to tests/unit/<package>/test_<module>.py, one that runs a whole stage "
                       "to tests/e2e/test_<stage>.py (see this file's docstring)")


def test_every_test_file_is_under_unit_or_e2e():
    elsewhere = [str(p.relative_to(TESTS)) for p in all_test_files() if not {UNIT, E2E} & set(p.parents)]
    assert not elsewhere, f"{elsewhere}: test files live under tests/unit/ or tests/e2e/"


def test_unit_files_are_named_after_a_module_they_test():
    unmatched = [str(p.relative_to(TESTS)) for p in all_test_files()
                 if UNIT in p.parents and p not in WHOLE_TREE and unit_target(p) is None]
    assert not unmatched, (f"{unmatched}: name a unit test file tests/unit/<package>/test_<module>[_<suffix>].py after "
                           "src/posttrain/<package>/<module>.py (or a package's __init__.py: tests/unit/test_<package>.py)")


def test_e2e_files_are_flat_and_named_after_a_stage_recipe_or_module():
    subjects = e2e_subjects()
    bad = [str(p.relative_to(TESTS)) for p in all_test_files() if E2E in p.parents and (
        p.parent != E2E or not set(names_and_prefixes(p.stem.removeprefix("test_"))) & subjects)]
    assert not bad, (f"{bad}: an end-to-end file is tests/e2e/test_<name>[_<suffix>].py, <name> a stage, a shipped "
                     f"recipe or a top-level module: {', '.join(sorted(subjects))}")


def test_every_test_folder_is_a_package():
    folders = {p.parent for p in all_test_files() if {UNIT, E2E} & set(p.parents)} | {UNIT, E2E}
    missing = sorted(str(f.relative_to(TESTS)) for f in folders if not (f / "__init__.py").is_file())
    assert not missing, f"{missing}: add an empty __init__.py so equal basenames in different folders don't clash"


def test_the_tests_root_is_no_package():
    """tests/ stays on sys.path (rootdir-relative prepend imports): `from conftest import ...` and
    `from tiny_tokenizers import ...` work from every folder."""
    assert not (TESTS / "__init__.py").exists()


def test_e2e_marker_is_exactly_the_tests_under_e2e(request):
    items = request.session.items
    wrong = [item.nodeid for item in items if (item.get_closest_marker("e2e") is not None) != (E2E in Path(item.path).parents)]
    assert not wrong, f"{wrong[:5]}: the e2e marker comes from tests/conftest.py's pytest_collection_modifyitems, by path"


@pytest.mark.parametrize("name, target", [
    ("unit/losses/test_policy_trl_parity.py", "posttrain/losses/policy"),
    ("unit/test_config.py", "posttrain/config"),
    ("unit/test_report.py", "posttrain/report"),
    ("unit/losses/test_nothing.py", None),
    ("unit/nowhere/test_policy.py", None),
])
def test_the_unit_rule_itself(name, target):
    assert unit_target(TESTS / name) == target
