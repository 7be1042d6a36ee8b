"""Resolve a `dataset=` value to rows: `task:NAME[:split[:N]]` (an embedded task), anything
`data.readers.read_records` reads (files, `save_to_disk` directories, hub names, builders with
data_files) or a mixture `[a:0.7, b:0.3]` of those (tasks/mixtures.py); then rename columns
(dataset_columns, dataset_text_field).

It lives with the tasks, one layer above `data`, so that the data layer never reaches up to them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from posttrain.data.readers import read_records
from posttrain.errors import ConfigError, DataError, data_error
from posttrain.smoke import cap_rows
from posttrain.tasks import get_task
from posttrain.tasks.benchmarks import benchmark_rows, hub_benchmark

TASK_PREFIX = "task:"


def is_task_source(source: str) -> bool:
    return str(source).startswith(TASK_PREFIX)


@dataclass(frozen=True)
class Reading:
    """How a stage's options say to read a source: the first two only for the training `dataset` itself
    (an eval set or a mixture element is named in full by its own string), the renames for every source."""
    config: str | None = None
    data_files: object = None
    renames: dict = field(default_factory=dict)
    seed: int = 0


def reading_of(options, source: str) -> Reading:
    """The Reading of `source` under a stage config (None: plain reading)."""
    if options is None:
        return Reading()
    renames = dict(getattr(options, "dataset_columns", None) or {})
    if getattr(options, "dataset_text_field", None):
        renames[options.dataset_text_field] = "text"
    main = source == getattr(options, "dataset", None)
    return Reading(getattr(options, "dataset_config", None) if main else None,
                   getattr(options, "data_files", None) if main else None, renames, getattr(options, "seed", 0))


def rename_columns(rows: list[dict], renames: dict, source: str, strict: bool = True) -> list[dict]:
    """Rows with columns renamed old -> new; a missing old column is a DataError when `strict` (a mixture
    element renames only the columns it has)."""
    if not renames or not rows:
        return rows
    present = {old: new for old, new in renames.items() if old in rows[0]}
    missing = sorted(set(renames) - set(present))
    if strict and missing:
        raise data_error(source, None, None, f"has no column {missing[0]!r} to rename (dataset_columns / "
                                             f"dataset_text_field); its columns: {', '.join(sorted(rows[0]))}")
    clash = sorted(new for new in present.values() if new in rows[0] and new not in present)
    if clash:
        raise data_error(source, None, None, f"already has a column {clash[0]!r}, so renaming another to it would hide one; "
                                             "rename that one too, or pick another name")
    out = []
    for i, row in enumerate(rows):
        if any(old not in row for old in present):
            raise data_error(source, i, next(old for old in present if old not in row), "missing; every row needs it")
        out.append({present.get(k, k): v for k, v in row.items()})
    return out


def parse_task_source(source: str, default_split: str = "train") -> tuple[str, str, int | None]:
    """`task:arithmetic` -> ("arithmetic", "train", None); `task:arithmetic:test:200` -> (.., "test", 200)."""
    parts = source[len(TASK_PREFIX):].split(":")
    name = parts[0]
    split = parts[1] if len(parts) > 1 and parts[1] else default_split
    limit = None
    if len(parts) > 2:
        try:
            limit = int(parts[2])
        except ValueError:
            raise DataError(f"{source}: expected task:NAME[:split[:N]] with N an integer") from None
    if split not in ("train", "test"):
        raise DataError(f"{source}: unknown split '{split}'; tasks have splits train and test")
    return name, split, limit


def load_rows(source: str, split: str | None = None, options=None) -> list[dict]:
    """Rows of a task, of `read_records` or of a mixture, with the renames of `options` (a stage config,
    see `reading_of`); a math benchmark (GSM8K, MATH, AIME: by hub name or by its columns) becomes
    prompt + answer rows, read from its evaluation split unless `split` says otherwise."""
    from posttrain.tasks.mixtures import is_mixture, mixture_rows

    reading = reading_of(options, source)
    if getattr(options, "streaming", False) and source == options.dataset:
        raise ConfigError("streaming=true: this stage reads all its rows up front; remove streaming "
                          "(only sft streams its training data)")
    if is_mixture(source):
        if reading.config is not None or reading.data_files is not None:
            raise ConfigError("dataset_config and data_files describe one dataset, not a mixture; name each "
                              "element of the mixture in full (a file, a folder, task:NAME)")
        return mixture_rows(source, split, reading)
    return source_rows(source, split, reading)


def source_rows(source: str, split: str | None, reading: Reading, strict: bool = True) -> list[dict]:
    """One source's rows, renamed (see `rename_columns` for `strict`)."""
    if is_task_source(source):
        if reading.config is not None or reading.data_files is not None:
            raise ConfigError(f"dataset={source} is an embedded task, which has no configurations or data files; remove "
                              "dataset_config / data_files")
        name, task_split, limit = parse_task_source(source, split or "train")
        return rename_columns(cap_rows(get_task(name).rows(task_split, limit), source), reading.renames, source, strict)
    hub = hub_benchmark(source) if not os.path.exists(source) and reading.data_files is None else None
    if hub:
        rows = read_records(source, split or hub.split, config=reading.config or hub.config)
        return cap_rows(benchmark_rows(rename_columns(rows, reading.renames, source, strict), source, hub.kind), source)
    rows = read_records(source, split, config=reading.config, data_files=reading.data_files)
    return cap_rows(benchmark_rows(rename_columns(rows, reading.renames, source, strict), source), source)


def default_eval_source(train_source: str) -> str | None:
    """The held-out split of an embedded task; None for user data (no silent splitting of user files)."""
    if is_task_source(train_source):
        name, _, _ = parse_task_source(train_source)
        return f"{TASK_PREFIX}{name}:test:200"
    return None
