"""The Python API: keyword arguments build the configs the CLI builds, errors are the CLI's one-line
ConfigErrors, Python callables work as reward functions and scorers, generate matches transformers'
greedy decoding, and `import posttrain` does not import torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import posttrain
from conftest import SFT_KEYWORDS as SFT
from posttrain.config import load_config
from posttrain.errors import ConfigError


def share_of_a(prompts, completions, **columns):
    """Module-level, so the API names it by its import path (reproducible from the CLI)."""
    return [c.count("a") / max(1, len(c)) for c in completions]


def test_import_posttrain_does_not_import_torch():
    code = ("import sys, posttrain; posttrain.sft; posttrain.config_for; posttrain.generate; "
            "heavy = [m for m in ('torch', 'transformers', 'yaml') if m in sys.modules]; assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_keyword_arguments_build_the_config_the_cli_builds(tiny_llama, tmp_path):
    values = dict(model=tiny_llama, dataset="task:arithmetic", output_dir=str(tmp_path / "x"), **SFT)
    from posttrain.algorithms.sft import SFTConfig

    assert posttrain.config_for("sft", **values) == load_config(SFTConfig, None, [f"{k}={v}" for k, v in values.items()])


def test_unknown_keyword_is_the_cli_one_line_error_listing_valid_keys(tmp_path):
    with pytest.raises(ConfigError) as err:
        posttrain.sft(model="embedded", max_stepz=3, output_dir=str(tmp_path / "never"))
    message = str(err.value)
    assert "\n" not in message and "unknown config key 'max_stepz'" in message and "did you mean 'max_steps'" in message
    assert "valid keys: model, " in message and "learning_rate" in message
    assert not (tmp_path / "never").exists()
    with pytest.raises(ConfigError, match="config key 'max_steps' got 'many'; expected an integer"):
        posttrain.config_for("sft", max_steps="many")
    with pytest.raises(ConfigError, match="unknown stage 'sfx'; valid stages: sft, "):
        posttrain.config_for("sfx")


def test_preset_then_yaml_then_keywords(tmp_path):
    simpo = posttrain.config_for("dpo", preset="simpo")
    assert (simpo.loss_type, simpo.beta, simpo.simpo_gamma) == (["simpo"], 2.0, 0.5)
    yaml_file = tmp_path / "dpo.yaml"
    yaml_file.write_text("beta: 2.5\nsimpo_gamma: 1.0\n")
    cfg = posttrain.config_for("dpo", yaml_file, preset="simpo", simpo_gamma=1.5)
    assert (cfg.loss_type, cfg.beta, cfg.simpo_gamma) == (["simpo"], 2.5, 1.5)  # preset < YAML < keywords
    dapo = posttrain.config_for("grpo", preset="dapo", max_new_tokens=64)
    assert (dapo.loss_type, dapo.epsilon_high, dapo.dynamic_sampling) == ("token_mean", 0.28, True)
    with pytest.raises(ConfigError, match="unknown preset 'simpo' for grpo; valid presets: grpo, dapo"):
        posttrain.config_for("grpo", preset="simpo")


def test_callables_become_specs_that_the_reward_resolver_finds():
    from posttrain.rewards import RewardFunctions

    def exclamations(prompts, completions, **columns):
        return [float(c.count("!")) for c in completions]

    cfg = posttrain.config_for("grpo", reward_funcs=[share_of_a, exclamations, lambda prompts, completions, **_: [2.0] * len(completions)],
                               reward_weights=[1.0, 0.5, 1.0])
    assert cfg.reward_funcs == [f"{__name__}:share_of_a", "posttrain_python_callables:exclamations",
                                "posttrain_python_callables:lambda"]
    rewards = RewardFunctions.resolve(cfg.reward_funcs, cfg.dataset, cfg.reward_weights)
    result = rewards(["p", "p"], ["aa!!", "b"], {})
    assert result.per_function == {"share_of_a": [0.5, 0.0], "exclamations": [2.0, 0.0], "lambda": [2.0, 2.0]}
    assert result.total == [0.5 + 0.5 * 2.0 + 2.0, 2.0]
    assert posttrain.config_for("rloo", reward_funcs=exclamations).reward_funcs == ["posttrain_python_callables:exclamations"]


def test_generate_matches_transformers_greedy(tiny_llama):
    torch.manual_seed(0)
    texts = posttrain.generate(tiny_llama, ["What is 2 + 3?", "Hello there"], n=3, max_new_tokens=6, temperature=0.0, device="cpu")
    assert len(texts) == 6 and texts[0] == texts[1] == texts[2] and texts[3] == texts[4] == texts[5]
    tokenizer, model = AutoTokenizer.from_pretrained(tiny_llama), AutoModelForCausalLM.from_pretrained(tiny_llama)
    for prompt, ours in zip(["What is 2 + 3?", "Hello there"], texts[::3]):
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        ref = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        assert ours == tokenizer.decode(ref[0, ids.shape[1]:], skip_special_tokens=True)
    chat = posttrain.generate(model, ["Hi"], tokenizer=tokenizer, chat=True, max_new_tokens=4, temperature=0.0)
    assert chat == posttrain.generate(model, [[{"role": "user", "content": "Hi"}]], tokenizer=tokenizer, max_new_tokens=4, temperature=0.0)
    out = posttrain.generate(model, ["Hi"], tokenizer=tokenizer, details=True, n=2, max_new_tokens=3, seed=1)
    assert len(out) == 2 and all(len(lp) == len(t) for lp, t in zip(out.logprobs, out.token_ids))
    with pytest.raises(ConfigError, match="unknown config key 'temp'.*valid keys: max_new_tokens, temperature"):
        posttrain.generate(model, ["Hi"], tokenizer=tokenizer, temp=0.5)


def test_run_rejects_what_is_not_a_stage_config():
    with pytest.raises(ConfigError, match="run\\(\\) takes a stage config"):
        posttrain.run({"model": "embedded"})
