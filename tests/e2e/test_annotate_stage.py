"""The annotate stage and the `human_feedback` recipe: a policy's samples → labels through the app's HTTP
API (scripted people) → export → rm / dpo → compare, offline on the embedded model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli, write_jsonl
from posttrain.cli import main

pytest.importorskip("fastapi", reason="posttrain[annotate] is not installed (fastapi, uvicorn, sqlalchemy)")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _gold(rows: list[dict], side: str) -> list[float]:
    """The reward the scripted people label by: reward_funcs=[task] on the sentiment task."""
    from posttrain.rewards import RewardFunctions

    rewards = RewardFunctions.resolve(["task"], "task:sentiment")
    return rewards([r["prompt"] for r in rows], [r[side] for r in rows], {}).total


def test_scripted_labels_follow_the_gold_reward_and_export_trains_a_reward_model(tmp_path):
    out = tmp_path / "annotate"
    code = main(["annotate", f"output_dir={out}", "prompts=24", "label_with=scripted", "annotators=[ana,ben]", "admins=[]",
                 "overlap=2", "tie_margin=0.02", "device=cpu"])
    assert code == 0
    rows = _rows(out / "final" / "preferences.jsonl")
    summary = json.loads((out / "final" / "summary.json").read_text())
    assert summary["labels"] == 2 * summary["items"] and len(rows) == summary["items"] > 10
    # scripted_beta=0: both people label by the reward, so they agree and chosen scores at least rejected
    assert summary["agreement_mean"] == 1.0 and all(r["annotators"] == ["ana", "ben"] or r["annotators"] == ["ben", "ana"] for r in rows)
    chosen, rejected = _gold(rows, "chosen"), _gold(rows, "rejected")
    for row, c, r in zip(rows, chosen, rejected):
        if row["label"] == 0.5:
            assert abs(c - r) <= 0.02
        else:
            assert row["label"] == 1.0 and c - r > 0.02
    # the export is a preference dataset rm reads as it is
    code = main(["rm", f"dataset={out / 'final' / 'preferences.jsonl'}", f"output_dir={tmp_path / 'rm'}", "max_steps=2",
                 "batch_size=8", "device=cpu"])
    assert code == 0 and (tmp_path / "rm" / "final" / "config.json").is_file()


def test_a_finished_stage_is_not_overwritten_and_a_second_run_resumes_the_project(tmp_path, capfd):
    out = tmp_path / "annotate"
    (tmp_path / "rewards.py").write_text("def prefers_good(prompts, completions, **_):\n"
                                         "    return [1.0 if c.startswith('good') else 0.0 for c in completions]\n")
    samples = write_jsonl(tmp_path / "s.jsonl", [{"prompt": f"p{i}", "completions": [f"good {i}", f"bad {i}"]} for i in range(4)])
    base = ["annotate", f"output_dir={out}", f"samples={samples}", "label_with=scripted", "annotators=[ana]", "admins=[]",
            f"reward_funcs=[{tmp_path / 'rewards.py'}:prefers_good]"]
    assert main(base) == 0
    capfd.readouterr()
    assert main(base) == 2
    assert "overwrite_output_dir=true" in capfd.readouterr().err
    # the project is still there: the next run exports it again without re-creating anything
    assert main([*base, "overwrite_output_dir=true"]) == 0
    assert "resuming the project" in capfd.readouterr().out
    rows = _rows(out / "final" / "preferences.jsonl")
    assert [r["chosen"] for r in rows] == [f"good {i}" for i in range(4)]


def test_human_feedback_recipe_runs_the_whole_loop_offline(tmp_path):
    out = tmp_path / "hf"
    proc = run_cli("pipeline", "human_feedback", f"output_dir={out}", "annotate.label_with=scripted", "sft.max_steps=2",
                   "annotate.prompts=24", "rm.num_epochs=1", "compare.prompts=8", "defaults.device=cpu", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("sft", "annotate", "rm", "dpo", "compare"):
        assert f"{stage} ({stage}): done" in proc.stdout
    summary = json.loads((out / "annotate" / "final" / "summary.json").read_text())
    assert summary["labels"] == 2 * summary["items"]  # overlap 2, from three scripted people
    assert 0 < summary["agreement_mean"] < 1  # noisy (beta 5) people disagree sometimes
    evaluations = _rows(out / "compare" / "final" / "evaluations.jsonl")
    assert {e["policy"] for e in evaluations} >= {"sft", "dpo", "best_of_4"}


def test_scripted_people_give_the_same_labels_for_the_same_seed(tmp_path):
    (tmp_path / "rewards.py").write_text("def length(prompts, completions, **_):\n    return [len(c) / 10 for c in completions]\n")
    samples = write_jsonl(tmp_path / "s.jsonl", [{"prompt": f"p{i}", "completions": ["x" * (i % 7), "y" * (i % 5)]} for i in range(30)])
    exports = []
    for run in ("one", "two"):
        out = tmp_path / run
        assert main(["annotate", f"output_dir={out}", f"samples={samples}", "label_with=scripted", "annotators=[a,b,c]",
                     "admins=[]", "overlap=2", "scripted_beta=5", f"reward_funcs=[{tmp_path / 'rewards.py'}:length]"]) == 0
        exports.append((out / "final" / "preferences.jsonl").read_text())
    assert exports[0] == exports[1]
    agreement = json.loads((tmp_path / "one" / "final" / "summary.json").read_text())["agreement_mean"]
    assert 0 < agreement < 1  # the noisy people do disagree, the same way both times
