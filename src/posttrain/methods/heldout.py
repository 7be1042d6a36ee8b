"""Generate on held-out prompts, score every sample, and summarize: accuracy / mean reward, pass@k, avg@k.

The `eval` stage runs it on a saved model; training runs (GRPO's eval_steps, rejection sampling's
greedy evaluation) run it on the model they train.
"""

from __future__ import annotations

import math
import time

from posttrain.data.values import completion_value
from posttrain.errors import UserError


def evaluate(model, tokenizer, rows: list[dict], scorers: dict, *, num_samples=1, temperature=0.0, top_p=1.0, top_k=0,
             max_new_tokens=128, batch_size=64, success_threshold=0.5, seed=0, show_samples=3,
             headline: str | None = "") -> dict:
    """Generate `num_samples` completions per row, score them with every scorer, return the report dict:
    each scorer's mean under its name and its pass rate (share of scored samples >= success_threshold)
    as NAME_pass_rate; `score`, avg@k and pass@k are of the `headline` scorer ("": the first; None: none
    of them, e.g. a judge's rating). Scorers are called as reward functions are (`RewardFunctions`: by
    keyword, with the dataset's columns and the sampled `completion_ids`); None means "does not apply"
    and leaves the sample out of that scorer's mean."""
    from posttrain.data.tokenize import tokenize_prompt
    from posttrain.generation import SamplingParams
    from posttrain.methods.metrics import summarize_scores
    from posttrain.rewards.functions import RewardFunctions
    from posttrain.rollout import sample_with, warn_if_plain_prompts_unanswered

    if not rows:
        raise UserError("nothing to evaluate: the dataset has no rows")
    if "prompt" not in rows[0]:
        raise UserError(f"eval needs a 'prompt' column; found {', '.join(rows[0])}")
    scoring = RewardFunctions(scorers, label="scoring")
    scores = {name: [] for name in scorers}
    headline = next(iter(scores), None) if headline == "" else headline
    lengths, truncated, samples = [], [], []
    started = time.perf_counter()
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        prompt_ids = [tokenize_prompt(tokenizer, r["prompt"]) for r in chunk]
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                                n=num_samples, seed=seed + start)
        out = sample_with(model, tokenizer, prompt_ids, params)
        warn_if_plain_prompts_unanswered(tokenizer, [r["prompt"] for r in chunk], out.texts)
        conversational = isinstance(chunk[0]["prompt"], list)
        prompts = [chunk[i]["prompt"] for i in out.prompt_index]
        completions = [completion_value(t, conversational) for t in out.texts]
        columns = {k: [chunk[i][k] for i in out.prompt_index] for k in chunk[0] if k not in ("prompt", "completion")}
        for name, values in scoring(prompts, completions, columns, out.token_ids).per_function.items():
            scores[name] += [math.nan if v is None else v for v in values]
        lengths += [len(t) for t in out.token_ids]
        truncated += out.truncated
        for j, text in enumerate(out.texts):
            if len(samples) < show_samples:
                prompt = chunk[out.prompt_index[j]]["prompt"]
                samples.append({"prompt": prompt[-1]["content"] if conversational else prompt, "completion": text,
                                "score": scores[headline][-len(out.texts) + j] if headline else None})
    elapsed = time.perf_counter() - started
    report = {"num_prompts": len(rows), "num_samples": num_samples, "temperature": temperature}
    for name, values in scores.items():
        finite = [v for v in values if not math.isnan(v)]
        report[name] = sum(finite) / max(len(finite), 1)
        report[f"{name}_pass_rate"] = sum(v >= success_threshold for v in finite) / max(len(finite), 1)
    if headline is not None:
        report["score"] = report[headline]
        per_prompt = [scores[headline][i:i + num_samples] for i in range(0, len(scores[headline]), num_samples)]
        report.update(summarize_scores(per_prompt, success_threshold))
    report["mean_length"] = sum(lengths) / len(lengths)
    report["truncation_rate"] = sum(truncated) / len(truncated)
    report["generation_tokens_per_s"] = sum(lengths) / elapsed
    report["samples"] = samples
    return report


def format_report(report: dict) -> str:
    keys = [k for k in report if k != "samples" and not isinstance(report[k], dict)]  # lm_eval's raw results stay in the file
    lines = ["  " + ", ".join(f"{k}={report[k]:.4g}" if isinstance(report[k], float) else f"{k}={report[k]}" for k in keys)]
    for s in report.get("samples", []):
        lines.append(f"  --- score={s['score']}\n  prompt: {s['prompt']!r}\n  completion: {s['completion']!r}")
    return "\n".join(lines)
