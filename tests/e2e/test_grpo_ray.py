"""GRPO with ray=true (rollout/ray_backend.py) against the one-process run: a prompt's samples depend
only on its seed, so 2 Ray rollout workers give the one-process run's metrics and weights to float
tolerance (not "within noise"), both on a local cluster that ray.init() starts (colocate) and on one
that `ray start --head` started (ray_address=, disaggregate). Workers the cluster cannot place, and a
ray_address nobody answers at, stop the run with one line and exit code 2. The learner itself as a
group of two processes that Ray places (ray_learners=2) takes the steps of one process with the
combined batch.

Ray runs in a loopback-only network namespace of its own (tests/ray_isolation.py)."""

from __future__ import annotations

import math
import os
import sys

import pytest
import torch
from conftest import final_weights, read_metrics, without_timing, write_jsonl
from safetensors.torch import load_file

REWARDS = '''
def letter_a(prompts, completions, **columns):
    return [c.count("a") / max(1, len(c)) for c in completions]
'''

pytest.importorskip("ray", reason="ray not installed here: pip install 'posttrain[ray]' (bash install.sh dev installs it)")

from ray_isolation import PREFIX, isolated  # noqa: E402

pytestmark = pytest.mark.skipif(PREFIX is None, reason="needs `unshare -n` (or `unshare -rn`) and `ip` for a loopback-only network namespace")


@pytest.fixture(scope="module")
def runs(tiny_llama, tmp_path_factory):
    """The one-process run and two ray=true runs of the same config and seed; and a bad ray_address."""
    root = tmp_path_factory.mktemp("grpo_ray")
    (root / "rewards.py").write_text(REWARDS)
    write_jsonl(root / "prompts.jsonl", [{"prompt": f"Say something {i}:"} for i in range(16)])
    args = ["grpo", f"model={tiny_llama}", f"dataset={root / 'prompts.jsonl'}", f"reward_funcs=[{root / 'rewards.py'}:letter_a]",
            "max_steps=3", "prompts_per_step=5", "num_generations=4", "max_new_tokens=12", "max_length=64", "batch_size=8",
            "learning_rate=1e-3", "logging_steps=1", "device=cpu", "seed=3"]
    python = f"{sys.executable} -m posttrain"
    line = lambda *extra: " ".join([python, *args, *extra])
    script = f"""
{line(f"output_dir={root / 'one'}")} > {root / 'one.log'} 2>&1; echo one=$? >> {root / 'codes'}
{line(f"output_dir={root / 'local'}", "ray=true", "ray_workers=2")} > {root / 'local.log'} 2>&1; echo local=$? >> {root / 'codes'}
ray start --head --port=6379 --num-cpus=4 --include-dashboard=false --disable-usage-stats > {root / 'head.log'} 2>&1
{line(f"output_dir={root / 'cluster'}", "ray=true", "ray_workers=2", "ray_address=127.0.0.1:6379",
      "ray_placement=disaggregate")} > {root / 'cluster.log'} 2>&1; echo cluster=$? >> {root / 'codes'}
{line(f"output_dir={root / 'one4'}", "prompts_per_step=4")} > {root / 'one4.log'} 2>&1; echo one4=$? >> {root / 'codes'}
{line(f"output_dir={root / 'learners'}", "prompts_per_step=2", "ray=true", "ray_learners=2", "ray_workers=1",
      "ray_address=127.0.0.1:6379")} > {root / 'learners.log'} 2>&1; echo learners=$? >> {root / 'codes'}
{line(f"output_dir={root / 'full'}", "ray=true", "ray_workers=50", "ray_address=127.0.0.1:6379",
      "ray_timeout=3")} > {root / 'full.log'} 2>&1; echo full=$? >> {root / 'codes'}
{line(f"output_dir={root / 'bad'}", "ray=true", "ray_address=127.0.0.1:6390")} > {root / 'bad.log'} 2>&1; echo bad=$? >> {root / 'codes'}
"""
    proc = isolated(script)
    codes = dict(item.split("=") for item in (root / "codes").read_text().split()) if (root / "codes").exists() else {}
    logs = {name: (root / f"{name}.log").read_text() if (root / f"{name}.log").exists() else "" for name in ("one", "local", "cluster", "full", "bad", "head", "one4", "learners")}
    return root, codes, logs, proc


@pytest.mark.parametrize("name", ["local", "cluster"])
def test_ray_workers_give_the_one_process_run(runs, name):
    root, codes, logs, proc = runs
    assert codes.get("one") == "0", logs["one"][-3000:] + proc.stderr[-2000:]
    assert codes.get(name) == "0", logs[name][-3000:] + logs["head"][-2000:] + proc.stderr[-2000:]
    one, ray = read_metrics(root / "one"), read_metrics(root / name)
    assert len(one) == len(ray) == 3
    assert all("time/weight_sync_seconds" in r for r in ray)  # the actors' copies were refreshed every round
    assert "time/weight_sync_seconds" not in one[0]
    one, ray = without_timing(one), without_timing(ray)
    for a, b in zip(one, ray):
        assert set(a) == set(b)
        for key, value in a.items():
            if isinstance(value, float) and math.isfinite(value):
                assert b[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (a["step"], key)
            else:
                assert b[key] == value, (a["step"], key)
    # the run learned something, so equal metrics are not those of a run that did nothing
    assert any(r["reward/std"] > 0 for r in one) and any(abs(r["loss"]) > 0 for r in one)


def test_two_learners_placed_by_ray_take_the_steps_of_one_process_with_the_combined_batch(runs, tiny_llama):
    """ray_learners=2: two learner actors form a gloo group (FSDP2), each with prompts_per_step=2 and its
    own rollout actor, and end where one process with prompts_per_step=4 ends (as torchrun's processes do:
    tests/e2e/test_online_ranks.py), to the same tolerance."""
    root, codes, logs, proc = runs
    assert codes.get("one4") == "0", logs["one4"][-3000:] + proc.stderr[-2000:]
    assert codes.get("learners") == "0", logs["learners"][-4000:] + logs["head"][-2000:] + proc.stderr[-2000:]
    one, two = read_metrics(root / "one4"), read_metrics(root / "learners")
    assert [r["step"] for r in two] == [1, 2, 3] and all("time/weight_sync_seconds" in r for r in two)
    for a, b in zip(without_timing(one), without_timing(two)):
        assert set(a) == set(b)
        for key in ("loss", "grad_norm", "reward/mean", "reward/std", "completion/mean_length", "advantage/abs_mean", "entropy"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
    before = load_file(os.path.join(tiny_llama, "model.safetensors"))
    alone, shared = final_weights(root / "one4"), final_weights(root / "learners")
    assert max(float((alone[k] - before[k]).abs().max()) for k in before) > 1e-3  # the policy moved 10x the tolerance
    for name in before:
        torch.testing.assert_close(shared[name], alone[name], rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}")


def test_a_ray_address_nobody_answers_at_is_one_line_and_exit_2(runs):
    root, codes, logs, _ = runs
    text = logs["bad"]
    assert codes.get("bad") == "2", text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    assert "ray_address=127.0.0.1:6390" in text and "ray start --head --port=6390" in text, text
    assert not (root / "bad").exists()


def test_workers_the_cluster_cannot_place_stop_the_run_with_what_it_has(runs):
    """50 workers of 1 CPU on a 4-CPU cluster: after ray_timeout, exit 2 and a line that says what the
    cluster has and what to change (not a hang)."""
    root, codes, logs, _ = runs
    text = logs["full"]
    assert codes.get("full") == "2", text
    last = text.strip().splitlines()[-1]
    assert "Traceback" not in text, text
    assert "50 rollout workers" in last and "within 3 s" in last and "'CPU': 4.0" in last and "lower ray_workers" in last, text
    assert not (root / "full").exists()
