"""`posttrain pairs`: preference pairs sampled from a policy, for `posttrain rm` / `posttrain dpo`.

    posttrain pairs model=runs/sft/final dataset=task:sentiment num_samples=4 selection=max_gap \
        labels=hard output_dir=runs/pairs

For each prompt: sample `num_samples` (k) completions from `model` (`methods.best_of_n.sample_and_score`),
score them with `reward_funcs`, pick pairs (`selection`) and decide which side is chosen (`labels`).
The shared building block of:

- InstructGPT's comparison data (Ouyang et al. 2022): completions of the SFT model compared by a
  labeler. Here the labeler is simulated from a reward r by a Bradley–Terry draw,
  `labels=bradley_terry`: y1 ≻ y2 with probability P = σ(label_beta · (r1 − r2)) (label_beta 5
  gives noisy, IMDb-style labels);
- RS-DPO (rejection-sampling DPO, Khaki et al. 2024): the SFT model generates k distinct responses
  per prompt, a contrastive pair is selected by its rewards, and DPO trains on those pairs:
  `selection=max_gap` (the pair of largest reward gap r_max − r_min, kept only if the gap ≥
  `min_gap`) with `labels=hard`;
- online / iterative DPO (fresh pairs with adaptive reward feedback every round): one pairs stage
  per round, sampling from the previous round's policy;
- RLAIF (reinforcement learning from AI feedback: an off-the-shelf LLM as the preference labeler):
  `labels=judge` asks a pairwise LLM judge (`judge=pairwise_judge[:model=DIR:...]`, position swap
  on) through `rewards.rlaif.label_pairs`.

Selection (per prompt, over the k samples in sampling order; a sample without a reward is skipped):
`first_two` the first two samples (InstructGPT-style comparison); `max_gap` see above; `all_pairs`
every pair (i < j) with gap ≥ min_gap (the RS-DPO paper's own PDGRS step keeps all such pairs);
`rso` RSO's statistical rejection sampling (Liu et al. 2024): `rso_samples`
of the k samples are accepted as draws from the optimal policy π* ∝ π_sft·exp(r/β) (β = `rso_beta`),
then paired in acceptance order (1st with 2nd, 3rd with 4th, ...), the `rso` preset labelling them
by the reward (the RM), for DPO (`sigmoid`) or SLiC (`hinge`).

Labels: `hard` chosen = the higher reward, equal rewards dropped (counted as `ties`);
`bradley_terry` the seeded draw above (equal rewards are a fair coin; label_beta → ∞ gives `hard`);
`judge` the judge's verdict (ties and unparseable verdicts dropped and counted). Pairs with identical
or empty sides teach nothing and are dropped (`identical`).

Output (`output_dir`): `final/pairs.jsonl` and `final/eval_pairs.jsonl` (rows `prompt`, `chosen`,
`rejected`, `chosen_reward`, `rejected_reward`; `final/` appears whole once the stage has finished,
so a pipeline refers to `${STAGE.final}/pairs.jsonl`), `config.yaml`, `metrics.jsonl` (one record:
pairs written, ties and other drops, mean reward gap, `sample_reward_mean` the mean reward of every sample
(the sampling policy's quality: round-over-round progress in online DPO), and for bradley_terry /
judge the agreement of the labels with the reward ordering). A crashed run is simply redone.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

from posttrain.config import option
from posttrain.data.sources import draw_rows, write_jsonl
from posttrain.errors import ConfigError, UserError, naming_option
from posttrain.methods.best_of_n import completion_value
from posttrain.online.options import reject_unread
from posttrain.options import GenerationBatchOptions, ModelOptions, RewardOptions, SamplingBackendOptions, SamplingOptions, TopPSamplingOptions, restate

SELECTIONS = ("first_two", "max_gap", "all_pairs", "rso")
LABELS = ("hard", "bradley_terry", "judge")


@dataclass
class PairsConfig(SamplingBackendOptions, RewardOptions, GenerationBatchOptions, TopPSamplingOptions, ModelOptions):
    output_dir: str = option("runs/pairs", "Run directory: config.yaml, metrics.jsonl, final/{pairs,eval_pairs}.jsonl.")
    overwrite_output_dir: bool = option(False, "Allow writing into an output_dir that already holds finished pairs.")
    dataset: str = option("task:sentiment", "Prompt rows (a 'prompt' column plus any columns the rewards read): task:NAME[:split], a file or dataset.")
    dataset_split: str | None = option(None, "Split to read from a DatasetDict directory or hub dataset (default: train).")
    prompts: int = option(256, "Prompts drawn (seeded, without replacement) from the dataset; 0 uses every prompt.")
    eval_dataset: str | None = option(None, "Held-out prompts for eval_pairs.jsonl (default for task:NAME: its test split).")
    eval_prompts: int = option(0, "Held-out prompts to make eval pairs from (0: no eval_pairs.jsonl).")
    num_samples: int = option(2, "k: completions sampled per prompt.")
    selection: str = option("first_two", "Which pairs of a prompt's k samples: first_two, max_gap (RS-DPO: the largest reward gap), all_pairs, rso (RSO: rso_samples accepted by statistical rejection sampling toward pi* ~ pi exp(r/rso_beta), paired in order).", choices=SELECTIONS)
    min_gap: float = option(0.0, "Keep a pair only if its reward gap |r1 - r2| is at least this.")
    rso_beta: float = option(0.5, "selection=rso: β of the target π* ∝ π·exp(r/β); small β approaches top-k-over-k samples (best-of-n), large β accepts samples as drawn.")
    rso_samples: int = option(2, "selection=rso: samples accepted per prompt (paired in order; even, at most num_samples).")
    labels: str = option("hard", "Who decides chosen: hard (higher reward), bradley_terry (draw with P = sigmoid(label_beta (r1 - r2))), judge (a pairwise LLM judge, RLAIF).", choices=LABELS)
    label_beta: float = option(5.0, "labels=bradley_terry: inverse temperature of the draw (5: noisy, IMDb-style labels).")
    judge: str = option("pairwise_judge", "labels=judge: the judge, as a built-in spec pairwise_judge[:model=DIR:method=logprob:...].")
    reward_funcs: list[str] = restate(RewardOptions, "reward_funcs", "Reward functions scoring the samples, as for grpo: task, task::SCORER, task:NAME[:SCORER], a built-in NAME[:k=v...], module:function.")
    reward_workers: int = restate(RewardOptions, "reward_workers", "Reward functions run concurrently in at most this many threads.")
    max_new_tokens: int = restate(SamplingOptions, "max_new_tokens", default=96)

    def validate(self) -> None:
        reject_unread(self)
        if self.num_samples < 2:
            raise ConfigError(f"num_samples must be >= 2 to make a pair, got {self.num_samples}")
        for key in ("prompts", "eval_prompts"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key '{key}' must be >= 0 (0: {'all' if key == 'prompts' else 'none'}), got {getattr(self, key)}")
        if self.max_new_tokens < 1 or self.generation_batch_size < 1:
            raise ConfigError("max_new_tokens and generation_batch_size must be >= 1")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ConfigError(f"temperature must be > 0 (k greedy samples are identical) and top_p in (0, 1], got {self.temperature} and {self.top_p}")
        if self.min_gap < 0 or self.label_beta <= 0:
            raise ConfigError(f"min_gap must be >= 0 and label_beta > 0, got {self.min_gap} and {self.label_beta}")
        if self.selection == "rso" and (self.rso_beta <= 0 or self.rso_samples < 2 or self.rso_samples % 2 or self.rso_samples > self.num_samples):
            raise ConfigError(f"selection=rso needs rso_beta > 0 and an even rso_samples in [2, num_samples={self.num_samples}], "
                              f"got {self.rso_beta} and {self.rso_samples}")
        if not self.reward_funcs:
            raise ConfigError("reward_funcs is empty; pairs are selected (and, unless labels=judge, labelled) by reward")
        if self.labels == "judge" and not self.judge.split(":")[0] == "pairwise_judge":
            raise ConfigError(f"judge must be a pairwise_judge[:key=value...] spec, got {self.judge!r}")


PRESETS: dict[str, dict] = {
    "rso": {"selection": "rso", "labels": "hard", "num_samples": 8, "rso_samples": 2, "rso_beta": 0.5},
}


def statistical_rejection_sample(rewards: list[float], count: int, beta: float, rng: random.Random) -> list[int]:
    """RSO's statistical rejection sampling (Liu et al. 2024, Algorithm 1): indices of `count` of the
    candidates y_i ~ π_sft, accepted as samples of π*(y) ∝ π_sft(y)·exp(r(y)/β). Passes over the
    remaining candidates in order, accepting each with probability exp((r_i − r_max)/β), r_max the
    largest remaining reward (so the best is always accepted in the pass where it is reached),
    until `count` are accepted. β → 0 gives the top `count` by reward; β → ∞ the first `count`."""
    remaining = list(range(len(rewards)))
    accepted: list[int] = []
    while len(accepted) < count and remaining:
        best = max(rewards[i] for i in remaining)
        for i in list(remaining):
            if rng.random() < math.exp((rewards[i] - best) / beta):
                accepted.append(i)
                remaining.remove(i)
                if len(accepted) == count:
                    break
    return accepted


def select_pairs(candidates: list, rule: str, min_gap: float = 0.0, rng: random.Random | None = None,
                 rso_beta: float = 0.5, rso_samples: int = 2) -> tuple[list[tuple], int]:
    """(pairs (a, b) in sampling order, how many were below min_gap) from one prompt's Candidates;
    rule `rso` draws from `rng` and pairs the accepted samples in acceptance order."""
    if rule not in SELECTIONS:
        raise ConfigError(f"selection must be one of {', '.join(SELECTIONS)}, got {rule!r}")
    scored = [c for c in candidates if c.reward is not None]
    if len(scored) < 2:
        return [], 0
    if rule == "first_two":
        pairs = [(scored[0], scored[1])]
    elif rule == "max_gap":  # the largest |r_i - r_j| over i < j is r_max - r_min: the contrastive pair
        i_max = max(range(len(scored)), key=lambda i: scored[i].reward)  # first of equal maxima
        i_min = min(range(len(scored)), key=lambda i: scored[i].reward)
        if i_max == i_min:  # all equal: the first two
            i_max, i_min = 0, 1
        pairs = [(scored[min(i_max, i_min)], scored[max(i_max, i_min)])]
    elif rule == "rso":
        picked = statistical_rejection_sample([c.reward for c in scored], rso_samples, rso_beta, rng or random.Random(0))
        pairs = [(scored[picked[i]], scored[picked[i + 1]]) for i in range(0, len(picked) - 1, 2)]
    else:
        pairs = [(scored[i], scored[j]) for i in range(len(scored)) for j in range(i + 1, len(scored))]
    kept = [(a, b) for a, b in pairs if abs(a.reward - b.reward) >= min_gap]
    return kept, len(pairs) - len(kept)


def bradley_terry_first_wins(r1: float, r2: float, beta: float, rng: random.Random) -> bool:
    """One draw of y1 ≻ y2 with P = σ(β (r1 − r2)) (computed without overflow)."""
    z = beta * (r1 - r2)
    p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    return rng.random() < p


def make_pairs(groups: list, config: PairsConfig, judge=None, seed: int = 0) -> tuple[list[dict], dict]:
    """Preference rows and counts from sampled PromptCandidates (see the module docstring)."""
    rng = random.Random(seed)
    counts = {"prompts": len(groups), "candidate_pairs": 0, "below_min_gap": 0, "identical": 0, "ties": 0, "unjudged": 0}
    unlabelled = []  # (row, a, b)
    for group in groups:
        pairs, below = select_pairs(group.candidates, config.selection, config.min_gap, rng, config.rso_beta, config.rso_samples)
        counts["below_min_gap"] += below
        for a, b in pairs:
            counts["candidate_pairs"] += 1
            if a.text.strip() == b.text.strip() or not a.text.strip() or not b.text.strip():
                counts["identical"] += 1
            else:
                unlabelled.append((group.row, a, b))
    decided = []  # (row, chosen, rejected)
    if config.labels == "judge":
        from posttrain.rewards.rlaif import label_pairs

        rows = [{"prompt": row["prompt"], "completions": [completion_value(a.text, isinstance(row["prompt"], list)), completion_value(b.text, isinstance(row["prompt"], list))],
                 "_index": i} for i, (row, a, b) in enumerate(unlabelled)]
        labelled = label_pairs(judge, rows, ties="drop") if rows else []
        counts["ties"] += labelled.counts["ties"] if rows else 0
        counts["unjudged"] += labelled.counts["unjudged"] if rows else 0
        for out in labelled:
            row, a, b = unlabelled[out["_index"]]
            first_wins = out["chosen"] == rows[out["_index"]]["completions"][0]
            decided.append((row, a, b) if first_wins else (row, b, a))
    else:
        for row, a, b in unlabelled:
            if config.labels == "hard":
                if a.reward == b.reward:
                    counts["ties"] += 1
                    continue
                first_wins = a.reward > b.reward
            else:
                first_wins = bradley_terry_first_wins(a.reward, b.reward, config.label_beta, rng)
            decided.append((row, a, b) if first_wins else (row, b, a))
    out_rows = []
    for row, chosen, rejected in decided:
        conversational = isinstance(row["prompt"], list)
        out_rows.append({"prompt": row["prompt"], "chosen": completion_value(chosen.text, conversational),
                         "rejected": completion_value(rejected.text, conversational),
                         "chosen_reward": chosen.reward, "rejected_reward": rejected.reward})
    gaps = [r["chosen_reward"] - r["rejected_reward"] for r in out_rows]
    counts["pairs"] = len(out_rows)
    counts["mean_gap"] = sum(abs(g) for g in gaps) / len(gaps) if gaps else float("nan")
    scores = [c.reward for g in groups for c in g.candidates if c.reward is not None]
    # the sampling policy's own mean reward: online DPO's round-over-round progress
    counts["sample_reward_mean"] = sum(scores) / len(scores) if scores else float("nan")
    ordered = [g for g in gaps if g != 0]
    counts["reward_agreement"] = sum(g > 0 for g in ordered) / len(ordered) if ordered else float("nan")
    return out_rows, counts


def run_pairs(config: PairsConfig) -> dict:
    """Sample, select, label; write output_dir/{config.yaml, metrics.jsonl, final/}; returns the metrics."""
    import torch

    from posttrain.generation import SamplingParams
    from posttrain.methods.best_of_n import report_timeouts, sample_and_score
    from posttrain.rewards import RewardFunctions
    from posttrain.rewards.registry import build
    from posttrain.tasks.sources import is_task_source, load_rows, parse_task_source
    from posttrain.train.rundir import atomic_dir, check_no_final, run_dir, write_config
    from posttrain.train.scaffold import load_model_for, load_prompt_rows, load_tokenizer_for, sampler_for

    run = run_dir(config.output_dir)
    check_no_final(run, config.overwrite_output_dir, "finished pairs")
    rows = load_prompt_rows(config.dataset, config.dataset_split, "pairs need")
    eval_rows: list[dict] = []
    if config.eval_prompts:
        if config.eval_dataset:
            eval_rows = draw_rows(load_rows(config.eval_dataset), config.eval_prompts, config.seed + 1)
        elif is_task_source(config.dataset):
            eval_rows = load_rows(f"task:{parse_task_source(config.dataset)[0]}:test:{config.eval_prompts}")
        else:
            raise ConfigError(f"eval_prompts={config.eval_prompts} but {config.dataset} has no test split; set eval_dataset=FILE or eval_prompts=0")
    rewards = RewardFunctions.from_options(config, config.dataset)
    judge = None
    if config.labels == "judge":
        with naming_option("judge"):
            judge = build(config.judge)[1]
    tokenizer = load_tokenizer_for(config)
    model = sampler_for(config, load_model_for(config), tokenizer)

    write_config(run, config)
    metrics: dict = {}
    with atomic_dir(run.final) as tmp:
        for name, prompt_rows, offset in (("pairs", draw_rows(rows, config.prompts, config.seed), 0), ("eval_pairs", eval_rows, 1)):
            if name == "eval_pairs" and not prompt_rows:
                continue
            torch.manual_seed(config.seed + offset)
            params = SamplingParams(**config.sampling_kwargs(seed=config.seed + 1000 * offset))
            groups = sample_and_score(model, tokenizer, prompt_rows, rewards, config.num_samples, params, config.generation_batch_size)
            out_rows, counts = make_pairs(groups, config, judge, seed=config.seed + offset)
            counts["reward_timeouts"] = report_timeouts(rewards)
            if not out_rows:  # an empty file would fail the next stage later and less clearly
                raise UserError(f"no {name} from {len(prompt_rows)} prompts ({counts}); raise num_samples or prompts, or lower min_gap")
            write_jsonl(tmp / f"{name}.jsonl", out_rows)
            metrics.update(counts if name == "pairs" else {f"eval_{k}": v for k, v in counts.items()})
    run.metrics.write_text(json.dumps({"step": 0, **metrics}) + "\n", encoding="utf-8")
    print("pairs: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    print(f"pairs: wrote {run.final / 'pairs.jsonl'}")
    return metrics
