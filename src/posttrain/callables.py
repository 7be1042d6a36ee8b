"""Load a callable a user names by reference: `package.module:function` or `path/to/file.py:function`.

The bottom layer: reward functions, scorers and environments are all named this way.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Callable

from posttrain.errors import UserError


def load_callable(ref: str) -> Callable:
    """`package.module:function` or `path/to/file.py:function`."""
    if ":" not in ref:
        raise UserError(f"scorer '{ref}' is not task:NAME, module:function or file.py:function")
    target, name = ref.rsplit(":", 1)
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise UserError(f"scorer file not found: {target}")
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
            raise UserError(f"cannot import module '{target}' for scorer '{ref}' ({exc})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"'{name}' in {target} is not a function; expected f(prompts, completions, **columns) -> list[float]")
    return fn
