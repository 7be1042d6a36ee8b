"""Win rate against a reference from judged preferences: a confidence interval, and AlpacaEval 2's
length-controlled win rate.

A preference is P(policy ≻ reference) for one prompt, from a pairwise judge that saw both orders
(`rewards.judge.PairwiseJudge.preferences`): with hard verdicts 1 (a win in both orders), 0 (a loss
in both) or 0.5 (the orders disagree: the judge followed the position, so it is a tie); with
`method=logprob` the average of the two orders' probabilities. None = a verdict could not be read
(left out and counted).

- win rate = mean preference (a tie counts ½), standard error = sample std (n − 1) / √n, and the
  normal interval win rate ± z·stderr clipped to [0, 1] (AlpacaEval reports the same mean and error).
- Length control (Dubois et al. 2024, "Length-Controlled AlpacaEval"): fit the logistic regression
  P(policy ≻ reference) = σ(θ + φ·tanh(Δ / std(Δ))), Δ = len(policy) − len(reference) in characters,
  std with n − 1, to the preferences (soft targets, maximum likelihood, ½·l2·φ² on the length weight
  only, as scikit-learn's C = 1/l2), and report σ(θ): the win rate with the length term set to 0,
  i.e. had both outputs the same length. AlpacaEval's full model also has a per-instruction
  difficulty term fitted across many models; with one policy and one reference it is left out.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from posttrain.methods.metrics import mean_stderr

TIE_TOLERANCE = 1e-9


def win_rate_summary(preferences: list[float | None], confidence: float = 0.95) -> dict:
    """win_rate, its stderr and confidence interval, and the counts of wins / ties / losses / unjudged."""
    judged = [p for p in preferences if p is not None]
    n = len(judged)
    tie = [abs(p - 0.5) <= TIE_TOLERANCE for p in judged]  # soft preferences: ½ up to rounding is a tie
    out = {"wins": sum(p > 0.5 and not t for p, t in zip(judged, tie)), "ties": sum(tie),
           "losses": sum(p < 0.5 and not t for p, t in zip(judged, tie)), "unjudged": len(preferences) - n}
    if not n:
        return {"win_rate": float("nan"), "win_rate_stderr": float("nan"), "win_rate_ci": [float("nan")] * 2, **out}
    mean, stderr = mean_stderr(judged)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    ci = [max(0.0, mean - z * stderr), min(1.0, mean + z * stderr)] if n > 1 else [float("nan")] * 2
    return {"win_rate": mean, "win_rate_stderr": stderr, "win_rate_ci": ci, **out}


def length_feature(length_differences: list[float]) -> list[float]:
    """tanh(Δ / std(Δ)) (std with n − 1); all zeros when the differences do not vary."""
    n = len(length_differences)
    mean = sum(length_differences) / n
    std = math.sqrt(sum((d - mean) ** 2 for d in length_differences) / (n - 1)) if n > 1 else 0.0
    return [math.tanh(d / std) if std > 0 else 0.0 for d in length_differences]


def fit_logistic(x: list[float], p: list[float], l2: float = 1.0, steps: int = 100) -> tuple[float, float]:
    """(θ, φ) maximizing Σ p·log σ(θ + φx) + (1 − p)·log σ(−θ − φx) − ½·l2·φ², by Newton's method with
    step halving. The intercept is not penalized, so all-wins or all-losses data have no finite θ:
    callers handle those (the win rate is then 1 or 0 whatever the length)."""

    def loss(t, f):
        return sum(_softplus(t + f * xi) - pi * (t + f * xi) for xi, pi in zip(x, p)) + 0.5 * l2 * f * f

    theta = phi = 0.0
    current = loss(theta, phi)
    for _ in range(steps):
        g_t = g_f = h_tt = h_tf = h_ff = 0.0
        for xi, pi in zip(x, p):
            s = _sigmoid(theta + phi * xi)
            w = s * (1 - s)
            g_t += s - pi
            g_f += (s - pi) * xi
            h_tt, h_tf, h_ff = h_tt + w, h_tf + w * xi, h_ff + w * xi * xi
        g_f += l2 * phi
        h_ff += l2
        det = h_tt * h_ff - h_tf * h_tf
        if det > 1e-12 * max(h_tt * h_ff, 1e-300):
            d_t, d_f = (h_ff * g_t - h_tf * g_f) / det, (h_tt * g_f - h_tf * g_t) / det
        else:  # x ≡ 0 and no penalty: φ is not identified; keep it and fit θ alone
            d_t, d_f = g_t / max(h_tt, 1e-300), 0.0
        step = 1.0
        while step > 1e-8 and loss(theta - step * d_t, phi - step * d_f) > current + 1e-15:
            step /= 2
        theta, phi = theta - step * d_t, phi - step * d_f
        current = loss(theta, phi)
        if max(abs(d_t), abs(d_f)) * step < 1e-12:
            break
    return theta, phi


def length_controlled_win_rate(preferences: list[float | None], policy_lengths: list[int],
                               reference_lengths: list[int], l2: float = 1.0) -> dict:
    """AlpacaEval 2's length-controlled win rate σ(θ) and the fitted length weight φ (see the module docstring)."""
    kept = [(p, a - b) for p, a, b in zip(preferences, policy_lengths, reference_lengths) if p is not None]
    if not kept:
        return {"lc_win_rate": float("nan"), "length_weight": float("nan")}
    prefs = [p for p, _ in kept]
    if all(p == prefs[0] for p in prefs) and prefs[0] in (0.0, 1.0):
        return {"lc_win_rate": prefs[0], "length_weight": 0.0}  # no finite fit: all wins (or losses) at any length
    theta, phi = fit_logistic(length_feature([d for _, d in kept]), prefs, l2)
    return {"lc_win_rate": _sigmoid(theta), "length_weight": phi}


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _softplus(z: float) -> float:
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))
