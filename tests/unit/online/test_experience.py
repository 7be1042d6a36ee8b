"""Experience tensors: completion log-probs line up with each sample's tokens; the round plan."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from posttrain.online.experience import Sample, collate_samples, completion_logps
from posttrain.online.source import OnlineSource


@pytest.mark.parametrize("packed", [False, True])
def test_completion_logps_line_up_with_each_samples_tokens(tiny_qwen2, packed):
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2).eval()
    samples = [Sample([1, 5, 9], [7, 8, 2], [0.0] * 3, 0), Sample([3, 3], [4, 6, 6, 6, 2], [0.0] * 5, 1),
               Sample([1, 5, 9], [7, 3], [0.0] * 2, 0), Sample([1, 2, 3, 4], [5], [0.0], 2)]
    batch = collate_samples(samples, pad_token_id=0, packed=packed)
    if packed:  # one row, no padding; group 0's shared start [1, 5, 9, 7] is computed once
        assert batch["input_ids"].shape[0] == 1 and int(batch["attention_mask"].sum()) == (4 + 2 + 1) + (2 + 5) + (4 + 1)
    with torch.no_grad():
        logps, entropy = completion_logps(model, batch, temperature=0.7, with_entropy=True)
        for r, s in enumerate(samples):
            ids = torch.tensor([s.prompt_ids + s.completion_ids])
            logits = model(input_ids=ids).logits[0, len(s.prompt_ids) - 1:-1].float() / 0.7
            want = torch.log_softmax(logits, -1).gather(-1, torch.tensor(s.completion_ids)[:, None])[:, 0]
            n = len(s.completion_ids)
            torch.testing.assert_close(logps[r, :n], want, atol=1e-5, rtol=1e-5)
            assert (logps[r, n:] == 0).all() and (entropy[r, n:] == 0).all() and (entropy[r, :n] > 0).all()
    assert model.config._attn_implementation == "sdpa"  # the shared-prefix attention was only borrowed
    assert batch["mask"].sum() == 11 and batch["advantages"].shape == (4,)


def test_round_plan_is_mu_passes_of_minibatches_of_micro_batches():
    class Config:
        seed, num_iterations, num_minibatches, batch_size, difficulty_column = 0, 2, 3, 4, None

    source = OnlineSource(algorithm=None, rows=[], tokenizer=None, config=Config())
    plan = source._plan(24, round_=0)
    assert len(plan) == 2 * 3  # optimizer steps per round
    for step in plan:
        assert [len(micro) for micro in step] == [4, 4]  # 8 samples per step in micro-batches of 4
    passes = [sorted(i for step in plan[k * 3:(k + 1) * 3] for micro in step for i in micro) for k in range(2)]
    assert passes[0] == passes[1] == list(range(24))  # each pass visits every sample once
