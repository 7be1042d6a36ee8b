"""Best-of-n: sample n completions per prompt, score them, keep the good ones.

The building block of every sampling-based method in the seeds (SEED_NOTES 1.5):

- best-of-n / rejection sampling: "sample a batch of N completions from a language model policy and
  then evaluate them across a reward model, returning the best one or the top k" (seed 003,
  L3485, the RSO summary; it warns that this "trusts the reward model too much");
- expert iteration: "models sample responses to prompts, and the best performing ones are used for
  further training" (seed 003, L3501); AlpacaFarm's best-of-n and expert-iteration baselines
  (seed 002, L241-242);
- ReST-EM's E-step: generate samples and filter them "based on binary correctness feedback"
  (seed 003, L3274), i.e. keep every sample whose reward passes a threshold.

`sample_and_score` draws and scores the candidates; `select_best` applies one of the two rules:

    best:      per prompt x, keep y* = argmax_i r(x, y_i) if r(x, y*) >= min_reward
    threshold: per prompt x, keep every y_i with r(x, y_i) >= threshold (at most max_per_prompt,
               highest rewards first)

A candidate whose reward is None (no reward function applies, or a masked failure) is never kept.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from posttrain.data.values import completion_value
from posttrain.errors import ConfigError

RULES = ("best", "threshold")


@dataclass
class Candidate:
    text: str
    completion_ids: list[int]
    reward: float | None
    truncated: bool = False


@dataclass
class PromptCandidates:
    """One prompt's dataset row and its n scored samples, in sampling order."""

    row: dict
    candidates: list[Candidate]


def sample_and_score(model, tokenizer, rows: list[dict], rewards, n: int, params, batch_size: int = 64) -> list[PromptCandidates]:
    """Sample n completions for every row's `prompt` from `model` (or a rollout backend) with `params` (a SamplingParams; its `n` is
    replaced by `n`) and score them with `rewards` (a RewardFunctions) called on the prompts, the
    completions, the rows' other columns and the completion ids (rewards None: unscored, reward None)."""
    from posttrain.data.tokenize import tokenize_prompt
    from posttrain.rollout import sample_with, warn_if_plain_prompts_unanswered

    if n < 1:
        raise ConfigError(f"num_samples must be >= 1, got {n}")
    params = dataclasses.replace(params, n=n)
    out: list[PromptCandidates] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        conversational = isinstance(chunk[0]["prompt"], list)
        prompt_ids = [tokenize_prompt(tokenizer, row["prompt"]) for row in chunk]
        # A distinct seed per chunk, so two chunks never repeat each other's random stream.
        chunk_params = params if params.seed is None else dataclasses.replace(params, seed=params.seed + start)
        gen = sample_with(model, tokenizer, prompt_ids, chunk_params)
        warn_if_plain_prompts_unanswered(tokenizer, [row["prompt"] for row in chunk], gen.texts)
        prompts = [chunk[i]["prompt"] for i in gen.prompt_index]
        completions = [completion_value(t, conversational) for t in gen.texts]
        # The gold `completion` (if any) is not a column the rewards read: they see the sample instead.
        columns = {k: [chunk[i][k] for i in gen.prompt_index] for k in chunk[0] if k not in ("prompt", "completion")}
        totals = [None] * len(completions) if rewards is None else rewards(prompts, completions, columns, completion_ids=gen.token_ids).total
        groups = [PromptCandidates(row, []) for row in chunk]
        for j, i in enumerate(gen.prompt_index):
            groups[i].candidates.append(Candidate(gen.texts[j], gen.token_ids[j], totals[j], gen.truncated[j]))
        out += groups
    return out


def report_timeouts(rewards) -> int:
    """Warn about reward calls abandoned at reward_timeout since the last report; their number."""
    import sys
    timeouts = {key: n for key, n in rewards.pop_timeouts().items() if n}
    for (kind, name), n in timeouts.items():
        print(f"posttrain: warning: {kind} function '{name}' timed out on {n} call(s) (reward_timeout={rewards.timeout:g} s); "
              "those samples got no value from it", file=sys.stderr)
    return sum(timeouts.values())


def select_best(candidates: list[PromptCandidates], rule: str = "best", *, min_reward: float | None = None,
                threshold: float = 1.0, max_per_prompt: int = 0) -> list[tuple[dict, Candidate]]:
    """The kept (row, candidate) pairs, prompt by prompt (see the module docstring for the rules).

    `best` breaks ties by sampling order (the first of equally good samples); `threshold` keeps
    the passing samples highest reward first (ties in sampling order), at most `max_per_prompt`
    of them when that is > 0."""
    if rule not in RULES:
        raise ConfigError(f"selection must be one of {', '.join(RULES)}, got {rule!r}")
    if max_per_prompt < 0:
        raise ConfigError(f"max_per_prompt must be >= 0 (0: no cap), got {max_per_prompt}")
    kept: list[tuple[dict, Candidate]] = []
    for group in candidates:
        scored = [c for c in group.candidates if c.reward is not None]
        if not scored:
            continue
        if rule == "best":
            top = max(scored, key=lambda c: c.reward)  # max returns the first maximal element
            if min_reward is None or top.reward >= min_reward:
                kept.append((group.row, top))
        else:
            passing = sorted((c for c in scored if c.reward >= threshold), key=lambda c: -c.reward)  # stable
            if max_per_prompt:
                passing = passing[:max_per_prompt]
            kept += [(group.row, c) for c in passing]
    return kept


def mean_reward(candidates: list[PromptCandidates]) -> float:
    """Mean reward over every scored sample (None rewards left out); NaN if none is scored."""
    values = [c.reward for g in candidates for c in g.candidates if c.reward is not None]
    return sum(values) / len(values) if values else float("nan")
