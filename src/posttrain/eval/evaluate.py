"""Generate on held-out prompts, score every sample, and report accuracy / mean reward, pass@k and avg@k.

With num_samples=1 and temperature=0 (the defaults) the headline `score` is greedy accuracy (or
mean reward). With num_samples=k > 1, sampling at `temperature`, it also reports avg@k (mean score
over all k samples) and unbiased pass@j for j = 1, 2, 4, ..., k.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from posttrain.config import option
from posttrain.data.values import completion_value
from posttrain.errors import UserError
from posttrain.options import ModelOptions, SamplingOptions, TopKSamplingOptions, restate


@dataclass
class EvalConfig(TopKSamplingOptions, ModelOptions):
    dataset: str = option("task:arithmetic:test", "Prompts to evaluate: task:NAME[:split[:N]] or a file / dataset with a 'prompt' column.")
    dataset_split: str | None = option(None, "Split of a DatasetDict directory or hub dataset.")
    scorer: str | None = option(None, "Scoring function: task:NAME, module:function or file.py:function, called as f(prompts, completions, **columns). Default: the task's own.")
    limit: int = option(0, "Evaluate only the first N prompts (0: all).")
    num_samples: int = option(1, "Samples per prompt (k of avg@k / pass@k).")
    temperature: float = restate(SamplingOptions, "temperature", "Sampling temperature; 0 is greedy.", default=0.0)
    max_new_tokens: int = restate(SamplingOptions, "max_new_tokens", "Longest completion in tokens (0: the task's default, else 256).", default=0)
    batch_size: int = option(64, "Prompts per generation batch.")
    success_threshold: float = option(0.5, "A sample counts as correct for pass@k when its score is >= this.")
    output_file: str | None = option(None, "Where to write the JSON report (default: eval.json next to the model, or ./eval.json).")
    show_samples: int = option(3, "Sample outputs printed to the console and kept in the report.")

    def validate(self) -> None:
        if self.num_samples < 1 or self.batch_size < 1:
            raise UserError("num_samples and batch_size must be >= 1")
        if self.num_samples > 1 and self.temperature == 0:
            raise UserError("num_samples > 1 with temperature=0 gives k identical greedy samples; set temperature (e.g. 1.0)")


def _default_max_new_tokens(cfg: EvalConfig) -> int:
    if cfg.max_new_tokens > 0:
        return cfg.max_new_tokens
    from posttrain.data.sources import is_task_source, parse_task_source

    if cfg.scorer and cfg.scorer.startswith("task:") or is_task_source(cfg.dataset):
        from posttrain.tasks import get_task

        name = cfg.scorer[5:] if cfg.scorer and cfg.scorer.startswith("task:") else parse_task_source(cfg.dataset)[0]
        return get_task(name).default_max_new_tokens
    return 256


def evaluate(model, tokenizer, rows: list[dict], scorers: dict, *, num_samples=1, temperature=0.0, top_p=1.0, top_k=0,
             max_new_tokens=128, batch_size=64, success_threshold=0.5, seed=0, show_samples=3) -> dict:
    """Generate `num_samples` completions per row, score them with every scorer, return the report dict."""
    from posttrain.data.tokenize import tokenize_prompt
    from posttrain.eval.metrics import summarize_scores
    from posttrain.eval.scoring import call_scorer
    from posttrain.generation import SamplingParams, generate

    if not rows:
        raise UserError("nothing to evaluate: the dataset has no rows")
    if "prompt" not in rows[0]:
        raise UserError(f"eval needs a 'prompt' column; found {', '.join(rows[0])}")
    scores = {name: [] for name in scorers}
    lengths, truncated, samples = [], [], []
    started = time.perf_counter()
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        prompt_ids = [tokenize_prompt(tokenizer, r["prompt"]) for r in chunk]
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                                n=num_samples, seed=seed + start)
        out = generate(model, tokenizer, prompt_ids, params)
        conversational = isinstance(chunk[0]["prompt"], list)
        prompts = [chunk[i]["prompt"] for i in out.prompt_index]
        completions = [completion_value(t, conversational) for t in out.texts]
        columns = {k: [chunk[i][k] for i in out.prompt_index] for k in chunk[0] if k not in ("prompt", "completion")}
        for name, fn in scorers.items():
            scores[name] += call_scorer(name, fn, prompts, completions, columns)
        lengths += [len(t) for t in out.token_ids]
        truncated += out.truncated
        for j, text in enumerate(out.texts):
            if len(samples) < show_samples:
                prompt = chunk[out.prompt_index[j]]["prompt"]
                samples.append({"prompt": prompt[-1]["content"] if conversational else prompt, "completion": text,
                                "score": scores["score"][-len(out.texts) + j] if "score" in scores else None})
    elapsed = time.perf_counter() - started
    report = {"num_prompts": len(rows), "num_samples": num_samples, "temperature": temperature}
    for name, values in scores.items():
        finite = [v for v in values if not math.isnan(v)]
        report[name] = sum(finite) / max(len(finite), 1)
    headline = next(iter(scores))
    per_prompt = [scores[headline][i:i + num_samples] for i in range(0, len(scores[headline]), num_samples)]
    report.update(summarize_scores(per_prompt, success_threshold))
    report["mean_length"] = sum(lengths) / len(lengths)
    report["truncation_rate"] = sum(truncated) / len(truncated)
    report["generation_tokens_per_s"] = sum(lengths) / elapsed
    report["samples"] = samples
    return report


def format_report(report: dict) -> str:
    keys = [k for k in report if k not in ("samples",)]
    lines = ["  " + ", ".join(f"{k}={report[k]:.4g}" if isinstance(report[k], float) else f"{k}={report[k]}" for k in keys)]
    for s in report.get("samples", []):
        lines.append(f"  --- score={s['score']}\n  prompt: {s['prompt']!r}\n  completion: {s['completion']!r}")
    return "\n".join(lines)


def run_eval(cfg: EvalConfig) -> dict:
    from posttrain.data.sources import load_rows
    from posttrain.eval.scoring import resolve_scorers
    from posttrain.train.scaffold import load_model_for, load_tokenizer_for

    torch.manual_seed(cfg.seed)
    scorers = resolve_scorers(cfg.scorer, cfg.dataset)
    rows = load_rows(cfg.dataset, cfg.dataset_split)
    if cfg.limit:
        rows = rows[:cfg.limit]
    tokenizer = load_tokenizer_for(cfg)
    model = load_model_for(cfg)
    report = evaluate(model, tokenizer, rows, scorers, num_samples=cfg.num_samples, temperature=cfg.temperature,
                      top_p=cfg.top_p, top_k=cfg.top_k, max_new_tokens=_default_max_new_tokens(cfg),
                      batch_size=cfg.batch_size, success_threshold=cfg.success_threshold, seed=cfg.seed,
                      show_samples=cfg.show_samples)
    report = {"model": cfg.model, "dataset": cfg.dataset, **report}
    out_path = Path(cfg.output_file) if cfg.output_file else (
        Path(cfg.model) / "eval.json" if Path(cfg.model).is_dir() else Path("eval.json"))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"eval {cfg.model} on {cfg.dataset}:\n{format_report(report)}\nwrote {out_path}")
    return report
