"""Each sampling-based and iterative method runs on the embedded sentiment task and moves its metric.

The metric is the policy's gold reward (the task's lexicon-and-negation sentiment score): the mean
over 2 samples at temperature 1 for each of 64 held-out films, seeded, before and after. Recipes run
through `posttrain.pipeline` exactly as shipped, scaled down by overrides (SFT is 5 steps: the
embedded model already writes reviews; its job here is the stage wiring)."""

from __future__ import annotations

import json

import pytest

from posttrain.config import build_config
from posttrain.pipeline import load_pipeline, run_pipeline

SMALL_PAIRS = ("prompts=256", "eval_prompts=32", "max_new_tokens=48")


def gold_reward(model: str, tmp_path, prompts: int = 64) -> float:
    """Mean gold reward of the model's samples on held-out films (the same seed for every model)."""
    from posttrain.eval.evaluate import EvalConfig, run_eval

    config = build_config(EvalConfig, {"model": str(model), "dataset": f"task:sentiment:test:{prompts}", "num_samples": 2,
                                       "temperature": 1.0, "max_new_tokens": 48, "seed": 0, "show_samples": 0,
                                       "device": "cpu", "output_file": str(tmp_path / "gold_eval.json")})
    return run_eval(config)["score"]


def run_recipe(name: str, tmp_path, *overrides: str) -> tuple[dict[str, dict], dict[str, dict]]:
    """Run the shipped recipe with `overrides`: (stage name -> its metrics, policy -> its row of the final
    compare stage: gold reward of 2 samples per held-out film, KL to the SFT model, win rate)."""
    pipeline = load_pipeline(name, [f"output_dir={tmp_path / name}", "defaults.device=cpu", "sft.max_steps=5",
                                    "sft.logging_steps=5", "compare.prompts=64", *overrides])
    records = run_pipeline(pipeline, log=lambda *a, **k: None)
    assert [r["status"] for r in records] == ["done"] * len(records)
    lines = (tmp_path / name / "compare" / "final" / "evaluations.jsonl").read_text().splitlines()
    return {r["name"]: r["metrics"] for r in records}, {row["policy"]: row for row in map(json.loads, lines)}


def test_online_dpo_samples_better_reviews_every_round(tmp_path):
    metrics, policies = run_recipe("online_dpo", tmp_path, *(f"{s}.{o}" for s in ("pairs1", "pairs2") for o in SMALL_PAIRS),
                                   "dpo1.learning_rate=3e-4", "dpo2.learning_rate=3e-4")
    # Round 2 samples its pairs from the round-1 policy, so their mean gold reward is round 1's progress.
    assert metrics["pairs2"]["sample_reward_mean"] > metrics["pairs1"]["sample_reward_mean"] + 0.04, metrics  # 0.509 -> 0.608
    assert metrics["dpo1"]["eval_rewards/accuracies"] > 0.5
    sft, round1, round2 = (policies[p]["reward"] for p in ("sft", "dpo_round1", "dpo_round2"))
    assert round1 > sft + 0.04 and round2 > sft + 0.08, policies  # measured 0.498 -> 0.599 -> 0.682
    assert policies["dpo_round2"]["kl"] > policies["dpo_round1"]["kl"] > 0  # each round moves further from SFT


def test_rs_dpo_trains_on_the_widest_pair_and_raises_the_gold_reward(tmp_path):
    metrics, policies = run_recipe("rs_dpo", tmp_path, *(f"pairs.{o}" for o in SMALL_PAIRS), "dpo.learning_rate=3e-4")
    pairs = [json.loads(line) for line in (tmp_path / "rs_dpo" / "pairs" / "final" / "pairs.jsonl").read_text().splitlines()]
    assert all(p["chosen_reward"] - p["rejected_reward"] >= 0.05 for p in pairs)  # min_gap, hard labels
    # The widest of k = 4 samples' pairs: a far larger gap than two samples' (about 0.36 on this task).
    assert metrics["pairs"]["mean_gap"] > 0.5, metrics["pairs"]  # measured 0.633
    assert policies["rs_dpo"]["reward"] > policies["sft"]["reward"] + 0.08, policies  # measured 0.498 -> 0.734


def test_expert_iteration_keeps_the_best_sample_and_raises_the_gold_reward(tmp_path):
    from posttrain.algorithms.rejection import PRESETS, RejectionConfig, run_rejection

    config = build_config(RejectionConfig, {
        **PRESETS["expert_iteration"], "model": "embedded", "dataset": "task:sentiment", "eval_dataset": "task:sentiment:test:64",
        "output_dir": str(tmp_path / "ei"), "iterations": 2, "num_samples": 4, "prompts_per_iteration": 64,
        "max_new_tokens": 48, "learning_rate": 5e-4, "num_epochs": 2, "batch_size": 8, "logging_steps": 100,
        "eval_greedy": False, "device": "cpu"})
    run_rejection(config)
    first, second = [json.loads(line) for line in (tmp_path / "ei" / "iterations.jsonl").read_text().splitlines()]
    assert first["kept"] == second["kept"] == 64  # the best of 4 for every prompt
    assert first["kept_reward_mean"] > first["sample_reward_mean"] + 0.2  # what "keep the best" means
    # Iteration 2 samples from the iteration-1 policy: its samples are better.
    assert second["sample_reward_mean"] > first["sample_reward_mean"] + 0.05, (first, second)  # 0.540 -> 0.613
    before, after = gold_reward("embedded", tmp_path), gold_reward(tmp_path / "ei" / "final", tmp_path)
    assert after > before + 0.08, (before, after)  # measured 0.530 -> 0.768


@pytest.fixture(scope="module")
def rlaif_run(tmp_path_factory):
    """The shipped rlaif recipe, scaled down: SFT -> pairs labelled by the embedded judge -> RM -> PPO -> compare
    (which also picks the best of 4 SFT samples with the same judge)."""
    tmp_path = tmp_path_factory.mktemp("rlaif")
    metrics, policies = run_recipe("rlaif", tmp_path, "pairs.prompts=512", "pairs.eval_prompts=100", "pairs.max_new_tokens=48",
                                   "ppo.max_steps=40", "ppo.learning_rate=1e-4")
    return metrics, policies, tmp_path / "rlaif"


def test_rlaif_judge_labels_agree_with_gold_and_the_rm_learns_them(rlaif_run):
    from posttrain.rewards.registry import build

    metrics, _, run = rlaif_run
    # The AI labels agree with the gold reward far above chance (measured 0.690; the untrained model: 0.49).
    assert metrics["pairs"]["reward_agreement"] > 0.62, metrics["pairs"]
    # The reward model trained on AI labels orders held-out pairs as the gold reward does.
    reward_model = build(f"reward_model:path={run / 'rm' / 'final'}")[1]
    rows = [json.loads(line) for line in (run / "pairs" / "final" / "eval_pairs.jsonl").read_text().splitlines()]
    chosen = reward_model([r["prompt"] for r in rows], [r["chosen"] for r in rows])
    rejected = reward_model([r["prompt"] for r in rows], [r["rejected"] for r in rows])
    gold_order = [(c > r) == (r_["chosen_reward"] > r_["rejected_reward"]) for c, r, r_ in zip(chosen, rejected, rows)]
    assert sum(gold_order) / len(gold_order) > 0.58  # measured 0.64 on these 100 held-out pairs


def test_rlaif_ppo_raises_the_gold_reward(rlaif_run):
    _, policies, _ = rlaif_run
    assert policies["ppo"]["reward"] > policies["sft"]["reward"] + 0.06, policies  # measured 0.498 -> 0.675 (KL 4.4)
    assert policies["ppo"]["win_rate"] > 0.6


def test_best_of_n_with_a_pairwise_judge_raises_the_gold_reward(rlaif_run):
    _, policies, _ = rlaif_run
    assert policies["best_of_4"]["reward"] > policies["sft"]["reward"] + 0.06, policies  # measured 0.498 -> 0.682
    assert policies["best_of_4"]["win_rate"] > 0.6
