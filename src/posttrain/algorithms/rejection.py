"""Rejection-sampling fine-tuning: expert iteration, RFT, ReST and ReST-EM.

    posttrain rejection model=embedded dataset=task:arithmetic reward_funcs=[task:arithmetic:accuracy] \
        selection=threshold threshold=1 from_base=true iterations=3 num_samples=8 learning_rate=5e-4

Each iteration k = 1..iterations:

1. sample (Grow / E-step): draw `prompts_per_iteration` prompts and `num_samples` completions per
   prompt from the current policy π_{k-1} (temperature / top-p; ReST-EM used 1.0 / 0.95), and
   score them with the reward functions;
2. filter (`methods.best_of_n.select_best`): `selection=best` keeps the highest-reward sample of
   each prompt if its reward >= `min_reward` (expert iteration: the best-performing samples are
   used for further training; AlpacaFarm's best-of-n / expert iteration, Dubois et al. 2023);
   `selection=threshold` keeps every sample with reward >= `threshold`, at most
   `max_per_prompt` per prompt (ReST-EM's filter on binary correctness feedback; the reward is the
   weighted sum of `reward_funcs`, so the `rest_em` preset scores with `task::accuracy` alone: with
   the default `task`, accuracy + format, a well-formatted wrong answer would reach 1.0);
3. fine-tune (Improve / M-step): SFT (cross-entropy on the kept completions) into
   `output_dir/iter-k/`, starting from the previous policy (expert iteration: "further training")
   or, with `from_base=true`, from the base model each time: fine-tuning the *base* model every
   iteration, to limit over-fitting, is the ReST-EM paper's choice (Singh et al. 2023), and the
   reason we offer it. Sampling always uses the newest policy.

ReST (Gulcehre et al. 2023, the `rest` preset): each iteration is one Grow step
(the sampling of step 1) followed by several Improve steps (steps 2-3), one per entry of
`improve_thresholds`, which must rise: Improve step i keeps the Grow samples with reward >= threshold_i and fine-tunes the previous
Improve step's model (BC, ReST's best loss), so Improve runs more often than Grow and each filters
harder; samples land in `iter-K-improve-I/`.

Per iteration (per Improve step under ReST), `iterations.jsonl` (and `metrics.jsonl`, with `step` =
the iteration, or the Improve step's running count under ReST) records the mean
reward of the samples, the fraction kept, the SFT loss, and greedy held-out scores before and
after (eval_dataset; task:NAME:test:200 for an embedded task). `final/` is the last iteration's
model.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

from posttrain.config import build_config, option
from posttrain.data.sources import draw_rows, write_jsonl
from posttrain.errors import ConfigError, UserError
from posttrain.methods.best_of_n import RULES, completion_value, mean_reward, report_timeouts, sample_and_score, select_best
from posttrain.online.options import reject_unread
from posttrain.options import GenerationBatchOptions, MaskableRewardOptions, SamplingBackendOptions, RewardOptions, SamplingOptions, TopKSamplingOptions, TopPSamplingOptions, TrainOptions, output_dir_option, restate
from posttrain.train.rundir import atomic_dir, write_config
from posttrain.train.scaffold import load_model_for, load_prompt_rows, sampler_for, sampler_on, start_run


@dataclass
class RejectionConfig(SamplingBackendOptions, MaskableRewardOptions, GenerationBatchOptions, TopKSamplingOptions, TrainOptions):
    output_dir: str = output_dir_option("rejection", "config.yaml, iterations.jsonl, iter-K/ (each round's samples and SFT run), final/")
    iterations: int = option(2, "Sample -> filter -> fine-tune rounds.")
    num_samples: int = option(4, "n: completions sampled per prompt.")
    prompts_per_iteration: int = option(64, "Prompts drawn (without replacement, fresh each iteration) from the dataset; 0 uses every prompt.")
    selection: str = option("best", "best: keep the top sample per prompt if its reward >= min_reward (expert iteration / RFT); threshold: keep every sample with reward >= threshold (ReST-EM).", choices=RULES)
    min_reward: float | None = option(None, "selection=best: keep a prompt's top sample only if its reward is at least this (null: always).")
    threshold: float = option(1.0, "selection=threshold: keep samples whose reward, the weighted sum of reward_funcs, is at least this. 1.0 keeps correct answers with one 0/1 reward such as task::accuracy (the rest_em preset's); the default reward task sums every scorer (arithmetic: accuracy + format, 0-2), so 1.0 also keeps well-formatted wrong answers.")
    max_per_prompt: int = option(0, "selection=threshold: keep at most this many samples per prompt, highest reward first (0: no cap).")
    improve_thresholds: list[float] = option([], "ReST (Gulcehre et al. 2023): Improve steps per Grow step, one per threshold, rising (e.g. [0.5, 0.7, 0.9] for a reward in [0, 1]); each keeps the Grow step's samples with reward >= its threshold and fine-tunes the previous Improve step's model. Empty: one Improve step at `threshold`. Needs selection=threshold.")
    from_base: bool = option(False, "Fine-tune from the base model each iteration (ReST-EM) instead of continuing from the last policy (expert iteration).")
    temperature: float = restate(SamplingOptions, "temperature", "Sampling temperature (ReST-EM: 1.0).")
    top_p: float = restate(TopPSamplingOptions, "top_p", "Nucleus sampling threshold (ReST-EM: 0.95).")
    max_new_tokens: int = restate(SamplingOptions, "max_new_tokens", default=256)
    reward_funcs: list[str] = restate(RewardOptions, "reward_funcs", "Reward functions, as for grpo: task (every scorer of the dataset's task, summed), task::SCORER (one of them), task:NAME[:SCORER], a built-in NAME[:key=value...], module:function or file.py:function.")
    reward_workers: int = restate(RewardOptions, "reward_workers", "Reward functions run concurrently in at most this many threads.")
    reward_errors: str = restate(MaskableRewardOptions, "reward_errors", "A reward function that raises or returns NaN/inf: raise (one-line error) or mask (the sample is never kept).")
    eval_greedy: bool = option(True, "Score greedy completions of eval_dataset before the first and after every iteration.")
    packing: bool = option(False, "SFT: pack several kept samples into each row of up to max_length tokens.")

    def validate(self) -> None:
        super().validate()
        reject_unread(self)
        for key in ("iterations", "num_samples", "max_new_tokens", "generation_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}' must be >= 1, got {getattr(self, key)}")
        for key in ("prompts_per_iteration", "max_per_prompt", "top_k"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key '{key}' must be >= 0, got {getattr(self, key)}")
        self.check_sampling()
        if self.temperature == 0 and self.num_samples > 1:
            raise ConfigError("num_samples > 1 with temperature=0 gives n identical greedy samples; set temperature (e.g. 1.0)")
        if self.max_new_tokens >= self.max_length:
            raise ConfigError(f"max_new_tokens ({self.max_new_tokens}) must be below max_length ({self.max_length}), which also holds the prompt")
        if self.resume:
            raise ConfigError("rejection does not resume; rerun with overwrite_output_dir=true")
        if self.improve_thresholds and self.selection != "threshold":
            raise ConfigError("improve_thresholds (ReST's Improve steps) filter by threshold; set selection=threshold")
        if any(b < a for a, b in zip(self.improve_thresholds, self.improve_thresholds[1:])):
            raise ConfigError(f"improve_thresholds must rise (ReST filters harder at each Improve step), got {self.improve_thresholds}")


PRESETS: dict[str, dict] = {
    "expert_iteration": {"selection": "best", "from_base": False},
    # seed 003 L3268-3281: a filter on binary correctness, so the reward is the task's accuracy alone (0/1)
    "rest_em": {"selection": "threshold", "reward_funcs": ["task::accuracy"], "threshold": 1.0, "from_base": True,
                "temperature": 1.0, "top_p": 0.95},
    # seed 003 L3251-3266: Grow once, Improve several times with rising thresholds on a [0, 1] reward
    # (a learned RM or the sentiment gold reward), each Improve continuing from the last (BC loss = SFT)
    "rest": {"selection": "threshold", "improve_thresholds": [0.5, 0.7, 0.9], "from_base": False},
}


def _sft_config(config: RejectionConfig, start_model: str, data_file: Path, out_dir: Path):
    """The iteration's SFT run: every shared training option of this config, on the kept samples."""
    from posttrain.algorithms.sft import SFTConfig

    shared = {f.name: getattr(config, f.name) for f in fields(TrainOptions)}
    shared.update(model=start_model, dataset=str(data_file), dataset_split=None, eval_dataset=None,
                  output_dir=str(out_dir), overwrite_output_dir=True, resume=False, packing=config.packing)
    return build_config(SFTConfig, shared)


def _greedy_scores(model_path: str, config: RejectionConfig, tokenizer, rows: list[dict], rewards) -> dict[str, float]:
    """Mean score of each reward function on greedy completions of `rows`."""
    from posttrain.methods.heldout import evaluate

    model = load_model_for(config, model_path)
    report = evaluate(model, tokenizer, rows, rewards.functions, temperature=0.0, max_new_tokens=config.max_new_tokens,
                      batch_size=config.generation_batch_size, seed=config.seed, show_samples=0)
    return {name: report[name] for name in rewards.functions}


def _write_samples(path: Path, kept) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, [{"prompt": row["prompt"], "completion": completion_value(cand.text, isinstance(row["prompt"], list)),
                        "reward": cand.reward} for row, cand in kept])


def _sample_iteration(policy: str, config: RejectionConfig, tokenizer, rows: list[dict], rewards, k: int, engine: dict):
    """The Grow step's samples from `policy`; `engine` keeps a vLLM backend across iterations (it takes each new policy's weights)."""
    import torch

    from posttrain.generation import SamplingParams

    torch.manual_seed(config.seed + k)
    model = load_model_for(config, policy)
    sampler = engine["sampler"] = sampler_on(engine["sampler"], model) if engine else sampler_for(config, model, tokenizer, policy)
    params = SamplingParams(**config.sampling_kwargs(seed=config.seed + 1000 * k))
    return sample_and_score(sampler, tokenizer, rows, rewards, config.num_samples, params, config.generation_batch_size)


def _improve(config: RejectionConfig, run, rewards, prompts, candidates, threshold: float, start: str, name: str,
             eval_rows, scores, tokenizer) -> tuple[dict, str, dict]:
    """One Improve step: keep the samples that pass, fine-tune `start` on them into run/name/;
    returns (its record, the new policy, the held-out scores after it)."""
    from posttrain.algorithms.sft import run_sft

    kept = select_best(candidates, config.selection, min_reward=config.min_reward, threshold=threshold,
                       max_per_prompt=config.max_per_prompt)
    num_samples = len(prompts) * config.num_samples
    record = {"prompts": len(prompts), "samples": num_samples,
              "sample_reward_mean": mean_reward(candidates), "kept": len(kept), "kept_fraction": len(kept) / num_samples,
              "prompts_kept_fraction": len({id(row) for row, _ in kept}) / len(prompts),
              "reward_timeouts": report_timeouts(rewards)}
    if not kept:
        what = name.replace("iter-", "iteration ").replace("-improve-", ", Improve step ")
        raise UserError(f"{what} kept none of {num_samples} samples (mean reward {record['sample_reward_mean']:.3g}); "
                        f"lower {'min_reward' if config.selection == 'best' else 'improve_thresholds' if config.improve_thresholds else 'threshold'} or raise num_samples")
    record["kept_reward_mean"] = sum(c.reward for _, c in kept) / len(kept)
    out_dir = run.root / name
    _write_samples(out_dir / "samples.jsonl", kept)
    print(f"rejection: {name}: kept {len(kept)}/{num_samples} samples "
          f"(mean reward {record['sample_reward_mean']:.3f}); SFT from {start}")
    sft = run_sft(_sft_config(config, start, out_dir / "samples.jsonl", out_dir))
    policy = str(out_dir / "final")
    record.update(sft_loss=sft.get("loss"), sft_steps=sft.get("step"), trained_from=start)
    if eval_rows:
        after = _greedy_scores(policy, config, tokenizer, eval_rows, rewards)
        record.update({f"eval_{n}_before": v for n, v in scores.items()} | {f"eval_{n}_after": v for n, v in after.items()})
        scores = after
    return record, policy, scores


def run_rejection(config: RejectionConfig) -> dict:
    """Run every iteration, write output_dir/{iter-K/, iterations.jsonl, final/}; returns the last record."""
    from posttrain.rewards import RewardFunctions
    from posttrain.tasks.sources import default_eval_source, load_rows

    run, tokenizer = start_run(config)
    rows = load_prompt_rows(config.dataset, config.dataset_split, "rejection sampling needs", options=config)
    rewards = RewardFunctions.from_options(config, config.dataset)
    eval_source = config.eval_dataset or default_eval_source(config.dataset)
    eval_rows = load_rows(eval_source, options=config) if config.eval_greedy and eval_source else []

    write_config(run, config)
    if config.selection == "threshold" and len(rewards.functions) > 1:
        print(f"rejection: selection=threshold compares threshold={config.threshold:g} with the weighted sum of "
              f"{' + '.join(rewards.functions)}; to keep only correct answers, score with one 0/1 reward "
              "(e.g. reward_funcs=[task::accuracy])")
    for name in ("iterations.jsonl", "metrics.jsonl"):
        (run.root / name).write_text("")
    policy = config.model
    scores = _greedy_scores(policy, config, tokenizer, eval_rows, rewards) if eval_rows else {}
    thresholds = config.improve_thresholds or [config.threshold]
    record: dict = {}
    engine: dict = {}
    for k in range(1, config.iterations + 1):  # Grow: sample once from the newest policy
        prompts = draw_rows(rows, config.prompts_per_iteration, config.seed + k)
        candidates = _sample_iteration(policy, config, tokenizer, prompts, rewards, k, engine)
        for i, threshold in enumerate(thresholds, 1):  # Improve: filter the same samples, each time harder
            step = (k - 1) * len(thresholds) + i
            name = f"iter-{k}" if len(thresholds) == 1 else f"iter-{k}-improve-{i}"
            start = config.model if config.from_base and i == 1 else policy
            record, policy, scores = _improve(config, run, rewards, prompts, candidates, threshold, start, name, eval_rows, scores, tokenizer)
            record = {"step": step, "iteration": k, **({"improve": i, "threshold": threshold} if config.improve_thresholds else {}), **record}
            line = json.dumps(record) + "\n"
            for file in ("iterations.jsonl", "metrics.jsonl"):
                with (run.root / file).open("a") as f:
                    f.write(line)
            print("rejection: " + ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                                             for key, value in record.items()))
    with atomic_dir(run.final) as tmp:
        shutil.copytree(policy, tmp, dirs_exist_ok=True)
    print(f"rejection: done; model saved to {run.final}")
    return record
