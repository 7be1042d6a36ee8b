"""Tokenizing N chat rows for SFT: today's `tokenize_rows` (one Python loop, every rank) against
`data.mapping.map_examples` (datasets' `Dataset.map`, batched, with num_proc workers, cached on disk),
and a second `map_examples` call served from the cache. Checks the examples are identical.

Rows: synthetic arithmetic conversations (user asks a sum with varied filler, assistant answers in
<think>/<answer>), prompt + completion as message lists, so every row goes through the chat template
(prompt render, full render, assistant mask). Tokenizer: the embedded one. Each cold run gets its own
cache folder; the cached run's time is the median of 3.

    python benchmarks/tokenize_rows.py                  # 100k rows, num_proc 1 and 2 (minutes on 2 cores)
    python benchmarks/tokenize_rows.py --rows 20000 --procs 1,2,8

Measured 2026-12-04 on the idle 2-core VM, 100,000 rows (2 min 20 s in all):

    $ python benchmarks/tokenize_rows.py
    rows 100000, chat template on, tokenizer: embedded          wall s   CPU s   before/after (wall)
      before  tokenize_rows                      46.65   46.62
      after   map num_proc=1  (cold)           50.93   50.86    0.92x
      after   map from the cache (median 3)       2.16    2.16   21.62x
      after   map num_proc=2  (cold)           31.21   59.15    1.49x

A cold map costs about 9 % more CPU than the plain loop (pickling the rows, writing Arrow, the fingerprint);
num_proc=2 splits it over both cores (1.49x); a second run, a second rank or a re-run after a crash reads
the cache: 2.2 s instead of 47 s (21.6x). The examples are identical (the script asserts it). Sets under
2,000 rows with num_proc=1 skip all this and tokenize in place (data/mapping.py).
"""

from __future__ import annotations

import argparse
import functools
import random
import resource
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


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (map's workers)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds, result): on a shared machine the CPU time is the steadier number."""
    start, cpu = time.perf_counter(), cpu_seconds()
    out = fn()
    return time.perf_counter() - start, cpu_seconds() - cpu, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--procs", default="1,2", help="num_proc values for the map runs, comma-separated")
    args = parser.parse_args()
    tokenizer = load_tokenizer("embedded")
    rows = chat_rows(args.rows)
    options = dict(max_length=128, truncation=False, completion_only=True, source="bench")
    fn = functools.partial(tokenize_example, tokenizer, **options)

    before, before_cpu, expected = timed(lambda: tokenize_rows(tokenizer, rows, **options))
    print(f"rows {args.rows}, chat template on, tokenizer: embedded          wall s   CPU s   before/after (wall)")
    print(f"  before  tokenize_rows                   {before:8.2f} {before_cpu:7.2f}")
    for procs in [int(p) for p in args.procs.split(",")]:
        with tempfile.TemporaryDirectory() as cache:
            seconds, cpu, got = timed(lambda: map_examples(fn, rows, num_proc=procs, cache_dir=cache))
            assert got == expected, "map_examples must give exactly tokenize_rows' examples"
            print(f"  after   map num_proc={procs:<2} (cold)        {seconds:8.2f} {cpu:7.2f}   {before / seconds:5.2f}x")
            if procs == 1:
                warm = [timed(lambda: map_examples(fn, rows, num_proc=1, cache_dir=cache)) for _ in range(3)]
                cached, cached_cpu = statistics.median(w[0] for w in warm), statistics.median(w[1] for w in warm)
                print(f"  after   map from the cache (median 3)   {cached:8.2f} {cached_cpu:7.2f}   {before / cached:5.2f}x")


if __name__ == "__main__":
    main()
