"""report_to on an online stage: each logged step of a GRPO run sends that round's samples as a table (here
MLflow's, read back with MlflowClient); tests/unit/train/test_trackers.py checks every tracker's table."""

import importlib.util
import json

import pytest

REWARDS = '''
def letter_a(prompts, completions, **columns):
    return [c.count("a") / max(1, len(c)) for c in completions]
'''


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="posttrain[mlflow] is not installed")
def test_online_rounds_send_their_completions_as_tables(tmp_path, tiny_llama, monkeypatch):
    """A 2-step GRPO run (one round a step): each logged step's table holds that round's samples: the dataset's
    prompts, each num_generations times, and rewards that the reward function gives their completions."""
    from posttrain.algorithms.grpo import GRPOConfig, run_grpo
    from posttrain.config import build_config

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "rewards.py").write_text(REWARDS)
    prompts = [f"Say something {i}:" for i in range(8)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    out = tmp_path / "run"
    config = build_config(GRPOConfig, dict(
        model=tiny_llama, dataset=str(tmp_path / "prompts.jsonl"), reward_funcs=[f"{tmp_path / 'rewards.py'}:letter_a"],
        output_dir=str(out), max_steps=2, prompts_per_step=2, num_generations=2, max_new_tokens=6, max_length=64,
        batch_size=4, logging_steps=1, device="cpu", report_to=["mlflow"]))
    run_grpo(config)
    records = {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    run_id = json.loads((out / "trackers.json").read_text())["mlflow"]
    for step in (1, 2):
        path = client.download_artifacts(run_id, f"completions/step_{step:06d}.json", str(tmp_path / f"dl{step}"))
        table = json.loads(open(path).read())
        assert table["columns"] == ["step", "prompt", "completion", "reward", "advantage"]
        rows = [dict(zip(table["columns"], row)) for row in table["data"]]
        assert len(rows) == 2 * 2 and {r["step"] for r in rows} == {step}
        assert all(r["prompt"] in prompts for r in rows) and rows[0]["prompt"] == rows[1]["prompt"]  # a group: one prompt twice
        assert [r["reward"] for r in rows] == [r["completion"].count("a") / max(1, len(r["completion"])) for r in rows]
        assert records[step]["reward/mean"] == pytest.approx(sum(r["reward"] for r in rows) / len(rows))
    for ours, trls in (("reward.mean", "reward"), ("completion.mean_length", "completions.mean_length")):  # a file store: '.' for '/'
        for name in (ours, trls):
            assert [m.value for m in client.get_metric_history(run_id, name)] == [records[s][name.replace(".", "/")] for s in (1, 2)]
