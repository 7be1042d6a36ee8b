"""`posttrain eval` with an LLM judge (the shipped embedded-judge) and on a math benchmark's format:
the win rate against a reference column equals the judge's preferences recomputed here, a policy
against itself ties on every prompt, MT-Bench-style ratings count unreadable replies, and sampled
avg@k / pass@k equal the unbiased estimator on the report's own samples."""

import json

import pytest

from posttrain.cli import main
from posttrain.methods.metrics import pass_at_k
from posttrain.methods.win_rate import length_controlled_win_rate, win_rate_summary
from posttrain.tasks import get_task

JUDGE = "pairwise_judge:model=embedded-judge:method=logprob"


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    """Four sentiment prompts with a reference review in AlpacaEval's `output` column."""
    path = tmp_path_factory.mktemp("reviews") / "reviews.jsonl"
    rows = get_task("sentiment").rows("test", 4)
    path.write_text("".join(json.dumps({"prompt": r["prompt"], "output": r["completion"][0]["content"]}) + "\n"
                            for r in rows))
    return path, rows


def eval_report(tmp_path, *args) -> dict:
    out = tmp_path / "report.json"
    assert main(["eval", "model=embedded", "max_new_tokens=32", f"output_file={out}", *args]) == 0
    return json.loads(out.read_text())


def test_win_rate_vs_reference_column_is_the_judges_position_swapped_preferences(tmp_path, reviews):
    from posttrain.rewards.judge import pairwise_judge

    path, rows = reviews
    report = eval_report(tmp_path, f"dataset={path}", f"judge={JUDGE}", "win_rate_vs=output", "show_samples=4")
    samples = [s["completion"] for s in report["samples"]]
    references = [r["completion"][0]["content"] for r in rows]
    preferences = pairwise_judge(model="embedded-judge", method="logprob").preferences(
        [r["prompt"] for r in rows], samples, references)
    expected = win_rate_summary(preferences)
    assert report["judge_win_rate"] == pytest.approx(expected["win_rate"])
    assert report["judge_win_rate_ci"] == pytest.approx(expected["win_rate_ci"])
    assert report["judge_wins"] + report["judge_ties"] + report["judge_losses"] == 4
    lc = length_controlled_win_rate(preferences, [len(s) for s in samples], [len(r) for r in references])
    assert report["judge_lc_win_rate"] == pytest.approx(lc["lc_win_rate"])
    assert "pass@1" not in report  # no gold scorer: the judge's numbers are the report


def test_a_policy_against_itself_ties_on_every_prompt(tmp_path, reviews):
    """win_rate_vs=MODEL samples the reference greedily, as the policy: identical texts, and with both
    orders judged P = ½[p + 1 − p] = ½ exactly, so the win rate and the LC win rate are ½."""
    report = eval_report(tmp_path, f"dataset={reviews[0]}", f"judge={JUDGE}", "win_rate_vs=embedded")
    assert report["judge_ties"] == 4 and report["judge_win_rate"] == pytest.approx(0.5)
    assert report["judge_lc_win_rate"] == pytest.approx(0.5) and report["policy_mean_chars"] == report["reference_mean_chars"]


def test_mt_bench_rating_and_unreadable_replies(tmp_path, reviews):
    # logprob: the expected rating under the judge's next-token distribution over 1..9 (one token each)
    rated = eval_report(tmp_path, f"dataset={reviews[0]}", "limit=2",
                        "judge=judge:model=embedded-judge:template=mt_bench:method=logprob:max_score=9")
    assert rated["judge_rated"] == 2 and rated["judge_invalid"] == 0 and 1 <= rated["judge_rating"] <= 9
    # generate: the shipped judge was trained to answer A or B, never "Rating: [[k]]": every reply is counted invalid
    unread = eval_report(tmp_path, f"dataset={reviews[0]}", "limit=2",
                         "judge=judge:model=embedded-judge:template=mt_bench:max_new_tokens=4")
    assert unread["judge_invalid"] == 2 and unread["judge_rated"] == 0


def test_sampled_avg_and_pass_at_k_equal_the_estimator_on_the_samples(tmp_path):
    report = eval_report(tmp_path, "dataset=task:arithmetic:test:3", "num_samples=4", "temperature=1.0", "top_p=0.95",
                         "max_new_tokens=96", "show_samples=12")
    scores = [s["score"] for s in report["samples"]]
    per_prompt = [scores[i:i + 4] for i in range(0, 12, 4)]
    assert report["avg@4"] == pytest.approx(sum(scores) / 12)
    for k in (1, 2, 4):
        assert report[f"pass@{k}"] == pytest.approx(sum(pass_at_k(4, sum(x >= 0.5 for x in s), k) for s in per_prompt) / 3)


def test_gsm8k_file_is_scored_by_math_accuracy(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    path.write_text(json.dumps({"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}) + "\n")
    report = eval_report(tmp_path, f"dataset={path}", "num_samples=2", "temperature=1.0", "top_p=0.95")
    assert report["samples"][0]["prompt"].endswith("put your final answer within \\boxed{}.")
    assert {"avg@2", "pass@1", "pass@2"} <= set(report) and report["score"] in (0.0, 0.5, 1.0)


@pytest.mark.parametrize("args,message", [
    ([f"judge={JUDGE}"], "judge=pairwise_judge needs win_rate_vs"),
    (["win_rate_vs=output", "scorer=task:sentiment"], "win_rate_vs is read only with judge=pairwise_judge"),
    (["judge=format", "win_rate_vs=output"], "judge must be pairwise_judge"),
])
def test_bad_judge_options_are_one_line_exit_2(tmp_path, reviews, capsys, args, message):
    assert main(["eval", f"dataset={reviews[0]}", f"output_file={tmp_path / 'r.json'}", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
