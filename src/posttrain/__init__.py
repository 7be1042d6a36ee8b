"""posttrain: post-training for language models, readable and fast.

The Python API (`posttrain.sft(...)`, `posttrain.grpo(...)`, `posttrain.generate(...)`, ...) lives in
`posttrain.api` and is loaded on first use, so `import posttrain` stays light (no torch).
"""

import importlib as _importlib

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy exports. A name the API does not export raises AttributeError, so that
    # `from posttrain import models` still falls back to importing the submodule.
    if not name.startswith("_") and name != "api":
        api = _importlib.import_module("posttrain.api")
        if name in api.__all__:
            return getattr(api, name)
    raise AttributeError(f"module 'posttrain' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_importlib.import_module("posttrain.api").__all__))
