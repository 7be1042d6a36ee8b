"""TRL's command-line syntax (HfArgumentParser's): `--key value`, `--key=value`, `--flag` alone = true."""

from __future__ import annotations

import pytest

from posttrain.cli import _parse, flags_to_overrides, main


@pytest.mark.parametrize("argv, expected", [
    (["grpo", "--max_steps", "2"], ["grpo", "max_steps=2"]),
    (["grpo", "--max_steps=2", "k=v"], ["grpo", "max_steps=2", "k=v"]),
    (["grpo", "--per-device-train-batch-size", "4"], ["grpo", "per_device_train_batch_size=4"]),  # dashes read as underscores
    (["grpo", "--gradient_checkpointing"], ["grpo", "gradient_checkpointing=true"]),  # a flag alone, at the end
    (["grpo", "--use_peft", "--lora_r", "8"], ["grpo", "use_peft=true", "lora_r=8"]),  # before another flag
    (["grpo", "--bf16", "max_steps=3"], ["grpo", "bf16=true", "max_steps=3"]),  # before a key=value word
    (["grpo", "--bf16", "false"], ["grpo", "bf16=false"]),
    (["grpo", "--beta", "-0.5", "--x", "-1e-3", "--y", "-.5", "--z", "-inf"], ["grpo", "beta=-0.5", "x=-1e-3", "y=-.5", "z=-inf"]),
    (["grpo", "--stop", "-a"], ["grpo", "stop=true", "-a"]),  # not a number: a flag; `--stop=-a` gives the value
    (["grpo", "--stop=-a"], ["grpo", "stop=-a"]),
    (["grpo", "--reward_funcs", "math_accuracy:tolerance=0.1"], ["grpo", "reward_funcs=math_accuracy:tolerance=0.1"]),
    (["grpo", "--config", "t.yaml", "-c", "u.yaml", "--preset", "dapo", "--config=v.yaml", "--help"],
     ["grpo", "--config", "t.yaml", "-c", "u.yaml", "--preset", "dapo", "--config=v.yaml", "--help"]),  # ours keep their meaning
])
def test_flags_become_key_value_words(argv, expected):
    assert flags_to_overrides(argv) == expected


def test_a_trl_command_line_parses_as_ours():
    args = _parse(["grpo", "--config", "trl.yaml", "--max_steps", "2", "--gradient_checkpointing", "--learning_rate", "1e-6"])
    assert (args.stage, args.config, args.overrides) == ("grpo", "trl.yaml", ["max_steps=2", "gradient_checkpointing=true", "learning_rate=1e-6"])


def test_an_unknown_flag_is_an_unknown_key(capsys):
    assert main(["sft", "--lerning_rate", "1e-4"]) == 2
    assert "unknown config key 'lerning_rate' (did you mean 'learning_rate'?)" in capsys.readouterr().err
