"""The main job on the embedded default: evaluate the embedded model on held-out arithmetic, run SFT
on the task's train split, evaluate the fine-tuned model, and print before -> after.

Later stages (reward model, DPO, GRPO, PPO) join this pipeline as they land.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from posttrain.config import build_config, option


@dataclass
class QuickstartConfig:
    output_dir: str = option("runs/quickstart", "Where the SFT run and the reports go.")
    task: str = option("arithmetic", "Embedded task to train and evaluate on.")
    max_steps: int = option(150, "SFT optimizer steps.")
    learning_rate: float = option(5e-4, "SFT peak learning rate.")
    batch_size: int = option(8, "SFT batch size, in packed rows of up to 512 tokens (about 5 examples each).")
    eval_limit: int = option(200, "Held-out prompts evaluated before and after.")
    seed: int = option(0, "Random seed.")
    overwrite_output_dir: bool = option(True, "Replace a previous quickstart run in output_dir.")

    def validate(self) -> None:
        from posttrain.tasks import get_task

        get_task(self.task)  # an unknown task fails here, not after the first evaluation


def run_quickstart(cfg: QuickstartConfig) -> dict:
    from posttrain.algorithms.sft import SFTConfig, run_sft
    from posttrain.eval.evaluate import EvalConfig, run_eval
    from posttrain.report.model_card import publish

    from posttrain.train.rundir import check_creatable_dir

    out = Path(cfg.output_dir)
    check_creatable_dir(out, "output_dir")
    held_out = f"task:{cfg.task}:test:{cfg.eval_limit}"

    def evaluate(model: str, name: str) -> dict:
        eval_cfg = build_config(EvalConfig, {"model": model, "dataset": held_out, "seed": cfg.seed,
                                             "output_file": str(out / f"eval_{name}.json")})
        return run_eval(eval_cfg)

    print(f"[1/3] evaluating the embedded model on {held_out}")
    before = evaluate("embedded", "before")
    print(f"[2/3] SFT on task:{cfg.task} for {cfg.max_steps} steps")
    sft_cfg = build_config(SFTConfig, {
        "model": "embedded", "dataset": f"task:{cfg.task}", "eval_dataset": held_out,
        "output_dir": str(out / "sft"), "max_steps": cfg.max_steps, "learning_rate": cfg.learning_rate,
        "batch_size": cfg.batch_size, "packing": True, "warmup_ratio": 0.05, "seed": cfg.seed, "logging_steps": 20,
        "overwrite_output_dir": cfg.overwrite_output_dir,
    })
    publish("sft", sft_cfg, run_sft(sft_cfg))  # sft/final/README.md, the model card
    print("[3/3] evaluating the fine-tuned model")
    after = evaluate(str(out / "sft" / "final"), "after")
    summary = {"task": cfg.task, "score_before": before["score"], "score_after": after["score"],
               "format_before": before.get("format"), "format_after": after.get("format")}
    (out / "quickstart.json").write_text(json.dumps(summary, indent=2))
    print(f"\nheld-out {cfg.task} accuracy: {before['score']:.1%} -> {after['score']:.1%} "
          f"(format {before.get('format', 0):.1%} -> {after.get('format', 0):.1%})")
    return summary
