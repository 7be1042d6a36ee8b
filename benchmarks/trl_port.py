"""A TRL GRPO script and its posttrain port, run side by side: which of the metric names TRL logs does
posttrain's metrics.jsonl carry, and what did the same reward function see (trainer_state.global_step)?

    python benchmarks/trl_port.py [--steps 2]

Both sides: the embedded model, examples/prompts.jsonl, 4 prompts x 4 completions per step, 16
new tokens, one optimizer step per generation round, the same TRL-style reward function (TRL's
reward_len, plus trainer_state and log_metric). Offline; CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEEN: dict[str, list[int]] = {"trl": [], "posttrain": []}
SIDE = ["trl"]


def reward_len(completions, trainer_state, log_metric, **kwargs):
    SEEN[SIDE[0]].append(trainer_state.global_step)
    log_metric("seen_global_step", trainer_state.global_step)
    return [-abs(20 - len(c[0]["content"])) / 20 for c in completions]


def run_trl(model: str, out: str, steps: int) -> list[dict]:
    from datasets import load_dataset
    from trl import GRPOConfig, GRPOTrainer

    dataset = load_dataset("json", data_files=str(REPO / "examples" / "prompts.jsonl"), split="train")
    args = GRPOConfig(output_dir=out, per_device_train_batch_size=16, num_generations=4, max_completion_length=16,
                      learning_rate=1e-5, logging_steps=1, max_steps=steps, beta=0.04, report_to=[], use_cpu=True,
                      save_strategy="no", seed=0)
    trainer = GRPOTrainer(model=model, reward_funcs=reward_len, args=args, train_dataset=dataset)
    trainer.train()
    return [r for r in trainer.state.log_history if "reward" in r]


def run_posttrain(model: str, out: str, steps: int) -> list[dict]:
    import posttrain

    SIDE[0] = "posttrain"
    posttrain.grpo(model_name_or_path=model, dataset_name=str(REPO / "examples" / "prompts.jsonl"), reward_funcs=[reward_len],
                   output_dir=out, per_device_train_batch_size=16, num_generations=4, max_completion_length=16,
                   learning_rate=1e-5, logging_steps=1, max_steps=steps, beta=0.04, prompts_per_step=4, device="cpu")
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2)
    steps = parser.parse_args().steps
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from posttrain.embedded import EMBEDDED_MODEL_DIR as MODEL_DIR

    with tempfile.TemporaryDirectory() as tmp:
        trl_records = run_trl(str(MODEL_DIR), f"{tmp}/trl", steps)
        ours = run_posttrain(str(MODEL_DIR), f"{tmp}/posttrain", steps)
    trl_keys = sorted({k for r in trl_records for k in r} - {"epoch", "step", "learning_rate", "grad_norm", "loss"})
    ours_keys = {k for r in ours for k in r}
    print(f"TRL logged {len(trl_keys)} metric names; posttrain's metrics.jsonl has "
          f"{sum(k in ours_keys for k in trl_keys)} of them")
    for key in trl_keys:
        print(f"  {'yes' if key in ours_keys else 'NO ':<4} {key}")
    print(f"trainer_state.global_step at each reward call: TRL {SEEN['trl']}, posttrain {SEEN['posttrain']}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
