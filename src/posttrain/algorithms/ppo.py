"""PPO for RLHF as in InstructGPT (Ouyang et al. 2022): rounds of sampling, then K epochs of updates.

    posttrain ppo model=runs/sft/final reward_model=runs/rm/final dataset=task:sentiment
    posttrain ppo model=runs/sft/final dataset=task:arithmetic reward_funcs=[task] kl_coef=0.02

Outer loop (a round): sample completions of `prompts_per_step` prompts from the actor; score them
with the reward model (or any reward functions); give every token the reward
r_t = −β (log π_θ − log π_ref) (k1, the KL penalty in the reward) plus the score at the last token
(`kl_placement=last` sums the penalty into the last token instead); compute GAE(γ, λ) with the
critic's values (γ = λ = 1 gives the plain A = R − V) and whiten the advantages over the round.
Inner loop: `num_iterations` (K) epochs × `num_minibatches` shuffled minibatches of the clipped
surrogate + `vf_coef` × the (optionally clipped) value loss − `entropy_coef` × entropy, against the
frozen old log-probs and values. β follows the adaptive KL controller when `target_kl` > 0.

Process rewards (`process_reward_model`, a PRM from `posttrain prm`): each completion is split into
steps at the PRM's separator and `process_reward_coef` × the PRM's score of step k is added at the
token that ends step k (`process_reward_mode=diff`: the score's change since the previous step),
on top of the outcome reward at the last token; the KL penalty and GAE then run as usual: the
token-level reward r_t^adj = r_t − β KL_t of RLHF with process rewards.

PPO is online/algorithm.py's OnlineRL (the object GRPO is) with a critic (online/critic.py:
`critic=value_head`, one linear layer on the actor's trunk, so one forward gives both the log-probs
and the values; or `critic=model`, a separate trunk), a KL penalty in the reward and optionally ptx
and process rewards. The critic starts from the reward model's score head when `reward_model` is
given (InstructGPT's warm start of the value function from the reward model), else from zero.
`advantage=reinforce` uses the critic as a per-token baseline (G_t − V_t) instead of GAE. `final/`
holds the actor only. PPO-ptx
(`ptx_coef`, `ptx_dataset`) adds γ × the next-token loss of input-output data to every micro-batch
(InstructGPT's PPO-ptx), so the policy keeps what SFT taught it.

Variants (presets): the KL to π_ref in the loss instead of the reward (`kl_loss`: kl_coef=0, beta > 0,
verl's use_kl_loss; both when both are > 0); PPO-penalty (`policy_loss=penalty`: −r·A + β_old·KL(π_old‖π_θ),
no clipping, β_old doubled / halved each round around `penalty_target_kl`) and clip + KL
(`policy_loss=clip_penalty`); a critic with its own learning rate and gradient clip (`critic_learning_rate`);
a periodically refreshed reference (`ref_sync=hard ref_sync_steps=N`).
"""

from __future__ import annotations

from dataclasses import dataclass

from posttrain.algorithms.grpo import load_prompts, load_ptx_rows, train_online
from posttrain.config import option
from posttrain.online.algorithm import OnlineParts, OnlineRL
from posttrain.online.critic import Critic
from posttrain.online.estimators import ESTIMATORS
from posttrain.online.options import CriticOptions, PolicyLossOptions, ProcessRewardOptions, PtxOptions, RewardKLOptions, RolloutOptions, reject_unread
from posttrain.options import RefSyncOptions, output_dir_option, restate
from posttrain.rewards import RewardFunctions
from posttrain.rewards.functions import monitor_functions
from posttrain.train.scaffold import load_model_for

ADVANTAGES = tuple(name for name, e in ESTIMATORS.items() if e.critic != "none")  # those that read the critic


@dataclass
class PPOConfig(CriticOptions, RewardKLOptions, PtxOptions, ProcessRewardOptions, PolicyLossOptions, RefSyncOptions, RolloutOptions):
    output_dir: str = output_dir_option("ppo")
    advantage: str = option("gae", "Advantages from the critic: gae (GAE(gamma, lam)) or reinforce (the return-to-go minus V per token).", choices=ADVANTAGES)
    num_generations: int = restate(RolloutOptions, "num_generations", "Completions sampled per prompt.", default=1)
    loss_type: str = restate(PolicyLossOptions, "loss_type", "Aggregation of the surrogate: token_mean (one mean over all tokens), grpo, dr_grpo.", default="token_mean")
    num_iterations: int = restate(RolloutOptions, "num_iterations", "K: epochs over each round's samples.", default=4)
    num_minibatches: int = restate(RolloutOptions, "num_minibatches", "Shuffled minibatches (optimizer steps) per epoch.", default=2)
    entropy_coef: float = restate(PolicyLossOptions, "entropy_coef", "Entropy bonus weight (seed: c_e = 0.01).")
    beta: float = restate(PolicyLossOptions, "beta", "β of a KL term in the loss, beside kl_coef's KL in the reward (0: none; PPO-RLHF puts the KL in the reward).")
    reward_model: str | None = option(None, "A reward model from `posttrain rm` (final/ directory); used instead of reward_funcs.")

    def validate(self) -> None:
        super().validate()
        self.check_ref_sync(None if self.beta > 0 or self.kl_coef > 0 else "with beta = 0 and kl_coef = 0 no reference is loaded")
        reject_unread(self)

    def unread(self) -> dict[str, str]:
        out = super().unread()
        if self.reward_model:
            for key in ("reward_funcs", "reward_weights"):
                out[key] = "without a reward_model (the reward model scores instead)"
        return out


PRESETS: dict[str, dict] = {
    "instructgpt": {"kl_coef": 0.02, "gamma": 1.0, "lam": 0.95, "epsilon_low": 0.2, "epsilon_high": 0.2,
                    "vf_coef": 0.5, "entropy_coef": 0.0},  # seed 003's RLHF pseudocode values
    # PPO-penalty (Schulman et al. 2017; S3 L1022-1030): -r·A + β_old KL(π_old‖π_θ), no clip, β_old doubled /
    # halved after each round around d_targ = 0.01 (the paper's best); the KL to π_ref stays in the reward
    "ppo_penalty": {"policy_loss": "penalty", "penalty_coef": 1.0, "penalty_target_kl": 0.01},
    "clip_penalty": {"policy_loss": "clip_penalty", "penalty_coef": 1.0, "penalty_target_kl": 0.01},  # L^CLIP+KL (S3 L1031-1039)
    # the adaptive KL in the reward with PPO-penalty's double/halve rule (this preset was `ppo_penalty` before)
    "adaptive_kl": {"target_kl": 0.01, "kl_controller": "double_halve"},
    # verl's use_kl_loss: the KL to π_ref in the loss (k3, verl's low_var_kl, coefficient 0.001), none in the reward
    "kl_loss": {"kl_coef": 0.0, "beta": 0.001, "kl_estimator": "k3"},
}


def ppo_algorithm(config: PPOConfig, tokenizer, rewards: RewardFunctions, ptx_rows: list | None = None,
                  process_rewards=None) -> OnlineRL:
    """OnlineRL with a critic and the KL in the reward (kl_coef), optionally ptx and process rewards."""
    critic = Critic(config.critic, config.reward_model, tokenizer.pad_token_id)
    return OnlineRL(config, tokenizer, rewards, OnlineParts(critic=critic, reward_kl="kl_coef", ptx_rows=ptx_rows or [],
                                                            process_rewards=process_rewards))


def run_ppo(config: PPOConfig) -> dict:
    """Train and save the actor to output_dir/final; returns the last logged metrics."""
    tokenizer, rows, rewards = load_prompts(config)
    if config.reward_model:
        from posttrain.models.reward_model import REWARD_MODEL_HINT, load_reward_model, score_texts

        from posttrain.models.sharding import frozen_load_device

        # frozen: under torchrun the first scoring shards it (each process holds 1/N: models.sharding.shard_frozen)
        rm = load_reward_model(config.reward_model, tokenizer.pad_token_id, device=frozen_load_device(config.device),
                               option="reward_model", hint=REWARD_MODEL_HINT).eval().requires_grad_(False)
        rewards = RewardFunctions({"reward_model": lambda prompts, completions, **_: score_texts(rm, tokenizer, prompts, completions)},
                                  on_error=config.reward_errors, monitors=monitor_functions(config, config.dataset),
                                  timeout=config.reward_timeout)
    process_rewards = None
    if config.process_reward_model:
        from posttrain.rewards.process import ProcessRewardModel

        process_rewards = ProcessRewardModel(config.process_reward_model, config.step_separator, config.device, config.batch_size)
    algorithm = ppo_algorithm(config, tokenizer, rewards, load_ptx_rows(config, tokenizer), process_rewards)
    return train_online(config, algorithm, rows, tokenizer,
                        build_model=lambda: algorithm.critic.attach(load_model_for(config, device="cpu")))
