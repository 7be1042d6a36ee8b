"""Tokenize rows once, in parallel, cached: `map_examples(fn, rows)` is `[fn(row, row_index=i) ...]`
computed by `datasets.Dataset.map(batched=True, num_proc=N)` (a set under IN_PLACE_ROWS rows with one
process: in place, uncached).

The rows travel pickled, one binary cell each, so every row reaches `fn` exactly as its reader
returned it (Arrow would give every row every column and fill missing message keys with None,
which chat templates render differently). The result is cached in an Arrow file named by a
fingerprint of the rows, of `fn` with its bound tokenizer and options (datasets' own Hasher, as
its map does) and of the code that tokenizes; a second run with the same inputs reads the file.
Under torch.distributed rank 0 maps first while the others wait at a barrier, then read its cache.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import pickle

import posttrain.ranks as ranks

BATCH_ROWS = 1000
# Below this many rows (and with one process) the rows are tokenized in place: a set this small tokenizes
# faster than `import datasets` plus reading an Arrow cache (~1 s), and every rank can afford it.
IN_PLACE_ROWS = 2000
PROGRESS_ROWS = 10_000  # show datasets' progress bar only for sets this large


def map_examples(fn, rows: list[dict], *, num_proc: int = 1, cache_dir: str | None = None) -> list[dict]:
    """`[fn(row, row_index=i) for i, row in enumerate(rows)]`, through Dataset.map and its cache; an error
    `fn` raises for a row (a DataError naming row and column) reaches the caller unchanged."""
    if num_proc <= 1 and len(rows) < IN_PLACE_ROWS and cache_dir is None:
        return [fn(row, row_index=i) for i, row in enumerate(rows)]
    import datasets

    table = datasets.Dataset.from_dict({"row": [pickle.dumps(row, protocol=5) for row in rows]})
    fingerprint = _fingerprint(fn, table["row"])
    folder = os.path.join(cache_dir or str(datasets.config.HF_DATASETS_CACHE), "posttrain_tokenized")
    os.makedirs(folder, exist_ok=True)
    kwargs = dict(batched=True, batch_size=min(BATCH_ROWS, -(-len(rows) // num_proc)), with_indices=True, remove_columns=["row"], fn_kwargs={"fn": fn},
                  num_proc=min(num_proc, len(rows)) if num_proc > 1 else None,
                  cache_file_name=os.path.join(folder, f"{fingerprint}.arrow"), new_fingerprint=fingerprint,
                  load_from_cache_file=True, desc="posttrain: tokenizing")
    failed = None
    if ranks.is_main():
        try:
            mapped = _map(table, kwargs, len(rows))
        except Exception as e:  # reach the barrier first: the others then fail on the same row themselves
            failed = e
    ranks.barrier()  # the other ranks read rank 0's cache file
    if failed is not None:
        raise failed
    if not ranks.is_main():
        mapped = _map(table, kwargs, len(rows))
    return mapped.to_list()


def _map(table, kwargs: dict, count: int):
    from datasets.utils import logging as ds_logging

    shown = ds_logging.is_progress_bar_enabled()
    if count < PROGRESS_ROWS:
        ds_logging.disable_progress_bar()
    try:
        return table.map(_map_batch, **kwargs)
    finally:
        if shown:
            ds_logging.enable_progress_bar()


def _map_batch(batch: dict, indices: list[int], fn) -> dict:
    examples = [fn(pickle.loads(cell), row_index=i) for cell, i in zip(batch["row"], indices)]
    return {key: [ex[key] for ex in examples] for key in (examples[0] if examples else {})}


def _fingerprint(fn, cells: list[bytes]) -> str:
    """Rows + `fn` (its tokenizer and options, via datasets' Hasher) + the source of fn's module."""
    from datasets.fingerprint import Hasher

    digest = hashlib.blake2b(digest_size=16)
    for cell in cells:
        digest.update(len(cell).to_bytes(8, "little"))
        digest.update(cell)
    func = getattr(fn, "func", fn)
    code = inspect.getsource(inspect.getmodule(func))
    return Hasher.hash((digest.hexdigest(), Hasher.hash(fn), hashlib.blake2b(code.encode()).hexdigest()))
