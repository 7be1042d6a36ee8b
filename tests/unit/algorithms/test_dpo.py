"""DPO's batch: the log-probs of the concatenated padded batch equal each sequence alone, and the packed
shared-prompt layout gives the padded log-probs; SimPO's logged implicit rewards are length-normalised."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import dpo_config
from posttrain.algorithms.dpo import DPO, load_examples, model_inputs
from posttrain.data.pairs import collate_pairs
from posttrain.models.loading import load_tokenizer
from posttrain.models.logprobs import sequence_logprobs
from posttrain.models.shared_prefix_attention import use_shared_prefix_attention


def test_concatenated_padded_logprobs_equal_each_sequence_alone(tiny_qwen2, pairs):
    tokenizer = load_tokenizer(tiny_qwen2)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2).eval()
    examples = load_examples(tokenizer, pairs[0], None, dpo_config(dataset=pairs[0]), "train")[:4]
    batch = DPO(dpo_config(), tokenizer.pad_token_id).collate(examples)
    with torch.no_grad():
        together = sequence_logprobs(model, batch["input_ids"], batch["target_mask"], attention_mask=batch["attention_mask"])
        for row, (side, ex) in enumerate([(s, e) for s in ("chosen", "rejected") for e in examples]):
            ids = torch.tensor([ex["prompt_ids"] + ex[f"{side}_ids"]])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1).gather(-1, ids[0, 1:, None])[:, 0]
            mask = torch.tensor([0] * len(ex["prompt_ids"]) + ex[f"{side}_mask"])[1:].bool()
            assert float(together.sums[row]) == pytest.approx(float(logp[mask].sum()), abs=1e-4)
            assert int(together.counts[row]) == int(mask.sum())


def test_packed_shared_prompt_batch_gives_the_padded_logprobs(tiny_llama, pairs):
    tokenizer = load_tokenizer(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    examples = load_examples(tokenizer, pairs[0], None, dpo_config(dataset=pairs[0]), "train")[:6]
    padded = collate_pairs(examples, tokenizer.pad_token_id)
    packed = collate_pairs(examples, tokenizer.pad_token_id, packed=True)
    assert packed["input_ids"].shape[0] < padded["input_ids"].shape[0]  # several sequences share a row
    assert packed["num_tokens"] == int(padded["attention_mask"].sum())
    prompts = sum(len(ex["prompt_ids"]) for ex in examples)
    assert int(packed["attention_mask"].sum()) <= packed["num_tokens"] - prompts  # each prompt computed once
    with torch.no_grad():
        want = sequence_logprobs(model, **model_inputs(padded))
        assert use_shared_prefix_attention(model)
        got = sequence_logprobs(model, **model_inputs(packed))
    torch.testing.assert_close(got.sums, want.sums, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(got.counts, want.counts)


def test_simpo_logs_rewards_on_mean_token_logprobs(tiny_llama, pairs):
    """SimPO's loss compares β·log π/|y|; the logged rewards must too (as TRL logs them), not β·log π."""
    tokenizer = load_tokenizer(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    config = dpo_config(dataset=pairs[0], loss_type=["simpo"], beta=2.0, packing=False)
    examples = load_examples(tokenizer, pairs[0], None, config, "train")[:8]
    algorithm = DPO(config, tokenizer.pad_token_id)
    algorithm.setup(model)
    batch = algorithm.collate(examples)
    with torch.no_grad():
        _, metrics = algorithm.loss(model, batch)
        logps = sequence_logprobs(model, **model_inputs(batch))
    mean_w, mean_l = (logps.sums / logps.counts).split(len(examples))
    torch.testing.assert_close(metrics["rewards/chosen"], (2.0 * mean_w).sum())
    torch.testing.assert_close(metrics["rewards/rejected"], (2.0 * mean_l).sum())
    torch.testing.assert_close(metrics["rewards/margins"], (2.0 * (mean_w - mean_l)).sum())
    assert float(metrics["rewards/accuracies"]) == float((mean_w > mean_l).sum())
    torch.testing.assert_close(metrics["logps/chosen"], logps.sums.split(len(examples))[0].sum())  # still summed


@pytest.mark.parametrize("values, message", [
    ({"ref_sync": "soft", "loss_type": ["simpo"]}, "ref_sync=soft updates the reference policy, but reference-free losses have none"),
    ({"ref_sync": "hard", "ref_model": "precompute"}, "ref_model=precompute fixes its log-probs before training (use ref_model=copy)"),
    ({"ref_sync": "soft", "lora": True}, "ref_sync=soft needs a reference model of its own to update, but under lora=true"),
    ({"ref_sync_steps": 8}, "'ref_sync_steps' is set (8) but this run never reads it: it applies only with ref_sync=soft or hard"),
    ({"ref_sync": "soft", "ref_sync_alpha": 1.5}, "ref_sync_alpha in (0, 1]"),
])
def test_tr_dpo_settings_without_a_reference_to_move_are_refused(values, message):
    from posttrain.algorithms.dpo import DPOConfig
    from posttrain.config import build_config
    from posttrain.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        build_config(DPOConfig, values)
