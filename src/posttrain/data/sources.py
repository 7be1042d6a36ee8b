"""Row utilities shared by the stages: a seeded draw, and an atomic JSON-lines write.

Resolving a `dataset=` value to rows (an embedded task or a file) is `posttrain.tasks.sources`.
"""

from __future__ import annotations


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
