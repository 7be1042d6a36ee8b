"""GRPO on the embedded arithmetic task: held-out accuracy before, during and after, with the curve.

Starts from the shipped embedded model (or `--model`), trains with the task's accuracy and format
rewards (TRL's calling convention), and evaluates greedy accuracy on 200 held-out problems every
`--eval-every` steps (the run resumes from its checkpoint between segments, so the curve costs no
extra training). Writes OUT/curve.json and prints the table.

    python scripts/grpo_arithmetic.py --out runs/grpo-arithmetic            # the README's run
    python scripts/grpo_arithmetic.py --steps 20 --eval-every 10            # a quick look

Measured on the 2-core CPU VM: see the README section "It learns: GRPO on arithmetic".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/grpo-arithmetic")
    p.add_argument("--model", default="embedded")
    p.add_argument("--preset", default="grpo", help="grpo, dapo, dr_grpo, gspo, grpo_plus, rloo, reinforce, reinforce_pp")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--prompts-per-step", type=int, default=16)
    p.add_argument("--num-generations", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--beta", type=float, default=None, help="override the preset's β")
    p.add_argument("--eval-limit", type=int, default=200)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def evaluate(model: str, out: Path, name: str, args) -> dict:
    from posttrain.config import build_config
    from posttrain.eval.evaluate import EvalConfig, run_eval

    return run_eval(build_config(EvalConfig, {"model": model, "dataset": f"task:arithmetic:test:{args.eval_limit}",
                                              "seed": args.seed, "output_file": str(out / f"eval_{name}.json"), "show_samples": 0}))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from posttrain.algorithms.grpo import PRESETS, GRPOConfig, run_grpo
    from posttrain.config import build_config

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.time()
    base = evaluate(args.model, out, "step0", args)
    curve = [{"step": 0, "accuracy": base["accuracy"], "format": base["format"], "minutes": 0.0}]
    print(f"step 0: held-out accuracy {base['accuracy']:.3f}")
    values = {**PRESETS[args.preset], **({"beta": args.beta} if args.beta is not None else {})}
    for end in range(args.eval_every, args.steps + 1, args.eval_every):
        config = build_config(GRPOConfig, {
            **values, "model": args.model, "dataset": "task:arithmetic", "output_dir": str(out / "run"),
            "max_steps": end, "resume": end > args.eval_every, "overwrite_output_dir": end == args.eval_every,
            "save_steps": args.eval_every, "keep_last": 1, "learning_rate": args.lr, "lr_scheduler": "constant",
            "prompts_per_step": args.prompts_per_step, "num_generations": args.num_generations,
            "max_new_tokens": args.max_new_tokens, "max_length": 512, "batch_size": 32, "logging_steps": 5,
            "seed": args.seed,
        })
        last = run_grpo(config)
        report = evaluate(str(out / "run" / "final"), out, f"step{end}", args)
        curve.append({"step": end, "accuracy": report["accuracy"], "format": report["format"],
                      "train_reward": last.get("reward/mean"), "minutes": (time.time() - began) / 60})
        print(f"step {end}: held-out accuracy {report['accuracy']:.3f} ({curve[-1]['minutes']:.1f} min)")
        (out / "curve.json").write_text(json.dumps({"settings": vars(args), "curve": curve}, indent=1))
    print("\nstep  held-out accuracy  format  minutes")
    for point in curve:
        print(f"{point['step']:>4}  {point['accuracy']:>17.3f}  {point['format']:>6.3f}  {point['minutes']:>7.1f}")
    print(f"accuracy {curve[0]['accuracy']:.3f} -> {curve[-1]['accuracy']:.3f} in {curve[-1]['minutes']:.1f} min; {out / 'curve.json'}")


if __name__ == "__main__":
    main()
