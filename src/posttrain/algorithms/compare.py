"""`posttrain compare`: gold reward, KL from the reference and win rate of several policies.

    posttrain compare reference=runs/x/sft/final policies=[ppo=runs/x/ppo/final,dpo=runs/x/dpo/final] \\
        best_of_n=[4,16] selector_funcs=[reward_model:path=runs/x/rm/final] output_dir=runs/x/compare

The evaluation behind two well-known comparisons: AlpacaFarm's table of win rates of PPO, best-of-n,
expert iteration and SFT (Dubois et al. 2023, "controlled comparisons of RLHF-style algorithms"),
and the DPO paper's IMDb experiment, reward against KL (Rafailov et al. 2023: a pre-trained
sentiment classifier as the gold reward model, policies optimized with PPO and DPO), here with the
sentiment task's gold reward.

For every policy (the reference itself is the policy named `sft`), on the same held-out prompts:
sample `samples_per_prompt` completions at temperature `temperature` (1.0: the policy itself);
- `reward`: the mean gold reward (`gold_funcs`) of the samples, with its standard error
  std / sqrt(count);
- `kl`: the per-sequence KL(π‖π_ref) estimated on the policy's own samples y ~ π(·|x) by
  mean over samples of Σ_t [log π(y_t | x, y_<t) − log π_ref(y_t | x, y_<t)]. Both log-probs are
  recomputed by a forward pass of each model at temperature 1 (`models.logprobs.sequence_logprobs`),
  not the sampler's log-probs (those are of the temperature-scaled distribution); `kl_per_token`
  is the same sum divided by the number of sampled tokens;
- `win_rate`: sample j of the policy on prompt x against sample j of the reference on x, under the
  gold reward: a win counts 1, a tie 0.5, a loss 0 (so the reference against itself is exactly 0.5).
- with `judge=pairwise_judge[...]`, also the same pairs judged by an LLM in both orders (AlpacaFarm's
  simulated annotator): `judge_win_rate` with its 95% interval `judge_win_rate_ci` and the
  length-controlled `judge_lc_win_rate` (`methods.win_rate`; the reference against itself is 0.5).

`best_of_n=[n...]`: the reference samples n completions, `selector_funcs` (reward specs, e.g. a
learned reward model) pick the best, and the gold reward scores the pick. Its KL is the analytic
value KL(π_bon‖π_ref) = log n − (n − 1)/n (Stiennon et al. 2020, App. G.3; Beirami et al. 2024 show
it is an upper bound), 0 for n = 1.

Output (`output_dir`): `final/evaluations.jsonl` (one row per policy, the format
`posttrain report` reads: `policy`, `reward`, `reward_stderr`, `kl`, `kl_per_token`, `win_rate`,
`judge: gold`), `final/samples.jsonl` (the first `report_prompts` prompts' first sample per policy),
copies of both at the top of output_dir (where the report looks), `config.yaml`, `metrics.jsonl`.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass

from posttrain.config import option
from posttrain.data.sources import draw_rows, write_jsonl
from posttrain.errors import ConfigError, naming_option
from posttrain.methods.metrics import mean_stderr
from posttrain.online.options import reject_unread
from posttrain.options import GenerationBatchOptions, SamplingBackendOptions, SamplingOptions, restate

REFERENCE_NAME = "sft"


@dataclass
class CompareConfig(SamplingBackendOptions, GenerationBatchOptions, SamplingOptions):
    reference: str = option("embedded", "The reference policy (the SFT model): a local directory, 'embedded' or a hub id; reported as 'sft'.")
    policies: list[str] = option([], "Policies to evaluate as name=path, e.g. [ppo=runs/x/ppo/final, dpo=runs/x/dpo/final].")
    best_of_n: list[int] = option([], "Best-of-n of the reference for each n, e.g. [4, 16]; the pick is made by selector_funcs.")
    selector_funcs: list[str] = option(["task"], "Reward specs that pick the best of n (e.g. reward_model:path=DIR); as grpo's reward_funcs.")
    selector_judge: str | None = option(None, "Pick the best of n by a pairwise LLM judge instead: pairwise_judge[:model=DIR:method=logprob:rule=borda|copeland]; overrides selector_funcs.")
    gold_funcs: list[str] = option(["task"], "Reward specs of the gold score (default: the dataset's task scorers).")
    judge: str | None = option(None, "Also judge each policy's samples against the reference's with an LLM: pairwise_judge[:model=DIR:method=logprob]; both orders, adds judge_win_rate, its 95% interval and the length-controlled judge_lc_win_rate.")
    dataset: str = option("task:sentiment", "Held-out prompts: task:NAME[:split] (default split: test), a file or a dataset.")
    dataset_split: str | None = option(None, "Split to read (default: test for task:NAME, train otherwise).")
    prompts: int = option(100, "Prompts drawn (seeded, without replacement); 0 uses every prompt.")
    samples_per_prompt: int = option(2, "Samples per prompt and policy.")
    temperature: float = restate(SamplingOptions, "temperature", "Sampling temperature (1.0 samples the policy itself, as the KL estimate assumes).")
    max_new_tokens: int = restate(SamplingOptions, "max_new_tokens", default=48)
    logprob_batch_size: int = option(32, "Sequences per forward pass when computing log-probs for the KL.")
    report_prompts: int = option(8, "Prompts whose samples go to samples.jsonl (one per policy).")
    output_dir: str = option("runs/compare", "Run directory: config.yaml, metrics.jsonl, final/{evaluations,samples}.jsonl.")
    overwrite_output_dir: bool = option(False, "Allow writing into an output_dir that already holds a finished comparison.")
    dtype: str = option("float32", "Weights dtype.", choices=("float32", "bfloat16", "float16", "auto"))
    chat_template: str | None = option(None, "Path to a Jinja chat template that replaces the tokenizer's.")
    trust_remote_code: bool = option(False, "Allow model code from the hub (only for models you trust).")
    device: str = option("auto", "Device: auto, cpu, cuda, cuda:N.")
    seed: int = option(0, "Random seed (prompt draw and sampling; every policy gets the same sampling seed).")

    def validate(self) -> None:
        parse_policies(self.policies)
        if any(n < 1 for n in self.best_of_n):
            raise ConfigError(f"best_of_n values must be >= 1, got {self.best_of_n}")
        if self.samples_per_prompt < 1 or self.prompts < 0 or self.max_new_tokens < 1:
            raise ConfigError("samples_per_prompt and max_new_tokens must be >= 1 and prompts >= 0")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if self.judge is not None and self.judge.split(":")[0] != "pairwise_judge":
            raise ConfigError(f"judge must be a pairwise_judge[:key=value...] spec, got {self.judge!r}")
        if self.selector_judge is not None and self.selector_judge.split(":")[0] != "pairwise_judge":
            raise ConfigError(f"selector_judge must be a pairwise_judge[:key=value...] spec, got {self.selector_judge!r}")
        if not self.gold_funcs or (self.best_of_n and not self.selector_funcs and not self.selector_judge):
            raise ConfigError("gold_funcs must name a reward (and selector_funcs too when best_of_n is set)")
        reject_unread(self)

    def unread(self) -> dict[str, str]:
        """Options this config will not read as set: key -> the condition under which it is read."""
        out = super().unread()
        if not self.best_of_n:
            return out | {"selector_funcs": "with best_of_n=[n, ...]", "selector_judge": "with best_of_n=[n, ...]"}
        return out | ({"selector_funcs": "without selector_judge"} if self.selector_judge else {})


def _policy_hint(name: str) -> str:
    return f"policy '{name}' needs a save_pretrained directory, e.g. {name}=runs/x/{name}/final"


def parse_policies(entries: list[str]) -> dict[str, str]:
    """`["ppo=runs/ppo/final", ...]` -> {"ppo": "runs/ppo/final"}; ConfigError on a malformed entry."""
    out: dict[str, str] = {}
    for entry in entries:
        name, sep, path = str(entry).partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise ConfigError(f"policies entry {entry!r} is not name=path; write e.g. policies=[ppo=runs/x/ppo/final]")
        if name in out or name == REFERENCE_NAME or name.startswith("best_of_"):
            raise ConfigError(f"policies: name {name!r} is repeated or reserved (sft, best_of_N); choose another")
        out[name] = path
    return out


def best_of_n_kl(n: int) -> float:
    """Analytic KL(π_bon‖π_ref) = log n − (n − 1)/n of best-of-n (Stiennon et al. 2020; an upper bound, Beirami et al. 2024)."""
    return math.log(n) - (n - 1) / n


def win_rate(policy_scores: list[float | None], reference_scores: list[float | None]) -> float:
    """Share of paired samples where the policy's gold reward beats the reference's (ties ½); pairs with a None are skipped."""
    pairs = [(a, b) for a, b in zip(policy_scores, reference_scores) if a is not None and b is not None]
    if not pairs:
        return float("nan")
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)


def pick_by_judge(judge, groups: list[tuple], rule: str = "borda") -> list[int]:
    """For each (prompt, [completion, ...]) the index of the best completion by the pairwise judge's
    tournament (`rewards.aggregation`: Borda or Copeland winner; ties to the first); every pair of a
    group is judged once (with the judge's position swap), all groups in one batch."""
    from posttrain.rewards.aggregation import borda_winner, copeland_winner

    pairs = [(g, i, j) for g, (_, cs) in enumerate(groups) for i in range(len(cs)) for j in range(i + 1, len(cs))]
    judged = judge.preferences([groups[g][0] for g, _, _ in pairs], [groups[g][1][i] for g, i, _ in pairs],
                               [groups[g][1][j] for g, _, j in pairs]) if pairs else []
    matrices = [[[None] * len(cs) for _ in cs] for _, cs in groups]
    for (g, i, j), p in zip(pairs, judged):
        matrices[g][i][j], matrices[g][j][i] = p, None if p is None else 1.0 - p
    winner = copeland_winner if rule == "copeland" else borda_winner
    return [winner(m) if len(m) > 1 else 0 for m in matrices]


def sequence_kl(policy, reference, prompt_ids: list[list[int]], completion_ids: list[list[int]], batch_size: int = 32):
    """(per-sequence Σ_t [log π(y_t) − log π_ref(y_t)], tokens per sequence) for each (prompt, completion),
    both log-probs from a forward pass at temperature 1."""
    import torch

    from posttrain.models.logprobs import sequence_logprobs

    device = next(policy.parameters()).device
    kls: list[float] = []
    counts: list[int] = []
    for start in range(0, len(prompt_ids), batch_size):
        seqs = [p + c for p, c in zip(prompt_ids[start:start + batch_size], completion_ids[start:start + batch_size])]
        width = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        attention = torch.zeros(len(seqs), width, dtype=torch.long)
        target = torch.zeros(len(seqs), width, dtype=torch.long)
        for i, (p, c) in enumerate(zip(prompt_ids[start:start + batch_size], completion_ids[start:start + batch_size])):
            ids[i, :len(p) + len(c)] = torch.tensor(p + c)
            attention[i, :len(p) + len(c)] = 1  # right padding: real positions start at 0
            target[i, len(p):len(p) + len(c)] = 1
        ids, attention, target = ids.to(device), attention.to(device), target.to(device)
        with torch.no_grad():
            lp = sequence_logprobs(policy, ids, target, attention_mask=attention)
            lr = sequence_logprobs(reference, ids, target, attention_mask=attention)
        kls += (lp.sums - lr.sums).tolist()
        counts += [int(c) for c in lp.counts.tolist()]
    return kls, counts


def _flat(groups) -> list:
    return [(g.row, c) for g in groups for c in g.candidates]


def _text(prompt) -> str:
    return prompt if isinstance(prompt, str) else str(prompt[-1].get("content", "")) if prompt else ""


def run_compare(config: CompareConfig) -> dict:
    """Evaluate the reference, the policies and best-of-n; write output_dir (see the module docstring)."""
    import torch

    from posttrain.data.tokenize import tokenize_prompt
    from posttrain.generation import SamplingParams
    from posttrain.methods.best_of_n import sample_and_score
    from posttrain.models.loading import resolve_model_path
    from posttrain.rewards import RewardFunctions
    from posttrain.tasks.sources import is_task_source
    from posttrain.train.rundir import atomic_dir, check_no_final, run_dir, write_config
    from posttrain.train.scaffold import load_model_for, load_prompt_rows, load_tokenizer_for, sampler_for, sampler_on

    policies = parse_policies(config.policies)
    run = run_dir(config.output_dir)
    check_no_final(run, config.overwrite_output_dir, "a finished comparison")
    for name, path in policies.items():  # a policy that is not a model fails before the reference is sampled
        resolve_model_path(path, "policies", _policy_hint(name))
    split = config.dataset_split or ("test" if is_task_source(config.dataset) else None)
    rows = draw_rows(load_prompt_rows(config.dataset, split, "compare needs"), config.prompts, config.seed)
    with naming_option("gold_funcs"):
        gold = RewardFunctions.resolve(config.gold_funcs, config.dataset)
    judge = None
    if config.best_of_n and config.selector_judge:
        from posttrain.rewards.registry import build

        with naming_option("selector_judge"):
            judge = build(config.selector_judge)[1]
    win_judge = None
    if config.judge:
        from posttrain.methods.judge_eval import build_judge

        with naming_option("judge"):
            win_judge = build_judge(config.judge)
    selector = None
    if config.best_of_n and not judge:
        with naming_option("selector_funcs"):
            selector = RewardFunctions.resolve(config.selector_funcs, config.dataset)
    tokenizer = load_tokenizer_for(config, config.reference, "reference")
    reference = load_model_for(config, config.reference, option="reference")
    sampler = sampler_for(config, reference, tokenizer, config.reference)  # one vLLM engine takes each policy's weights in turn
    prompt_ids = [tokenize_prompt(tokenizer, row["prompt"]) for row in rows]
    k = config.samples_per_prompt

    def sample(model, rewards, n):  # the same seed for every policy: sampling noise is shared where it can be
        torch.manual_seed(config.seed)
        params = SamplingParams(**config.sampling_kwargs(seed=config.seed))
        return sample_and_score(sampler_on(sampler, model), tokenizer, rows, rewards, n, params, config.generation_batch_size)

    ref_samples = _flat(sample(reference, gold, k))
    ref_scores = [c.reward for _, c in ref_samples]
    results: list[dict] = []
    shown: list[dict] = []

    def record(name: str, samples: list, kl: float, kl_per_token: float | None) -> None:
        scores = [c.reward for _, c in samples]
        mean, stderr = mean_stderr(scores)
        results.append({"policy": name, "reward": mean, "reward_stderr": stderr, "kl": kl, "kl_per_token": kl_per_token,
                        "win_rate": win_rate(scores, ref_scores), "judge": "gold", "samples": len(samples)})
        if win_judge is not None:
            results[-1].update(_judged(win_judge, name, samples, ref_samples))
        shown.extend({"policy": name, "prompt": _text(row["prompt"]), "completion": c.text, "score": c.reward}
                     for row, c in samples[:k * config.report_prompts:k])

    record(REFERENCE_NAME, ref_samples, 0.0, 0.0)  # KL of a model against itself is 0 exactly
    for name, path in policies.items():
        model = load_model_for(config, path, option="policies", hint=_policy_hint(name))
        samples = _flat(sample(model, gold, k))
        kls, counts = sequence_kl(model, reference, [p for p in prompt_ids for _ in range(k)],
                                  [c.completion_ids for _, c in samples], config.logprob_batch_size)
        record(name, samples, sum(kls) / len(kls), sum(kls) / max(sum(counts), 1))
        del model
    for n in config.best_of_n:
        groups = sample(reference, gold if judge else selector, n * k)  # k independent groups of n per prompt
        chunks = [(g.row, g.candidates[j * n:(j + 1) * n]) for g in groups for j in range(k)]
        if judge:  # scored by gold above: the pick keeps its gold reward
            wins = pick_by_judge(judge, [(row["prompt"], [_completion(row, c) for c in cs]) for row, cs in chunks],
                                 getattr(judge, "rule", "borda"))
            record(f"best_of_{n}", [(row, cs[w]) for (row, cs), w in zip(chunks, wins)], best_of_n_kl(n), None)
            continue
        picked = []
        for row, group in chunks:
            scored = [c for c in group if c.reward is not None]
            picked.append((row, max(scored, key=lambda c: c.reward) if scored else group[0]))
        gold_scores = gold([r["prompt"] for r, _ in picked], [_completion(r, c) for r, c in picked],
                           {key: [r[key] for r, _ in picked] for key in rows[0] if key not in ("prompt", "completion")},
                           completion_ids=[c.completion_ids for _, c in picked]).total
        for (_, c), s in zip(picked, gold_scores):
            c.reward = s
        record(f"best_of_{n}", picked, best_of_n_kl(n), None)

    write_config(run, config)
    evaluations = [{key: v for key, v in r.items() if key != "samples"} for r in results]
    with atomic_dir(run.final) as tmp:
        write_jsonl(tmp / "evaluations.jsonl", evaluations)
        write_jsonl(tmp / "samples.jsonl", shown)
        for name in ("evaluations.jsonl", "samples.jsonl"):  # where `posttrain report` looks
            shutil.copyfile(tmp / name, run.root / name)
    metrics = {"step": 0, "prompts": len(rows), "samples_per_prompt": k,
               **{f"{r['policy']}/{key}": r[key] for r in results for key in ("reward", "kl", "win_rate")}}
    run.metrics.write_text(json.dumps(metrics) + "\n", encoding="utf-8")
    print(format_table(results))
    print(f"compare: wrote {run.final / 'evaluations.jsonl'}")
    return {"evaluations": evaluations, "metrics": metrics}


def _judged(judge, name: str, samples: list, ref_samples: list) -> dict:
    """The LLM judge's win rate of `samples` against the reference's, pair by pair (the reference itself: ½ exactly)."""
    from posttrain.methods.judge_eval import judged_win_rate

    if name == REFERENCE_NAME:  # identical texts judged in both orders give P = ½ on every pair
        return {"judge_win_rate": 0.5, "judge_win_rate_ci": [0.5, 0.5], "judge_lc_win_rate": 0.5}
    out = judged_win_rate(judge, [row["prompt"] for row, _ in samples], [c.text for _, c in samples],
                          [c.text for _, c in ref_samples])
    return {key: out[key] for key in ("judge_win_rate", "judge_win_rate_ci", "judge_lc_win_rate", "judge_ties")}


def _completion(row: dict, candidate):
    from posttrain.methods.best_of_n import completion_value

    return completion_value(candidate.text, isinstance(row["prompt"], list))


def format_table(results: list[dict]) -> str:
    """The printed summary: policy, gold reward ± stderr, KL (sequence), win rate vs the reference."""
    judged = any("judge_win_rate" in r for r in results)
    lines = [f"{'policy':<14} {'gold reward':>20} {'KL(seq)':>9} {'win rate':>9}" + (f" {'judge WR':>9} {'judge LC':>9}" if judged else "")]
    for r in results:
        lines.append(f"{r['policy']:<14} {r['reward']:>11.4f} ± {r['reward_stderr']:<6.4f} {r['kl']:>9.4f} {r['win_rate']:>9.3f}"
                     + (f" {r['judge_win_rate']:>9.3f} {r['judge_lc_win_rate']:>9.3f}" if judged else ""))
    return "\n".join(lines)
