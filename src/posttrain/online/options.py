"""The option groups an online-RL stage is composed of. A stage's config inherits the groups it reads
(GRPO: rollout + policy loss; PPO: those + critic + KL in the reward + ptx + process rewards), so a
key it would ignore is an unknown key; an option read only under a condition (scale_rewards only
with advantage=grpo) is refused by `reject_unread` when set while the condition is off.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from posttrain.config import option
from posttrain.errors import ConfigError
from posttrain.losses.kl import LOSS_KL_ESTIMATORS
from posttrain.losses.policy import AGGREGATIONS, POLICY_LOSSES, RATIO_LEVELS
from posttrain.losses.ppo import KL_CONTROL_MODES, KL_PLACEMENTS
from posttrain.online.critic import CRITICS
from posttrain.ranks import in_ray_learner, launched_world_size
from posttrain.options import MaskableRewardOptions, SamplingBackendOptions, SamplingOptions, TopKSamplingOptions, TrainOptions, restate


@dataclass
class AsyncRolloutOptions:
    async_rollout: bool = option(False, "Generate the next round on a thread, from a snapshot of the weights, while the trainer trains on this one (one process; holds a second copy of the policy). The loss's ratio is to the sampling policy (with tis_cap: decoupled, the trainer's log-probs at training time as the old ones, weighted by min(pi_old / pi_sampler, tis_cap)).")
    max_staleness: int = option(1, "With async_rollout: the most optimizer steps the sampling weights may lag the weights a round's first step trains; the producer waits until then (0: exactly the synchronous run). At most one round is generated ahead.")

    def validate(self) -> None:
        super().validate()
        if self.max_staleness < 0:
            raise ConfigError(f"max_staleness must be >= 0 (0: synchronous), got {self.max_staleness}")

    def unread(self) -> dict[str, str]:
        out = super().unread()
        if not self.async_rollout:
            out["max_staleness"] = "with async_rollout=true"
        return out


RAY_PLACEMENTS = ("colocate", "disaggregate")  # rollout/ray_backend.py
RAY_KEYS = ("ray_address", "ray_workers", "ray_placement", "ray_worker_cpus", "ray_worker_gpus", "ray_timeout", "ray_learners",
            "ray_learner_cpus", "ray_learner_gpus")


@dataclass
class RolloutBackendOptions(SamplingBackendOptions):
    """Which engine samples the rollouts; the weights it samples with are the policy's after every optimizer step."""
    rollout_backend: str = restate(SamplingBackendOptions, "rollout_backend", "Engine that samples the rollouts: local (posttrain's sampler) or vllm (bash install.sh vllm). With vllm set tis_cap (e.g. 2): its kernels' log-probs differ slightly from the trainer's, and tis_cap corrects for that and logs mismatch/kl.")
    vllm_weights_dir: str | None = option(None, "vllm_mode=server: the folder the weights file is written to for the server to read (one both see; default: a temporary folder).")
    vllm_gpu_memory_utilization: float = option(0.3, "vllm_mode=colocate on a GPU: the fraction of GPU memory vLLM takes (weights and KV cache); the trainer keeps the rest.")
    vllm_sleep: bool = option(False, "vllm_mode=colocate on a GPU: free vLLM's memory between rollouts (LLM.sleep / wake_up), for the trainer's optimizer step.")
    ray: bool = option(False, "Sample the rollouts on ray_workers Ray actors, each with its own copy of the policy and the rollout_backend's engine (local: posttrain's sampler; vllm: a colocated vLLM engine per actor); weights go to them through Ray's object store after every optimizer step. pip install 'posttrain[ray]'.")
    ray_address: str | None = option(None, "The Ray cluster to join: HOST:PORT of `ray start --head`, or auto (the one on this node); null: start a local one (ray.init()).")
    ray_workers: int = option(2, "Rollout actors (each process's, under torchrun); a round's prompts are split evenly between them.")
    ray_placement: str = option("colocate", "colocate: the actors packed onto the learner's node (a placement group, STRICT_PACK), sharing its CPUs / GPUs; disaggregate: bundles of their own spread over the cluster's nodes (SPREAD).", choices=RAY_PLACEMENTS)
    ray_worker_cpus: float = option(1.0, "CPUs each rollout actor reserves.")
    ray_worker_gpus: float = option(0.0, "GPUs each rollout actor reserves (a fraction such as 0.2 shares a GPU with the trainer under colocate; 0: CPU sampling).")
    ray_timeout: float = option(120.0, "Seconds to wait for the cluster to place the actors before stopping with a message that says what it has.")
    ray_learners: int = option(0, "Learner processes that Ray places as one torch.distributed group (FSDP2; gloo on CPU, NCCL on GPU) instead of this process or torchrun's: each trains its share of the batch and samples on its own ray_workers actors. 0: this process (or each torchrun process) is a learner.")
    ray_learner_cpus: float = option(1.0, "CPUs each Ray-placed learner reserves (with ray_learners > 0).")
    ray_learner_gpus: float = option(0.0, "GPUs each Ray-placed learner reserves (with ray_learners > 0; 1 on a GPU cluster).")

    def validate(self) -> None:
        super().validate()
        if self.ray:
            self._validate_ray()
        if self.rollout_backend != "vllm":
            return
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise ConfigError(f"vllm_gpu_memory_utilization must be in (0, 1], got {self.vllm_gpu_memory_utilization}")
        if self.async_rollout:
            raise ConfigError("async_rollout samples from a snapshot with posttrain's sampler; with rollout_backend=vllm drop async_rollout")
        truncated = self.top_k > 0 or self.top_p < 1
        if truncated and not getattr(self, "tis_cap", 0):
            raise ConfigError("rollout_backend=vllm with top_k / top_p returns log-probs under the truncated distribution, "
                              "which the trainer's forward does not compute; set tis_cap (e.g. 2) so the trainer recomputes them")

    def _validate_ray(self) -> None:
        if self.ray_workers < 1 or self.ray_worker_cpus <= 0 or self.ray_worker_gpus < 0:
            raise ConfigError(f"ray_workers must be >= 1, ray_worker_cpus > 0 and ray_worker_gpus >= 0, got {self.ray_workers}, "
                              f"{self.ray_worker_cpus} and {self.ray_worker_gpus}")
        if self.ray_learners < 0 or self.ray_learner_cpus <= 0 or self.ray_learner_gpus < 0:
            raise ConfigError(f"ray_learners must be >= 0, ray_learner_cpus > 0 and ray_learner_gpus >= 0, got {self.ray_learners}, "
                              f"{self.ray_learner_cpus} and {self.ray_learner_gpus}")
        if self.ray_learners and launched_world_size() > 1 and not in_ray_learner():
            raise ConfigError("ray_learners starts the learner processes itself (placed by Ray); run the command without torchrun, "
                              "or drop ray_learners to train on torchrun's processes")
        if not (math.isfinite(self.ray_timeout) and self.ray_timeout > 0):
            raise ConfigError(f"ray_timeout must be a number of seconds > 0, got {self.ray_timeout}")
        address = self.ray_address
        if address is not None and address != "auto" and not address.startswith("ray://"):
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"ray_address must be HOST:PORT (the head node's `ray start --head --port=6379`, e.g. "
                                  f"10.0.0.1:6379), auto, or null for a local cluster; got {address!r}")
        if self.async_rollout:
            raise ConfigError("async_rollout samples from a snapshot on a thread of this process; with ray=true drop async_rollout")
        if self.rollout_backend == "vllm" and self.vllm_mode == "server":
            raise ConfigError("ray=true runs a vLLM engine in each Ray actor (vllm_mode=colocate); vllm_mode=server samples from "
                              "one running `vllm serve` instead: drop ray=true or set vllm_mode=colocate")

    def unread(self) -> dict[str, str]:
        out = super().unread()
        if not self.ray:
            out |= dict.fromkeys(RAY_KEYS, "with ray=true")
        elif not self.ray_learners:
            out |= dict.fromkeys(("ray_learner_cpus", "ray_learner_gpus"), "with ray_learners > 0")
        if self.rollout_backend != "vllm":
            return out | dict.fromkeys(("vllm_weights_dir", "vllm_gpu_memory_utilization", "vllm_sleep"), "with rollout_backend=vllm")
        if self.vllm_mode == "colocate":
            return out | {"vllm_weights_dir": "with vllm_mode=server"}
        return out | dict.fromkeys(("vllm_gpu_memory_utilization", "vllm_sleep"), "with vllm_mode=colocate")


TOOL_STYLES = ("auto", "hermes", "llama3")


@dataclass
class AgentOptions:
    """Multi-turn episodes against an environment (agents/, docs/agents.md): each sample is a whole
    trajectory of model turns and environment observations, the observations masked out of the loss."""
    environment: str | None = option(None, "An environment to roll out episodes in: calculator, web_form, or FILE.py:Class / module:Class (our Environment protocol, a plain class with reset/step, or a verifiers-style multi-turn environment). null: single-turn completions.")
    tools: list[str] = option([], "TRL's tools=: typed Python functions (FILE.py:fn or module:fn) the model may call; without an environment, each prompt becomes an episode of tool calls until the model answers without one, scored by reward_funcs.")
    max_turns: int = option(4, "Most model turns per episode; an episode still going after them ends there (counted: agent/max_turns_reached).")
    turn_gamma: float = option(1.0, "γ over turns: a trajectory's return is Σ_t γ^t r_t (r_t the environment's reward for turn t; the reward functions' score of the episode counts at its last turn).")
    tool_timeout: float = option(10.0, "Seconds a tool call may take; one that takes longer becomes an error observation for the model (counted: agent/tool_timeouts).")
    tool_style: str = option("auto", "How tool calls are written: hermes (Qwen2.5's <tool_call>{json}</tool_call>), llama3 (Llama 3.x's JSON call), or auto (read from the chat template).", choices=TOOL_STYLES)
    env_workers: int = option(8, "Environment steps run concurrently on this many threads, so a slow tool does not stall the batch.")

    def validate(self) -> None:
        super().validate()
        if self.max_turns < 1 or self.env_workers < 1:
            raise ConfigError(f"max_turns and env_workers must be >= 1, got {self.max_turns} and {self.env_workers}")
        if not 0 <= self.turn_gamma <= 1:
            raise ConfigError(f"turn_gamma must be in [0, 1], got {self.turn_gamma}")
        if self.tools and self.environment is not None:
            raise ConfigError("tools= makes the default tool environment, and environment= names another; list the tools in "
                              "your environment's `tools` instead, or drop environment=")
        if not (math.isfinite(self.tool_timeout) and self.tool_timeout > 0):
            raise ConfigError(f"tool_timeout must be a number of seconds > 0, got {self.tool_timeout}")

    def unread(self) -> dict[str, str]:
        out = super().unread()
        if self.environment is None and not self.tools:
            for key in ("max_turns", "turn_gamma", "tool_timeout", "tool_style", "env_workers"):
                out[key] = "with an environment (environment=NAME) or tools"
        return out


PROMPT_FILTERS = ("off", "solved", "unsolved", "both")


@dataclass
class CurriculumOptions:
    prompt_filter: str = option("off", "Leave out prompts whose pass rate over their last filter_window groups is 1.0 (solved), 0.0 (unsolved) or either (both), once seen in filter_min_seen groups; they carry no GRPO signal (Llama 4's pass@k filtering). Paused while too few prompts are left for a round.", choices=PROMPT_FILTERS)
    filter_window: int = option(4, "Groups per prompt the pass rate is taken over (the most recent).")
    filter_min_seen: int = option(2, "Groups a prompt must have been sampled in before it can be filtered.")
    pass_threshold: float = option(0.5, "A completion passes when its reward (or pass_function's value) is >= this.")
    pass_function: str | None = option(None, "The reward function whose value decides a pass (e.g. accuracy for task:arithmetic, whose total reward adds format); default: the total reward.")
    difficulty_column: str | None = option(None, "Difficulty schedule: take each epoch's prompts in increasing order of this dataset column (easy first; ties in the seeded random order), e.g. difficulty for task:arithmetic.")

    def validate(self) -> None:
        super().validate()
        if self.filter_window < 1 or not 1 <= self.filter_min_seen <= self.filter_window:
            raise ConfigError(f"need filter_window >= 1 and 1 <= filter_min_seen <= filter_window, got {self.filter_window} "
                              f"and {self.filter_min_seen}")

    def unread(self) -> dict[str, str]:
        """The end of the unread() chain of the option groups (the groups below it have none)."""
        if self.prompt_filter != "off":
            return {}
        return dict.fromkeys(("filter_window", "filter_min_seen", "pass_threshold", "pass_function"), "with prompt_filter set")


@dataclass
class RolloutOptions(RolloutBackendOptions, AgentOptions, AsyncRolloutOptions, CurriculumOptions, MaskableRewardOptions, TopKSamplingOptions, TrainOptions):
    learning_rate: float = option(1e-6, "Peak learning rate (AdamW).")
    max_steps: int = option(100, "Optimizer steps (each generation round gives num_iterations x num_minibatches of them).")
    batch_size: int = option(16, "Samples (completions) per micro-batch; an optimizer step's samples are split into micro-batches of this size.")
    prompts_per_step: int = option(8, "Prompts per generation round (each process).")
    num_generations: int = option(8, "G: completions sampled per prompt.")
    max_new_tokens: int = restate(SamplingOptions, "max_new_tokens", "Longest completion in tokens (prompt + completion must fit max_length; longer prompts are skipped and counted).")
    temperature: float = restate(SamplingOptions, "temperature", "Sampling temperature (the policy's log-probs use the same logits / T).")
    stop: list[str] = option([], "Stop strings: a completion ends at the first one.")
    num_iterations: int = option(1, "μ: passes over each round's samples (old log-probs frozen).")
    num_minibatches: int = option(1, "Optimizer steps per pass over a round's samples.")
    mask_truncated: bool = option(False, "Leave completions that hit max_new_tokens out of the loss (overlong filtering).")
    overlong_buffer: int = option(0, "DAPO soft overlong punishment: completions longer than max_new_tokens - overlong_buffer lose up to overlong_penalty (0: off).")
    overlong_penalty: float = option(1.0, "Largest soft overlong punishment (reached at max_new_tokens).")
    dynamic_sampling: bool = option(False, "Drop groups whose rewards are all equal and sample more prompts to fill the round (DAPO).")
    max_sampling_rounds: int = option(3, "Cap on generation calls per round, when dynamic_sampling drops groups or prompts are skipped as too long.")
    packing: bool = option(True, "Train on micro-batches laid out as each prompt once, then its completions, with no padding (sdpa / eager models, without gradient_checkpointing; otherwise padded).")
    monitor_funcs: list[str] = option([], "Monitor (gold) functions, same specs as reward_funcs: scored and logged like the rewards (monitor/<name>/*), never part of the reward; with the trained reward's gap to each (monitor/<name>/gap) and their correlation, for spotting reward hacking.")

    def validate(self) -> None:
        super().validate()
        if self.max_steps < 1:
            raise ConfigError("online training needs max_steps >= 1 (there are no epochs of a fixed data set)")
        for key in ("prompts_per_step", "num_generations", "num_iterations", "num_minibatches", "max_new_tokens", "max_sampling_rounds"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}' must be >= 1, got {getattr(self, key)}")
        samples = self.prompts_per_step * self.num_generations
        if self.num_minibatches > samples:
            raise ConfigError(f"num_minibatches={self.num_minibatches} but a round has only {samples} samples "
                              f"(prompts_per_step x num_generations); lower num_minibatches")
        if self.max_new_tokens >= self.max_length:
            raise ConfigError(f"max_new_tokens ({self.max_new_tokens}) must be below max_length ({self.max_length}), which also holds the prompt")
        if self.temperature <= 0:
            raise ConfigError(f"online RL needs temperature > 0, got {self.temperature}: the policy's log-probs are taken at the "
                              "sampling temperature (logits / T), and greedy decoding gives a prompt's samples no variety")
        if not 0 <= self.overlong_buffer < self.max_new_tokens:
            raise ConfigError(f"overlong_buffer must be in [0, max_new_tokens), got {self.overlong_buffer}")
        if not (math.isfinite(self.reward_timeout) and self.reward_timeout >= 0):
            raise ConfigError(f"reward_timeout must be a number of seconds >= 0 (0: no limit), got {self.reward_timeout}")

    def unread(self) -> dict[str, str]:
        """Options this config will not read as set: key -> the condition under which it is read."""
        out = super().unread()
        if not self.overlong_buffer:
            out["overlong_penalty"] = "with overlong_buffer > 0"
        return out


@dataclass
class PolicyLossOptions:
    loss_type: str = option("grpo", "Aggregation: grpo (per-sequence mean, then mean), token_mean (DAPO / BNPO: one mean over all tokens), dr_grpo (constant normaliser max_new_tokens).", choices=AGGREGATIONS)
    beta: float = option(0.0, "β: weight of the KL to the reference in the loss (0: no KL term; no reference model is loaded unless another option needs one).")
    kl_estimator: str = option("k3", "KL estimator in the loss: k3 (exp(r) - r - 1, unbiased, >= 0) or k1 (log-ratio).", choices=LOSS_KL_ESTIMATORS)
    ratio_level: str = option("token", "Importance ratio per token; per sequence, length-normalised (GSPO); or sequence_product, pi(o|q)/pi_old(o|q) over the whole sequence (DeepSeek-R1's objective as it is often written).", choices=RATIO_LEVELS)
    entropy_coef: float = option(0.0, "Entropy bonus: subtract entropy_coef x the policy's entropy per token, aggregated like the loss (seed: c_e = 0.01; GRPO+ uses 0).")
    epsilon_low: float = option(0.2, "Clip the ratio below at 1 - epsilon_low.")
    epsilon_high: float = option(0.2, "Clip the ratio above at 1 + epsilon_high (> epsilon_low: DAPO's clip-higher).")
    policy_loss: str = option("clip", "The surrogate: clip (PPO-clip), penalty (PPO-penalty: -r·A + β_old·KL(π_old‖π_θ), no clipping), clip_penalty (the clipped surrogate + β_old·KL(π_old‖π_θ), the seed's L^CLIP+KL).", choices=POLICY_LOSSES)
    penalty_coef: float = option(1.0, "β_old: the starting weight of KL(π_old‖π_θ) in the loss with policy_loss=penalty or clip_penalty (Schulman et al. 2017 start at 1).")
    penalty_target_kl: float = option(0.01, "d_targ: after each round β_old doubles if the round's KL(π_old‖π_θ) > 1.5 d_targ and halves if < d_targ / 1.5 (PPO-penalty's rule); 0: β_old stays fixed.")
    tis_cap: float = option(0.0, "Truncated importance sampling: the trainer recomputes the old log-probs with its own forward and weights each token's loss by min(pi_trainer / pi_rollout, tis_cap), for rollout backends whose log-probs differ from the trainer's (vLLM); mismatch/kl is logged. 0: off (the rollout's log-probs are the old ones).")

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.epsilon_low < 1 or self.epsilon_high < 0:
            raise ConfigError("epsilon_low must be in [0, 1) and epsilon_high >= 0")
        if self.beta < 0 or self.entropy_coef < 0:
            raise ConfigError(f"beta and entropy_coef must be >= 0, got {self.beta} and {self.entropy_coef}")
        if self.tis_cap and self.tis_cap < 1:
            raise ConfigError(f"tis_cap must be 0 (off) or >= 1 (the largest importance weight), got {self.tis_cap}")
        if self.penalty_coef <= 0 or self.penalty_target_kl < 0:
            raise ConfigError(f"penalty_coef must be > 0 and penalty_target_kl >= 0, got {self.penalty_coef} and {self.penalty_target_kl}")
        if self.policy_loss != "clip" and self.num_iterations * self.num_minibatches == 1:
            raise ConfigError(f"policy_loss={self.policy_loss}: with one optimizer step per round the policy is π_old at every update, so "
                              "KL(π_old‖π_θ) is 0 with a zero gradient; set num_iterations >= 2 or num_minibatches >= 2")

    def unread(self) -> dict[str, str]:
        out = super().unread()
        if self.loss_beta == 0:
            out["kl_estimator"] = "with a KL term in the loss (beta > 0)"
        if self.policy_loss == "clip":
            out["penalty_coef"] = out["penalty_target_kl"] = "with policy_loss=penalty or clip_penalty"
        elif self.policy_loss == "penalty":
            out["epsilon_low"] = out["epsilon_high"] = "with policy_loss=clip or clip_penalty"
        return out

    @property
    def loss_beta(self) -> float:
        """β of the loss's KL term (an estimator with its KL in the token rewards has none there)."""
        return self.beta


@dataclass
class CriticOptions:
    critic_learning_rate: float | None = option(None, "The critic's own learning rate (same schedule) and gradient-norm clip, as if it had an optimizer of its own (InstructGPT's separate actor and critic optimizers); with critic=value_head it is the head's. null: the critic trains with the actor's learning_rate in one optimizer, one clip.")
    critic: str = option("value_head", "The critic: value_head (one linear layer on the actor's trunk, one forward) or model (a separate trunk: the reward model's when given, else a copy of the actor's).", choices=CRITICS)
    vf_coef: float = option(0.1, "Weight of the value loss (seed: c_v = 0.5).")
    cliprange_value: float = option(0.2, "Clip the value update around the old values (0: no clipping).")
    gamma: float = option(1.0, "Discount γ of the returns (and of GAE).")
    lam: float = option(0.95, "GAE λ (seed: 0.95); λ = 1 with γ = 1 is A = R − V.")
    whiten_advantages: bool = option(True, "Whiten the advantages over each round's completion tokens (every process's).")

    def validate(self) -> None:
        super().validate()
        if self.vf_coef < 0 or not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ConfigError(f"vf_coef must be >= 0 and gamma, lam in [0, 1]; got {self.vf_coef}, {self.gamma}, {self.lam}")
        if self.critic_learning_rate is not None and self.critic_learning_rate <= 0:
            raise ConfigError(f"critic_learning_rate must be > 0 (null: the actor's learning_rate), got {self.critic_learning_rate}")

    def unread(self) -> dict[str, str]:
        out = super().unread()
        if getattr(self, "advantage", "gae") != "gae":
            out["lam"] = "with advantage=gae"
        return out


@dataclass
class RewardKLOptions:
    kl_coef: float = option(0.05, "β of the KL penalty in the reward (seed: 0.01-0.02; 0.02 in its pseudocode).")
    kl_placement: str = option("every_token", "Where the KL penalty goes: every_token, or summed into the last token.", choices=KL_PLACEMENTS)
    target_kl: float = option(0.0, "Adaptive KL controller target (0: β stays fixed).")
    kl_horizon: int = option(10000, "Horizon of the proportional adaptive KL controller.")
    kl_controller: str = option("proportional", "Adaptive rule: proportional (Ziegler et al.) or double_halve (PPO-penalty's rule, Schulman et al. 2017).", choices=KL_CONTROL_MODES)

    def validate(self) -> None:
        super().validate()
        if self.kl_coef < 0 or self.target_kl < 0:
            raise ConfigError(f"kl_coef and target_kl must be >= 0, got {self.kl_coef} and {self.target_kl}")

    def unread(self) -> dict[str, str]:
        out = super().unread()
        if not self.target_kl:
            out["kl_controller"] = out["kl_horizon"] = "with an adaptive KL controller (target_kl > 0)"
        elif self.kl_controller != "proportional":
            out["kl_horizon"] = "with kl_controller=proportional"
        return out


@dataclass
class PtxOptions:
    ptx_coef: float = option(0.0, "γ of PPO-ptx: weight of the pretraining (SFT) loss on ptx_dataset, added to every micro-batch (InstructGPT: 27.8).")
    ptx_dataset: str | None = option(None, "Input-output data for the ptx term (prompt/completion, messages or text), e.g. the SFT data.")

    def validate(self) -> None:
        super().validate()
        if self.ptx_coef < 0:
            raise ConfigError(f"ptx_coef must be >= 0, got {self.ptx_coef}")
        if self.ptx_coef > 0 and not self.ptx_dataset:
            raise ConfigError("ptx_coef > 0 needs ptx_dataset=FILE (or task:NAME) with input-output data")

    def unread(self) -> dict[str, str]:
        out = super().unread()
        if not self.ptx_coef:
            out["ptx_dataset"] = "with ptx_coef > 0"
        return out


@dataclass
class ProcessRewardOptions:
    process_reward_model: str | None = option(None, "A process reward model from `posttrain prm` (final/ directory): its step scores are added at the tokens that end each step.")
    process_reward_coef: float = option(1.0, "Weight of the process (step) rewards.")
    process_reward_mode: str = option("score", "Step reward: the PRM's P(good step) (score) or its change since the previous step (diff; the step rewards then sum to the last step's score).", choices=("score", "diff"))
    step_separator: str | None = option(None, "Where completions split into steps for the process reward model (default: the separator the PRM was trained with).")

    def unread(self) -> dict[str, str]:
        out = super().unread()
        if not self.process_reward_model:
            for key in ("process_reward_coef", "process_reward_mode", "step_separator"):
                out[key] = "with a process_reward_model"
        return out


def reject_unread(config) -> None:
    """A one-line ConfigError for the first option set away from its default that this run would
    never read (config.unread(): key -> when it is read)."""
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                for f in dataclasses.fields(config)}
    for key, when in config.unread().items():
        if getattr(config, key) != defaults[key]:
            raise ConfigError(f"config key '{key}' is set ({getattr(config, key)!r}) but this run never reads it: "
                              f"it applies only {when}; remove it or change that setting")
