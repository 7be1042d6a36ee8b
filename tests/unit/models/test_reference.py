"""posttrain.models.reference and models.logprobs: one way to run the reference (`as_reference`,
`ReferencePolicy.scoring`) and one log-prob computation (`target_logprobs`) behind both layouts:
per-sequence sums (`sequence_logprobs`) and per completion token (`online.experience.completion_logps`)."""

from __future__ import annotations

import pytest
import torch

from posttrain.data.collate import to_device
from posttrain.models.loading import apply_lora, load_causal_lm
from posttrain.data.collate import TokenTargets
from posttrain.models.logprobs import sequence_logprobs, target_logprobs
from posttrain.models.reference import ReferencePolicy, as_reference
from posttrain.online.experience import Sample, collate_samples, completion_logps


@pytest.fixture
def model(tiny_llama):
    torch.manual_seed(0)
    return load_causal_lm(tiny_llama).train()


SAMPLES = [Sample([1, 5, 9], [7, 8, 2], [0.0] * 3, 0), Sample([3], [4, 6, 6, 2], [0.0] * 4, 1)]


def test_both_layouts_hold_the_same_token_log_probs(model):
    batch = collate_samples(SAMPLES, pad_token_id=0)
    with torch.no_grad():
        per_token, entropy = completion_logps(model.eval(), batch, with_entropy=True)
        sums = sequence_logprobs(model, batch["input_ids"], targets=batch["targets"], attention_mask=batch["attention_mask"])
        token_logps, log_probs = target_logprobs(model, batch["targets"], input_ids=batch["input_ids"],
                                                 attention_mask=batch["attention_mask"])
    torch.testing.assert_close(per_token.sum(1), sums.sums)
    assert sums.counts.tolist() == [3.0, 4.0]
    assert torch.equal(per_token[batch["completion_mask"]], token_logps)
    assert log_probs.shape == (7, model.config.vocab_size) and (entropy[batch["completion_mask"]] > 0).all()
    # temperature divides the logits before the log-softmax
    hot, _ = target_logprobs(model, batch["targets"], 2.0, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert not torch.allclose(hot, token_logps)


def test_as_reference_runs_in_eval_mode_and_restores_training(model):
    assert model.training
    with as_reference(model) as m:
        assert m is model and not model.training
    assert model.training


def test_lora_reference_is_the_adapter_disabled_base(model):
    ids = torch.tensor([[1, 5, 9, 7, 8]])
    target = torch.tensor([[0, 0, 0, 1, 1]])
    with torch.no_grad():
        base = sequence_logprobs(model, ids, target).sums
    peft = apply_lora(model, r=4, alpha=8, dropout=0.0, target_modules=["all-linear"])
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.fill_(0.5)  # the adapters now change the outputs
        moved = sequence_logprobs(peft, ids, target).sums
        reference = ReferencePolicy(peft)
        assert reference.frozen is None  # no copy under LoRA
        ref = reference.sequence_logprobs(peft, ids, target).sums
    assert not torch.allclose(moved, base)
    torch.testing.assert_close(ref, base)


def test_frozen_reference_is_a_copy_that_does_not_train(model):
    reference = ReferencePolicy(model)
    with reference.scoring(model, torch.device("cpu")) as m:
        assert m is reference.frozen and m is not model and not m.training
        assert not any(p.requires_grad for p in m.parameters())


def test_to_device_moves_tensors_and_targets_and_keeps_the_rest():
    targets = TokenTargets(*(torch.tensor([0]) for _ in range(4)), 1)
    batch = {"ids": torch.ones(2), "targets": targets, "num_sequences": 2, "names": ["a"]}
    moved = to_device(batch, torch.device("cpu"))
    assert moved["num_sequences"] == 2 and moved["names"] == ["a"]
    assert isinstance(moved["targets"], TokenTargets) and torch.equal(moved["ids"], batch["ids"])
