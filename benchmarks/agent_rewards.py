"""Learning results for agent rewards on the embedded model (CPU, about two minutes):

    python benchmarks/agent_rewards.py

1. A step reward model R_φ(o_t, a_t, o_{t+1}) trained by `posttrain rm` on ranked trajectory pairs
   (trajectory-level Bradley-Terry): form-filling episodes of 1-3 steps; the rejected trajectory has 1-2
   steps whose action the page rejects ("Error: ..."), at the same length. Held-out pairs use field values
   never seen in training. Reported: held-out pair accuracy and mean margin Σ R_φ(τ_w) − Σ R_φ(τ_l), for the
   initial model (the same seed, learning rate 0) and after training.
2. Agent DPO (`posttrain dpo` on prompt / corrected / erroneous step rows): the erroneous step types the
   agent's context forbids; held-out rows use unseen names. Reported: held-out rewards/accuracies and margins.
Measured output is quoted in docs/agent_rewards.md.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path

from posttrain.cli import main

TRAIN_VALUES = ["Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal"]
HELD_VALUES = ["Ivy", "Jo", "Kai", "Lu", "Max", "Ned"]
FIELDS = ["name", "email", "city", "phone"]


def step(rng: random.Random, ok: bool, values: list[str]) -> dict:
    field, value = rng.choice(FIELDS), rng.choice(values)
    if ok:
        return {"observation": f"Page: form [{field}]", "action": f"type({field}, {value})",
                "next_observation": f"Field {field} = {value}"}
    action = rng.choice([f"click({value})", f"open(/{value})", f"save({value}.exe)"])
    return {"observation": f"Page: form [{field}]", "action": action, "next_observation": f"Error: {value} not found"}


def trajectory_pairs(n: int, seed: int, values: list[str]) -> list[dict]:
    rng, rows = random.Random(seed), []
    for _ in range(n):
        length = rng.randint(1, 3)
        wrong = set(rng.sample(range(length), rng.randint(1, min(2, length))))
        rows.append({"chosen_trajectory": [step(rng, True, values) for _ in range(length)],
                     "rejected_trajectory": [step(rng, t not in wrong, values) for t in range(length)]})
    return rows


def agent_steps(n: int, seed: int, values: list[str]) -> list[dict]:
    rng, rows = random.Random(seed), []
    for _ in range(n):
        name, field = rng.choice(values), rng.choice(FIELDS)
        context = [{"role": "user", "content": f"Sign up with {field} {name}."},
                   {"role": "tool", "content": f"Page: form [{field}] [Submit]"}]
        rows.append({"prompt": context, "corrected": f"type({field}, {name})",
                     "erroneous": rng.choice(["click(Submit)", f"open(/{name})", f"type(zip, {name})"])})
    return rows


def write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def last_eval(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if any(k.startswith("eval_") for k in r)][-1]


def run(stage: str, out: Path, args: list[str]) -> dict:
    began = time.perf_counter()
    if main([stage, f"output_dir={out}", *args]) != 0:
        sys.exit(f"{stage} failed")
    return {**last_eval(out), "seconds": time.perf_counter() - began}


def main_benchmark() -> None:
    root = Path(tempfile.mkdtemp(prefix="agent_rewards_"))
    common = ["model=embedded", "device=cpu", "seed=0", "batch_size=8", "logging_steps=10", "lr_scheduler=constant"]
    rm_data = [f"dataset={write(root / 'traj_train.jsonl', trajectory_pairs(256, 0, TRAIN_VALUES))}",
               f"eval_dataset={write(root / 'traj_held.jsonl', trajectory_pairs(64, 1, HELD_VALUES))}"]
    before = run("rm", root / "rm0", [*common, *rm_data, "max_steps=1", "learning_rate=0"])
    after = run("rm", root / "rm", [*common, *rm_data, "max_steps=40", "learning_rate=1e-4"])
    dpo_data = [f"dataset={write(root / 'steps_train.jsonl', agent_steps(128, 0, TRAIN_VALUES))}",
                f"eval_dataset={write(root / 'steps_held.jsonl', agent_steps(32, 1, HELD_VALUES))}"]
    dpo0 = run("dpo", root / "dpo0", [*common, *dpo_data, "max_steps=1", "learning_rate=0"])
    dpo = run("dpo", root / "dpo", [*common, *dpo_data, "max_steps=30", "learning_rate=5e-5"])
    print("\n| run | held-out accuracy | held-out margin | seconds |\n|---|---|---|---|")
    for name, r in (("step RM, initial", before), ("step RM, 40 steps", after)):
        print(f"| {name} | {r['eval_accuracy']:.3f} | {r['eval_margin']:+.3f} | {r['seconds']:.0f} |")
    for name, r in (("Agent DPO, initial", dpo0), ("Agent DPO, 30 steps", dpo)):
        print(f"| {name} | {r['eval_rewards/accuracies']:.3f} | {r['eval_rewards/margins']:+.3f} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main_benchmark()
