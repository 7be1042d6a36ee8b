"""The experience maker's truncated importance sampling: when the rollout engine's log-probs differ
from the trainer's, the old log-probs become the trainer's, each token gets min(π_trainer/π_rollout, cap)
and the mismatch KL is measured, on a real (tiny) model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM

from posttrain.online.estimators import ESTIMATORS
from posttrain.online.experience import Sample, collate_samples, completion_logps
from posttrain.online.maker import RolloutExperience


def test_tis_recomputes_old_logps_and_caps_the_weights(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    samples = [Sample([1, 5, 9], [7, 8, 2], [0.0] * 3, 0, reward=1.0), Sample([3], [4, 6, 6, 2], [0.0] * 4, 1, reward=0.0)]
    with torch.no_grad():
        trainer, _ = completion_logps(model, collate_samples(samples, 0))
    # an engine whose log-probs are off by known amounts: log π_rollout = log π_trainer − delta
    deltas = [[0.1, -0.2, 0.0], [1.0, 0.0, 0.3, -0.1]]
    for s, row, delta in zip(samples, trainer, deltas):
        s.old_logps = [float(row[t]) - d for t, d in enumerate(delta)]
    config = SimpleNamespace(tis_cap=2.0, batch_size=8, temperature=1.0)
    maker = RolloutExperience(config, SimpleNamespace(pad_token_id=0), None, ESTIMATORS["rloo"], backend=None, policy=model)
    metrics = maker._recompute_old_logps(samples)
    for s, row, delta in zip(samples, trainer, deltas):
        n = len(delta)
        assert s.old_logps == pytest.approx(row[:n].tolist(), abs=1e-6)  # the trainer's own
        assert s.extra["tis_weights"] == pytest.approx([min(torch.tensor(d).exp().item(), 2.0) for d in delta], abs=1e-5)
        assert s.extra["rollout_logps"] == pytest.approx([float(row[t]) - d for t, d in enumerate(delta)], abs=1e-6)
    flat = [d for delta in deltas for d in delta]
    # k1 of KL(π_rollout ‖ π_trainer) on the rollout's tokens: mean of log π_rollout − log π_trainer = −delta
    assert metrics["mismatch/kl"] == pytest.approx(-sum(flat) / len(flat), abs=1e-5)
    assert metrics["mismatch/tis_capped_fraction"] == pytest.approx(1 / 7)  # exp(1.0) > 2
    assert metrics["mismatch/k3"] == pytest.approx(sum(torch.tensor(d).exp().item() - d - 1 for d in flat) / len(flat), abs=1e-5)
