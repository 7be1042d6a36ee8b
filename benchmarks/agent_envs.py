"""Learning runs of the two embedded agent environments: SFT on the gold traces, the SFT start's
held-out episodes, then GRPO in the environment; prints held-out success / milestone reward before and after.

Each environment runs the stages of its recipe (`posttrain pipeline calculator|web_form`) as separate
`posttrain` commands, so a finished SFT can be reused (`--sft DIR`) and every command is printed:

    python benchmarks/agent_envs.py calculator                 # sft 120 + 100 steps, grpo 10 steps
    python benchmarks/agent_envs.py web_form --sft runs/envs/web_form/sft/final

The held-out metrics are greedy episodes on 100 test rows (`eval_*` of the grpo stage's last record;
the SFT start is the same evaluation at step 0: eval_on_start). Measured numbers
are in /work/notes/readme_envs.md (README "Agents" section).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

COMMON = {
    "calculator": ["dataset=task:calculator", "environment=calculator", "reward_funcs=[task::tool_use]",
                   "reward_weights=[0.1]", "max_turns=3", "temperature=0.7", "max_new_tokens=96", "max_length=512",
                   "eval_dataset=task:calculator:test:100"],
    "web_form": ["dataset=task:web_form", "environment=web_form", "reward_funcs=[milestone]", "max_turns=4",
                 "temperature=0.7", "max_new_tokens=140", "max_length=512", "eval_dataset=task:web_form:test:100"],
}
# calculator: the answer turn copies a 4-5 digit tool result, which the tiny model learns late: a second SFT pass
SFT = {
    "calculator": [["max_steps=120", "learning_rate=1e-3", "batch_size=16", "warmup_ratio=0.05"],
                   ["max_steps=100", "learning_rate=5e-4", "lr_scheduler=constant", "batch_size=16", "seed=1"]],
    "web_form": [["max_steps=120", "learning_rate=1e-3", "batch_size=8", "warmup_ratio=0.05"]],
}
GRPO = ["learning_rate=2e-4", "lr_scheduler=constant", "prompts_per_step=8", "num_generations=4", "batch_size=32",
        "logging_steps=2", "eval_steps=0", "eval_on_start=true"]
SHOWN = ("eval_return", "eval_success", "eval_milestone", "eval_tool_use", "eval_turns", "eval_tool_calls",
         "eval_tool_errors", "eval_parse_errors")


def run(stage: str, args: list[str]) -> None:
    command = ["posttrain", stage, *args]
    print("$", shlex.join(command), flush=True)
    t0 = time.time()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    print(f"  ({time.time() - t0:.0f} s)", flush=True)


def evals(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "eval_return" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("env", choices=sorted(COMMON))
    parser.add_argument("--out", default="runs/envs")
    parser.add_argument("--sft", help="reuse this SFT model instead of training one")
    parser.add_argument("--grpo-steps", type=int, default=10)
    args = parser.parse_args()
    out = Path(args.out) / args.env
    model = args.sft
    if model is None:
        model = "embedded"
        for i, extra in enumerate(SFT[args.env]):
            run("sft", [f"model={model}", f"dataset=task:{args.env}", *extra, f"output_dir={out}/sft{i}"])
            model = f"{out}/sft{i}/final"
    run("grpo", [f"model={model}", *COMMON[args.env], *GRPO, f"max_steps={args.grpo_steps}", f"output_dir={out}/grpo"])
    found = evals(out / "grpo")
    before, after = found[0], found[-1]
    print(f"\n{'held-out (greedy, 100 rows)':<28} {'SFT start':>10} {'after GRPO':>11}")
    for key in SHOWN:
        if key in before or key in after:
            print(f"{key:<28} {before.get(key, float('nan')):>10.3f} {after.get(key, float('nan')):>11.3f}")


if __name__ == "__main__":
    sys.exit(main())
