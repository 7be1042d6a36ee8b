"""Sample-based evaluation metrics: avg@k, the unbiased pass@k estimator, a mean with its standard error."""

from __future__ import annotations

import math
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021)."""
    if k > n:
        raise ValueError(f"k={k} > n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def ks_to_report(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def summarize_scores(scores_per_prompt: list[list[float]], threshold: float) -> dict[str, float]:
    """avg@n (mean score over all samples) and pass@k for k in 1, 2, 4, ..., n."""
    n = len(scores_per_prompt[0])
    out = {f"avg@{n}": sum(sum(s) for s in scores_per_prompt) / (n * len(scores_per_prompt))}
    for k in ks_to_report(n):
        vals = [pass_at_k(n, sum(x >= threshold for x in s), k) for s in scores_per_prompt]
        out[f"pass@{k}"] = sum(vals) / len(vals)
    return out


def mean_stderr(values: list[float | None]) -> tuple[float, float]:
    """(mean, standard error std/sqrt(count) with the n−1 std) of the non-None values."""
    xs = [v for v in values if v is not None]
    if not xs:
        return float("nan"), float("nan")
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, float("nan")
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return mean, math.sqrt(var / len(xs))
