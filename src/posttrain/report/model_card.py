"""final/README.md, the model card of every training stage, and the push of final/ to the Hub.

Every surface (CLI, Python API, pipelines) runs a stage through `run_stage`: with push_to_hub=true
the repo is created first (a refused token fails before training, not after it), the stage runs, its
`final/` gets a model card, and final/ goes to the Hub as one commit. The card says what the stage
did and which paper it implements, the base model and data, the resolved config, the last logged
metrics and how to load the model; a pushed card also shows the report's training curves
(final/figures/*.png, drawn only when pushing: matplotlib costs a second or two per run).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from posttrain import hub
from posttrain.config import to_yaml

REPO_URL = "https://github.com/posttrain/posttrain"
# The method each stage implements and where it comes from (arXiv ids).
METHODS = {
    "sft": ("supervised fine-tuning (token-mean cross-entropy on the completions)", None),
    "distill": ("knowledge distillation from a teacher, off- or on-policy (GKD)", "Agarwal et al. 2024, On-Policy Distillation of Language Models (arXiv:2306.13649)"),
    "rm": ("a Bradley-Terry reward model trained on preferences", "Ouyang et al. 2022, Training language models to follow instructions with human feedback (arXiv:2203.02155)"),
    "prm": ("a process reward model trained on stepwise labels", "Lightman et al. 2023, Let's Verify Step by Step (arXiv:2305.20050)"),
    "dpo": ("direct preference optimization (or a loss of its family, see loss_type)", "Rafailov et al. 2023, Direct Preference Optimization (arXiv:2305.18290)"),
    "kto": ("Kahneman-Tversky optimization on unpaired feedback", "Ethayarajh et al. 2024, KTO: Model Alignment as Prospect Theoretic Optimization (arXiv:2402.01306)"),
    "grpo": ("online RL with group-relative advantages (GRPO and its family)", "Shao et al. 2024, DeepSeekMath (arXiv:2402.03300)"),
    "rloo": ("online RL with the leave-one-out baseline (RLOO)", "Ahmadian et al. 2024, Back to Basics: Revisiting REINFORCE Style Optimization (arXiv:2402.14740)"),
    "ppo": ("RLHF with PPO: a value head, a frozen reference and the KL penalty in the reward", "Ouyang et al. 2022 (arXiv:2203.02155); Schulman et al. 2017, PPO (arXiv:1707.06347)"),
    "online_dpo": ("online DPO: pairs sampled from the current policy, ranked by a reward", "Guo et al. 2024, Direct Language Model Alignment from Online AI Feedback (arXiv:2402.04792)"),
    "rejection": ("rejection-sampling fine-tuning (expert iteration / RFT, ReST-EM)", "Singh et al. 2023, Beyond Human Data: Scaling Self-Training (arXiv:2312.06585)"),
    "constitution": ("Constitutional AI, supervised stage: self-critique and revision, then SFT", "Bai et al. 2022, Constitutional AI (arXiv:2212.08073)"),
}
# final/'s architecture -> (pipeline tag, transformers class that loads it)
HEADS = {
    "ForSequenceClassification": ("text-classification", "AutoModelForSequenceClassification"),
    "ForTokenClassification": ("token-classification", "AutoModelForTokenClassification"),
}
CAUSAL_LM = ("text-generation", "AutoModelForCausalLM")
DATA_FILES = (".jsonl", ".json", ".parquet", ".csv")


def _rank0() -> bool:
    # RANK, not the process group: a stage leaves its group before returning
    return os.environ.get("RANK", "0") == "0"


def run_stage(spec, config):
    """`spec.runner(config)`, then (rank 0, training stages) final/README.md and, with push_to_hub,
    the push; returns what the runner returns. With ray=true ray_learners=N all of that runs on N
    learner processes that Ray places (train/ray_launch.py), and learner 0's result is returned."""
    from posttrain.train.ray_launch import wants_ray_learners

    if wants_ray_learners(config):
        from functools import partial

        from posttrain.train.ray_launch import run_on_learners

        return run_on_learners(config, partial(run_stage, spec, config))
    pushing = bool(getattr(config, "push_to_hub", False)) and _rank0()
    repo_id = hub.create_repo(config.hub_model_id, config.hub_private_repo) if pushing else None
    result = spec.runner(config)
    publish(spec.name, config, result, repo_id)
    return result


def publish(stage: str, config, result, repo_id: str | None = None) -> None:
    """On rank 0, after `stage` ran with `config` (and returned `result`): final/README.md, then the
    push to `repo_id` (the repo `run_stage` created) when there is one."""
    final = Path(getattr(config, "output_dir", "")) / "final"
    if not (_rank0() and hasattr(config, "push_to_hub") and final.is_dir()):
        return
    metrics = last_metrics(final.parent, result)
    figures = draw_figures(final, stage) if repo_id else []
    card = model_card(stage, config, metrics, repo_id or str(final.resolve()), figures, pushed=bool(repo_id))
    (final / "README.md").write_text(card, encoding="utf-8")
    if repo_id:
        url = hub.push_folder(final, repo_id, f"posttrain {stage}: {final.parent.name}")
        print(f"posttrain: pushed {final} to {url}", flush=True)


def last_metrics(run_root: Path, result) -> dict:
    """The last record of run_root/metrics.jsonl, else the runner's result (rejection writes none)."""
    from posttrain.report.collect import _read_jsonl  # skips a last line cut short by a killed run

    path = run_root / "metrics.jsonl"
    records = _read_jsonl(path) if path.is_file() else []
    record = records[-1] if records else result
    return {k: v for k, v in (record or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def draw_figures(final: Path, stage: str) -> list[tuple[str, str]]:
    """The report's training-curve panels as final/figures/*.png; [(title, relative path)]. None
    without matplotlib (the card then says how to draw them)."""
    if not (final.parent / "metrics.jsonl").is_file():
        return []
    try:
        from posttrain.report.collect import Run, _read_jsonl
        from posttrain.report.plots import curve_panels

        panels = curve_panels(Run(final.parent.name, stage, final.parent, _read_jsonl(final.parent / "metrics.jsonl")))
    except ImportError:
        return []
    out = []
    for title, png in panels:
        name = "figures/" + "".join(c if c.isalnum() else "_" for c in title.lower()).strip("_") + ".png"
        (final / name).parent.mkdir(exist_ok=True)
        (final / name).write_bytes(png)
        out.append((title, name))
    return out


def _hub_name(source: str | None) -> str | None:
    """`source` when it names something on the Hub (not embedded, a task, a local path or a data file)."""
    if not source or source == "embedded" or source.startswith("task:") or source.endswith(DATA_FILES) or Path(source).exists():
        return None
    return source


def architecture_of(final: Path) -> tuple[str, bool]:
    """(final/'s architecture, whether final/ holds a LoRA adapter: merge_lora=false)."""
    if (final / "config.json").is_file():
        return (json.loads((final / "config.json").read_text(encoding="utf-8")).get("architectures") or [""])[0], False
    if (final / "adapter_config.json").is_file():  # the adapter's task type names the head
        task = json.loads((final / "adapter_config.json").read_text(encoding="utf-8")).get("task_type")
        return {"SEQ_CLS": "ForSequenceClassification", "TOKEN_CLS": "ForTokenClassification"}.get(task, "ForCausalLM"), True
    return "", False


def front_matter(stage: str, config, architecture: str) -> dict:
    tag, _ = next((v for k, v in HEADS.items() if architecture.endswith(k)), CAUSAL_LM)
    tags = ["posttrain", stage]
    for key in ("loss_type", "advantage"):  # the variant: dpo's losses (ipo, simpo, ...), grpo's estimator and aggregation
        value = getattr(config, key, None)
        tags += [str(v) for v in (value if isinstance(value, list) else [value] if value else [])]
    meta = {"library_name": "posttrain", "pipeline_tag": tag, "tags": list(dict.fromkeys(tags + ["transformers"]))}
    if _hub_name(config.model):
        meta["base_model"] = config.model
    if _hub_name(config.dataset):
        meta["datasets"] = [config.dataset]
    if config.model == "embedded":
        meta["license"] = "apache-2.0"  # the embedded model ships with posttrain, under its license
    return meta


def model_card(stage: str, config, metrics: dict, load_from: str, figures: list[tuple[str, str]], pushed: bool = False) -> str:
    """The card's markdown: YAML front matter, then method, base model, data, config, metrics, loading."""
    final = Path(config.output_dir) / "final"
    architecture, adapter = architecture_of(final)
    meta = front_matter(stage, config, architecture)
    method, paper = METHODS.get(stage, (stage, None))
    _, auto_class = next((v for k, v in HEADS.items() if architecture.endswith(k)), CAUSAL_LM)
    base = "the tiny model embedded in posttrain" if config.model == "embedded" else f"`{config.model}`"
    data = f"the embedded task `{config.dataset[5:]}`" if config.dataset.startswith("task:") else f"`{config.dataset}`"
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
             f"# {load_from.rsplit('/', 1)[-1] if pushed else final.parent.name}", "",
             f"Trained with [posttrain]({REPO_URL}), stage `{stage}`: {method}."]
    if paper:
        lines += ["", f"Method: {paper}."]
    kind = f"a LoRA adapter (peft) on the base model, {auto_class.removeprefix('AutoModel')}" if adapter else f"`{architecture or 'unknown'}`"
    loader = auto_class.replace("AutoModel", "AutoPeftModel") if adapter else auto_class
    lines += ["", f"- Base model: {base}", f"- Training data: {data}", f"- Architecture: {kind}", "",
              "## How to load", "", "```python", f"from {'peft' if adapter else 'transformers'} import {loader}",
              "from transformers import AutoTokenizer", "",
              f'model = {loader}.from_pretrained("{load_from}")', f'tokenizer = AutoTokenizer.from_pretrained("{load_from}")', "```", ""]
    if auto_class == CAUSAL_LM[1]:
        lines += ["With posttrain (evaluate it, or train it further):", "", "```bash",
                  f"posttrain eval model={load_from}", f"posttrain dpo model={load_from} dataset=...", "```", ""]
    else:
        lines += ["As a reward in posttrain: `reward_funcs=[reward_model:path=" + load_from + "]`.", ""]
    if metrics:
        lines += ["## Final metrics", "", f"Last record of metrics.jsonl (step {metrics.get('step', '?')}):", "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {value:.6g} |" for key, value in metrics.items() if key != "step"]
        lines += [""]
    lines += ["## Training curves", ""]
    if figures:
        lines += [f"![{title}]({path})" for title, path in figures] + [""]
    else:
        lines += [f"`posttrain report {config.output_dir}` draws them (report.html).", ""]
    lines += ["## Configuration", "", "The resolved config (`posttrain " + stage + " --config config.yaml` reruns it):", "",
              "```yaml", to_yaml(config).strip(), "```", ""]
    return "\n".join(lines)
