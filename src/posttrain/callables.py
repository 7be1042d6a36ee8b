"""Load a callable a user names by reference: `package.module:function` or `path/to/file.py:function`.

The bottom layer: reward functions, scorers and environments are all named this way.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Callable

from posttrain.errors import UserError


def load_callable(ref: str, what: str = "scorer", expected: str = "a function f(prompts, completions, **columns) -> list[float]") -> Callable:
    """`package.module:function` or `path/to/file.py:function` (`what` and `expected` word the errors)."""
    if ":" not in ref:
        raise UserError(f"{what} '{ref}' is not task:NAME, module:function or file.py:function")
    target, name = ref.rsplit(":", 1)
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise UserError(f"{what} file not found: {target}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # user code: report it as one line
            raise UserError(f"importing {target} failed: {type(exc).__name__}: {exc}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise UserError(f"cannot import module '{target}' for {what} '{ref}' ({exc})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"'{name}' in {target} is not callable; expected {expected}")
    return fn


# ------------------------------------------------------------------------ objects given to the API

# Data sets, models and tokenizers passed to the Python API as objects live here, by name, for this
# process only; a config holds the spec "python:KIND/NAME" in their place (config.yaml says so).
OBJECT_PREFIX = "python:"
_objects: dict[str, object] = {}


def register_object(kind: str, obj: object, label: str | None = None) -> str:
    """The spec "python:KIND/LABEL-N" under which `obj` is kept for this process (the same object keeps its
    spec); LABEL defaults to the object's type name."""
    for spec, held in _objects.items():
        same = held is obj or (isinstance(held, tuple) and isinstance(obj, tuple) and len(held) == len(obj)
                               and all(x is y for x, y in zip(held, obj)))
        if same and spec.startswith(f"{OBJECT_PREFIX}{kind}/"):
            return spec
    spec = f"{OBJECT_PREFIX}{kind}/{label or type(obj).__name__}-{len(_objects) + 1}"
    _objects[spec] = obj
    return spec


def is_object_spec(value) -> bool:
    return isinstance(value, str) and value.startswith(OBJECT_PREFIX)


def python_object(spec: str, option: str):
    """The object a spec names; a UserError when this process holds none (a fresh process: torchrun, a
    resume from the CLI), naming `option` and the fix."""
    if spec not in _objects:
        raise UserError(f"{option}={spec} names a Python object given to posttrain's API in another process, which this "
                        "process cannot see; pass a file, directory or hub name instead (save a data set with "
                        "to_json/save_to_disk, a model with save_pretrained)")
    return _objects[spec]
