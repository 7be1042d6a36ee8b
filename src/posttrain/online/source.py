"""The experience maker of online RL: rollout -> reward -> advantages -> the optimizer steps that use them.

Each generation round takes the next `prompts_per_step` prompts (a seeded order, reshuffled each
epoch; each process takes its share), samples `num_generations` completions of each with the
current policy, scores them, computes advantages, and plans `num_iterations` (μ) passes over them,
each split into `num_minibatches` optimizer steps of micro-batches of `batch_size` samples. The
plan is served one optimizer step per `next_step`; the old log-probs stay frozen across it.

Dynamic sampling (DAPO) drops groups whose rewards are all equal (they carry no signal) and
samples more prompts until the round is full, at most `max_sampling_rounds` times; if the cap is
hit, the round is completed with dropped groups (zero advantage), so every step has the same shape.
"""

from __future__ import annotations

import math
import random
import time

import torch

import posttrain.ranks as ranks
from posttrain.data.steps import StepSource
from posttrain.data.tokenize import tokenize_prompt
from posttrain.generation import SamplingParams, prompt_seeds
from posttrain.online.experience import Sample
from posttrain.rollout import generate_rollouts


class OnlineSource(StepSource):
    def __init__(self, algorithm, rows: list[dict], tokenizer, config):
        self.algorithm, self.rows, self.tokenizer, self.config = algorithm, rows, tokenizer, config
        self.plan: list[list[list[int]]] = []  # optimizer steps -> micro-batches -> sample indices
        self.samples: list[Sample] = []
        self.cursor = 0  # prompts consumed (global order position)
        self.round = 0
        self._metrics: dict[str, float] = {}
        self._prompt_cache: dict[int, list[int] | None] = {}
        self._last_served: float | None = None

    # ------------------------------------------------------------------ StepSource

    def next_step(self, step: int) -> list[dict]:
        now = time.perf_counter()
        metrics = {}
        if self._last_served is not None:
            metrics["time/train_seconds"] = now - self._last_served  # the previous step's training
        if not self.plan:
            metrics.update(self._make_experience())
        self._metrics = metrics
        step_plan = self.plan.pop(0)
        batches = [self.algorithm.collate([self.samples[i] for i in micro]) for micro in step_plan]
        self._last_served = time.perf_counter()
        return batches

    def metrics(self) -> dict[str, float]:
        return self._metrics

    def state_dict(self) -> dict:
        return {"plan": self.plan, "samples": [s.__dict__ for s in self.samples], "cursor": self.cursor, "round": self.round}

    def load_state_dict(self, state: dict) -> None:
        self.plan, self.cursor, self.round = state["plan"], state["cursor"], state["round"]
        self.samples = [Sample(**s) for s in state["samples"]]

    # ------------------------------------------------------------------ one generation round

    def _next_prompts(self, count: int) -> list[int]:
        """The next `count` prompt indices of this process, from the seeded per-epoch order."""
        world, rank = ranks.world_size(), ranks.rank()
        out = []
        while len(out) < count:
            epoch, position = divmod(self.cursor, len(self.rows))
            order = random.Random(self.config.seed + epoch).sample(range(len(self.rows)), len(self.rows))
            take = order[position:position + (count - len(out)) * world]
            self.cursor += len(take)
            out += take[rank::world]
        return out[:count]

    def _prompt_ids(self, index: int) -> list[int] | None:
        """Tokenized prompt, or None when it leaves no room to generate (counted, skipped)."""
        if index not in self._prompt_cache:
            ids = tokenize_prompt(self.tokenizer, self.rows[index]["prompt"])
            fits = len(ids) + self.config.max_new_tokens <= self.config.max_length
            self._prompt_cache[index] = ids if fits else None
        return self._prompt_cache[index]

    def _make_experience(self) -> dict[str, float]:
        cfg, algo = self.config, self.algorithm
        began = time.perf_counter()
        algo.backend.sync_weights()  # an engine with its own copy of the weights samples from the current policy
        stats = {"prompts_too_long": 0, "dropped_groups": 0, "sampling_rounds": 0}
        kept: list[list[Sample]] = []
        spare: list[list[Sample]] = []
        rollout_seconds, reward_seconds, completion_tokens = 0.0, 0.0, 0
        reward_log: dict[str, list[float]] = {}
        truncated = empty = 0
        all_lengths: list[int] = []
        while len(kept) < cfg.prompts_per_step and stats["sampling_rounds"] < cfg.max_sampling_rounds:
            stats["sampling_rounds"] += 1
            want = cfg.prompts_per_step - len(kept)
            indices = []
            for i in self._next_prompts(want):
                if self._prompt_ids(i) is None:
                    stats["prompts_too_long"] += 1
                else:
                    indices.append(i)
            if not indices:
                continue
            # seeded by the round and each prompt's row, never its rank or batch-mates: N processes draw what one draws
            params = SamplingParams(**cfg.sampling_kwargs(seeds=prompt_seeds(cfg.seed * 1_000_003 + self.round, indices)))
            self.round += 1
            rollouts = generate_rollouts(algo.backend, [self._prompt_ids(i) for i in indices], cfg.num_generations, params)
            rollout_seconds += rollouts.seconds
            completion_tokens += rollouts.num_completion_tokens
            t0 = time.perf_counter()
            groups, result = algo.score(rollouts, [self.rows[i] for i in indices])
            reward_seconds += time.perf_counter() - t0
            for name, values in result.per_function.items():
                reward_log.setdefault(name, []).extend(v for v in values if v is not None)
            for group in groups:
                all_lengths += [len(s.completion_ids) for s in group]
                truncated += sum(s.truncated for s in group)
                empty += sum(not s.extra.get("text", "").strip() for s in group)
                usable = [s.reward for s in group if s.reward is not None]
                if cfg.dynamic_sampling and (len(usable) < 2 or max(usable) - min(usable) < 1e-12):
                    stats["dropped_groups"] += 1
                    spare.append(group)
                else:
                    kept.append(group)
        filled = 0
        while len(kept) < cfg.prompts_per_step and spare:  # the cap was hit: fill with signal-free groups
            kept.append(spare.pop(0))
            filled += 1
        samples = [s for group in kept[:cfg.prompts_per_step] for s in group]
        t0 = time.perf_counter()
        algo.add_reference_logps(samples)  # first: PPO's token rewards carry the KL to the reference
        reference_seconds = time.perf_counter() - t0
        adv_stats = algo.assign_advantages(samples)
        self.samples = samples
        self.plan = self._plan(len(samples))
        rewards = [s.reward for s in samples if s.reward is not None]
        zero_std = sum(1 for g in kept if _all_equal([s.reward for s in g if s.reward is not None]))
        metrics = {
            "reward/mean": _mean(rewards), "reward/std": _std(rewards),
            "completion/mean_length": _mean(all_lengths), "completion/max_length": float(max(all_lengths, default=0)),
            "completion/truncation_rate": truncated / max(1, len(all_lengths)),
            "completion/empty": float(empty),
            "groups/zero_std_fraction": zero_std / max(1, len(kept)),
            "groups/dropped": float(stats["dropped_groups"]), "groups/filled_after_cap": float(filled),
            "samples/masked": float(sum(not s.trained for s in samples)),
            "prompts/too_long": float(stats["prompts_too_long"]), "sampling_rounds": float(stats["sampling_rounds"]),
            "time/rollout_seconds": rollout_seconds, "time/reward_seconds": reward_seconds,
            "time/reference_seconds": reference_seconds, "time/experience_seconds": time.perf_counter() - began,
            "rollout/tokens_per_second": completion_tokens / max(rollout_seconds, 1e-9),
            **adv_stats,
        }
        for name, values in reward_log.items():
            metrics[f"reward/{name}/mean"], metrics[f"reward/{name}/std"] = _mean(values), _std(values)
        return metrics

    def _plan(self, count: int) -> list[list[list[int]]]:
        """μ passes; each shuffled and cut into num_minibatches optimizer steps of micro-batches."""
        cfg = self.config
        plan = []
        g = torch.Generator().manual_seed(cfg.seed * 7919 + self.round)
        per_step = math.ceil(count / cfg.num_minibatches)
        for _ in range(cfg.num_iterations):
            order = torch.randperm(count, generator=g).tolist() if cfg.num_minibatches > 1 else list(range(count))
            for m in range(cfg.num_minibatches):
                part = order[m * per_step:(m + 1) * per_step]
                plan.append([part[k:k + cfg.batch_size] for k in range(0, len(part), cfg.batch_size)])
        return plan


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else 0.0


def _std(xs) -> float:
    xs = list(xs)
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _all_equal(xs) -> bool:
    return len(xs) < 2 or max(xs) - min(xs) < 1e-12
