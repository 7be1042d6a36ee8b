"""Learning runs of the two embedded agent environments: each recipe as shipped (SFT on its tool-use
demonstrations, then GRPO in the environment), printing held-out success / milestone reward at the
SFT start and after GRPO.

    python benchmarks/agent_envs.py calculator                      # posttrain pipeline calculator
    python benchmarks/agent_envs.py web_form grpo.max_steps=80      # overrides go to the pipeline

The held-out metrics are greedy episodes on 100 test rows: `eval_*` of the grpo stage at step 0
(eval_on_start: the SFT model, before any update) and at its last evaluation. The README's "Agents"
results are this script's output.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

SHOWN = ("eval_return", "eval_success", "eval_milestone", "eval_tool_use", "eval_turns", "eval_tool_calls",
         "eval_tool_errors", "eval_parse_errors")


def evals(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "eval_return" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("env", choices=("calculator", "web_form"))
    parser.add_argument("overrides", nargs="*", help="pipeline overrides, e.g. grpo.max_steps=80")
    parser.add_argument("--out", default="runs/envs")
    args = parser.parse_args()
    out = Path(args.out) / args.env
    command = ["posttrain", "pipeline", args.env, f"output_dir={out}", *args.overrides]
    print("$", shlex.join(command), flush=True)
    began = time.time()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    print(f"  ({time.time() - began:.0f} s)", flush=True)
    found = evals(out / "grpo")
    print(f"\n{'held-out (greedy, 100 rows)':<28} {'SFT start':>10} " + " ".join(f"{'step ' + str(r['step']):>10}" for r in found[1:]))
    for key in SHOWN:
        if key in found[0]:
            print(f"{key:<28} " + " ".join(f"{r.get(key, float('nan')):>10.3f}" for r in found))


if __name__ == "__main__":
    sys.exit(main())
