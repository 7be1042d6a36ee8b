"""GRPO and its family (DAPO, Dr.GRPO, GSPO, GRPO+), RLOO and REINFORCE(++): online RL from rewards.

    posttrain grpo model=runs/sft/final dataset=task:arithmetic reward_funcs=[task]
    posttrain grpo --preset dapo model=... dataset=prompts.jsonl reward_funcs=[my_rewards.py:correct]
    posttrain rloo model=... dataset=task:arithmetic

Each generation round samples `num_generations` (G) completions for each of `prompts_per_step`
prompts, scores them with the reward functions (TRL's convention, `f(prompts, completions, **columns)`),
and turns rewards into advantages (`advantage`: grpo = group-normalised, with `scale_rewards` group
/ batch / none; rloo = leave-one-out; reinforce = mean baseline; reinforce_pp = REINFORCE++). The
policy is then updated `num_iterations` (μ) times over those samples, each pass in `num_minibatches`
optimizer steps, against the log-probs the samples were drawn with (frozen).

The loss (losses/policy.py) is one function whose options cover the seeds' disagreements:
`loss_type` (aggregation: grpo = sequence mean then mean; token_mean = DAPO/BNPO; dr_grpo = a
constant normaliser), `kl_estimator` k3 / k1 with `beta` (β = 0 loads no reference model),
`ratio_level` token / sequence (GSPO), `epsilon_low` / `epsilon_high` (clip-higher).

Why the logged loss sits near 0: with μ = 1 the policy is the one that sampled, so every ratio is 1
and the surrogate equals −A; group-normalised advantages average to 0 over each group, so the loss
is ≈ 0 (plus β·KL, which starts at 0) even though its gradient, Σ A ∇log π, is not. Watch the
rewards, `kl`, `entropy` and the clip fractions instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import posttrain.ranks as ranks
from posttrain.config import option
from posttrain.data.collate import to_device
from posttrain.data.values import completion_value
from posttrain.errors import ConfigError
from posttrain.losses import advantages as adv
from posttrain.losses.kl import LOSS_KL_ESTIMATORS, kl_estimate
from posttrain.losses.policy import RATIO_LEVELS, policy_loss, soft_overlong_penalty
from posttrain.losses.ppo import kl_penalized_rewards
from posttrain.models.reference import ReferencePolicy
from posttrain.models.shared_prefix_attention import can_share_prefix
from posttrain.online.experience import Sample, collate_samples, completion_logps, completion_tensor
from posttrain.online.source import OnlineSource
from posttrain.options import MaskableRewardOptions, SamplingOptions, TopKSamplingOptions, TrainOptions, restate
from posttrain.rewards import RewardFunctions
from posttrain.rollout import LocalBackend
from posttrain.train import distributed
from posttrain.train.loop import Algorithm, train
from posttrain.train.scaffold import load_model_for, load_prompt_rows, start_run

ADVANTAGES = ("grpo", "rloo", "reinforce", "reinforce_pp")
LOSS_TYPES = ("grpo", "token_mean", "dr_grpo")


@dataclass
class GRPOConfig(MaskableRewardOptions, TopKSamplingOptions, TrainOptions):
    learning_rate: float = option(1e-6, "Peak learning rate (AdamW).")
    max_steps: int = option(100, "Optimizer steps (each generation round gives num_iterations x num_minibatches of them).")
    batch_size: int = option(16, "Samples (completions) per micro-batch; an optimizer step's samples are split into micro-batches of this size.")
    prompts_per_step: int = option(8, "Prompts per generation round (each process).")
    num_generations: int = option(8, "G: completions sampled per prompt.")
    max_new_tokens: int = restate(SamplingOptions, "max_new_tokens", "Longest completion in tokens (prompt + completion must fit max_length; longer prompts are skipped and counted).")
    temperature: float = restate(SamplingOptions, "temperature", "Sampling temperature (the policy's log-probs use the same logits / T).")
    stop: list[str] = option([], "Stop strings: a completion ends at the first one.")
    advantage: str = option("grpo", "Advantage estimator: grpo (group-normalised), rloo (leave-one-out), reinforce (mean baseline), reinforce_pp (REINFORCE++).", choices=ADVANTAGES)
    scale_rewards: str = option("group", "grpo advantages: divide by the group's std, the batch's std, or none (Dr.GRPO).", choices=("group", "batch", "none"))
    loss_type: str = option("grpo", "Aggregation: grpo (per-sequence mean, then mean), token_mean (DAPO / BNPO: one mean over all tokens), dr_grpo (constant normaliser max_new_tokens).", choices=LOSS_TYPES)
    beta: float = option(0.0, "β: weight of the KL to the reference: a term of the loss, or with advantage=reinforce_pp -β·k1 in every token's reward (0: no reference model is loaded).")
    kl_estimator: str = option("k3", "KL estimator in the loss: k3 (exp(r) - r - 1, unbiased, >= 0) or k1 (log-ratio).", choices=LOSS_KL_ESTIMATORS)
    ratio_level: str = option("token", "Importance ratio per token; per sequence, length-normalised (GSPO); or sequence_product, pi(o|q)/pi_old(o|q) (DeepSeek-R1 as seed 002 writes it).", choices=RATIO_LEVELS)
    entropy_coef: float = option(0.0, "Entropy bonus: subtract entropy_coef x the policy's entropy per token, aggregated like the loss (seed: c_e = 0.01; GRPO+ uses 0).")
    epsilon_low: float = option(0.2, "Clip the ratio below at 1 - epsilon_low.")
    epsilon_high: float = option(0.2, "Clip the ratio above at 1 + epsilon_high (> epsilon_low: DAPO's clip-higher).")
    num_iterations: int = option(1, "μ: passes over each round's samples (old log-probs frozen).")
    num_minibatches: int = option(1, "Optimizer steps per pass over a round's samples.")
    mask_truncated: bool = option(False, "Leave completions that hit max_new_tokens out of the loss (overlong filtering).")
    overlong_buffer: int = option(0, "DAPO soft overlong punishment: completions longer than max_new_tokens - overlong_buffer lose up to overlong_penalty (0: off).")
    overlong_penalty: float = option(1.0, "Largest soft overlong punishment (reached at max_new_tokens).")
    dynamic_sampling: bool = option(False, "Drop groups whose rewards are all equal and sample more prompts to fill the round (DAPO).")
    max_sampling_rounds: int = option(3, "Cap on generation calls per round when dynamic_sampling is on.")
    packing: bool = option(True, "Train on micro-batches laid out as each prompt once, then its completions, with no padding (sdpa / eager models; others pad).")

    def validate(self) -> None:
        super().validate()
        if self.max_steps < 1:
            raise ConfigError("online training needs max_steps >= 1 (there are no epochs of a fixed data set)")
        if self.num_generations < 2 and self.advantage in ("grpo", "rloo"):
            raise ConfigError(f"advantage={self.advantage} compares samples of the same prompt: num_generations must be >= 2, got {self.num_generations}")
        for key in ("prompts_per_step", "num_generations", "num_iterations", "num_minibatches", "max_new_tokens", "max_sampling_rounds"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}' must be >= 1, got {getattr(self, key)}")
        samples = self.prompts_per_step * self.num_generations
        if self.num_minibatches > samples:
            raise ConfigError(f"num_minibatches={self.num_minibatches} but a round has only {samples} samples "
                              f"(prompts_per_step x num_generations); lower num_minibatches")
        if self.max_new_tokens >= self.max_length:
            raise ConfigError(f"max_new_tokens ({self.max_new_tokens}) must be below max_length ({self.max_length}), which also holds the prompt")
        if not 0 <= self.epsilon_low < 1 or self.epsilon_high < 0:
            raise ConfigError("epsilon_low must be in [0, 1) and epsilon_high >= 0")
        if self.beta < 0 or self.entropy_coef < 0:
            raise ConfigError(f"beta and entropy_coef must be >= 0, got {self.beta} and {self.entropy_coef}")
        if not 0 <= self.overlong_buffer < self.max_new_tokens:
            raise ConfigError(f"overlong_buffer must be in [0, max_new_tokens), got {self.overlong_buffer}")


# Named sets of values (`--preset NAME`), from the papers as the seeds give them (SEED_NOTES 1.3).
PRESETS: dict[str, dict] = {
    "grpo": {"advantage": "grpo", "scale_rewards": "group", "loss_type": "grpo", "beta": 0.04, "kl_estimator": "k3",
             "epsilon_low": 0.2, "epsilon_high": 0.2},  # DeepSeekMath (S3 L2490-2527)
    "dapo": {"advantage": "grpo", "scale_rewards": "group", "loss_type": "token_mean", "beta": 0.0, "epsilon_low": 0.2,
             "epsilon_high": 0.28, "dynamic_sampling": True, "overlong_buffer": 16},  # S3 L2748-2857
    "dr_grpo": {"advantage": "grpo", "scale_rewards": "none", "loss_type": "dr_grpo", "beta": 0.0},  # S3 L3688-3733
    "gspo": {"advantage": "grpo", "scale_rewards": "group", "loss_type": "grpo", "ratio_level": "sequence", "beta": 0.0,
             "epsilon_low": 3e-4, "epsilon_high": 4e-4},  # Zheng et al. 2025
    "grpo_plus": {"advantage": "grpo", "loss_type": "grpo", "beta": 0.0, "epsilon_low": 0.2, "epsilon_high": 0.4,
                  "mask_truncated": True},  # DeepCoder GRPO+ (S3 L2859-2985): no KL, no entropy, overlong filtering
    "rloo": {"advantage": "rloo", "loss_type": "token_mean", "beta": 0.0},
    "reinforce": {"advantage": "reinforce", "loss_type": "token_mean", "beta": 0.0},
    "reinforce_pp": {"advantage": "reinforce_pp", "loss_type": "token_mean", "beta": 0.0},
}


class GRPO(Algorithm):
    def __init__(self, config: GRPOConfig, tokenizer, rewards: RewardFunctions):
        self.config, self.tokenizer, self.rewards = config, tokenizer, rewards
        self.reference: ReferencePolicy | None = None
        self.backend = None
        self.policy = None
        self.packed = False
        self.eval_rows: list[dict] = []

    def setup(self, model) -> None:
        self.policy = model
        replica = None
        if ranks.world_size() > 1:  # the policy will be sharded: sample from a full copy per process
            import copy

            replica = copy.deepcopy(model).eval()
            replica.requires_grad_(False)
        self.backend = LocalBackend(model, self.tokenizer, replica)
        self.packed = self.config.packing and can_share_prefix(model)
        if self.config.beta > 0:
            self.reference = ReferencePolicy(model)

    # ---------------------------------------------------------------- experience

    def score(self, rollouts, rows: list[dict]):
        """Samples grouped by prompt, with their rewards (and the reward result, for logging)."""
        cfg = self.config
        conversational = isinstance(rows[0]["prompt"], list)
        prompts = [rows[g]["prompt"] for g in rollouts.group]
        completions = [completion_value(t, conversational) for t in rollouts.texts]
        columns = {k: [rows[g][k] for g in rollouts.group] for k in rows[0] if k not in ("prompt", "completion")}
        result = self.rewards(prompts, completions, columns, completion_ids=rollouts.completion_ids)
        total = list(result.total)
        if cfg.overlong_buffer:
            lengths = torch.tensor([len(c) for c in rollouts.completion_ids])
            penalty = soft_overlong_penalty(lengths, cfg.max_new_tokens, cfg.overlong_buffer) * cfg.overlong_penalty
            total = [None if r is None else r + float(p) for r, p in zip(total, penalty)]
        groups: dict[int, list[Sample]] = {}
        for i in range(len(rollouts)):
            trained = total[i] is not None and not (cfg.mask_truncated and rollouts.truncated[i])
            groups.setdefault(rollouts.group[i], []).append(Sample(
                rollouts.prompt_ids[i], rollouts.completion_ids[i], rollouts.old_logps[i], rollouts.group[i],
                reward=total[i], trained=trained, truncated=rollouts.truncated[i], extra={"text": rollouts.texts[i]}))
        return list(groups.values()), result

    def assign_advantages(self, samples: list[Sample]) -> dict[str, float]:
        """Advantages from rewards; samples without a reward get 0 and stay out of group statistics."""
        cfg, g = self.config, self.config.num_generations
        present = torch.tensor([s.reward is not None for s in samples])
        rewards = torch.tensor([s.reward if s.reward is not None else 0.0 for s in samples], dtype=torch.float32)
        if not present.all():  # fill missing rewards with their group's mean so they shift nothing
            groups = rewards.view(-1, g)
            ok = present.view(-1, g).float()
            means = (groups * ok).sum(1, keepdim=True) / ok.sum(1, keepdim=True).clamp(min=1)
            rewards = torch.where(present.view(-1, g), groups, means).view(-1)
        reduce = ranks.batch_reduce()  # batch statistics over every process
        if cfg.advantage == "grpo":
            values = adv.group_advantages(rewards, g, scale=cfg.scale_rewards, reduce=reduce)
        elif cfg.advantage == "rloo":
            values = adv.rloo_advantages(rewards, g)
        elif cfg.advantage == "reinforce":
            values = adv.reinforce_advantages(rewards, None, baseline="mean", reduce=reduce)
        else:
            values = None
        if values is not None:
            values = torch.where(present, values, torch.zeros_like(values))
            for s, a in zip(samples, values.tolist()):
                s.advantage = a
        else:
            self._reinforce_pp(samples, rewards)
        flat = torch.tensor([a for s in samples for a in (s.advantage if isinstance(s.advantage, list) else [s.advantage])])
        return {"advantage/mean": float(flat.mean()), "advantage/std": float(flat.std()) if flat.numel() > 1 else 0.0,
                "advantage/abs_mean": float(flat.abs().mean())}

    def _reinforce_pp(self, samples: list[Sample], rewards: torch.Tensor) -> None:
        """REINFORCE++: the score at the last token, minus β·k1 at every token when β > 0 (the KL goes
        into the token rewards, not the loss), returns-to-go, whitened over every completion token of
        the round."""
        longest = max(len(s.completion_ids) for s in samples)
        token_rewards = torch.zeros(len(samples), longest)
        mask = torch.zeros(len(samples), longest)
        for r, s in enumerate(samples):
            n = len(s.completion_ids)
            mask[r, :n] = 1
            if n:
                token_rewards[r, n - 1] = rewards[r]
        if self.config.beta > 0:
            old = completion_tensor([s.old_logps for s in samples], longest)
            ref = completion_tensor([s.ref_logps for s in samples], longest)
            token_rewards = kl_penalized_rewards(rewards, old, ref, mask, kl_coef=self.config.beta) * mask
        values = adv.reinforce_plus_plus_advantages(token_rewards, mask, reduce=ranks.batch_reduce())
        for r, s in enumerate(samples):
            s.advantage = values[r, :len(s.completion_ids)].tolist() if s.trained else [0.0] * len(s.completion_ids)

    @torch.no_grad()
    def add_reference_logps(self, samples: list[Sample]) -> None:
        if self.reference is None:
            return
        device = next(self.policy.parameters()).device
        with self.reference.scoring(self.policy, device) as reference:
            for start in range(0, len(samples), self.config.batch_size):
                chunk = samples[start:start + self.config.batch_size]
                logps, _ = completion_logps(reference, to_device(self.collate(chunk), device), self.config.temperature)
                for s, row in zip(chunk, logps.cpu()):
                    s.ref_logps = row[:len(s.completion_ids)].tolist()

    def evaluate_by_generation(self, model) -> dict[str, float]:
        """Greedy completions of the held-out prompts (`eval_dataset`), scored by the reward functions."""
        if not self.eval_rows:
            return {}
        from posttrain.methods.heldout import evaluate

        report = evaluate(model, self.tokenizer, self.eval_rows, self.rewards.functions, temperature=0.0,
                          max_new_tokens=self.config.max_new_tokens, seed=self.config.seed, show_samples=0)
        return {f"eval_{name}": report[name] for name in self.rewards.functions} | {"eval_mean_length": report["mean_length"]}

    # ---------------------------------------------------------------- training

    @property
    def loss_beta(self) -> float:
        """β of the loss's KL term: REINFORCE++ has its KL in the token rewards, so none in the loss
        (the KL is still measured)."""
        return 0.0 if self.config.advantage == "reinforce_pp" else self.config.beta

    def collate(self, samples: list[Sample]) -> dict:
        return collate_samples(samples, self.tokenizer.pad_token_id, self.packed)

    def batch_weight(self, batch: dict) -> float:
        if self.config.loss_type == "token_mean":
            return float(batch["mask"].sum())
        return float(batch["num_sequences"])

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        cfg = self.config
        logps, entropy = completion_logps(model, batch, cfg.temperature, with_entropy=True)
        out = policy_loss(logps, batch["old_logps"], batch["advantages"], batch["mask"], ref_logps=batch.get("ref_logps"),
                          beta=self.loss_beta, kl_estimator=cfg.kl_estimator, ratio_level=cfg.ratio_level,
                          epsilon_low=cfg.epsilon_low, epsilon_high=cfg.epsilon_high, aggregation=cfg.loss_type,
                          max_completion_length=cfg.max_new_tokens, entropy=entropy, entropy_coef=cfg.entropy_coef)
        metrics = dict(out.metrics)
        mask = batch["mask"]
        tokens = mask.sum()
        metrics["entropy"] = ((entropy * mask).sum(), tokens)
        metrics.update(kl_metrics(logps, batch, mask))
        return out.loss, metrics


@torch.no_grad()
def kl_metrics(logps: torch.Tensor, batch: dict, mask: torch.Tensor) -> dict:
    """Per-token KL to the reference, k1 and k3, as (sum, tokens), when the batch has reference log-probs."""
    if "ref_logps" not in batch:
        return {}
    tokens = mask.sum()
    return {f"kl/{name}": (kl_estimate(logps.detach(), batch["ref_logps"], mask, name).sum(), tokens) for name in ("k1", "k3")}


def _load_prompts(config):
    """Tokenizer, prompt rows, reward functions (None when a reward model scores) and the source class."""
    _, tokenizer = start_run(config)
    rows = load_prompt_rows(config.dataset, config.dataset_split, "online RL needs")
    rewards = None if getattr(config, "reward_model", None) else RewardFunctions.from_options(config, config.dataset)
    return tokenizer, rows, rewards, OnlineSource


def eval_rows(config) -> list[dict]:
    """Held-out prompts scored by greedy generation: the given eval_dataset, or with eval_steps > 0 a task's test split."""
    from posttrain.tasks.sources import default_eval_source, load_rows

    source = config.eval_dataset or (default_eval_source(config.dataset) if config.eval_steps > 0 else None)
    return load_rows(source) if source else []


def run_grpo(config: GRPOConfig) -> dict:
    """Train and save to output_dir; returns the last logged metrics."""
    tokenizer, rows, rewards, source_cls = _load_prompts(config)
    algorithm = GRPO(config, tokenizer, rewards)
    algorithm.eval_rows = eval_rows(config)
    source = source_cls(algorithm, rows, tokenizer, config)
    try:
        return train(config, build_model=lambda: load_model_for(config, device="cpu"),
                     tokenizer=tokenizer, algorithm=algorithm, source=source)
    finally:
        distributed.cleanup()


@dataclass
class RLOOConfig(GRPOConfig):
    advantage: str = option("rloo", "Advantage estimator: rloo (leave-one-out), grpo, reinforce, reinforce_pp.", choices=ADVANTAGES)
    loss_type: str = option("token_mean", "Aggregation: token_mean, grpo, dr_grpo.", choices=LOSS_TYPES)


def run_rloo(config: RLOOConfig) -> dict:
    return run_grpo(config)
