"""GRPO and its family (DAPO, Dr.GRPO, GSPO, GRPO+), RLOO and REINFORCE(++): online RL from rewards.

    posttrain grpo model=runs/sft/final dataset=task:arithmetic reward_funcs=[task]
    posttrain grpo --preset dapo model=... dataset=prompts.jsonl reward_funcs=[my_rewards.py:correct]
    posttrain rloo model=... dataset=task:arithmetic

Each generation round samples `num_generations` (G) completions for each of `prompts_per_step`
prompts, scores them with the reward functions (TRL's convention, `f(prompts, completions, **columns)`),
and turns rewards into advantages with a registered estimator (`advantage`, online/estimators.py:
grpo = group-normalised, with `scale_rewards` group / batch / none; rloo = leave-one-out;
reinforce = mean baseline; reinforce_pp = REINFORCE++, its KL in the token rewards; remax = the
greedy completion's reward as the baseline; p3o = pairwise, P3O's reward difference within a prompt's
samples with the KL in the trajectory reward). The
policy is then updated `num_iterations` (μ) times over those samples, each pass in `num_minibatches`
optimizer steps, against the log-probs the samples were drawn with (frozen).

The algorithm is online/algorithm.py's OnlineRL with no critic; PPO (algorithms/ppo.py) is the same
object with a critic. The loss (losses/policy.py) is one function whose options cover where GRPO's
variants disagree: `loss_type` (aggregation: grpo = sequence mean then mean; token_mean =
DAPO/BNPO; dr_grpo = a constant normaliser), `kl_estimator` k3 / k1 with `beta` (β = 0 loads no reference model),
`ratio_level` token / sequence (GSPO), `epsilon_low` / `epsilon_high` (clip-higher).
PPO-ptx (`ptx_coef`, `ptx_dataset`) adds γ × the next-token loss of input-output data to every
micro-batch, as in PPO: where every sample of a group writes the same tokens (an agent's tool
protocol) their advantages cancel, and nothing else holds those tokens while the rest move.

Why the logged loss sits near 0: with μ = 1 the policy is the one that sampled, so every ratio is 1
and the surrogate equals −A; group-normalised advantages average to 0 over each group, so the loss
is ≈ 0 (plus β·KL, which starts at 0) even though its gradient, Σ A ∇log π, is not. Watch the
rewards, `kl`, `entropy` and the clip fractions instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from posttrain.config import option
from posttrain.errors import ConfigError
from posttrain.online.algorithm import OnlineParts, OnlineRL
from posttrain.online.estimators import ESTIMATORS
from posttrain.online.options import PolicyLossOptions, PtxOptions, RolloutOptions, reject_unread
from posttrain.online.source import OnlineSource
from posttrain.options import RefSyncOptions, output_dir_option, restate
from posttrain.rewards import RewardFunctions
from posttrain.train import distributed
from posttrain.train.loop import train
from posttrain.train.scaffold import load_model_for, load_prompt_rows, start_run

ADVANTAGES = tuple(name for name, e in ESTIMATORS.items() if e.critic != "required")  # no critic here: PPO has one


@dataclass
class GRPOConfig(PtxOptions, PolicyLossOptions, RefSyncOptions, RolloutOptions):
    output_dir: str = output_dir_option("grpo")
    advantage: str = option("grpo", "Advantage estimator: grpo (group-normalised), rloo (leave-one-out), reinforce (mean baseline), reinforce_pp (REINFORCE++, beta goes into the token rewards), remax (the greedy completion's reward as the baseline), p3o (pairwise: the reward difference to the prompt's other samples, beta in the reward).", choices=ADVANTAGES)
    scale_rewards: str = option("group", "grpo advantages: divide by the group's std, the batch's std, or none (Dr.GRPO).", choices=("group", "batch", "none"))
    beta: float = restate(PolicyLossOptions, "beta", "β: weight of the KL to the reference: a term of the loss, or with advantage=reinforce_pp or p3o -β·k1 in every token's reward (0: no reference model is loaded).")
    population_std: bool = option(False, "grpo advantages: divide by the population std sqrt(1/G sum (r - mean)^2) instead of the sample std (n - 1, TRL's).")

    def validate(self) -> None:
        super().validate()
        need = ESTIMATORS[self.advantage].min_group
        if self.num_generations < need:
            raise ConfigError(f"advantage={self.advantage} compares samples of the same prompt: num_generations must be >= {need}, got {self.num_generations}")
        self.check_ref_sync(None if self.beta > 0 else "with beta = 0 no reference is loaded")
        reject_unread(self)

    def unread(self) -> dict[str, str]:
        out = super().unread()
        if self.advantage != "grpo":
            out["scale_rewards"] = out["population_std"] = "with advantage=grpo"
        elif self.scale_rewards == "none":
            out["population_std"] = "with scale_rewards=group or batch"
        return out

    @property
    def loss_beta(self) -> float:
        """REINFORCE++ has its KL in the token rewards, so none in the loss (the KL is still measured)."""
        return 0.0 if ESTIMATORS[self.advantage].kl_in_reward else self.beta

    @property
    def std_unbiased(self) -> bool:
        return not self.population_std


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
    "remax": {"advantage": "remax", "loss_type": "token_mean", "beta": 0.0},  # Li et al. 2023
    # P3O (S3 L3530-3543): two samples per prompt, the pair's reward difference (KL in the reward), a clipped
    # trajectory-wise ratio π(y|x)/π_old(y|x) per sample (P3O's "separate clipping"), no critic
    "p3o": {"advantage": "p3o", "num_generations": 2, "loss_type": "grpo", "ratio_level": "sequence_product", "beta": 0.05},
}


def grpo_algorithm(config: GRPOConfig, tokenizer, rewards: RewardFunctions, ptx_rows: list | None = None) -> OnlineRL:
    """GRPO and its family: OnlineRL with no critic; REINFORCE++ puts beta into the token rewards."""
    kl_in_reward = ESTIMATORS[config.advantage].kl_in_reward and config.beta > 0
    return OnlineRL(config, tokenizer, rewards, OnlineParts(reward_kl="beta" if kl_in_reward else None, ptx_rows=ptx_rows or []))


def load_prompts(config):
    """Tokenizer, prompt rows and reward functions (None when a reward model scores)."""
    _, tokenizer = start_run(config)
    rows = load_prompt_rows(config.dataset, config.dataset_split, "online RL needs", options=config)
    rewards = None if getattr(config, "reward_model", None) else RewardFunctions.from_options(config, config.dataset)
    return tokenizer, rows, rewards


def load_ptx_rows(config, tokenizer) -> list:
    """PPO-ptx's input-output data as one-example micro-batch rows (none with ptx_coef = 0), tokenized
    the way SFT tokenizes it (loss on the completion only)."""
    if config.ptx_coef <= 0:
        return []
    from types import SimpleNamespace

    from posttrain.algorithms.sft import load_examples

    options = SimpleNamespace(max_length=config.max_length, truncation=True, completion_only_loss=True, dataset_num_proc=1)
    return [[ex] for ex in load_examples(tokenizer, config.ptx_dataset, None, options)]


def eval_rows(config) -> list[dict]:
    """Held-out prompts scored by greedy generation: the given eval_dataset, or with eval_steps > 0 a task's test split."""
    from posttrain.tasks.sources import default_eval_source, load_rows

    source = config.eval_dataset or (default_eval_source(config.dataset) if config.eval_steps > 0 else None)
    return load_rows(source, options=config) if source else []


def train_online(config, algorithm: OnlineRL, rows: list[dict], tokenizer, build_model) -> dict:
    """The loop over an online source; returns the last logged metrics."""
    algorithm.eval_rows = eval_rows(config)
    source = OnlineSource(algorithm, rows, tokenizer, config)
    source.check_some_prompt_fits()  # before the run directory is written
    try:
        return train(config, build_model=build_model, tokenizer=tokenizer, algorithm=algorithm, source=source)
    finally:
        distributed.cleanup()


def run_grpo(config: GRPOConfig) -> dict:
    """Train and save to output_dir; returns the last logged metrics."""
    tokenizer, rows, rewards = load_prompts(config)
    return train_online(config, grpo_algorithm(config, tokenizer, rewards, load_ptx_rows(config, tokenizer)), rows, tokenizer,
                        build_model=lambda: load_model_for(config, device="cpu"))


@dataclass
class RLOOConfig(GRPOConfig):
    output_dir: str = output_dir_option("rloo")
    advantage: str = option("rloo", "Advantage estimator: rloo (leave-one-out), grpo, reinforce, reinforce_pp, remax.", choices=ADVANTAGES)
    loss_type: str = option("token_mean", "Aggregation: token_mean, grpo, dr_grpo.", choices=("grpo", "token_mean", "dr_grpo"))


def run_rloo(config: RLOOConfig) -> dict:
    return run_grpo(config)
