"""The layers of DESIGN.md point one way: a module imports only from its own layer or those below.

Every import of a posttrain module, at the top of a file or inside a function, is read from the source
(`ast`), so a lazy import reaching up fails here as surely as a top-level one. A new package must be
given a layer below before this passes, and a layer is listed once, in order. docs/architecture.md
says what each layer holds.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# Bottom to top. A top-level name of the package (a subpackage or a module) belongs to one layer.
LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"errors", "config", "options", "ranks", "callables", "library_warnings", "embedded", "smoke", "hub", "trl_compat"}),
    ("data", {"data"}),
    ("tasks", {"tasks"}),  # the embedded datasets and their programmatic scorers, read through `data`
    ("models", {"models"}),
    ("losses", {"losses"}),
    ("rollout", {"generation", "rollout"}),
    ("rewards", {"rewards"}),
    ("agents", {"agents"}),  # environments, tools, multi-turn episodes: read rewards, feed the online core
    ("online", {"online", "methods"}),
    ("train", {"train", "algorithms"}),
    ("stages and surfaces", {"stages", "cli", "api", "pipeline", "report", "eval", "annotate", "quickstart", "__main__", "__init__"}),
]
LAYER_OF = {name: i for i, (_, names) in enumerate(LAYERS) for name in names}


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, src: Path = SRC) -> list[tuple[int, str]]:
    """(line, module) for every posttrain module `path` imports; `from posttrain.x import y` counts
    `posttrain.x.y` when y is a submodule, and `from . import` forms are resolved."""
    here = module_name(path, src)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                is_module = (src / Path(*sub.split("."))).with_suffix(".py").is_file() or (src / Path(*sub.split("."))).is_dir()
                found.append((node.lineno, sub if is_module else base))
    return [(line, name) for line, name in found if name == "posttrain" or name.startswith("posttrain.")]


def layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top not in LAYER_OF:
        raise KeyError(f"{module}: '{top}' has no layer; add it to LAYERS in tests/unit/test_layers.py and docs/architecture.md")
    return LAYER_OF[top]


def upward_imports(src: Path = SRC) -> list[str]:
    problems = []
    for path in sorted((src / "posttrain").rglob("*.py")):
        here = module_name(path, src)
        for line, target in imported_modules(path, src):
            if layer(target) > layer(here):
                problems.append(f"{path.relative_to(src)}:{line}: {here} ({LAYERS[layer(here)][0]}) imports "
                                f"{target} ({LAYERS[layer(target)][0]})")
    return problems


def test_no_module_imports_from_a_layer_above():
    assert upward_imports() == []


def package_cycles(src: Path = SRC) -> list[list[str]]:
    """Cycles among top-level names (`cli` -> `pipeline` -> `cli`): legal within one layer, still a knot."""
    graph: dict[str, set[str]] = {}
    for path in sorted((src / "posttrain").rglob("*.py")):
        here = module_name(path, src).split(".")
        for _, target in imported_modules(path, src):
            a, b = (here[1] if len(here) > 1 else "__init__"), (target.split(".")[1] if "." in target else "__init__")
            if a != b:
                graph.setdefault(a, set()).add(b)
    cycles, stack = [], [[start] for start in sorted(graph)]
    while stack:
        path = stack.pop()
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt == path[0] and path[0] == min(path):
                cycles.append(path + [nxt])
            elif nxt not in path:
                stack.append(path + [nxt])
    return cycles


def test_no_import_cycle_between_packages():
    assert package_cycles() == []


def test_every_package_and_module_has_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in (SRC / "posttrain").iterdir()
            if (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert tops - set(LAYER_OF) == set()
    assert sum(len(names) for _, names in LAYERS) == len(LAYER_OF)  # no name in two layers


def test_the_check_catches_an_upward_import(tmp_path):
    """The checker is not vacuous: a data module reaching up to train, lazily, and a relative import
    reaching up, are both reported; a downward import is not."""
    pkg = tmp_path / "posttrain"
    for sub in ("data", "train", "models"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "train" / "loop.py").write_text("from posttrain.data import rows\n")
    (pkg / "data" / "rows.py").write_text("def f():\n    from posttrain.train.loop import x\n")
    (pkg / "models" / "heads.py").write_text("from ..train import loop\n")
    (pkg / "data" / "steps.py").write_text("from posttrain.data import rows\n")
    problems = upward_imports(tmp_path)
    assert len(problems) == 2
    assert problems[0].startswith("posttrain/data/rows.py:2: posttrain.data.rows (data) imports posttrain.train.loop (train)")
    assert problems[1].startswith("posttrain/models/heads.py:1: posttrain.models.heads (models) imports posttrain.train.loop")
    assert package_cycles(tmp_path) == [["data", "train", "data"]]  # data -> train -> data; within data is fine


def test_an_unknown_package_is_named():
    with pytest.raises(KeyError, match="'swarm' has no layer"):
        layer("posttrain.swarm.loop")
