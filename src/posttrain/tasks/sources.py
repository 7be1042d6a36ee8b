"""Resolve a `dataset=` value to rows: `task:NAME[:split[:N]]` (an embedded task) or anything
`data.readers.read_records` reads (files, `save_to_disk` directories, hub names).

It lives with the tasks, one layer above `data`, so that the data layer never reaches up to them.
"""

from __future__ import annotations

import os

from posttrain.data.readers import read_records
from posttrain.errors import DataError
from posttrain.smoke import cap_rows
from posttrain.tasks import get_task
from posttrain.tasks.benchmarks import benchmark_rows, hub_benchmark

TASK_PREFIX = "task:"


def is_task_source(source: str) -> bool:
    return source.startswith(TASK_PREFIX)


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


def load_rows(source: str, split: str | None = None) -> list[dict]:
    """Rows of a task or of `read_records`; a math benchmark (GSM8K, MATH, AIME: by hub name or by its
    columns) becomes prompt + answer rows, read from its evaluation split unless `split` says otherwise."""
    if is_task_source(source):
        name, task_split, limit = parse_task_source(source, split or "train")
        return cap_rows(get_task(name).rows(task_split, limit), source)
    hub = hub_benchmark(source) if not os.path.exists(source) else None
    if hub:
        rows = read_records(source, split or hub.split, config=hub.config)
        return cap_rows(benchmark_rows(rows, source, hub.kind), source)
    return cap_rows(benchmark_rows(read_records(source, split), source), source)


def default_eval_source(train_source: str) -> str | None:
    """The held-out split of an embedded task; None for user data (no silent splitting of user files)."""
    if is_task_source(train_source):
        name, _, _ = parse_task_source(train_source)
        return f"{TASK_PREFIX}{name}:test:200"
    return None
