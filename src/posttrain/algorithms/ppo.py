"""PPO for RLHF: the two-loop algorithm of seed 003 §"Pseudocode" (S3 L1290-1465).

    posttrain ppo model=runs/sft/final reward_model=runs/rm/final dataset=task:sentiment
    posttrain ppo model=runs/sft/final dataset=task:arithmetic reward_funcs=[task] kl_coef=0.02

Outer loop (a round): sample completions of `prompts_per_step` prompts from the actor; score them
with the reward model (or any reward functions); give every token the reward
r_t = −β (log π_θ − log π_ref) (k1, the KL penalty in the reward) plus the score at the last token
(`kl_placement=last` sums the penalty into the last token instead); compute GAE(γ, λ) with the
critic's values (γ = λ = 1 gives the seed's A = R − V) and whiten the advantages over the round.
Inner loop: `num_iterations` (K) epochs × `num_minibatches` shuffled minibatches of the clipped
surrogate + `vf_coef` × the (optionally clipped) value loss − `entropy_coef` × entropy, against the
frozen old log-probs and values. β follows the adaptive KL controller when `target_kl` > 0.

Process rewards (`process_reward_model`, a PRM from `posttrain prm`): each completion is split into
steps at the PRM's separator and `process_reward_coef` × the PRM's score of step k is added at the
token that ends step k (`process_reward_mode=diff`: the score's change since the previous step),
on top of the outcome reward at the last token; the KL penalty and GAE then run as usual. This is
seed 003's token-level reward path, r_t^adj = r_t − β KL_t (S3 L1350, L1373-1374, L1489).

The critic is a value head (one linear layer) on the actor's trunk, so one forward gives both the
log-probs and the values; it starts from the reward model's score head when `reward_model` is
given (the seed's warm start), else from zero. `final/` holds the actor only. PPO-ptx
(`ptx_coef`, `ptx_dataset`) adds γ × the next-token loss of input-output data to every micro-batch
(S3 L1198-1230), so the policy keeps what SFT taught it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import posttrain.ranks as ranks
from posttrain.algorithms.grpo import GRPO, GRPOConfig, _load_prompts, eval_rows, kl_metrics
from posttrain.config import option
from posttrain.data.collate import to_device
from posttrain.errors import ConfigError
from posttrain.losses.advantages import gae, whiten
from posttrain.losses.kl import kl_estimate
from posttrain.losses.policy import policy_loss
from posttrain.losses.ppo import AdaptiveKLController, FixedKLController, entropy_of_log_probs, explained_variance, kl_penalized_rewards, value_loss
from posttrain.models.logprobs import logits_at, target_logprobs
from posttrain.online.experience import collate_samples, completion_tensor
from posttrain.train import distributed
from posttrain.train.loop import train
from posttrain.train.scaffold import load_model_for


@dataclass
class PPOConfig(GRPOConfig):
    advantage: str = option("gae", "Advantages: GAE(gamma, lam) from the critic's values.", choices=("gae",))
    num_generations: int = option(1, "Completions sampled per prompt.")
    loss_type: str = option("token_mean", "Aggregation of the surrogate: token_mean (one mean over all tokens), grpo, dr_grpo.", choices=("token_mean", "grpo", "dr_grpo"))
    num_iterations: int = option(4, "K: epochs over each round's samples.")
    num_minibatches: int = option(2, "Shuffled minibatches (optimizer steps) per epoch.")
    reward_model: str | None = option(None, "A reward model from `posttrain rm` (final/ directory); used instead of reward_funcs.")
    kl_coef: float = option(0.05, "β of the KL penalty in the reward (seed: 0.01-0.02; 0.02 in its pseudocode).")
    kl_placement: str = option("every_token", "Where the KL penalty goes: every_token, or summed into the last token.", choices=("every_token", "last"))
    target_kl: float = option(0.0, "Adaptive KL controller target (0: β stays fixed).")
    kl_horizon: int = option(10000, "Horizon of the proportional adaptive KL controller.")
    kl_controller: str = option("proportional", "Adaptive rule: proportional (Ziegler et al.) or double_halve (the seed's PPO-penalty rule).", choices=("proportional", "double_halve"))
    gamma: float = option(1.0, "GAE discount γ.")
    lam: float = option(0.95, "GAE λ (seed: 0.95); λ = 1 with γ = 1 is A = R − V.")
    vf_coef: float = option(0.1, "Weight of the value loss (seed: c_v = 0.5).")
    cliprange_value: float = option(0.2, "Clip the value update around the old values (0: no clipping).")
    entropy_coef: float = option(0.0, "Entropy bonus weight (seed: c_e = 0.01).")
    whiten_advantages: bool = option(True, "Whiten the advantages over each round's completion tokens.")
    ptx_coef: float = option(0.0, "γ of PPO-ptx: weight of the pretraining (SFT) loss on ptx_dataset, added to every micro-batch (InstructGPT: 27.8).")
    ptx_dataset: str | None = option(None, "Input-output data for the ptx term (prompt/completion, messages or text), e.g. the SFT data.")
    process_reward_model: str | None = option(None, "A process reward model from `posttrain prm` (final/ directory): its step scores are added at the tokens that end each step.")
    process_reward_coef: float = option(1.0, "Weight of the process (step) rewards.")
    process_reward_mode: str = option("score", "Step reward: the PRM's P(good step) (score) or its change since the previous step (diff; the step rewards then sum to the last step's score).", choices=("score", "diff"))
    step_separator: str | None = option(None, "Where completions split into steps for the process reward model (default: the separator the PRM was trained with).")

    def validate(self) -> None:
        super().validate()
        if self.kl_coef < 0 or self.vf_coef < 0 or self.entropy_coef < 0 or self.ptx_coef < 0:
            raise ConfigError("kl_coef, vf_coef, entropy_coef and ptx_coef must be >= 0")
        if self.ptx_coef > 0 and not self.ptx_dataset:
            raise ConfigError("ptx_coef > 0 needs ptx_dataset=FILE (or task:NAME) with input-output data")


PRESETS: dict[str, dict] = {
    "instructgpt": {"kl_coef": 0.02, "gamma": 1.0, "lam": 0.95, "epsilon_low": 0.2, "epsilon_high": 0.2,
                    "vf_coef": 0.5, "entropy_coef": 0.0},  # seed 003's RLHF pseudocode values
    "ppo_penalty": {"target_kl": 0.01, "kl_controller": "double_halve"},
}


class PPO(GRPO):
    process_rewards = None  # a rewards.process.ProcessRewardModel when process_reward_model is set

    def setup(self, model) -> None:
        super().setup(model)
        from posttrain.models.reference import ReferencePolicy

        cfg = self.config
        if self.reference is None and cfg.kl_coef > 0:
            self.reference = ReferencePolicy(model)
        base = self.attach_value_head(model)
        self.value_head = base.v_head.requires_grad_(True)  # trained even when LoRA froze the rest
        self.ptx_rows = getattr(self, "ptx_rows", [])
        self._ptx_at = 0
        self.kl = (AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon, mode=cfg.kl_controller)
                   if cfg.target_kl > 0 else FixedKLController(cfg.kl_coef))

    def score(self, rollouts, rows: list[dict]):
        """Outcome rewards as GRPO scores them; with a process reward model, also each sample's step
        rewards per completion token (`extra["step_rewards"]`, logged as `process_reward`)."""
        groups, result = super().score(rollouts, rows)
        prm = self.process_rewards
        if prm is not None:
            samples = [s for group in groups for s in group]
            prompts = [rows[s.group]["prompt"] for s in samples]
            token_rewards = prm.token_rewards(prompts, [s.extra["text"] for s in samples],
                                              [s.completion_ids for s in samples], self.tokenizer, self.config.process_reward_mode)
            for s, values in zip(samples, token_rewards):
                s.extra["step_rewards"] = [self.config.process_reward_coef * v for v in values]
            result.per_function["process_reward"] = [sum(s.extra["step_rewards"]) for s in samples]
        return groups, result

    def attach_value_head(self, model):
        """Give the model its value head (once; a rebuilt model for saving gets one too, so the trained
        weights load into it), marked to stay out of `save_pretrained`. Returns the base model."""
        cfg = self.config
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        if hasattr(base, "v_head"):
            return base
        base.v_head = torch.nn.Linear(base.config.hidden_size, 1).to(next(base.parameters()).dtype)
        torch.nn.init.zeros_(base.v_head.weight)
        torch.nn.init.zeros_(base.v_head.bias)
        if cfg.reward_model:  # warm start from the reward model's score head
            from posttrain.models.reward_model import load_reward_model, reward_offset, score_head

            rm = load_reward_model(cfg.reward_model, self.tokenizer.pad_token_id)
            with torch.no_grad():
                base.v_head.weight.copy_(score_head(rm).weight)
                base.v_head.bias.fill_(reward_offset(rm))
        base._keys_to_ignore_on_save = ["v_head.weight", "v_head.bias"]  # final/ is the actor alone
        return base

    def _outputs(self, model, batch: dict, with_entropy: bool):
        """(log-probs, values, entropy) at the completion tokens, B x T, from one forward: the value head
        reads the hidden states the output head runs on (those that predict a completion token)."""
        captured = {}
        head = model.get_output_embeddings()
        handle = head.register_forward_hook(lambda _module, args, _output: captured.update(hidden=args[0]))
        try:
            inputs = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
            token_logps, log_probs = target_logprobs(model, batch["targets"], self.config.temperature, **inputs)
        finally:
            handle.remove()
        where = batch["completion_mask"]
        scatter = lambda v: torch.zeros(where.shape, dtype=torch.float32, device=v.device).masked_scatter(where, v)  # noqa: E731
        logps = scatter(token_logps)
        values = scatter(self.value_head(captured["hidden"]).float()[:, 0])
        entropy = scatter(entropy_of_log_probs(log_probs)) if with_entropy else None
        return logps, values, entropy

    def collate(self, samples) -> dict:
        batch = collate_samples(samples, self.tokenizer.pad_token_id, packed=False)  # the value hook reads padded rows
        longest = batch["old_logps"].shape[1]
        for key in ("returns", "old_values"):  # absent before the round's advantages are computed
            batch[key] = completion_tensor([s.extra.get(key, []) for s in samples], longest)
        return batch

    @torch.no_grad()
    def assign_advantages(self, samples) -> dict[str, float]:
        cfg, device = self.config, next(self.policy.parameters()).device
        scores = torch.tensor([s.reward if s.reward is not None else 0.0 for s in samples])
        batch = to_device(self.collate(samples), device)
        was_training = self.policy.training
        self.policy.eval()
        _, values, _ = self._outputs(self.policy, batch, with_entropy=False)
        self.policy.train(was_training)
        mask = batch["completion_mask"].float()
        old = batch["old_logps"]
        ref = batch.get("ref_logps", old)
        kl_coef = self.kl.value if hasattr(self.kl, "value") else cfg.kl_coef
        rewards = kl_penalized_rewards(scores.to(device), old, ref, mask, kl_coef, placement=cfg.kl_placement)
        if any("step_rewards" in s.extra for s in samples):  # process rewards at the step-end tokens
            rewards = rewards + completion_tensor([s.extra.get("step_rewards", []) for s in samples], old.shape[1]).to(device) * mask
        advantages, returns = gae(rewards, values * mask, mask, cfg.gamma, cfg.lam)
        trained = torch.tensor([s.trained for s in samples], device=device)[:, None] * mask
        reduce = ranks.batch_reduce()  # statistics over every process's samples
        if cfg.whiten_advantages:
            count = reduce([float(trained.sum())])[0] if reduce else float(trained.sum())
            advantages = whiten(advantages, trained, reduce=reduce) if count > 1 else advantages
        sequence_kl = kl_estimate(old, ref, mask, "k1").sum(-1)
        kl, n = float(sequence_kl.mean()), len(samples)
        if reduce:  # the mean sequence KL of the whole round, so every process's controller moves alike
            kl_sum, count = reduce([float(sequence_kl.sum()), float(n)])
            kl, n = kl_sum / count, int(count)
        new_coef = self.kl.update(kl, n)
        for r, s in enumerate(samples):
            n = len(s.completion_ids)
            s.advantage = advantages[r, :n].tolist() if s.trained else [0.0] * n
            s.extra["returns"], s.extra["old_values"] = returns[r, :n].tolist(), values[r, :n].tolist()
        valid = mask.bool()
        return {"kl_coef": float(new_coef), "kl/sequence_k1": kl, "values/mean": float(values[valid].mean()),
                "returns/mean": float(returns[valid].mean()), "advantage/abs_mean": float(advantages[valid].abs().mean())}

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        cfg = self.config
        logps, values, entropy = self._outputs(model, batch, with_entropy=True)
        mask = batch["mask"]
        out = policy_loss(logps, batch["old_logps"], batch["advantages"], mask, epsilon_low=cfg.epsilon_low,
                          epsilon_high=cfg.epsilon_high, aggregation=cfg.loss_type, max_completion_length=cfg.max_new_tokens)
        v_loss, clipped = value_loss(values, batch["old_values"], batch["returns"], mask,
                                     cfg.cliprange_value if cfg.cliprange_value > 0 else None)
        tokens = mask.sum()
        total = out.loss + cfg.vf_coef * v_loss * (self.batch_weight(batch) / tokens.clamp(min=1))
        if cfg.entropy_coef:
            total = total - cfg.entropy_coef * (entropy * mask).sum() * (self.batch_weight(batch) / tokens.clamp(min=1))
        if self.ptx_rows:
            nll, count = self._ptx_loss(model, values.device)
            total = total + cfg.ptx_coef * nll / count * self.batch_weight(batch)
        with torch.no_grad():
            residual = ((batch["returns"] - values) * mask)
            metrics = dict(out.metrics)
            metrics.update({"value_loss": (v_loss.detach(), tokens), "value_clip_fraction": (clipped, tokens),
                            "entropy": ((entropy * mask).sum(), tokens),
                            "values/squared_error": ((residual ** 2).sum(), tokens)})
            metrics.update(kl_metrics(logps, batch, mask))
            variance = explained_variance(values, batch["returns"], mask)
            if math.isfinite(variance):
                metrics["values/explained_variance"] = (variance * tokens, tokens)
            if self.ptx_rows:
                metrics["ptx_loss"] = (nll.detach() / count * tokens, tokens)
        return total, metrics

    def state_dict(self) -> dict:
        return {"kl": self.kl.state_dict(), "ptx_at": self._ptx_at}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.kl.load_state_dict(state["kl"])
            self._ptx_at = int(state["ptx_at"])

    def _ptx_loss(self, model, device) -> tuple[torch.Tensor, int]:
        """Summed next-token loss of the next ptx micro-batch (examples in a fixed cycle) and its token count."""
        from posttrain.data.collate import IGNORE_INDEX, collate_rows
        from posttrain.losses.sft import sft_loss

        size = self.config.batch_size
        rows = [self.ptx_rows[(self._ptx_at + k) % len(self.ptx_rows)] for k in range(size)]
        self._ptx_at += size
        batch = collate_rows(rows, self.tokenizer.pad_token_id)
        labels = batch["labels"].to(device)
        select = labels != IGNORE_INDEX
        logits = logits_at(model, select, input_ids=batch["input_ids"].to(device), position_ids=batch["position_ids"].to(device))
        return sft_loss(logits, labels[select]), max(1, int(select.sum()))


def run_ppo(config: PPOConfig) -> dict:
    """Train and save the actor to output_dir/final; returns the last logged metrics."""
    tokenizer, rows, rewards, source_cls = _load_prompts(config)
    if config.reward_model:
        from posttrain.models.reward_model import load_reward_model, score_texts
        from posttrain.rewards import RewardFunctions

        rm = load_reward_model(config.reward_model, tokenizer.pad_token_id).eval()
        rewards = RewardFunctions({"reward_model": lambda prompts, completions, **_: score_texts(rm, tokenizer, prompts, completions)},
                                  on_error=config.reward_errors)
    algorithm = PPO(config, tokenizer, rewards)
    if config.process_reward_model:
        from posttrain.rewards.process import ProcessRewardModel

        algorithm.process_rewards = ProcessRewardModel(config.process_reward_model, config.step_separator, config.device, config.batch_size)
    algorithm.eval_rows = eval_rows(config)
    if config.ptx_coef > 0:
        from types import SimpleNamespace

        from posttrain.algorithms.sft import load_examples

        options = SimpleNamespace(max_length=config.max_length, truncation=True, completion_only_loss=True)
        algorithm.ptx_rows = [[ex] for ex in load_examples(tokenizer, config.ptx_dataset, None, options)]
    source = source_cls(algorithm, rows, tokenizer, config)
    try:
        return train(config, build_model=lambda: algorithm.attach_value_head(load_model_for(config, device="cpu")),
                     tokenizer=tokenizer, algorithm=algorithm, source=source)
    finally:
        distributed.cleanup()
