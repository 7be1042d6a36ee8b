"""Libraries' warnings go to a log file, not the terminal of someone running `posttrain`.

transformers, torch, peft, datasets, ... warn about their own deprecations and defaults
(`FutureWarning: ... is deprecated ...`). A user of `posttrain grpo` can do nothing about them, and on
stderr they push our one-line errors and progress lines out of sight. `route_library_warnings()`,
called once at the start of the command line's `main`, sends them to a log file instead:

- a Python warning whose source line is inside an installed library (site-packages, the standard
  library) is written to the log; one from posttrain's own code or the user's (a reward function,
  a script) still shows on stderr as usual. Python's filters still decide first (each warning once
  per place by default; `-W error` still raises).
- `logging` records of libraries that log to stderr through their own handler (transformers,
  datasets, huggingface_hub) or through no handler at all (Python's "last resort") go to the log.
- transformers' own progress bars ("Loading weights", "Writing model shards": a local load or save,
  over in a blink, drawn again for every model) are not drawn. A hub download keeps its bar (that is
  huggingface_hub's, and someone waits on it).

The log is `$POSTTRAIN_LOG` if set, else `~/.cache/posttrain/warnings.log` (under `$XDG_CACHE_HOME`
if set); it is created on the first warning and rotated at 1 MB. `POSTTRAIN_SHOW_WARNINGS=1` leaves
everything on the terminal. Fixing a warning at its cause (calling the current API) beats routing it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import logging.handlers
import os
import site
import sys
import sysconfig
import tempfile
import warnings
from pathlib import Path

LOG_ENV = "POSTTRAIN_LOG"
SHOW_ENV = "POSTTRAIN_SHOW_WARNINGS"
# Libraries whose root logger gets its own stderr handler when they are imported.
LIBRARY_LOGGERS = ("transformers", "datasets", "huggingface_hub")

_OWN_DIR = str(Path(__file__).resolve().parent) + os.sep
_log = logging.Logger("py.warnings")  # Python warnings' writer to the log (unregistered: no parent, no user config)
_show_on_terminal = warnings.showwarning  # Python's, as it was before routing


def log_path() -> Path:
    """Where library warnings are written: `$POSTTRAIN_LOG`, else the user's cache directory."""
    if os.environ.get(LOG_ENV):
        return Path(os.environ[LOG_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "posttrain" / "warnings.log"


def route_library_warnings() -> None:
    """Send installed libraries' warnings and log records to `log_path()` (idempotent)."""
    if os.environ.get(SHOW_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return
    if not _log.handlers:
        _log.addHandler(_file_handler(log_path()))
    sink = _log.handlers[0]
    warnings.showwarning = _show
    logging.lastResort = sink  # records of loggers nobody configured (instead of bare lines on stderr)
    for name in LIBRARY_LOGGERS:
        _claim_logger(name, sink)
    _after_import("transformers.utils.logging", _hide_transformers_progress_bars)


def is_library_file(filename: str) -> bool:
    """Whether `filename` is inside an installed library or the standard library (not posttrain)."""
    if filename.startswith("<frozen "):
        return True
    path = os.path.abspath(filename)
    return not path.startswith(_OWN_DIR) and any(path.startswith(root) for root in _library_roots())


def _show(message, category, filename, lineno, file=None, line=None) -> None:
    if file is not None or not is_library_file(filename):
        _show_on_terminal(message, category, filename, lineno, file, line)
    else:
        _log.warning("%s", warnings.formatwarning(message, category, filename, lineno, line).rstrip())


class _LogFile(logging.handlers.RotatingFileHandler):
    """The log file, opened on the first record; a log that cannot be written is given up silently."""

    def handleError(self, record) -> None:
        pass


def _file_handler(path: Path) -> logging.Handler:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: the temp directory instead
        path = Path(tempfile.gettempdir()) / f"posttrain-warnings-{os.getuid() if hasattr(os, 'getuid') else 0}.log"
    handler = _LogFile(path, maxBytes=1_000_000, backupCount=1, delay=True, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s pid %(process)d [%(name)s] %(levelname)s: %(message)s"))
    return handler


def _writes_to_terminal(handler: logging.Handler) -> bool:
    return type(handler) is logging.StreamHandler and getattr(handler, "stream", None) in (
        sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)


class _LibraryLogger(logging.Logger):
    """A library's root logger: a stderr handler the library adds on import is swapped for the log."""

    sink: logging.Handler

    def addHandler(self, handler: logging.Handler) -> None:
        super().addHandler(self.sink if _writes_to_terminal(handler) else handler)


def _claim_logger(name: str, sink: logging.Handler) -> None:
    existing = logging.Logger.manager.loggerDict.get(name)
    if isinstance(existing, logging.Logger):  # the library is imported already: swap its handler now
        for handler in [h for h in existing.handlers if _writes_to_terminal(h)]:
            existing.removeHandler(handler)
            existing.addHandler(sink)
        return
    previous = logging.getLoggerClass()
    logging.setLoggerClass(_LibraryLogger)
    try:
        logging.getLogger(name).sink = sink  # created now, so the library finds this one on import
    finally:
        logging.setLoggerClass(previous)


def _hide_transformers_progress_bars(transformers_logging) -> None:
    if hasattr(transformers_logging, "set_tqdm_hook"):  # transformers 5.x: its own bars only, hub downloads keep theirs
        empty = transformers_logging.EmptyTqdm
        transformers_logging.set_tqdm_hook(lambda factory, args, kwargs: empty(*args, **kwargs))
        return
    from huggingface_hub import utils as hub  # 4.x: switching transformers' bars off switches the hub's off too

    downloads_had_bars = not hub.are_progress_bars_disabled()
    transformers_logging.disable_progress_bar()
    if downloads_had_bars:
        hub.enable_progress_bars()


def _after_import(module_name: str, action) -> None:
    """Run `action(module)` now if `module_name` is imported, else right after its first import
    (a library's settings exist only once its module does; importing it here would slow `--help`)."""
    if module_name in sys.modules:
        action(sys.modules[module_name])
    elif not any(isinstance(f, _AfterImport) and f.module_name == module_name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(module_name, action))


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds `module_name` as the other finders do, with a loader that runs `action` once it is executed."""

    def __init__(self, module_name: str, action):
        self.module_name, self.action = module_name, action

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.module_name:
            return None
        sys.meta_path.remove(self)  # once; and so that the lookup below asks the other finders
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenRun(spec.loader, self.action)
        return spec


class _ThenRun(importlib.abc.Loader):
    """A module's own loader, then `action(module)`; anything else is asked of the module's loader."""

    def __init__(self, loader, action):
        self._loader, self._action = loader, action

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        try:
            self._action(module)
        except Exception:  # a cosmetic setting must never break the library's import
            pass

    def __getattr__(self, name):
        return getattr(self._loader, name)


def _library_roots() -> tuple[str, ...]:
    global _roots
    if _roots is None:
        paths = {sysconfig.get_paths().get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
        paths.update(getattr(site, "getsitepackages", list)())
        paths.add(site.getusersitepackages() if hasattr(site, "getusersitepackages") else None)
        _roots = tuple(os.path.abspath(p) + os.sep for p in paths if p)
    return _roots


_roots: tuple[str, ...] | None = None
