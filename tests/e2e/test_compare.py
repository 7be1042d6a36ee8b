"""`posttrain compare` on the embedded model against a perturbed copy: KL of the reference against
itself is 0, the perturbed policy's KL is positive, win rates, best-of-n (n=1 is plain sampling; a
gold selector helps; a judge selector picks the judge's winner), the report renders, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import run_cli
from posttrain.algorithms.compare import CompareConfig, pick_by_judge, run_compare
from posttrain.config import build_config
from posttrain.errors import ConfigError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def result(models, tmp_path_factory):
    ref, policy = models
    out = tmp_path_factory.mktemp("compare_run") / "run"
    config = build_config(CompareConfig, {
        "reference": ref, "policies": [f"self={ref}", f"perturbed={policy}"], "best_of_n": [1, 4],
        "selector_funcs": ["task"], "prompts": 12, "samples_per_prompt": 2, "max_new_tokens": 16,
        "device": "cpu", "output_dir": str(out), "seed": 3})
    return run_compare(config), out


def _rows(result):
    return {r["policy"]: r for r in result[0]["evaluations"]}


def test_reference_against_itself(result):
    rows = _rows(result)
    assert rows["sft"]["kl"] == 0.0 and rows["sft"]["win_rate"] == 0.5
    # The same model under another name: the same samples (same seed), so KL is exactly 0 and every pair ties.
    assert rows["self"]["kl"] == 0.0 and rows["self"]["win_rate"] == 0.5
    assert rows["self"]["reward"] == rows["sft"]["reward"]


def test_perturbed_policy_kl_is_positive(result):
    rows = _rows(result)
    assert rows["perturbed"]["kl"] > 0 and rows["perturbed"]["kl_per_token"] > 0
    assert 0.0 <= rows["perturbed"]["win_rate"] <= 1.0


def test_best_of_n(result):
    rows = _rows(result)
    assert rows["best_of_1"]["kl"] == 0.0 and rows["best_of_4"]["kl"] == pytest.approx(math.log(4) - 0.75)
    # n=1 picks the only sample: the same samples as the reference's (same seed)
    assert rows["best_of_1"]["reward"] == rows["sft"]["reward"] and rows["best_of_1"]["win_rate"] == 0.5
    # the selector is the gold reward itself, so the pick of 4 is at least as good
    assert rows["best_of_4"]["reward"] >= rows["best_of_1"]["reward"]
    assert rows["best_of_4"]["win_rate"] >= 0.5


def test_outputs_and_report(result):
    from posttrain.report import write_report

    _, out = result
    lines = [json.loads(x) for x in (out / "final" / "evaluations.jsonl").read_text().splitlines()]
    assert [r["policy"] for r in lines] == ["sft", "self", "perturbed", "best_of_1", "best_of_4"]
    assert all(r["judge"] == "gold" and {"reward", "reward_stderr", "kl", "win_rate"} <= set(r) for r in lines)
    samples = [json.loads(x) for x in (out / "final" / "samples.jsonl").read_text().splitlines()]
    assert {s["policy"] for s in samples} == {r["policy"] for r in lines} and all("completion" in s for s in samples)
    assert (out / "config.yaml").is_file() and json.loads((out / "metrics.jsonl").read_text())["step"] == 0
    html = write_report(out).read_text()
    assert "reward vs KL" in html and "perturbed" in html and "win rates" in html


def test_bad_policies_entry_is_one_line_exit_2():
    proc = run_cli("compare", "policies=[ppo_without_path]", "device=cpu")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "name=path" in proc.stderr


def test_missing_reward_model_of_the_selector_is_not_found_naming_the_option(tmp_path):
    missing = tmp_path / "runs" / "nope" / "final"
    proc = run_cli("compare", f"selector_funcs=[reward_model:path={missing}]", "best_of_n=[2]", "prompts=2", "device=cpu",
                   f"output_dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"posttrain: error: selector_funcs: reward_model path not found: {missing}; give the final/ "
                                   "directory of a `posttrain rm` run (or any sequence classifier with num_labels=1)")


def test_judge_selector_picks_the_judges_tournament_winner(models, tmp_path):
    from posttrain.rewards.judge import pairwise_judge

    ref, _ = models
    judge = pairwise_judge(model=ref, method="logprob")  # the embedded model: untrained, but a real judge
    groups = [("Review of Dune:", ["great film", "dull and slow", "a fine cast", "bad"]), ("Review of Heat:", ["ok", "superb"])]
    picks = pick_by_judge(judge, groups, "borda")
    for (prompt, completions), pick in zip(groups, picks):  # the judge as a reward: each one's mean P(win) in its group
        scores = judge([prompt] * len(completions), completions)
        assert scores[pick] == max(scores)
    config = build_config(CompareConfig, {"reference": ref, "best_of_n": [3], "selector_judge": "pairwise_judge:method=logprob",
                                          "prompts": 3, "samples_per_prompt": 1, "max_new_tokens": 8, "device": "cpu",
                                          "output_dir": str(tmp_path / "run")})
    rows = {r["policy"]: r for r in run_compare(config)["evaluations"]}
    assert rows["best_of_3"]["kl"] == pytest.approx(math.log(3) - 2 / 3) and 0 <= rows["best_of_3"]["win_rate"] <= 1
    with pytest.raises(ConfigError, match="pairwise_judge"):
        build_config(CompareConfig, {"selector_judge": "pointwise_judge"})


def test_llm_judge_win_rate_against_the_reference(models, tmp_path):
    """judge=pairwise_judge: the same model under another name writes the same samples, and identical texts
    judged in both orders tie exactly; the perturbed policy's judged win rate is its pairs' mean preference."""
    ref, policy = models
    config = build_config(CompareConfig, {
        "reference": ref, "policies": [f"self={ref}", f"perturbed={policy}"], "dataset": "task:sentiment",
        "judge": "pairwise_judge:model=embedded-judge:method=logprob", "prompts": 4, "samples_per_prompt": 1,
        "max_new_tokens": 16, "device": "cpu", "output_dir": str(tmp_path / "run"), "seed": 0})
    rows = {r["policy"]: r for r in run_compare(config)["evaluations"]}
    assert rows["sft"]["judge_win_rate"] == 0.5
    assert rows["self"]["judge_win_rate"] == pytest.approx(0.5) and rows["self"]["judge_ties"] == 4
    low, high = rows["perturbed"]["judge_win_rate_ci"]
    assert low <= rows["perturbed"]["judge_win_rate"] <= high and 0 <= rows["perturbed"]["judge_lc_win_rate"] <= 1
    with pytest.raises(ConfigError, match="judge must be a pairwise_judge"):
        build_config(CompareConfig, {"judge": "judge:model=embedded"})
