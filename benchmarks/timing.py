"""Throughput of the timed windows of a benchmark run, shared by the benchmark scripts."""

from __future__ import annotations


def window_rates(stamps: list[float], per_step: list[float], args) -> list[float]:
    """Amount per second in each timed window: stamps[i] is when step i ended (stamps[0]: before
    step 1), per_step[i] what step i + 1 processed (tokens, pairs, 1 for steps/s). The windows come
    after `args.warmup` untimed steps, `args.windows` of `args.window` steps each."""
    out = []
    for w in range(args.windows):
        a, b = args.warmup + w * args.window, args.warmup + (w + 1) * args.window
        out.append(sum(per_step[a:b]) / (stamps[b] - stamps[a]))
    return out
