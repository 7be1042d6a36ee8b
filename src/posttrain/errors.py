"""User-facing errors: one line that names the problem and the fix, exit code 2."""

import contextlib


class UserError(Exception):
    """Something the user can fix (data, config, paths). The CLI prints it as one line and exits 2."""

    exit_code = 2


class ConfigError(UserError):
    """A bad config key, value or file."""


class DataError(UserError):
    """Bad input data. Build the message with `data_error` so it names file, row and column."""


class TrainingStopped(UserError):
    """A run that stopped before its end for a reason outside its config (the loss diverged, the disk
    filled); its message says where it stopped and how to continue. Exit code 2, like every UserError."""


class NonFiniteError(TrainingStopped):
    """The loss or gradient was not finite for `max_nonfinite_steps` optimizer steps in a row."""


class DiskFullError(TrainingStopped):
    """A checkpoint, final/ or metrics.jsonl could not be written: no space left (or a quota or file-size limit)."""


class Interrupted(TrainingStopped):
    """SIGTERM or SIGINT stopped the run at a step boundary after a checkpoint was saved. The CLI prints
    the message without "error:" and exits 128 + the signal's number (SIGTERM 143, SIGINT 130)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def data_error(source, row, column, problem: str) -> DataError:
    """A DataError whose message names the file, the row (0-based), the column and what was expected."""
    where = [f"{source}"]
    if row is not None:
        where.append(f"row {row}")
    if column is not None:
        where.append(f"column '{column}'")
    return DataError(f"{', '.join(where)}: {problem}")


@contextlib.contextmanager
def naming_option(option: str):
    """A UserError raised inside starts with `option`, the config key whose value it is about (a reward
    spec's error inside selector_funcs=[...] says so), unless its message starts with it already."""
    try:
        yield
    except UserError as exc:
        if str(exc).startswith(option):
            raise
        raise type(exc)(f"{option}: {exc}") from None
