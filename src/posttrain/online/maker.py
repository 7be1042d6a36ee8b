"""The experience maker: prompts -> rollouts -> rewards -> reference / old log-probs -> advantages.

`ExperienceMaker` is the protocol the online source drives (one `sample` per generation call, so
dynamic sampling can ask for more; one `finish` per round); `RolloutExperience` is the one
implementation, composed of a rollout backend (`rollout.RolloutBackend`: generate + weight sync), the
reward functions, an advantage estimator (`online.estimators`), and, as the stage asks, a reference
policy, a critic, a KL penalty in the reward and a process reward model.

What `finish` writes on each Sample: `advantage` (a float, or a list per token), `ref_logps`; in
`extra`: `returns` and `old_values` (with a critic), `tis_weights` and `rollout_logps` (with
truncated importance sampling: `old_logps` are then the trainer's own).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import torch

import posttrain.ranks as ranks
from posttrain.agents.metrics import episode_metrics
from posttrain.data.collate import to_device
from posttrain.data.values import completion_value
from posttrain.generation import SamplingParams
from posttrain.losses.advantages import whiten
from posttrain.losses.kl import kl_estimate
from posttrain.losses.policy import soft_overlong_penalty
from posttrain.losses.ppo import kl_penalized_rewards
from posttrain.online.estimators import Estimator, EstimatorContext
from posttrain.online.experience import Sample, collate_samples, completion_tensor, policy_outputs
from posttrain.rewards import RewardFunctions
from posttrain.rollout import RolloutBackend, generate_rollouts, warn_if_plain_prompts_unanswered


@dataclass
class Scored:
    groups: list[list[Sample]]  # one list per prompt, its completions
    rewards: object  # rewards.RewardResult: per-function values, for logging
    rollout_seconds: float
    reward_seconds: float
    completion_tokens: int


class ExperienceMaker(Protocol):
    backend: RolloutBackend

    def sample(self, prompts: list[list[int]], rows: list[dict], params: SamplingParams) -> Scored:
        """Rollouts of `prompts` (token ids; `rows` their dataset rows), scored."""

    def finish(self, samples: list[Sample]) -> dict[str, float]:
        """Reference / old log-probs, values and advantages of a round's samples (group-major), in place;
        returns metrics."""


class RolloutExperience:
    def __init__(self, config, tokenizer, rewards: RewardFunctions, estimator: Estimator, *, backend: RolloutBackend,
                 policy, reference=None, critic=None, reward_kl=None, kl_placement: str = "every_token",
                 process_rewards=None, packed: bool = False, episodes=None):
        self.config, self.tokenizer, self.rewards, self.estimator = config, tokenizer, rewards, estimator
        self.backend, self.policy, self.reference, self.critic = backend, policy, reference, critic
        self.reward_kl, self.kl_placement, self.process_rewards = reward_kl, kl_placement, process_rewards
        self.packed = packed  # the shared-prompt layout for the extra forwards too
        self.episodes = episodes  # agents.episodes.EpisodeRunner: multi-turn episodes instead of single completions
        self._groups = 0  # group ids run on over the round, so groups of different calls never share one

    # ------------------------------------------------------------------------------ sample

    def sample(self, prompts, rows, params):
        cfg = self.config
        rollouts = self._rollouts(prompts, rows, cfg.num_generations, params)
        if self.episodes is None:
            warn_if_plain_prompts_unanswered(self.tokenizer, [row["prompt"] for row in rows], rollouts.texts)
        greedy = None
        if self.estimator.greedy_baseline:  # ReMax: each prompt's greedy completion, scored as its baseline
            greedy = self._rollouts(prompts, rows, 1, SamplingParams(**{**params.__dict__, "temperature": 0.0}))
        t0 = time.perf_counter()
        groups, result = self.score(rollouts, rows, greedy)
        return Scored(groups, result, rollouts.seconds + (greedy.seconds if greedy else 0.0), time.perf_counter() - t0,
                      rollouts.num_completion_tokens)

    def _rollouts(self, prompts, rows, group_size: int, params):
        if self.episodes is not None:  # the environment renders each episode's prompt itself
            return self.episodes.run(rows, group_size, params)
        return generate_rollouts(self.backend, prompts, group_size, params)

    def score(self, rollouts, rows: list[dict], greedy=None) -> tuple[list[list[Sample]], object]:
        """Samples grouped by prompt with their rewards (and step rewards), and the reward result;
        `greedy` rollouts (one per prompt) give each sample `extra["baseline"]`."""
        cfg = self.config
        total, result = self._score(rollouts, rows)
        baseline = self._score(greedy, rows)[0] if greedy is not None else None
        groups: dict[int, list[Sample]] = {}
        for i in range(len(rollouts)):
            g = rollouts.group[i]
            trained = total[i] is not None and not (cfg.mask_truncated and rollouts.truncated[i])
            extra = {"text": rollouts.texts[i], **(rollouts.extra["sample_extra"][i] if "sample_extra" in rollouts.extra else {})}
            if baseline is not None:
                extra["baseline"] = baseline[g]
            reward = total[i]
            if "turn_rewards" in extra:  # an episode: its reward is its discounted return
                extra["outcome"] = reward
                reward = trajectory_return(extra["turn_rewards"], reward, cfg.turn_gamma)
                trained = reward is not None and not (cfg.mask_truncated and rollouts.truncated[i])
            groups.setdefault(g, []).append(Sample(
                rollouts.prompt_ids[i], rollouts.completion_ids[i], rollouts.old_logps[i], self._groups + g,
                reward=reward, trained=trained, truncated=rollouts.truncated[i], extra=extra))
        if self.process_rewards is not None:
            samples = [s for group in groups.values() for s in group]
            self._add_step_rewards(samples, [rows[s.group - self._groups]["prompt"] for s in samples], result)
        self._groups += len(rows)
        return list(groups.values()), result

    def _score(self, rollouts, rows: list[dict]) -> tuple[list[float | None], object]:
        """The reward of each rollout (None: masked), with DAPO's soft overlong punishment."""
        cfg = self.config
        conversational = isinstance(rows[0]["prompt"], list)
        prompts = [rows[g]["prompt"] for g in rollouts.group]
        completions = rollouts.extra.get("completions") or [completion_value(t, conversational) for t in rollouts.texts]
        columns = {k: [rows[g][k] for g in rollouts.group] for k in rows[0] if k not in ("prompt", "completion")}
        columns |= rollouts.extra.get("columns", {})  # an episode's events, trajectory and turns
        result = self.rewards(prompts, completions, columns, completion_ids=rollouts.completion_ids)
        total = list(result.total)
        if cfg.overlong_buffer:
            lengths = torch.tensor([len(c) for c in rollouts.completion_ids])
            penalty = soft_overlong_penalty(lengths, cfg.max_new_tokens, cfg.overlong_buffer) * cfg.overlong_penalty
            total = [None if r is None else r + float(p) for r, p in zip(total, penalty)]
        return total, result

    def _add_step_rewards(self, samples: list[Sample], prompts: list, result) -> None:
        """A process reward model's step rewards per completion token (`extra["step_rewards"]`)."""
        cfg = self.config
        token_rewards = self.process_rewards.token_rewards(prompts, [s.extra["text"] for s in samples],
                                                           [s.completion_ids for s in samples], self.tokenizer, cfg.process_reward_mode)
        for s, values in zip(samples, token_rewards):
            s.extra["step_rewards"] = [cfg.process_reward_coef * v for v in values]
        result.per_function["process_reward"] = [sum(s.extra["step_rewards"]) for s in samples]

    def evaluate_episodes(self, rows: list[dict]) -> dict[str, float]:
        """Greedy episodes of held-out rows: eval_return (the mean discounted return), eval_<reward function>
        and eval_<agent metric> (success, turns, tool calls and errors, how episodes ended)."""
        cfg = self.config
        params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=0.0, seed=cfg.seed, stop=list(cfg.stop))
        kept = self.episodes.pop_timings()  # the training rounds' timings, not the evaluation's
        rollouts = self.episodes.run(rows, 1, params)
        self.episodes.pop_timings()
        self.episodes.timings = kept
        total, result = self._score(rollouts, rows)
        self.rewards.pop_logged()  # what reward functions log here belongs to no training round
        extras = rollouts.extra["sample_extra"]
        returns = [trajectory_return(x["turn_rewards"], t, cfg.turn_gamma) for x, t in zip(extras, total)]
        out = {"eval_return": sum(returns) / len(returns)}
        for name, values in result.per_function.items():
            scored = [v for v in values if v is not None]
            if scored:
                out[f"eval_{name}"] = sum(scored) / len(scored)
        metrics = episode_metrics([x["episode"] for x in extras], {})
        return out | {"eval_" + key.removeprefix("agent/"): value for key, value in metrics.items()}

    # ------------------------------------------------------------------------------ finish

    @torch.no_grad()
    def finish(self, samples):
        cfg, metrics = self.config, {}
        if cfg.tis_cap > 0:
            metrics.update(self._recompute_old_logps(samples))
        if self.reference is not None:
            t0 = time.perf_counter()
            self._add_reference_logps(samples)
            metrics["time/reference_seconds"] = time.perf_counter() - t0
        longest = max(max(len(s.completion_ids) for s in samples), 1)
        completion = model_tokens(samples, longest)
        trained = completion * torch.tensor([float(s.trained) for s in samples])[:, None]
        rewards = torch.tensor([float("nan") if s.reward is None else s.reward for s in samples])
        outcomes = torch.tensor([_number(s.extra["outcome"]) if "outcome" in s.extra else _number(s.reward) for s in samples])
        old = completion_tensor([s.old_logps for s in samples], longest)
        with_ref = all(s.ref_logps is not None for s in samples)
        ref = completion_tensor([s.ref_logps for s in samples], longest) if with_ref else old
        token_rewards = self._token_rewards(samples, outcomes, old, ref, completion)
        values = None
        if self.critic is not None:
            values = self._forward(samples, "values", longest) * completion
        reduce = ranks.batch_reduce()  # batch statistics over every process's samples
        baseline = torch.tensor([s.extra["baseline"] if s.extra["baseline"] is not None else float("nan") for s in samples]) \
            if self.estimator.greedy_baseline else None
        ctx = EstimatorContext(cfg, reduce, baseline)
        advantages, returns = self.estimator.compute(rewards, token_rewards, trained, values, cfg.num_generations, ctx)
        if getattr(cfg, "whiten_advantages", False):
            if advantages.dim() == 1:
                advantages = advantages[:, None] * trained
            count = reduce([float(trained.sum())])[0] if reduce else float(trained.sum())
            advantages = whiten(advantages, trained, reduce=reduce) if count > 1 else advantages
        if self.reward_kl is not None:
            metrics.update(self._update_kl_coef(old, ref, completion, len(samples), reduce))
        for r, s in enumerate(samples):
            n = len(s.completion_ids)
            if advantages.dim() == 1:
                s.advantage = float(advantages[r]) if s.trained else 0.0
            else:
                s.advantage = advantages[r, :n].tolist() if s.trained else [0.0] * n
            if values is not None:
                s.extra["returns"], s.extra["old_values"] = returns[r, :n].tolist(), values[r, :n].tolist()
        flat = advantages[trained.bool()] if advantages.dim() == 2 else advantages[torch.tensor([s.trained for s in samples], dtype=torch.bool)]
        metrics |= _moments("advantage", flat, reduce)
        if values is not None:
            valid = completion.bool()
            metrics["values/mean"] = _moments("values", values[valid], reduce)["values/mean"]
            metrics["returns/mean"] = _moments("returns", returns[valid], reduce)["returns/mean"]
        if self.episodes is not None:
            metrics |= episode_metrics([s.extra["episode"] for s in samples], self.episodes.pop_timings(), reduce)
        return metrics

    def _token_rewards(self, samples, scores, old, ref, completion) -> torch.Tensor:
        """The reward at each completion token: the score at the last one, −β·k1 per token when the KL
        is in the reward (or its sum at the last, kl_placement=last), step rewards, and an episode's
        turn rewards r_t at the last token of each of its turns (its score is then the reward functions')."""
        coef = self.reward_kl.value if self.reward_kl is not None else 0.0
        rewards = kl_penalized_rewards(scores, old, ref, completion, coef, placement=self.kl_placement) * completion
        if any("step_rewards" in s.extra for s in samples):  # process rewards at the step-end tokens
            rewards = rewards + completion_tensor([s.extra.get("step_rewards", []) for s in samples], old.shape[1]) * completion
        for r, s in enumerate(samples):
            for end, value in zip(s.extra.get("turn_ends", ()), s.extra.get("turn_rewards", ())):
                rewards[r, end] += value
        return rewards

    def _update_kl_coef(self, old, ref, completion, count: int, reduce) -> dict[str, float]:
        """The KL controller's step on the round's mean sequence KL (k1), over every process, so the
        coefficient moves alike everywhere."""
        sequence_kl = kl_estimate(old, ref, completion, "k1").sum(-1)
        kl = float(sequence_kl.mean())
        if reduce:
            kl_sum, total = reduce([float(sequence_kl.sum()), float(count)])
            kl, count = kl_sum / total, int(total)
        return {"kl_coef": float(self.reward_kl.update(kl, count)), "kl/sequence_k1": kl}

    def _forward(self, samples: list[Sample], what: str, longest: int, model=None) -> torch.Tensor:
        """Log-probs or values of every sample, (N, longest), in micro-batches of batch_size, in eval mode."""
        model = model or self.policy
        device = next(self.policy.parameters()).device
        out = torch.zeros(len(samples), longest)
        was_training = self.policy.training
        self.policy.eval()
        try:
            for start in range(0, len(samples), self.config.batch_size):
                chunk = samples[start:start + self.config.batch_size]
                batch = to_device(collate_samples(chunk, self.tokenizer.pad_token_id, packed=self.packed), device)
                result = policy_outputs(model, batch, self.config.temperature, critic=self.critic if what == "values" else None)
                values = result.values if what == "values" else result.logps
                out[start:start + len(chunk), :values.shape[1]] = values.float().cpu()
        finally:
            self.policy.train(was_training)
        return out

    def _add_reference_logps(self, samples: list[Sample]) -> None:
        device = next(self.policy.parameters()).device
        longest = max(max(len(s.completion_ids) for s in samples), 1)
        with self.reference.scoring(self.policy, device) as reference:
            logps = self._forward(samples, "logps", longest, model=reference)
        for s, row in zip(samples, logps):
            s.ref_logps = row[:len(s.completion_ids)].tolist()

    def _recompute_old_logps(self, samples: list[Sample]) -> dict[str, float]:
        """Truncated importance sampling: the old log-probs become the trainer's own forward's, and each
        token gets the weight min(π_trainer / π_rollout, tis_cap) against the backend that sampled it."""
        longest = max(max(len(s.completion_ids) for s in samples), 1)
        trainer = self._forward(samples, "logps", longest)
        rollout = completion_tensor([s.old_logps for s in samples], longest)
        mask = model_tokens(samples, longest)
        weights = torch.exp(trainer - rollout).clamp(max=self.config.tis_cap) * mask
        for r, s in enumerate(samples):
            n = len(s.completion_ids)
            s.extra["rollout_logps"], s.old_logps = s.old_logps, trainer[r, :n].tolist()
            s.extra["tis_weights"] = weights[r, :n].tolist()
        tokens = max(float(mask.sum()), 1.0)
        capped = float(((torch.exp(trainer - rollout) > self.config.tis_cap) & mask.bool()).sum())
        return {"mismatch/kl": float(kl_estimate(rollout, trainer, mask, "k1").sum()) / tokens,
                "mismatch/k3": float(kl_estimate(rollout, trainer, mask, "k3").sum()) / tokens,
                "mismatch/tis_capped_fraction": capped / tokens}


def model_tokens(samples: list[Sample], longest: int) -> torch.Tensor:
    """(N, longest) 1 on the completion tokens the policy chose: all of them, or an episode's loss_mask
    (its observations' tokens are 0)."""
    return completion_tensor([s.extra.get("loss_mask", [1.0] * len(s.completion_ids)) for s in samples], longest)


def trajectory_return(turn_rewards: list[float], outcome: float | None, gamma: float) -> float | None:
    """G_0 = Σ_t γ^t r_t, the reward functions' score of the episode (None: none applies) counted at its
    last turn T−1, γ^(T−1)·score (J = E[Σ_t γ^t r_t], S3 L2995); without a score, the environment's return."""
    last = max(len(turn_rewards) - 1, 0)
    return sum(gamma ** t * r for t, r in enumerate(turn_rewards)) + (gamma ** last * outcome if outcome is not None else 0.0)


def _number(value: float | None) -> float:
    return 0.0 if value is None else float(value)


def _moments(name: str, x: torch.Tensor, reduce) -> dict[str, float]:
    """Mean, sample std and mean absolute value of x over every process's entries (for logging)."""
    x = x.double().flatten()
    count, total, squares, absolute = [float(x.numel()), float(x.sum()), float((x * x).sum()), float(x.abs().sum())]
    if reduce:
        count, total, squares, absolute = reduce([count, total, squares, absolute])
    mean = total / count if count else 0.0
    var = (squares - count * mean * mean) / (count - 1) if count > 1 else 0.0
    return {f"{name}/mean": mean, f"{name}/std": max(var, 0.0) ** 0.5, f"{name}/abs_mean": absolute / count if count else 0.0}
