"""Row utilities shared by the stages: a seeded draw, a K-of-N slice, and an atomic JSON-lines write.

Resolving a `dataset=` value to rows (an embedded task or a file) is `posttrain.tasks.sources`.
"""

from __future__ import annotations


def draw_rows(rows: list[dict], count: int, seed: int) -> list[dict]:
    """`count` rows drawn without replacement, seeded; every row when count is 0 or at least len(rows)."""
    import random

    return list(rows) if count == 0 or count >= len(rows) else random.Random(seed).sample(rows, count)


def parse_shard(shard: str) -> tuple[int, int]:
    """Parse a "K/N" slice spec into (K, N), 1 <= K <= N."""
    from posttrain.errors import ConfigError

    k, _, n = str(shard).partition("/")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise ConfigError(f"data_shard must be K/N with 1 <= K <= N (e.g. 1/2), got {shard!r}")
    return int(k), int(n)


def shard_rows(rows: list[dict], shard: str) -> list[dict]:
    """The K-th of N equal contiguous slices of `rows`, for `shard="K/N"` (the first len(rows) % N
    slices get one row more). sDPO's steps: step K trains on slice K."""
    from posttrain.errors import ConfigError

    k, n = parse_shard(shard)
    if len(rows) < n:
        raise ConfigError(f"data_shard={shard}: {len(rows)} rows cannot be split into {n} slices; use fewer slices")
    size, extra = divmod(len(rows), n)
    start = (k - 1) * size + min(k - 1, extra)
    return rows[start:start + size + (k <= extra)]


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
