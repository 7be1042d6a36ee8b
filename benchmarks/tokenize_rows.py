"""Tokenizing N chat rows for SFT: today's `tokenize_rows` (one Python loop, every rank) against
`data.mapping.map_examples` (datasets' `Dataset.map`, batched, with num_proc workers, cached on disk),
and a second `map_examples` call served from the cache. Checks the examples are identical.

Rows: synthetic arithmetic conversations (user asks a sum with varied filler, assistant answers in
<think>/<answer>), prompt + completion as message lists, so every row goes through the chat template
(prompt render, full render, assistant mask). Tokenizer: the embedded one. Each cold run gets its own
cache folder; the cached run's time is the median of 3.

    python benchmarks/tokenize_rows.py                  # 100k rows, num_proc 1 and 2 (minutes on 2 cores)
    python benchmarks/tokenize_rows.py --rows 20000 --procs 1,2,8
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import tempfile
import time

from posttrain.data.mapping import map_examples
from posttrain.data.tokenize import tokenize_example, tokenize_rows
from posttrain.models.loading import load_tokenizer

FILLERS = ["", " Please.", " Show your work.", " Quickly!", " Think step by step, then answer."]


def chat_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 9999), rng.randint(0, 999)
        prompt = f"What is {a} + {b}?" + rng.choice(FILLERS)
        completion = f"<think>{a} + {b} = {a + b}</think><answer>{a + b}</answer>"
        rows.append({"prompt": [{"role": "user", "content": prompt}], "completion": [{"role": "assistant", "content": completion}]})
    return rows


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--procs", default="1,2", help="num_proc values for the map runs, comma-separated")
    args = parser.parse_args()
    tokenizer = load_tokenizer("embedded")
    rows = chat_rows(args.rows)
    options = dict(max_length=128, truncation=False, completion_only=True, source="bench")
    fn = functools.partial(tokenize_example, tokenizer, **options)

    before, expected = timed(lambda: tokenize_rows(tokenizer, rows, **options))
    print(f"rows {args.rows}, chat template on, tokenizer: embedded")
    print(f"  before  tokenize_rows                 {before:8.2f} s")
    for procs in [int(p) for p in args.procs.split(",")]:
        with tempfile.TemporaryDirectory() as cache:
            seconds, got = timed(lambda: map_examples(fn, rows, num_proc=procs, cache_dir=cache))
            assert got == expected, "map_examples must give exactly tokenize_rows' examples"
            print(f"  after   map num_proc={procs:<2} (cold)      {seconds:8.2f} s   before/after {before / seconds:5.2f}x")
            if procs == 1:
                warm = [timed(lambda: map_examples(fn, rows, num_proc=1, cache_dir=cache))[0] for _ in range(3)]
                cached = statistics.median(warm)
                print(f"  after   map from the cache (median 3) {cached:8.2f} s   before/after {before / cached:5.2f}x")


if __name__ == "__main__":
    main()
