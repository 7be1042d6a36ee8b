"""`posttrain compare`'s pieces: the sequence KL against a hand computation with transformers' forward, and the
win-rate, stderr, best-of-n KL and policies-list helpers."""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.algorithms.compare import best_of_n_kl, mean_stderr, parse_policies, sequence_kl, win_rate
from posttrain.errors import ConfigError


def test_sequence_kl_matches_hand_computation(models):
    from transformers import AutoModelForCausalLM

    ref_dir, policy_dir = models
    ref, policy = AutoModelForCausalLM.from_pretrained(ref_dir), AutoModelForCausalLM.from_pretrained(policy_dir)
    prompts, completions = [[1, 20, 31, 7], [1, 9]], [[40, 41, 12], [5, 6, 7, 8, 9]]
    kls, counts = sequence_kl(policy, ref, prompts, completions)
    assert counts == [3, 5]
    for p, c, kl in zip(prompts, completions, kls):  # one unpadded sequence at a time, plain log_softmax
        ids = torch.tensor([p + c])
        with torch.no_grad():
            lp = torch.log_softmax(policy(ids).logits[0].double(), -1)
            lr = torch.log_softmax(ref(ids).logits[0].double(), -1)
        hand = sum(float(lp[len(p) - 1 + t, c[t]] - lr[len(p) - 1 + t, c[t]]) for t in range(len(c)))
        assert kl == pytest.approx(hand, abs=1e-4)
    assert sequence_kl(ref, ref, prompts, completions)[0] == [0.0, 0.0]


def test_helpers():
    assert win_rate([1.0, 0.5, 0.0, None], [0.5, 0.5, 1.0, 0.2]) == pytest.approx(1.5 / 3)
    mean, se = mean_stderr([1.0, 2.0, 3.0, None])
    assert mean == 2.0 and se == pytest.approx(1.0 / math.sqrt(3))
    assert best_of_n_kl(1) == 0.0 and best_of_n_kl(16) == pytest.approx(math.log(16) - 15 / 16)
    assert parse_policies(["ppo = runs/p"]) == {"ppo": "runs/p"}
    for bad in (["ppo"], ["=x"], ["sft=x"], ["a=x", "a=y"]):
        with pytest.raises(ConfigError):
            parse_policies(bad)
