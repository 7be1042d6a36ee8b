"""`posttrain eval harness=lm_eval tasks=[...]`: EleutherAI's lm-evaluation-harness on a model, its results
written as an eval report beside ours (runs/eval/MODEL__lm_eval_TASKS.json), so `posttrain report` shows
them too.

The model goes to lm-eval's own HF backend (`HFLM`, `model="hf"`) by directory, exactly as
`lm_eval --model hf --model_args pretrained=DIR` loads it: a run's `final/` (weights and tokenizer) or
`embedded`. Its built-in tasks (hellaswag, arc_easy, gsm8k, ...) read their datasets from the hub;
`include_path=DIR` adds task YAMLs of your own, e.g. one on a local jsonl (`dataset_path: json`). lm_eval
is an optional extra, imported only here: `pip install 'posttrain[lm_eval]'`.
"""

from __future__ import annotations

import math
from pathlib import Path

from posttrain.errors import ConfigError, UserError

HARNESSES = ("lm_eval",)


def choice_task_yaml(task: str, data_file, metrics: tuple[str, ...] = ("acc",)) -> str:
    """An lm-eval multiple-choice task on a local jsonl of {question, choices, label} rows (no hub),
    for an `include_path=DIR` folder: the log-likelihood of each choice after "Question: ...\nAnswer:"."""
    lines = [f"task: {task}", "dataset_path: json", "dataset_kwargs:", "  data_files:", f"    test: {data_file}",
             "test_split: test", "output_type: multiple_choice", 'doc_to_text: "Question: {{question}}\\nAnswer:"',
             'doc_to_choice: "{{choices}}"', "doc_to_target: label", "metric_list:"]
    lines += [f"  - metric: {m}" for m in metrics]
    return "\n".join(lines) + "\n"


def import_lm_eval():
    """lm_eval's evaluator and TaskManager, or the ConfigError naming the extra."""
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ConfigError("harness=lm_eval needs the lm-eval package: pip install 'posttrain[lm_eval]'") from None
    return lm_eval, TaskManager


def run_harness(cfg) -> dict:
    """lm_eval.simple_evaluate on cfg.model for cfg.tasks; the report dict `run_eval` writes: every task's
    metrics as TASK/METRIC (stderr left out), the first task's first metric as the headline `score`, and
    the first `show_samples` documents as prompt / completion / score."""
    from posttrain.models.loading import resolve_device, resolve_model_path

    lm_eval, TaskManager = import_lm_eval()
    if cfg.include_path and not Path(cfg.include_path).is_dir():
        raise ConfigError(f"include_path {cfg.include_path} is not a directory; give the folder of your task YAMLs")
    manager = _task_manager(TaskManager, cfg.include_path, cfg.tasks)
    unknown = [t for t in cfg.tasks if t not in manager.all_tasks]
    if unknown:
        raise ConfigError(f"lm_eval has no task {', '.join(unknown)}; see `lm_eval ls tasks`, or add your YAML "
                          "folder with include_path=DIR")
    path = resolve_model_path(cfg.model)
    model_args = {"pretrained": path, "dtype": cfg.dtype, "device": str(resolve_device(cfg.device)),
                  "trust_remote_code": cfg.trust_remote_code}
    try:
        out = lm_eval.simple_evaluate(model="hf", model_args=model_args, tasks=list(cfg.tasks), task_manager=manager,
                                      num_fewshot=cfg.num_fewshot, batch_size=cfg.batch_size, limit=cfg.limit or None,
                                      apply_chat_template=cfg.apply_chat_template, random_seed=cfg.seed,
                                      numpy_random_seed=cfg.seed, torch_random_seed=cfg.seed, fewshot_random_seed=cfg.seed,
                                      log_samples=cfg.show_samples > 0)
    except (OSError, ValueError) as exc:  # a dataset lm_eval cannot reach or read (HF_HUB_OFFLINE, a bad data_files)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"lm_eval on {', '.join(cfg.tasks)} failed: {type(exc).__name__}: {first}") from None
    metrics = {f"{task}/{name.split(',')[0]}": value for task, values in out["results"].items()
               for name, value in values.items()
               if "," in name and "_stderr" not in name and isinstance(value, (int, float))}
    report = {"harness": "lm_eval", "tasks": list(cfg.tasks), **metrics}
    report["score"] = next((v for k, v in metrics.items() if k.startswith(f"{cfg.tasks[0]}/")), math.nan)
    report.update({"num_fewshot": out.get("n-shot", {}), "num_documents": {t: n.get("effective") for t, n in out.get("n-samples", {}).items()},
                   "lm_eval_version": out.get("lm_eval_version"), "results": out["results"]})
    report["samples"] = _samples(out.get("samples") or {}, cfg.show_samples)
    return report


def _task_manager(TaskManager, include_path: str | None, tasks: list[str]):
    """Your folder alone when it holds every task named (indexing lm_eval's thousands of built-in YAMLs
    takes seconds to tens of seconds), else the built-ins with it."""
    if include_path:
        local = TaskManager(include_path=include_path, include_defaults=False)
        if all(t in local.all_tasks for t in tasks):
            return local
    return TaskManager(include_path=include_path)


def _samples(logged: dict, count: int) -> list[dict]:
    """The first `count` documents as eval samples: the context, the model's answer (the highest-likelihood
    choice, or the generated text) and the document's first metric."""
    samples = []
    for docs in logged.values():
        for doc in docs:
            if len(samples) >= count:
                return samples
            responses = doc.get("filtered_resps") or []
            if responses and isinstance(responses[0], (list, tuple)):  # log-likelihoods: (logp, is_greedy) per choice
                best = max(range(len(responses)), key=lambda i: responses[i][0])
                answer = doc["arguments"][best][1]
            else:
                answer = responses[0] if responses else ""
            metric = (doc.get("metrics") or [None])[0]
            samples.append({"prompt": str(doc["arguments"][0][0]), "completion": str(answer),
                            "score": doc.get(metric) if isinstance(doc.get(metric), (int, float)) else None})
    return samples
