"""Resolve a `dataset=` value to rows: `task:NAME[:split]` (embedded tasks) or anything `read_records` reads."""

from __future__ import annotations

from posttrain.errors import DataError

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
    if is_task_source(source):
        from posttrain.tasks import get_task

        name, task_split, limit = parse_task_source(source, split or "train")
        return get_task(name).rows(task_split, limit)
    from posttrain.data.readers import read_records

    return read_records(source, split)


def default_eval_source(train_source: str) -> str | None:
    """The held-out split of an embedded task; None for user data (no silent splitting of user files)."""
    if is_task_source(train_source):
        name, _, _ = parse_task_source(train_source)
        return f"{TASK_PREFIX}{name}:test:200"
    return None


def draw_rows(rows: list[dict], count: int, seed: int) -> list[dict]:
    """`count` rows drawn without replacement, seeded; every row when count is 0 or at least len(rows)."""
    import random

    return list(rows) if count == 0 or count >= len(rows) else random.Random(seed).sample(rows, count)


def write_jsonl(path, rows: list[dict]) -> None:
    """Write rows as JSON lines, whole or not at all (a temp file renamed over `path`): a reader or a
    resumed run can trust any file that exists."""
    import json
    from pathlib import Path

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
