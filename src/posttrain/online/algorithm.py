"""The one online-RL algorithm, composed rather than inherited: GRPO, RLOO, REINFORCE(++), ReMax and
PPO are the same object with different parts.

    experience  online.maker.RolloutExperience: rollout backend + reward functions + an advantage
                estimator (online.estimators) + a reference / a critic / a KL in the reward as asked
    loss        the clipped surrogate (losses.policy) with the stage's PolicyLossOptions, plus with a
                critic c_v × its (clipped) value loss, plus with ptx γ × the SFT loss of ptx data
    state       what changes as it trains (the KL controllers, the ptx position, a moving reference), in
                every checkpoint
    after_step  the reference refresh (`ref_sync`, models.reference.ReferenceSync) and, with
                policy_loss=penalty / clip_penalty, PPO-penalty's β_old rule at the end of each round

`OnlineParts` says which parts a stage wants; `OnlineRL.setup` builds them around the prepared policy.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch

import posttrain.ranks as ranks
from posttrain.data.steps import Algorithm
from posttrain.errors import ConfigError
from posttrain.losses.kl import kl_estimate
from posttrain.losses.policy import policy_loss
from posttrain.losses.ppo import AdaptiveKLController, FixedKLController, explained_variance, value_loss
from posttrain.models.reference import ReferencePolicy, ReferenceSync
from posttrain.models.shared_prefix_attention import can_share_prefix
from posttrain.online.critic import Critic
from posttrain.online.estimators import ESTIMATORS
from posttrain.online.experience import Sample, collate_samples, policy_outputs
from posttrain.online.maker import RolloutExperience
from posttrain.online.ptx import PtxTerm
from posttrain.online.trl_logging import with_trl_names
from posttrain.rewards import RewardFunctions
from posttrain.rewards.bounded import TIMED_OUT, run_bounded
from posttrain.rollout import make_backend


@dataclass
class OnlineParts:
    """The optional parts of a composition (the options groups of its stage say which)."""
    critic: Critic | None = None
    reward_kl: str | None = None  # the option holding β of a KL penalty in the reward: "kl_coef" (PPO), "beta" (REINFORCE++)
    ptx_rows: list = field(default_factory=list)  # PPO-ptx: micro-batches of input-output data
    process_rewards: object = None  # rewards.process.ProcessRewardModel


class OnlineRL(Algorithm):
    def __init__(self, config, tokenizer, rewards: RewardFunctions, parts: OnlineParts | None = None):
        self.config, self.tokenizer, self.rewards = config, tokenizer, rewards
        self.parts = parts or OnlineParts()
        self.estimator = ESTIMATORS[config.advantage]
        self.critic = self.parts.critic
        self.ptx = PtxTerm(self.parts.ptx_rows, config.ptx_coef, config.batch_size, tokenizer.pad_token_id) \
            if self.parts.ptx_rows else None
        self.reward_kl = self._reward_kl()
        self.penalty = self._penalty()
        self._round_kl = [0.0, 0]  # PPO-penalty: KL(π_old‖π_θ) summed over the round's last pass, and its steps
        self.ref_sync: ReferenceSync | None = None
        self.experience: RolloutExperience | None = None
        self.policy = None
        self.packed = False
        self.eval_rows: list[dict] = []
        self.make_env = self._environment()  # before any model loads: a bad environment= fails first

    def _environment(self):
        spec, tools = getattr(self.config, "environment", None), getattr(self.config, "tools", None)
        if spec is None and not tools:
            return None
        from posttrain.agents.registry import environment_factory, tools_factory

        return environment_factory(spec) if spec is not None else tools_factory(tools)

    def _reward_kl(self):
        name = self.parts.reward_kl
        if name is None:
            return None
        cfg = self.config
        coef = getattr(cfg, name)
        if getattr(cfg, "target_kl", 0) > 0:
            return AdaptiveKLController(coef, cfg.target_kl, cfg.kl_horizon, mode=cfg.kl_controller)
        return FixedKLController(coef)

    def _penalty(self):
        """β_old of KL(π_old‖π_θ) in the loss (policy_loss=penalty / clip_penalty), adapted by PPO-penalty's rule."""
        cfg = self.config
        if getattr(cfg, "policy_loss", "clip") == "clip":
            return None
        if cfg.penalty_target_kl > 0:
            return AdaptiveKLController(cfg.penalty_coef, cfg.penalty_target_kl, mode="double_halve")
        return FixedKLController(cfg.penalty_coef)

    def own_optimizer(self):
        lr = getattr(self.config, "critic_learning_rate", None)
        return (("v_head", "critic_trunk"), lr) if self.critic is not None and lr else None

    def setup(self, model) -> None:
        cfg = self.config
        self.policy = model
        replica = None
        if ranks.world_size() > 1 and cfg.rollout_backend == "local" and not cfg.ray:  # sharded policy: sample from a full copy per process
            replica = copy.deepcopy(model).eval()
            replica.requires_grad_(False)
        if self.critic is not None:
            self.critic.attach(model)
            self.critic.trainable(model)
        # The packed layout's attention is switched on around each forward only (generation keeps its
        # masks); a checkpointed layer recomputes during backward, outside that switch: pad instead.
        self.packed = cfg.packing and can_share_prefix(model) and not cfg.gradient_checkpointing
        reference = self.reference_for(model)
        if getattr(cfg, "ref_sync", "none") != "none":
            if reference is None:
                raise ConfigError(f"ref_sync={cfg.ref_sync} refreshes the reference policy, but this run has none (no KL term: beta = 0 "
                                  "and no KL in the reward); set beta > 0 (or kl_coef > 0) or ref_sync=none")
            self.ref_sync = ReferenceSync(reference, model, cfg.ref_sync, cfg.ref_sync_steps, cfg.ref_sync_alpha)
        backend = self._backend(model, replica)
        self.experience = RolloutExperience(
            cfg, self.tokenizer, self.rewards, self.estimator, backend=backend,
            policy=model, reference=reference, critic=self.critic,
            reward_kl=self.reward_kl, kl_placement=getattr(cfg, "kl_placement", "every_token"),
            process_rewards=self.parts.process_rewards, packed=self.packed, episodes=self._episodes(backend))

    def _backend(self, model, replica):
        """The engine that samples rollouts: posttrain's sampler, or vLLM (colocated or a server), in this
        process or (ray=true) in Ray actors."""
        cfg = self.config
        if cfg.ray:
            return self._ray_backend(model)
        engine = {}
        if cfg.rollout_backend == "vllm":
            engine = {"weights_dir": cfg.vllm_weights_dir} if cfg.vllm_mode == "server" else \
                {"gpu_memory_utilization": cfg.vllm_gpu_memory_utilization, "sleep": cfg.vllm_sleep}
        return make_backend(cfg.rollout_backend, model, self.tokenizer, model_path=cfg.model, mode=cfg.vllm_mode,
                            url=cfg.vllm_server_url, replica=replica, seed=cfg.seed + ranks.rank(), max_model_len=cfg.max_length,
                            **engine)

    def _ray_backend(self, model):
        from posttrain.rollout.ray_backend import RayBackend

        cfg = self.config
        if ranks.world_size() > 1 and cfg.ray_address is None and not ranks.in_ray_learner():  # a Ray learner is in its cluster already
            raise ConfigError("ray=true under torchrun: every process would start a Ray cluster of its own; start one with "
                              "`ray start --head` and set ray_address=auto (or HOST:PORT)")
        options = None
        if cfg.rollout_backend == "vllm":  # a colocated vLLM engine in each actor, from the checkpoint on its node
            options = {"model_path": cfg.model, "seed": cfg.seed + ranks.rank(), "max_model_len": cfg.max_length,
                       "gpu_memory_utilization": cfg.vllm_gpu_memory_utilization, "sleep": cfg.vllm_sleep}
        return RayBackend(model, self.tokenizer, workers=cfg.ray_workers, placement=cfg.ray_placement, address=cfg.ray_address,
                          worker_cpus=cfg.ray_worker_cpus, worker_gpus=cfg.ray_worker_gpus, timeout=cfg.ray_timeout,
                          engine=cfg.rollout_backend, engine_options=options)

    def _episodes(self, backend):
        """Multi-turn episodes in `environment` (agents/), or None for single-turn completions."""
        cfg = self.config
        if self.make_env is None:
            return None
        from posttrain.agents.episodes import EpisodeRunner

        return EpisodeRunner(self.make_env, self.tokenizer, backend, max_turns=cfg.max_turns,
                             max_length=cfg.max_length, tool_style=cfg.tool_style, tool_timeout=cfg.tool_timeout,
                             workers=cfg.env_workers)

    def reference_for(self, model):
        """The policy whose per-token log-probs each round's samples get as `ref_logps` (None: none needed)."""
        needs_reference = self.config.loss_beta > 0 or (self.reward_kl is not None and self.reward_kl.value > 0)
        return ReferencePolicy(model) if needs_reference else None

    def evaluate_by_generation(self, model) -> dict[str, float]:
        """Greedy completions of the held-out prompts (`eval_dataset`), scored by the reward functions."""
        if not self.eval_rows:
            return {}
        if self.experience.episodes is not None:
            return self.experience.evaluate_episodes(self.eval_rows)
        from posttrain.methods.heldout import evaluate

        scorers = {name: _bounded(self.rewards.for_evaluation(fn), self.rewards.timeout) for name, fn in self.rewards.functions.items()}
        report = evaluate(model, self.tokenizer, self.eval_rows, scorers, temperature=0.0,
                          max_new_tokens=self.config.max_new_tokens, seed=self.config.seed, show_samples=0)
        return {f"eval_{name}": report[name] for name in self.rewards.functions} | {"eval_mean_length": report["mean_length"]}

    # ---------------------------------------------------------------------------- training

    def collate(self, samples: list[Sample]) -> dict:
        return collate_samples(samples, self.tokenizer.pad_token_id, self.packed)

    def batch_weight(self, batch: dict) -> float:
        if self.config.loss_type == "token_mean":
            return float(batch["mask"].sum())
        return float(batch["num_sequences"])

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        cfg = self.config
        out = policy_outputs(model, batch, cfg.temperature, with_entropy=True, critic=self.critic,
                             entropy_grad=cfg.entropy_coef > 0)
        mask = batch["mask"]
        result = policy_loss(out.logps, batch["old_logps"], batch["advantages"], mask, ref_logps=batch.get("ref_logps"),
                             beta=cfg.loss_beta, kl_estimator=cfg.kl_estimator, ratio_level=cfg.ratio_level,
                             epsilon_low=cfg.epsilon_low, epsilon_high=cfg.epsilon_high, aggregation=cfg.loss_type,
                             max_completion_length=cfg.max_new_tokens, entropy=out.entropy, entropy_coef=cfg.entropy_coef,
                             tis_weights=batch.get("tis_weights"), clip=getattr(cfg, "policy_loss", "clip") != "penalty",
                             old_kl_coef=self.penalty.value if self.penalty is not None else 0.0)
        total, metrics = result.loss, dict(result.metrics)
        tokens = mask.sum()
        per_token = self.batch_weight(batch) / tokens.clamp(min=1)  # a token sum in the loss's units
        with torch.no_grad():
            metrics["entropy"] = ((out.entropy * mask).sum(), tokens)
            if "ref_logps" in batch:
                for name in ("k1", "k3"):
                    metrics[f"kl/{name}"] = (kl_estimate(out.logps.detach(), batch["ref_logps"], mask, name).sum(), tokens)
        metrics = with_trl_names(metrics)  # clip_ratio/low_mean, ... beside ours
        if self.critic is not None:
            total = total + self._value_term(out.values, batch, mask, metrics) * per_token
        if self.ptx is not None:
            total = total + self.ptx.loss(model, out.logps.device, metrics, tokens) * self.batch_weight(batch)
        return total, metrics

    def _value_term(self, values, batch, mask, metrics) -> torch.Tensor:
        """c_v × the (clipped) value loss, a token sum; its metrics into `metrics`."""
        cfg = self.config
        v_loss, clipped = value_loss(values, batch["old_values"], batch["returns"], mask,
                                     cfg.cliprange_value if cfg.cliprange_value > 0 else None)
        tokens = mask.sum()
        with torch.no_grad():
            residual = (batch["returns"] - values) * mask
            metrics.update({"value_loss": (v_loss.detach(), tokens), "value_clip_fraction": (clipped, tokens),
                            "values/squared_error": ((residual ** 2).sum(), tokens)})
            variance = explained_variance(values, batch["returns"], mask)
            if math.isfinite(variance):
                metrics["values/explained_variance"] = (variance * tokens, tokens)
        return cfg.vf_coef * v_loss

    def after_step(self, model, step: int, metrics: dict) -> dict:
        out = self.ref_sync.after_step(model, step) if self.ref_sync is not None else {}
        if self.penalty is not None:
            out["penalty_coef"] = self._adapt_penalty(step, metrics.get("kl_old", math.nan))
        return out

    def _adapt_penalty(self, step: int, kl_old: float) -> float:
        """PPO-penalty's rule once per round, on d = KL(π_old‖π_θ) averaged over the round's last pass (each
        minibatch measured just before its own update: the KL the round's updates reached; the first pass
        starts at π_old, where it is 0; with num_iterations = 1 the last pass is the first, and its first
        minibatch's 0 is in the mean). A round is num_iterations × num_minibatches optimizer steps."""
        cfg = self.config
        per_round = cfg.num_iterations * cfg.num_minibatches
        if (step - 1) % per_round >= per_round - cfg.num_minibatches and math.isfinite(kl_old):
            self._round_kl = [self._round_kl[0] + kl_old, self._round_kl[1] + 1]
        if step % per_round == 0:
            if self._round_kl[1]:
                self.penalty.update(self._round_kl[0] / self._round_kl[1], self._round_kl[1])
            self._round_kl = [0.0, 0]
        return self.penalty.value

    def state_dict(self) -> dict:
        state = {}
        if self.ref_sync is not None:
            state["ref_sync"] = self.ref_sync.state_dict()
        if self.penalty is not None:
            state["penalty"], state["round_kl"] = self.penalty.state_dict(), list(self._round_kl)
        if self.reward_kl is not None:
            state["kl"] = self.reward_kl.state_dict()
        if self.ptx is not None:
            state["ptx_at"] = self.ptx.position
        return state

    def load_state_dict(self, state: dict) -> None:
        if "ref_sync" in state and self.ref_sync is not None:
            self.ref_sync.load_state_dict(state["ref_sync"])
        if "penalty" in state and self.penalty is not None:
            self.penalty.load_state_dict(state["penalty"])
            self._round_kl = list(state["round_kl"])
        if "kl" in state and self.reward_kl is not None:
            self.reward_kl.load_state_dict(state["kl"])
        if "ptx_at" in state and self.ptx is not None:
            self.ptx.position = int(state["ptx_at"])


def _bounded(fn, timeout: float | None):
    """`fn` with reward_timeout on each call: a held-out scoring call past it raises TimeoutError, which
    stops the run with one line naming the function (a hang there would otherwise hang the run)."""
    if timeout is None:
        return fn

    def call(*args, **kwargs):
        result = run_bounded({"eval": (lambda: fn(*args, **kwargs), timeout)}, workers=1)["eval"]
        if result is TIMED_OUT:
            raise TimeoutError(f"no answer within reward_timeout={timeout:g} s (held-out evaluation)")
        if isinstance(result, BaseException):
            raise result
        return result

    return call
