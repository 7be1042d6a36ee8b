"""`posttrain pairs`: pair selection (first_two / max_gap / all_pairs), hard and Bradley-Terry labels
against hand-computed values, the stage on the embedded model feeding `load_pairs`, and the `dpo`
recipe end to end with no files."""

from __future__ import annotations

import json
import math
import random

import pytest

from conftest import run_cli
from posttrain.algorithms.pairs import PairsConfig, bradley_terry_first_wins, make_pairs, run_pairs, select_pairs
from posttrain.config import build_config
from posttrain.errors import ConfigError
from posttrain.methods.best_of_n import Candidate, PromptCandidates


def _cands(*rewards, texts=None):
    texts = texts or [f"sample {i}" for i in range(len(rewards))]
    return [Candidate(t, [], r) for t, r in zip(texts, rewards)]


def test_select_pairs_rules():
    c = _cands(0.4, 0.9, None, 0.1, 0.6)
    (a, b), = select_pairs(c, "first_two")[0]
    assert (a.reward, b.reward) == (0.4, 0.9)
    (a, b), = select_pairs(c, "max_gap")[0]  # largest gap 0.9 - 0.1, kept in sampling order; None skipped
    assert (a.reward, b.reward) == (0.9, 0.1)
    assert select_pairs(c, "max_gap", min_gap=0.81) == ([], 1)
    pairs, below = select_pairs(c, "all_pairs", min_gap=0.45)  # gaps of the 6 pairs: .5 .3 .2 .8 .3 .5
    assert [(x.reward, y.reward) for x, y in pairs] == [(0.4, 0.9), (0.9, 0.1), (0.1, 0.6)] and below == 3
    assert select_pairs(_cands(0.5, None), "first_two") == ([], 0)
    with pytest.raises(ConfigError, match="selection must be one of"):
        select_pairs(c, "best_of")


def _groups():
    prompts = [{"prompt": f"p{i}"} for i in range(4)]
    rewards = [(0.2, 0.7), (0.9, 0.3), (0.5, 0.5), (0.6, 0.6)]
    groups = [PromptCandidates(row, _cands(*r, texts=[f"a{i}", f"b{i}"])) for i, (row, r) in enumerate(zip(prompts, rewards))]
    groups[3].candidates[1].text = " a3 "  # identical sides once stripped
    return groups


def test_hard_labels_order_by_reward_and_count_ties():
    rows, counts = make_pairs(_groups(), build_config(PairsConfig, {"labels": "hard"}))
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [("p0", "b0", "a0"), ("p1", "a1", "b1")]
    assert [(r["chosen_reward"], r["rejected_reward"]) for r in rows] == [(0.7, 0.2), (0.9, 0.3)]
    assert counts["ties"] == 1 and counts["identical"] == 1 and counts["pairs"] == 2
    assert counts["mean_gap"] == pytest.approx((0.5 + 0.6) / 2) and counts["reward_agreement"] == 1.0


def test_bradley_terry_labels():
    groups = _groups()[:2]
    hard, _ = make_pairs(groups, build_config(PairsConfig, {"labels": "hard"}))
    huge, _ = make_pairs(groups, build_config(PairsConfig, {"labels": "bradley_terry", "label_beta": 1e9}), seed=3)
    assert huge == hard
    # beta 5, seed 0: the same draws by hand, P(first wins) = sigmoid(5 (r1 - r2))
    rng = random.Random(0)
    expect = [rng.random() < 1 / (1 + math.exp(-5 * (r1 - r2))) for r1, r2 in [(0.2, 0.7), (0.9, 0.3)]]
    rows, counts = make_pairs(groups, build_config(PairsConfig, {"labels": "bradley_terry"}), seed=0)
    assert [r["chosen"] == f"a{i}" for i, r in enumerate(rows)] == expect
    assert counts["reward_agreement"] == sum((r["chosen_reward"] > r["rejected_reward"]) for r in rows) / 2
    assert bradley_terry_first_wins(0.0, 1.0, 1e9, random.Random(0)) is False  # no overflow


def test_stage_writes_pairs_that_dpo_loads(tmp_path):
    from posttrain.data.pairs import load_pairs
    from posttrain.data.readers import read_records
    from posttrain.models.loading import load_tokenizer

    out = tmp_path / "pairs"
    config = build_config(PairsConfig, {"output_dir": str(out), "prompts": 6, "eval_prompts": 3, "num_samples": 3,
                                        "selection": "max_gap", "labels": "bradley_terry", "max_new_tokens": 12,
                                        "device": "cpu"})
    metrics = run_pairs(config)
    rows = [json.loads(line) for line in (out / "final" / "pairs.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["pairs"] > 0 and {"prompt", "chosen", "rejected", "chosen_reward", "rejected_reward"} <= set(rows[0])
    assert rows[0]["chosen"][0]["role"] == "assistant"  # the sentiment task is conversational
    assert (out / "final" / "eval_pairs.jsonl").is_file() and (out / "config.yaml").is_file()
    assert json.loads((out / "metrics.jsonl").read_text())["pairs"] == metrics["pairs"]
    pairs_file = str(out / "final" / "pairs.jsonl")
    examples, dropped = load_pairs(load_tokenizer("embedded"), read_records(pairs_file), pairs_file,
                                   max_length=256, truncation=False)
    assert len(examples) == len(rows) and not dropped
    with pytest.raises(ConfigError, match="already holds finished pairs"):
        run_pairs(config)


def test_bad_option_is_one_line_exit_2():
    proc = run_cli("pairs", "selection=best_of", "device=cpu")
    assert proc.returncode == 2 and "selection" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("pairs", "num_samples=1")
    assert proc.returncode == 2 and "num_samples must be >= 2" in proc.stderr


def test_dpo_recipe_runs_with_no_files(tmp_path):
    from posttrain.pipeline import load_pipeline, run_pipeline

    overrides = [f"output_dir={tmp_path / 'run'}", "defaults.device=cpu",
                 "sft.max_steps=2", "sft.batch_size=4", "pairs.prompts=8", "pairs.eval_prompts=4", "pairs.max_new_tokens=12",
                 "dpo.max_steps=2", "dpo.batch_size=4", "dpo.logging_steps=1", "compare.prompts=4", "compare.max_new_tokens=12"]
    records = run_pipeline(load_pipeline("dpo", overrides), log=lambda *a, **k: None)
    assert [r["status"] for r in records] == ["done"] * 4 and records[1]["metrics"]["pairs"] > 0
    assert (tmp_path / "run" / "dpo" / "final").is_dir()
    assert (tmp_path / "run" / "compare" / "final" / "evaluations.jsonl").is_file()
    again = run_pipeline(load_pipeline("dpo", overrides), log=lambda *a, **k: None)
    assert [r["status"] for r in again] == ["skipped"] * 4  # the pairs and compare stages count as finished


def test_judge_labels_follow_the_judge_and_keep_rewards_with_their_text():
    from posttrain.rewards.judge import pairwise_judge

    judge = pairwise_judge(method="logprob")  # the embedded model: untrained, but a real judge
    groups = _groups()[:3]
    rows, counts = make_pairs(groups, build_config(PairsConfig, {"labels": "judge"}), judge)
    p = judge.preferences(["p0", "p1", "p2"], ["a0", "a1", "a2"], ["b0", "b1", "b2"])
    expect = [(f"p{i}", f"a{i}" if pi > 0.5 else f"b{i}") for i, pi in enumerate(p) if pi != 0.5]
    assert [(r["prompt"], r["chosen"]) for r in rows] == expect and counts["ties"] == 3 - len(expect)
    reward_of = {c.text: c.reward for g in groups for c in g.candidates}
    assert all(r["chosen_reward"] == reward_of[r["chosen"]] and r["rejected_reward"] == reward_of[r["rejected"]] for r in rows)
