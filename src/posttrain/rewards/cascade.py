"""Seed 003's confidence cascade as one reward: rule detectors, then a learned R_φ, then an LLM judge.

    reward_funcs=["cascade:rule=milestone:model=runs/step_rm/final:judge=judge"]

Seed 003 (L2987-3125, SEED_NOTES §2.5) ranks three reward sources: rule-based detectors take
precedence when they emit valid scores; the learned model R_φ(o_t, a_t, o_{t+1}) substitutes where
they do not; an LLM judge (Verifier Agent) is invoked only when both have low confidence. The
optimizer reads the blend r̃ = α r_rule + β R_φ + γ r_judge with α, β, γ ∈ [0, 1], α + β + γ = 1.

Tiers (each optional, at least one, always in this order):

1. `rule=SPEC` or `rule=[SPEC, SPEC, ...]`: reward specs (milestone, a task scorer `(task:NAME:SCORER)`,
   module:function, ...; a spec with colons goes in brackets or parentheses). Spec i is confident
   `rule_confidence` c_i (one number, or a list with one per spec; default 1) when it returns a number
   and 0 when it returns None (TRL's "does not apply": the detector emitted no valid score). The tier's
   value is the c-weighted mean of the specs that apply, its confidence the largest of their c_i.
2. `model=DIR`: a reward model (`posttrain rm`). A step reward model (trained on trajectory pairs)
   scores the episode's `trajectory` column, Σ_t R_φ(o_t, a_t, o_{t+1}) (`step_reward`); any other
   scores prompt + completion (`reward_model`). Its score r enters the blend as σ(r) ∈ [0, 1]
   (`model_output=sigmoid`: the Bradley-Terry probability of beating a completion of reward 0, the mean
   that posttrain rm's offset gives its reference set), or as r (`model_output=raw`). Its confidence is
   |2σ(r) − 1|: how far that probability is from a coin flip.
3. `judge=SPEC`: a reward spec, e.g. `judge` (the pointwise LLM judge on the embedded model),
   `(judge:model=DIR:method=logprob)` or module:function. Confidence 1 when it returns a value.

Routing, per sample: a tier decides when its confidence reaches its threshold (`rule_threshold`,
`model_threshold`); the last configured tier decides whatever its confidence, so every sample gets a
signal. A tier is called only on the samples still undecided: the judge sees only those both other
tiers were unsure of.

Blend: over the tiers consulted up to the decider that gave a value, the weights renormalized,

    r̃ = Σ_k w_k r_k / Σ_k w_k,      (w_rule, w_model, w_judge) = (alpha, beta, gamma)

so a confident rule gives r_rule; escalation to the model gives (α r_rule + β R_φ) / (α + β) (R_φ alone
when no detector applied); escalation to the judge gives α r_rule + β R_φ + γ r_judge, the seed's
formula. Weights default to equal shares of the configured tiers; given ones must sum to 1 (α + β + γ
= 1), be positive for a configured tier and 0 (or left out) for one that is not. A sample that no
consulted tier could score gets None (masked), tier "none".

Which tier decided, through TRL's keywords: `log_extra("cascade_tier", [...])` (rule / model / judge /
none per completion, a column of completions.jsonl) and `log_metric("cascade/<tier>", share)`. The
tiers' own reward functions get `trainer_state` and `log_metric`; their `log_extra` columns are
dropped (they see only a subset of the batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import yaml

from posttrain.errors import ConfigError
from posttrain.rewards.functions import RewardFunctions, declared_range, resolve_specs
from posttrain.rewards.registry import check_choice, split_top

TIERS = ("rule", "model", "judge")
MODEL_OUTPUTS = ("sigmoid", "raw")
_SUM_TOLERANCE = 1e-6


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@dataclass
class Tier:
    """One source of reward: its functions, how a sample's (value, confidence) is read from them, a threshold."""

    name: str
    functions: RewardFunctions
    read: Callable[[list[list[float | None]]], tuple[float | None, float]]  # one sample's values -> (value, confidence)
    threshold: float = 0.0
    reward_range: tuple[float, float] | None = None

    def score(self, prompts, completions, columns, completion_ids, trainer_state, log_metric):
        """(values, confidences) of these samples."""
        self.functions.trainer_state = trainer_state
        result = self.functions(prompts, completions, columns, completion_ids)
        metrics, _ = self.functions.pop_logged()
        for name, logged in metrics.items():
            if log_metric is not None:
                for value in logged:
                    log_metric(name, value)
        per_sample = list(zip(*result.per_function.values()))
        out = [self.read(list(values)) for values in per_sample]
        return [v for v, _ in out], [c for _, c in out]


def read_rule(confidences: list[float]):
    def read(values):
        applying = [(c, v) for c, v in zip(confidences, values) if v is not None]
        if not applying:
            return None, 0.0
        total = sum(c for c, _ in applying)
        value = sum(c * v for c, v in applying) / total if total > 0 else sum(v for _, v in applying) / len(applying)
        return value, max(c for c, _ in applying)
    return read


def read_model(output: str):
    def read(values):
        r = values[0]
        if r is None:
            return None, 0.0
        p = sigmoid(r)
        return (p if output == "sigmoid" else r), abs(2.0 * p - 1.0)
    return read


def read_judge(values):
    return values[0], 0.0 if values[0] is None else 1.0


class Cascade:
    """The reward function (see the module docstring): tiers in order, blend weights by tier name."""

    def __init__(self, tiers: list[Tier], weights: dict[str, float]):
        self.tiers, self.weights = tiers, weights
        ranges = [t.reward_range for t in tiers]
        if all(r is not None for r in ranges):  # a weighted mean of the tiers' values stays inside their hull
            self.reward_range = (min(r[0] for r in ranges), max(r[1] for r in ranges))

    def __call__(self, prompts, completions, completion_ids=None, trainer_state=None, log_metric=None,
                 log_extra=None, **columns) -> list[float | None]:
        n = len(completions)
        values = {t.name: [None] * n for t in self.tiers}
        decided = ["none"] * n
        pending = list(range(n))
        for k, tier in enumerate(self.tiers):
            if not pending:
                break
            last = k == len(self.tiers) - 1
            vals, confs = tier.score(*_subset(pending, n, prompts, completions, columns, completion_ids),
                                     trainer_state, log_metric)
            undecided = []
            for i, value, confidence in zip(pending, vals, confs):
                values[tier.name][i] = value
                if last or confidence >= tier.threshold:
                    decided[i] = tier.name
                else:
                    undecided.append(i)
            pending = undecided
        rewards = []
        for i in range(n):
            consulted = [t.name for t in self.tiers][:[t.name for t in self.tiers].index(decided[i]) + 1]
            parts = [(self.weights[name], values[name][i]) for name in consulted if values[name][i] is not None]
            if not parts:
                decided[i] = "none"
                rewards.append(None)
            else:
                rewards.append(sum(w * v for w, v in parts) / sum(w for w, _ in parts))
        if log_extra is not None:
            log_extra("cascade_tier", decided)
        if log_metric is not None and n:
            for name in [t.name for t in self.tiers] + ["none"]:
                log_metric(f"cascade/{name}", decided.count(name) / n)
        return rewards


def _subset(idx: list[int], n: int, prompts, completions, columns: dict, completion_ids):
    """The batch restricted to samples `idx`: per-completion columns sliced, other values kept."""
    def take(values):
        return [values[i] for i in idx] if isinstance(values, (list, tuple)) and len(values) == n else values
    ids = None if completion_ids is None else take(completion_ids)
    return take(prompts), take(completions), {k: take(v) for k, v in columns.items()}, ids


def spec_list(value) -> list[str]:
    """`milestone`, `(task:NAME:SCORER)` or `[a, (b:x=1), c]` -> the reward specs."""
    text = str(value).strip()
    items = split_top(text[1:-1], ",") if text.startswith("[") and text.endswith("]") else [text]
    specs = []
    for item in (s.strip() for s in items):
        while item.startswith("(") and item.endswith(")"):
            item = item[1:-1].strip()
        if not item:
            raise ConfigError(f"cascade: an empty reward spec in {value!r}; write rule=SPEC or rule=[SPEC, SPEC]")
        specs.append(item)
    return specs


def number_list(value, count: int, option: str) -> list[float]:
    """One number for every spec, or a list with one per spec; each in [0, 1]."""
    parsed = yaml.safe_load(value) if isinstance(value, str) else value
    numbers = parsed if isinstance(parsed, list) else [parsed] * count
    ok = len(numbers) == count and all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1 for x in numbers)
    if not ok:
        raise ConfigError(f"cascade: {option} must be a number in [0, 1] or a list of {count} such numbers "
                          f"(one per rule spec), got {value!r}")
    return [float(x) for x in numbers]


def blend_weights(configured: list[str], alpha, beta, gamma) -> dict[str, float]:
    """(alpha, beta, gamma) checked: α + β + γ = 1, positive for configured tiers, 0 for absent ones."""
    given = dict(zip(TIERS, (alpha, beta, gamma)))
    if all(v is None for v in given.values()):
        return {name: 1.0 / len(configured) for name in configured}
    weights = {name: 0.0 if v is None else v for name, v in given.items()}
    for (name, w), option in zip(weights.items(), ("alpha", "beta", "gamma")):
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not 0 <= w <= 1:
            raise ConfigError(f"cascade: {option} (the {name} tier's weight) must be a number in [0, 1], got {w!r}")
        if name in configured and w == 0:
            raise ConfigError(f"cascade: {option}=0 but the {name} tier is configured; give it a weight > 0 or drop it")
        if name not in configured and w > 0:
            raise ConfigError(f"cascade: {option}={w:g} weighs the {name} tier, which is not configured; set {name}=... or {option}=0")
    total = sum(weights.values())
    if abs(total - 1.0) > _SUM_TOLERANCE:
        raise ConfigError(f"cascade: alpha + beta + gamma must be 1 (seed 003's trust weights), got "
                          f"{weights['rule']:g} + {weights['model']:g} + {weights['judge']:g} = {total:g}")
    return {name: weights[name] for name in configured}


def cascade_reward(rule: str | None = None, model: str | None = None, judge: str | None = None,
                   rule_confidence=1.0, rule_threshold: float = 0.5, model_threshold: float = 0.5,
                   alpha: float | None = None, beta: float | None = None, gamma: float | None = None,
                   model_output: str = "sigmoid", device: str = "cpu", dtype: str = "float32", batch_size: int = 16):
    """Registry factory (`cascade:rule=...:model=DIR:judge=...`); see the module docstring."""
    from posttrain.models.reward_model import TRAJECTORY_STEP
    from posttrain.rewards.learned import reward_input, reward_model, step_reward

    configured = [name for name, v in zip(TIERS, (rule, model, judge)) if v not in (None, "")]
    if not configured:
        raise ConfigError("cascade needs at least one tier: rule=SPEC (rule detectors), model=DIR (a reward model), "
                          "judge=SPEC (an LLM judge)")
    check_choice("cascade", "model_output", model_output, MODEL_OUTPUTS)
    for option, value in (("rule_threshold", rule_threshold), ("model_threshold", model_threshold)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ConfigError(f"cascade: {option} must be a confidence in [0, 1], got {value!r}")
    weights = blend_weights(configured, alpha, beta, gamma)
    tiers = []
    if "rule" in configured:
        specs = spec_list(rule)
        functions = resolve_specs(specs, "", "cascade rule")
        confidences = number_list(rule_confidence, len(functions), "rule_confidence")
        ranges = [declared_range(f) for f in functions.values()]
        hull = None if None in ranges else (min(r[0] for r in ranges), max(r[1] for r in ranges))
        tiers.append(Tier("rule", RewardFunctions(functions), read_rule(confidences), float(rule_threshold), hull))
    if "model" in configured:
        options = dict(path=str(model), device=device, dtype=dtype, batch_size=batch_size)
        from posttrain.rewards.learned import check_reward_model_dir

        check_reward_model_dir(str(model))
        scorer = step_reward(**options) if reward_input(str(model)) == TRAJECTORY_STEP else reward_model(**options)
        tiers.append(Tier("model", RewardFunctions({"model": scorer}), read_model(model_output), float(model_threshold),
                          (0.0, 1.0) if model_output == "sigmoid" else None))
    if "judge" in configured:
        functions = resolve_specs(spec_list(judge), "", "cascade judge")
        if len(functions) != 1:
            raise ConfigError(f"cascade: judge= names one reward spec, got {len(functions)}: {', '.join(functions)}")
        fn = next(iter(functions.values()))
        tiers.append(Tier("judge", RewardFunctions(functions), read_judge, 0.0, declared_range(fn)))
    return Cascade(tiers, weights)
