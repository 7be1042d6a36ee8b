"""PPO's variants and TR-DPO side by side on the embedded model and the sentiment task: same data, seed
and settings, one option set apart. A short learning check, not a tuned comparison.

PPO (gold sentiment reward, reward_funcs=[task]): clip (the default), kl_loss (verl's use_kl_loss),
ppo_penalty, clip_penalty, critic=model with critic_learning_rate, ref_sync=hard. Printed per variant:
the gold reward of the first round and of the last two, the last KL to the reference (kl/k3), β_old
where there is one, and the seconds the run took. DPO on arithmetic pairs (chosen: the worked solution,
rejected: the same with every digit shifted, as benchmarks/bench_dpo.py builds them; 128 to train, 32
held out): plain, TR-DPO^α (soft, τ = 4) and TR-DPO^τ (hard, τ = 4). Printed: the held-out log-probs of
chosen and rejected under the trained policy (comparable across variants, unlike the implicit rewards,
which are measured against each run's own, moved, reference) and the held-out accuracy by implicit reward.

    python benchmarks/ppo_variants.py                  # both tables, a few minutes on 2 idle CPU cores
    python benchmarks/ppo_variants.py --only dpo

Measured 2026-12-04 on the shared 2-core VM, busy with other jobs, so the seconds are inflated. One seed:

    $ python benchmarks/ppo_variants.py --only ppo
    | variant | gold reward, round 1 | gold reward, last 2 rounds | kl/k3 (last step) | β_old | seconds |
    | clip | 0.4504 | 0.5627 | 0.0273 |  | 186 |
    | kl_loss | 0.4504 | 0.5300 | 0.0181 |  | 216 |
    | ppo_penalty | 0.4504 | 0.5300 | 0.0204 | 4.0 | 302 |
    | clip_penalty | 0.4504 | 0.5085 | 0.0142 | 4.0 | 130 |
    | critic=model, critic_lr 1e-3 | 0.4504 | 0.5460 | 0.0350 |  | 219 |
    | ref_sync=hard, every 4 | 0.4504 | 0.5405 | 0.0005 |  | 105 |

    $ python benchmarks/ppo_variants.py --only dpo
    | variant | eval log π(chosen) | eval log π(rejected) | gap | eval accuracy (implicit reward) | seconds |
    | dpo | -97.53 | -371.93 | 274.41 | 1.000 | 226 |
    | TR-DPO soft (α 0.6, τ 4) | -62.71 | -418.22 | 355.51 | 0.875 | 111 |
    | TR-DPO hard (τ 4) | -100.69 | -489.00 | 388.31 | 0.000 | 45 |

Every PPO variant raises the gold reward within 16 steps (4 rounds). The differences between them are
within one seed's noise. β_old doubled twice (1 → 4), because the round KL(π_old‖π_θ) stayed above
1.5 × 0.01 at this learning rate. With the reference refreshed every round, the last step's KL to it is
about 0. The TR-DPO runs move the policy further than DPO, with a wider held-out chosen − rejected gap
under the policy's own log-probs. The hard run's accuracy by implicit reward is 0 because step 16 is an
update: the final eval compares the policy with itself, so every reward is 0. TRL evaluates after its
sync too.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from posttrain.algorithms.dpo import DPOConfig, run_dpo
from posttrain.algorithms.ppo import PRESETS, PPOConfig, run_ppo
from posttrain.config import build_config

PPO_COMMON = dict(model="embedded", dataset="task:sentiment", reward_funcs=["task"], max_steps=16, prompts_per_step=8,
                  max_new_tokens=16, num_iterations=2, num_minibatches=2, batch_size=8, learning_rate=2e-4, kl_coef=0.05,
                  logging_steps=1, device="cpu", seed=0)
PPO_VARIANTS = {
    "clip": {},
    "kl_loss": {**PRESETS["kl_loss"], "beta": 0.05},
    "ppo_penalty": PRESETS["ppo_penalty"],
    "clip_penalty": PRESETS["clip_penalty"],
    "critic=model, critic_lr 1e-3": {"critic": "model", "critic_learning_rate": 1e-3},
    "ref_sync=hard, every 4": {"ref_sync": "hard", "ref_sync_steps": 4},
}
DPO_COMMON = dict(model="embedded", max_steps=16, batch_size=8, max_length=256, learning_rate=5e-4, beta=0.1,
                  logging_steps=8, lr_scheduler="constant", device="cpu", seed=0)
DPO_VARIANTS = {"dpo": {}, "TR-DPO soft (α 0.6, τ 4)": {"ref_sync": "soft", "ref_sync_steps": 4},
                "TR-DPO hard (τ 4)": {"ref_sync": "hard", "ref_sync_steps": 4}}


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def ppo_table(root: Path) -> None:
    print("| variant | gold reward, round 1 | gold reward, last 2 rounds | kl/k3 (last step) | β_old | seconds |")
    print("|---|---|---|---|---|---|")
    for name, values in PPO_VARIANTS.items():
        out = root / name.replace(" ", "_").replace(",", "")
        began = time.perf_counter()
        run_ppo(build_config(PPOConfig, {**PPO_COMMON, **values, "output_dir": str(out)}))
        seconds = time.perf_counter() - began
        rounds = [r["reward/mean"] for r in records(out) if "reward/mean" in r]
        last = records(out)[-1]
        print(f"| {name} | {rounds[0]:.4f} | {sum(rounds[-2:]) / 2:.4f} | {last.get('kl/k3', float('nan')):.4f} | "
              f"{last.get('penalty_coef', '')} | {seconds:.0f} |", flush=True)


def dpo_table(root: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_dpo import make_pairs

    pairs = make_pairs(160)
    root.mkdir(parents=True)
    for name, rows in (("train", pairs[:128]), ("eval", pairs[128:])):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = {"dataset": str(root / "train.jsonl"), "eval_dataset": str(root / "eval.jsonl")}
    print("| variant | eval log π(chosen) | eval log π(rejected) | gap | eval accuracy (implicit reward) | seconds |")
    print("|---|---|---|---|---|---|")
    for name, values in DPO_VARIANTS.items():
        out = root / name.split(" (")[0].replace(" ", "_")
        began = time.perf_counter()
        last = run_dpo(build_config(DPOConfig, {**DPO_COMMON, **data, **values, "output_dir": str(out)}))
        chosen, rejected = last["eval_logps/chosen"], last["eval_logps/rejected"]
        print(f"| {name} | {chosen:.2f} | {rejected:.2f} | {chosen - rejected:.2f} | {last['eval_rewards/accuracies']:.3f} | "
              f"{time.perf_counter() - began:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("ppo", "dpo"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "dpo":
            ppo_table(Path(tmp) / "ppo")
        if args.only != "ppo":
            dpo_table(Path(tmp) / "dpo")


if __name__ == "__main__":
    main()
