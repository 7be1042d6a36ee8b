"""The seeds' remaining methods on the embedded sentiment task, each beside its nearest baseline (CPU, minutes).

    python benchmarks/canon_methods.py rso     # RSO's accepted pairs vs first_two / max_gap, the same 8 samples per prompt
    python benchmarks/canon_methods.py mdpo    # DPO vs MDPO ([sigmoid, anchor]) on the same pairs
    python benchmarks/canon_methods.py p3o     # grpo --preset p3o vs --preset rloo (G = 2), the same steps
    python benchmarks/canon_methods.py rest    # ReST (Grow once, Improve at 0.5 / 0.7 / 0.9) vs expert iteration

Every run starts from the embedded model (it already writes reviews of every shade), scores with the sentiment
task's gold reward and writes under runs/bench-canon/. The gold reward of a policy is the mean over 64
held-out films x 2 samples (temperature 1, 48 tokens, seed 0), as in tests/e2e/test_rejection_expert_iteration.py.

Measured 2026-12-04 on the shared 2-core VM (other jobs running; times are wall clock):

    $ python benchmarks/canon_methods.py rso          # 176 s
    64 prompts x 8 samples: mean gold 0.523, best-of-8 0.926
    selection              pairs   chosen  rejected    both     gap
    first_two                 64    0.706     0.344   0.525   0.362
    max_gap (RS-DPO)          64    0.926     0.116   0.521   0.810
    rso beta=1                64    0.778     0.441   0.609   0.338
    rso beta=0.1              64    0.923     0.782   0.852   0.142
    rso beta=0.02             64    0.926     0.829   0.878   0.097

    $ python benchmarks/canon_methods.py mdpo         # 36 min (loaded machine)
    loss       gold  eval acc  eval r_chosen  eval r_rejected  eval logp_chosen
    (start)   0.525
    dpo       0.598     0.578         -0.079           -0.200            -47.37
    mdpo      0.541     0.547         -0.011           -0.079            -46.69

    $ python benchmarks/canon_methods.py p3o --steps 20
    preset    reward first 5  reward last 5    kl/k1   gold
    rloo               0.527          0.575        -  0.546
    p3o                0.541          0.535   0.0073  0.524

    $ python benchmarks/canon_methods.py rest         # 499 s (table re-laid out after the run; values as printed)
    run                SFT runs SFT steps  kept per SFT run               gold
    (start)                                                              0.525
    expert_iteration          2        32  64, 64                        0.749
    rest                      6       176  132, 89, 36, 219, 167, 83     0.858

RSO's accepted samples move from the policy's distribution toward the best of k as β falls; MDPO's anchor holds the
chosen reward near 0 (DPO's larger margin gave more gold here); 20 GRPO steps are inside the noise (no claim).
ReST and expert iteration sample the same 2 x 256 completions; ReST's three Improve steps per Grow step train 5.5x
the SFT steps and reach 0.858 gold against 0.749 (its second Grow step samples at 0.733 mean reward vs 0.685).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from posttrain.config import build_config

ROOT = Path("runs/bench-canon")


def gold(model: str) -> float:
    from posttrain.eval.evaluate import EvalConfig, run_eval

    out = ROOT / "gold" / (str(model).replace("/", "_") + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    config = build_config(EvalConfig, {"model": str(model), "dataset": "task:sentiment:test:64", "num_samples": 2,
                                       "temperature": 1.0, "max_new_tokens": 48, "seed": 0, "show_samples": 0,
                                       "device": "cpu", "output_file": str(out)})
    return run_eval(config)["score"]


def last(path: Path, key: str):
    values = [r[key] for r in map(json.loads, path.read_text().splitlines()) if key in r]
    return values[-1] if values else None


def bench_rso() -> None:
    """Sample 8 per prompt once; pick pairs three ways from the same samples; label by the gold reward."""
    from posttrain.algorithms.pairs import PairsConfig, make_pairs
    from posttrain.generation import SamplingParams
    from posttrain.methods.best_of_n import sample_and_score
    from posttrain.rewards import RewardFunctions
    from posttrain.tasks.sources import load_rows
    from posttrain.train.scaffold import load_model_for, load_tokenizer_for

    base = build_config(PairsConfig, {"model": "embedded", "dataset": "task:sentiment", "num_samples": 8, "max_new_tokens": 48})
    rows = load_rows("task:sentiment:test:64")
    rewards = RewardFunctions.from_options(base, base.dataset)
    groups = sample_and_score(load_model_for(base), load_tokenizer_for(base), rows, rewards, 8,
                              SamplingParams(**base.sampling_kwargs(seed=0)), 64)
    every = [c.reward for g in groups for c in g.candidates]
    best = [max(c.reward for c in g.candidates) for g in groups]
    print(f"64 prompts x 8 samples: mean gold {sum(every) / len(every):.3f}, best-of-8 {sum(best) / len(best):.3f}")
    print(f"{'selection':<22}{'pairs':>6}{'chosen':>9}{'rejected':>10}{'both':>8}{'gap':>8}")
    for label, values in (("first_two", {"selection": "first_two"}), ("max_gap (RS-DPO)", {"selection": "max_gap"}),
                          ("rso beta=1", {"selection": "rso", "rso_beta": 1.0}), ("rso beta=0.1", {"selection": "rso", "rso_beta": 0.1}),
                          ("rso beta=0.02", {"selection": "rso", "rso_beta": 0.02})):
        config = build_config(PairsConfig, {**base.__dict__, **values, "labels": "hard"})
        out, counts = make_pairs(groups, config, seed=0)
        chosen = sum(r["chosen_reward"] for r in out) / len(out)
        rejected = sum(r["rejected_reward"] for r in out) / len(out)
        print(f"{label:<22}{len(out):>6}{chosen:>9.3f}{rejected:>10.3f}{(chosen + rejected) / 2:>8.3f}{counts['mean_gap']:>8.3f}")


def bench_mdpo() -> None:
    from posttrain.algorithms.dpo import PRESETS, DPOConfig, run_dpo
    from posttrain.algorithms.pairs import PairsConfig, run_pairs

    pairs = ROOT / "mdpo-pairs"
    if not (pairs / "final").exists():
        run_pairs(build_config(PairsConfig, {"model": "embedded", "dataset": "task:sentiment", "prompts": 256, "eval_prompts": 64,
                                             "num_samples": 2, "max_new_tokens": 48, "labels": "hard", "output_dir": str(pairs)}))
    print(f"{'loss':<8}{'gold':>7}{'eval acc':>10}{'eval r_chosen':>15}{'eval r_rejected':>17}{'eval logp_chosen':>18}")
    print(f"{'(start)':<8}{gold('embedded'):>7.3f}")
    for name in ("dpo", "mdpo"):
        out = ROOT / name
        run_dpo(build_config(DPOConfig, {**PRESETS[name], "model": "embedded", "dataset": str(pairs / "final/pairs.jsonl"),
                                         "eval_dataset": str(pairs / "final/eval_pairs.jsonl"), "num_epochs": 2, "batch_size": 16,
                                         "learning_rate": 1e-4, "warmup_ratio": 0.05, "logging_steps": 4, "device": "cpu",
                                         "output_dir": str(out), "overwrite_output_dir": True}))
        m = out / "metrics.jsonl"
        print(f"{name:<8}{gold(out / 'final'):>7.3f}{last(m, 'eval_rewards/accuracies'):>10.3f}{last(m, 'eval_rewards/chosen'):>15.3f}"
              f"{last(m, 'eval_rewards/rejected'):>17.3f}{last(m, 'eval_logps/chosen'):>18.2f}")


def bench_p3o(steps: int) -> None:
    from posttrain.algorithms.grpo import PRESETS, GRPOConfig, run_grpo

    print(f"{'preset':<8}{'reward first 5':>16}{'reward last 5':>15}{'kl/k1':>9}{'gold':>7}")
    for name in ("rloo", "p3o"):
        out = ROOT / name
        config = build_config(GRPOConfig, {**PRESETS[name], "num_generations": 2, "model": "embedded", "dataset": "task:sentiment",
                                           "reward_funcs": ["task"], "max_steps": steps, "prompts_per_step": 16, "max_new_tokens": 48,
                                           "learning_rate": 5e-5, "lr_scheduler": "constant", "batch_size": 32, "logging_steps": 1,
                                           "device": "cpu", "output_dir": str(out), "overwrite_output_dir": True})
        if not (out / "final").exists():  # a finished run is reused (delete runs/bench-canon/NAME to redo it)
            run_grpo(config)
        rewards = [r["reward/mean"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "reward/mean" in r]
        kl = last(out / "metrics.jsonl", "kl/k1")  # rloo has beta 0: no reference, no KL logged
        print(f"{name:<8}{sum(rewards[:5]) / 5:>16.3f}{sum(rewards[-5:]) / 5:>15.3f}{'-' if kl is None else f'{kl:.4f}':>9}"
              f"{gold(out / 'final'):>7.3f}")


def bench_rest() -> None:
    from posttrain.algorithms.rejection import PRESETS, RejectionConfig, run_rejection

    common = {"model": "embedded", "dataset": "task:sentiment", "iterations": 2, "num_samples": 4, "prompts_per_iteration": 64,
              "max_new_tokens": 48, "learning_rate": 5e-4, "num_epochs": 2, "batch_size": 8, "logging_steps": 100,
              "eval_greedy": False, "device": "cpu", "overwrite_output_dir": True}
    print(f"{'run':<18}{'SFT runs':>9}{'SFT steps':>10}  {'kept per SFT run':<28}{'gold':>7}")
    print(f"{'(start)':<18}{'':>9}{'':>10}  {'':<28}{gold('embedded'):>7.3f}")
    for name in ("expert_iteration", "rest"):
        out = ROOT / name
        run_rejection(build_config(RejectionConfig, {**PRESETS[name], **common, "output_dir": str(out)}))
        records = [json.loads(line) for line in (out / "iterations.jsonl").read_text().splitlines()]
        kept = ", ".join(str(r["kept"]) for r in records)
        steps = sum(r["sft_steps"] for r in records)
        print(f"{name:<18}{len(records):>9}{steps:>10}  {kept:<28}{gold(out / 'final'):>7.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("method", choices=("rso", "mdpo", "p3o", "rest"))
    parser.add_argument("--steps", type=int, default=40, help="p3o: GRPO steps per run")
    args = parser.parse_args()
    ROOT.mkdir(parents=True, exist_ok=True)
    {"rso": bench_rso, "mdpo": bench_mdpo, "p3o": lambda: bench_p3o(args.steps), "rest": bench_rest}[args.method]()
