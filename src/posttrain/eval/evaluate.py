"""The `eval` stage: generate on held-out prompts, score every sample, and report accuracy / mean
reward, pass@k and avg@k (the work is `methods.heldout.evaluate`, which training runs use too).

With num_samples=1 and temperature=0 (the defaults) the headline `score` is greedy accuracy (or
mean reward). With num_samples=k > 1, sampling at `temperature`, it also reports avg@k (mean score
over all k samples) and unbiased pass@j for j = 1, 2, 4, ..., k.

`scorer=` takes every reward spec `reward_funcs` takes (`rewards.functions.resolve_specs`), several
at once; each scorer's mean and pass rate are reported under its name, the first is the headline.
`eval.harness` runs lm-evaluation-harness tasks instead (`harness=lm_eval`).

Math benchmarks (GSM8K, MATH, MATH-500, AIME: by hub name or columns, `tasks.benchmarks`) are scored
by `math_accuracy` unless `scorer=` says otherwise. An LLM judge adds (`methods.judge_eval`):
`judge=pairwise_judge[...]` with `win_rate_vs=` a column of reference completions or a reference
model gives the AlpacaEval-style win rate (both orders judged), its 95% interval and the
length-controlled win rate; `judge=judge:template=mt_bench` gives the MT-Bench-style 1-10 rating
and the count of replies without a rating.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from posttrain.config import option
from posttrain.errors import ConfigError, UserError
from posttrain.eval.harness import HARNESSES
from posttrain.methods.heldout import evaluate, format_report
from posttrain.online.options import reject_unread
from posttrain.options import ModelOptions, SamplingBackendOptions, SamplingOptions, TopKSamplingOptions, restate


# Evaluation protocols of the seeds and of the benchmarks' users (SEED_NOTES 5.2, 6.5); the hub
# datasets are their usual names (tasks.benchmarks), override dataset= for a local copy.
PRESETS: dict[str, dict] = {
    "gsm8k": {"dataset": "openai/gsm8k", "temperature": 0.0, "max_new_tokens": 1024},  # greedy accuracy
    "math500": {"dataset": "HuggingFaceH4/MATH-500", "num_samples": 4, "temperature": 1.0, "top_p": 0.95,
                "max_new_tokens": 2048},  # ReST-EM's sampling: T = 1.0, top-p 0.95
    "aime": {"dataset": "HuggingFaceH4/aime_2024", "num_samples": 32, "temperature": 1.0, "top_p": 0.7,
             "max_new_tokens": 4096},  # DAPO's AIME24 avg@32 at T = 1.0, top-p 0.7
    "alpaca_eval": {"judge": "pairwise_judge", "win_rate_vs": "output", "temperature": 0.0,
                    "max_new_tokens": 512},  # AlpacaEval: the reference outputs are the data's 'output' column
    "mt_bench": {"judge": "judge:template=mt_bench:max_new_tokens=512", "temperature": 0.0,
                 "max_new_tokens": 512},  # MT-Bench single-answer grading, "Rating: [[k]]"
}


@dataclass
class EvalConfig(SamplingBackendOptions, TopKSamplingOptions, ModelOptions):
    dataset: str = option("task:arithmetic:test", "Prompts to evaluate: task:NAME[:split[:N]], a file / dataset with a 'prompt' column, or a math benchmark (openai/gsm8k, HuggingFaceH4/MATH-500, HuggingFaceH4/aime_2024, ... or a file in their columns).")
    dataset_split: str | None = option(None, "Split of a DatasetDict directory or hub dataset.")
    scorer: list[str] | None = option(None, "Scoring functions, the specs reward_funcs takes: task, task::SCORER, task:NAME[:SCORER], a built-in NAME[:key=value...] (math_accuracy, format, soft_overlong, repetition, code_tests, reward_model, judge, pairwise_judge, process_reward_model, milestone, step_reward, cascade), module:function or file.py:function; several at once, e.g. [math_accuracy, format]. Each gets its mean and pass rate (>= success_threshold); the first is the headline score (pass@k, avg@k). Default: the task's own; math_accuracy for a math benchmark.")
    limit: int = option(0, "Evaluate only the first N prompts (0: all).")
    num_samples: int = option(1, "Samples per prompt (k of avg@k / pass@k).")
    temperature: float = restate(SamplingOptions, "temperature", "Sampling temperature; 0 is greedy.", default=0.0)
    max_new_tokens: int = restate(SamplingOptions, "max_new_tokens", "Longest completion in tokens (0: the task's default, else 256).", default=0)
    batch_size: int = option(64, "Prompts per generation batch.")
    success_threshold: float = option(0.5, "A sample counts as correct for pass@k when its score is >= this.")
    output_file: str | None = option(None, "Where to write the JSON report (default: runs/eval/MODEL__DATASET[__kK-tT].json, named after what was measured so evaluations never overwrite one another).")
    show_samples: int = option(3, "Sample outputs printed to the console and kept in the report.")
    judge: str | None = option(None, "An LLM judge: pairwise_judge[:model=..:method=..] for a win rate against win_rate_vs (AlpacaEval-style, both orders judged, length-controlled too), or judge:template=mt_bench[:...] for an MT-Bench-style 1-10 rating.")
    win_rate_vs: str | None = option(None, "The reference a pairwise judge compares with: a column of the dataset holding reference completions (AlpacaEval's 'output'), else a model (directory, hub id, 'embedded') sampled once per prompt with the same settings.")
    harness: str | None = option(None, "lm_eval: run lm-evaluation-harness tasks (tasks=[...]) on model through its HF backend instead of generating on dataset; the results go to the same kind of report (pip install 'posttrain[lm_eval]').", choices=HARNESSES)
    tasks: list[str] = option([], "With harness=lm_eval: its task names, e.g. [arc_easy, hellaswag] (built-in tasks read their data from the hub), or your own from include_path.")
    include_path: str | None = option(None, "With harness=lm_eval: a folder of task YAMLs of your own (e.g. dataset_path: json on a local jsonl).")
    num_fewshot: int | None = option(None, "With harness=lm_eval: few-shot examples per prompt (default: each task's own).")
    apply_chat_template: bool = option(False, "With harness=lm_eval: wrap each prompt in the tokenizer's chat template (for chat-tuned models on generative tasks).")

    def unread(self) -> dict[str, str]:
        out = super().unread()
        if self.harness:  # lm-evaluation-harness samples through its own HF backend
            out["rollout_backend"] = "without harness"
        return out

    def validate(self) -> None:
        reject_unread(self)
        if self.num_samples < 1 or self.batch_size < 1:
            raise UserError("num_samples and batch_size must be >= 1")
        kind = str(self.judge).split(":")[0] if self.judge else None
        if kind not in (None, "judge", "pairwise_judge"):
            raise ConfigError(f"judge must be pairwise_judge[:key=value...] (a win rate against win_rate_vs) or "
                              f"judge[:template=mt_bench...] (a 1-10 rating), got {self.judge!r}")
        if kind == "pairwise_judge" and not self.win_rate_vs:
            raise ConfigError("judge=pairwise_judge needs win_rate_vs=COLUMN (reference completions in the data) or =MODEL")
        if self.win_rate_vs and kind != "pairwise_judge":
            raise ConfigError("win_rate_vs is read only with judge=pairwise_judge[...]; set the judge or drop win_rate_vs")
        if self.harness:
            self._check_harness()
        elif self.tasks or self.include_path or self.num_fewshot is not None or self.apply_chat_template:
            raise ConfigError("tasks, include_path, num_fewshot and apply_chat_template are read only with harness=lm_eval; "
                              "set harness=lm_eval or drop them")
        if self.num_samples > 1 and self.temperature == 0:
            raise UserError("num_samples > 1 with temperature=0 gives k identical greedy samples; set temperature (e.g. 1.0)")

    def _check_harness(self) -> None:
        if not self.tasks:
            raise ConfigError("harness=lm_eval needs tasks=[NAME, ...], e.g. tasks=[arc_easy] (or your own task with include_path=DIR)")
        ours = [k for k, v in (("scorer", self.scorer), ("judge", self.judge), ("win_rate_vs", self.win_rate_vs)) if v]
        if ours or self.num_samples > 1:
            raise ConfigError(f"{', '.join(ours) or 'num_samples'} is read only without harness: lm_eval's tasks "
                              "score themselves; drop it or drop harness")
        if self.num_fewshot is not None and self.num_fewshot < 0:
            raise ConfigError(f"num_fewshot must be >= 0, got {self.num_fewshot}")


def _default_max_new_tokens(cfg: EvalConfig) -> int:
    if cfg.max_new_tokens > 0:
        return cfg.max_new_tokens
    from posttrain.tasks.sources import is_task_source, parse_task_source

    named = next((spec.split(":")[1] for spec in cfg.scorer or [] if spec.startswith("task:") and spec.split(":")[1]), None)
    if named or is_task_source(cfg.dataset):
        from posttrain.tasks import get_task

        return get_task(named or parse_task_source(cfg.dataset)[0]).default_max_new_tokens
    return 256


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_") or "x"


def default_output_file(cfg: EvalConfig) -> str:
    """runs/eval/MODEL__DATASET[__kK-tT].json: one file per thing measured, outside the model's own
    directory; sampled evaluations (k > 1) name their k and temperature."""
    name = f"{_slug(cfg.model)}__{_slug(cfg.dataset) if not cfg.harness else _slug(cfg.harness + '_' + '+'.join(cfg.tasks))}"
    if cfg.num_samples > 1:
        name += f"__k{cfg.num_samples}-t{cfg.temperature:g}"
    return f"runs/eval/{name}.json"


def check_output_file(path: Path) -> None:
    """Before any work: a ConfigError unless the report can be written at `path`."""
    from posttrain.train.rundir import check_creatable_dir

    if path.is_dir():
        raise ConfigError(f"output_file {path} is a directory; give a file name, e.g. {path / 'eval.json'}")
    check_creatable_dir(path.parent, f"output_file {path}: its folder")


def _judge_scorer(cfg: EvalConfig, rows: list[dict]) -> dict:
    """{"judge_win_rate": JudgeWinRate} or {"judge_rating": JudgeRating} for cfg.judge."""
    from posttrain.errors import naming_option
    from posttrain.methods.judge_eval import REFERENCE_COLUMN, JudgeRating, JudgeWinRate, build_judge

    with naming_option("judge"):
        judge = build_judge(cfg.judge)
    if cfg.win_rate_vs:
        return {"judge_win_rate": JudgeWinRate(judge, REFERENCE_COLUMN)}
    return {"judge_rating": JudgeRating(judge)}


def _with_reference(cfg: EvalConfig, rows: list[dict]) -> list[dict]:
    """win_rate_vs names no column, so it is a model: its completion of each prompt (with its own
    tokenizer), sampled with the policy's settings."""
    from posttrain.generation import SamplingParams
    from posttrain.methods.judge_eval import add_reference_completions
    from posttrain.train.scaffold import load_model_for, load_tokenizer_for

    tokenizer = load_tokenizer_for(cfg, cfg.win_rate_vs, "win_rate_vs")
    reference = load_model_for(cfg, cfg.win_rate_vs, option="win_rate_vs")
    params = SamplingParams(max_new_tokens=_default_max_new_tokens(cfg), temperature=cfg.temperature, top_p=cfg.top_p,
                            top_k=cfg.top_k, seed=cfg.seed)
    rows = add_reference_completions(reference, tokenizer, rows, params, cfg.batch_size)
    del reference
    return rows


def run_eval(cfg: EvalConfig) -> dict:
    from posttrain.methods.scoring import resolve_scorers
    from posttrain.tasks.sources import load_rows
    from posttrain.train.scaffold import load_model_for, load_tokenizer_for, sampler_for

    torch.manual_seed(cfg.seed)
    out_path = Path(cfg.output_file or default_output_file(cfg))
    check_output_file(out_path)
    if cfg.harness:
        from posttrain.eval.harness import run_harness

        measured = f"lm_eval {', '.join(cfg.tasks)}"  # the report's `dataset`, as `posttrain report` lists it
        return _write(cfg, {"model": cfg.model, "dataset": measured, **run_harness(cfg)}, out_path, measured)
    rows = load_rows(cfg.dataset, cfg.dataset_split)
    if cfg.limit:
        rows = rows[:cfg.limit]
    scorers = resolve_scorers(cfg.scorer, cfg.dataset, rows, required=cfg.judge is None)
    judged = _judge_scorer(cfg, rows) if cfg.judge else None
    if cfg.win_rate_vs:  # the reference completions go to one column the judge reads (`completion` is not passed on)
        from posttrain.methods.judge_eval import REFERENCE_COLUMN

        rows = ([{**r, REFERENCE_COLUMN: r[cfg.win_rate_vs]} for r in rows] if cfg.win_rate_vs in rows[0]
                else _with_reference(cfg, rows))
    tokenizer = load_tokenizer_for(cfg)
    model = sampler_for(cfg, load_model_for(cfg), tokenizer)
    report = evaluate(model, tokenizer, rows, {**scorers, **judged} if judged else scorers, num_samples=cfg.num_samples,
                      temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                      max_new_tokens=_default_max_new_tokens(cfg), batch_size=cfg.batch_size,
                      success_threshold=cfg.success_threshold, seed=cfg.seed, show_samples=cfg.show_samples,
                      headline=next(iter(scorers), None))
    report = {"model": cfg.model, "dataset": cfg.dataset, **report}
    if judged:  # the win rate's interval and length control, or the rating's invalid count
        report = {k: v for k, v in report.items() if k not in {f"{name}_pass_rate" for name in judged}}
        report.update(next(iter(judged.values())).summary())
        report["judge"] = cfg.judge
    return _write(cfg, report, out_path, cfg.dataset)


def _write(cfg: EvalConfig, report: dict, out_path: Path, measured: str) -> dict:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"eval {cfg.model} on {measured}:\n{format_report(report)}\nwrote {out_path}")
    return report
