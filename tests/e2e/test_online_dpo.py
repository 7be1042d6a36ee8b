"""The shipped `online_dpo` recipe on the embedded sentiment task, scaled down by overrides: each round samples
better reviews (gold reward) than the last."""

from __future__ import annotations

from conftest import SMALL_PAIRS, run_recipe


def test_online_dpo_samples_better_reviews_every_round(tmp_path):
    metrics, policies = run_recipe("online_dpo", tmp_path, *(f"{s}.{o}" for s in ("pairs1", "pairs2") for o in SMALL_PAIRS),
                                   "dpo1.learning_rate=3e-4", "dpo2.learning_rate=3e-4")
    # Round 2 samples its pairs from the round-1 policy, so their mean gold reward is round 1's progress.
    assert metrics["pairs2"]["sample_reward_mean"] > metrics["pairs1"]["sample_reward_mean"] + 0.04, metrics  # 0.509 -> 0.608
    assert metrics["dpo1"]["eval_rewards/accuracies"] > 0.5
    sft, round1, round2 = (policies[p]["reward"] for p in ("sft", "dpo_round1", "dpo_round2"))
    assert round1 > sft + 0.04 and round2 > sft + 0.08, policies  # measured 0.498 -> 0.599 -> 0.682
    assert policies["dpo_round2"]["kl"] > policies["dpo_round1"]["kl"] > 0  # each round moves further from SFT
