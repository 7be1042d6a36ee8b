"""PPO against a learned reward model on the sentiment task: does the gold reward rise?

Starts from the SFT model and the reward model that `scripts/sentiment_preferences.py` leaves in
its output directory (sft/final, rm/final). PPO optimises the learned reward with a KL penalty to
the SFT model; the gold reward (the lexicon scorer the reward model never saw directly, only
through noisy Bradley-Terry labels) is measured on held-out prompts before, during and after.

    python scripts/sentiment_preferences.py --out runs/sentiment-preferences
    python scripts/ppo_sentiment.py --from runs/sentiment-preferences --out runs/ppo-sentiment

Measured on the 2-core CPU VM: see the README section "It learns: PPO against a learned reward model".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--from", dest="source", default="runs/sentiment-preferences")
    p.add_argument("--out", default="runs/ppo-sentiment")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--eval-every", type=int, default=10, help="rounds between gold-reward evaluations")
    p.add_argument("--prompts-per-step", type=int, default=16)
    p.add_argument("--num-generations", type=int, default=4)
    p.add_argument("--kl-coef", type=float, default=0.05)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--test-prompts", type=int, default=200)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def gold(model: str, out: Path, name: str, args) -> float:
    from posttrain.config import build_config
    from posttrain.eval.evaluate import EvalConfig, run_eval

    report = run_eval(build_config(EvalConfig, {
        "model": model, "dataset": f"task:sentiment:test:{args.test_prompts}", "temperature": 1.0, "num_samples": 2,
        "seed": args.seed, "output_file": str(out / f"eval_{name}.json"), "show_samples": 1}))
    return report["gold"]


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from posttrain.algorithms.ppo import PPOConfig, run_ppo
    from posttrain.config import build_config

    source, out = Path(args.source), Path(args.out)
    sft, rm = source / "sft" / "final", source / "rm" / "final"
    if not (sft / "config.json").exists() or not (rm / "config.json").exists():
        raise SystemExit(f"{source} has no sft/final and rm/final: run scripts/sentiment_preferences.py --out {source} first")
    out.mkdir(parents=True, exist_ok=True)
    began = time.time()
    steps_per_round = 2 * 2  # num_iterations x num_minibatches below
    curve = [{"round": 0, "gold": gold(str(sft), out, "round0", args), "minutes": 0.0}]
    print(f"round 0 (SFT): gold reward {curve[0]['gold']:.3f}")
    for end in range(args.eval_every, args.rounds + 1, args.eval_every):
        last = run_ppo(build_config(PPOConfig, {
            "model": str(sft), "reward_model": str(rm), "dataset": "task:sentiment", "output_dir": str(out / "run"),
            "max_steps": end * steps_per_round, "resume": end > args.eval_every, "overwrite_output_dir": end == args.eval_every,
            "save_steps": args.eval_every * steps_per_round, "keep_last": 1, "learning_rate": args.lr,
            "lr_scheduler": "constant", "prompts_per_step": args.prompts_per_step, "num_generations": args.num_generations,
            "num_iterations": 2, "num_minibatches": 2, "max_new_tokens": 64, "max_length": 256, "batch_size": 32,
            "kl_coef": args.kl_coef, "logging_steps": steps_per_round, "seed": args.seed}))
        value = gold(str(out / "run" / "final"), out, f"round{end}", args)
        curve.append({"round": end, "gold": value, "reward_model": last.get("reward/mean"), "kl_k1": last.get("kl/k1"),
                      "minutes": (time.time() - began) / 60})
        print(f"round {end}: gold reward {value:.3f} ({curve[-1]['minutes']:.1f} min)")
        (out / "curve.json").write_text(json.dumps({"settings": vars(args), "curve": curve}, indent=1))
    print("\nround  gold reward  minutes")
    for point in curve:
        print(f"{point['round']:>5}  {point['gold']:>11.3f}  {point['minutes']:>7.1f}")
    print(f"gold reward {curve[0]['gold']:.3f} (SFT) -> {curve[-1]['gold']:.3f} (PPO); {out / 'curve.json'}")


if __name__ == "__main__":
    main()
