"""Packing: best-fit-decreasing bins, the packed row layout, and packed == unpacked per-example losses
on tiny Llama, Qwen2 and GPT-2 (attention never crosses examples)."""

import random

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from conftest import sft_rows
from posttrain.algorithms.sft import check_packing_support, logits_at
from posttrain.data.collate import IGNORE_INDEX, collate_rows, pack_best_fit, pack_examples
from posttrain.data.tokenize import tokenize_rows
from posttrain.errors import UserError
from posttrain.models.packed_attention import use_packed_attention
from posttrain.models.loading import load_tokenizer


def test_best_fit_decreasing():
    lengths = [5, 4, 3, 3, 2, 2, 1]
    bins = pack_best_fit(lengths, 10)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 10 for b in bins)
    assert bins == [[0, 1, 6], [2, 3, 4, 5]]  # 5+4 -> best fit for 1; 3+3+2+2
    rng = random.Random(0)
    lengths = [rng.randint(1, 64) for _ in range(500)]
    bins = pack_best_fit(lengths, 64)
    assert len(bins) <= 1.05 * sum(lengths) / 64 + 2  # near the lower bound
    assert bins == pack_best_fit(lengths, 64)
    with pytest.raises(ValueError):
        pack_best_fit([65], 64)


def test_packed_row_layout():
    a = {"input_ids": [10, 11, 12, 13], "completion_mask": [0, 0, 1, 1]}
    b = {"input_ids": [20, 21, 22], "completion_mask": [0, 1, 1]}
    c = {"input_ids": [30, 31], "completion_mask": [1, 1]}
    batch = collate_rows([[a, b], [c]], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[10, 11, 12, 13, 20, 21, 22], [30, 31, 0, 0, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2], [0, 1, 2, 3, 4, 5, 6]]
    # labels[t] is the next token of the same example; the last token of `a` does not predict `b`
    n = IGNORE_INDEX
    assert batch["labels"].tolist() == [[n, 12, 13, n, 21, 22, n], [31, n, n, n, n, n, n]]
    assert batch["num_tokens"] == 9
    assert batch["segments"] == [[(0, 4), (4, 7)], [(0, 7)]]


def _examples(model_dir, n=12, max_length=128):
    tokenizer = load_tokenizer(model_dir)
    rows = sft_rows(n, seed=3)
    return tokenizer, tokenize_rows(tokenizer, rows, max_length=max_length, truncation=False)


def _per_example_nll(model, batch, rows, segmented=False):
    """Summed NLL of each example, in row order, from one forward over the (packed) batch."""
    select = batch["labels"] != IGNORE_INDEX
    extra = {"packed_segments": batch["segments"]} if segmented else {}
    logits = logits_at(model, select, input_ids=batch["input_ids"], position_ids=batch["position_ids"], **extra)
    nll = F.cross_entropy(logits.float(), batch["labels"][select], reduction="none")
    counts = [sum(ex["completion_mask"][1:]) for row in rows for ex in row]
    return torch.stack([chunk.sum() for chunk in nll.split(counts)])


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_qwen2", "tiny_gpt2"])
def test_packed_losses_equal_unpacked(arch, request):
    model_dir = request.getfixturevalue(arch)
    tokenizer, examples = _examples(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    check_packing_support(model)  # all three honour restarting position_ids
    packed_rows = pack_examples(examples, 256)
    assert len(packed_rows) < len(examples)
    batch = collate_rows(packed_rows, tokenizer.pad_token_id)
    for r, row in enumerate(packed_rows):  # padding-free: pads only after the row's last example
        used = sum(len(ex["input_ids"]) for ex in row)
        assert batch["input_ids"][r, :used].tolist() == [t for ex in row for t in ex["input_ids"]]
    with torch.no_grad():
        packed = _per_example_nll(model, batch, packed_rows)
        alone = torch.cat([_per_example_nll(model, collate_rows([[ex]], tokenizer.pad_token_id), [[ex]])
                           for row in packed_rows for ex in row])
        padded_rows = [[ex] for row in packed_rows for ex in row]
        padded = _per_example_nll(model, collate_rows(padded_rows, tokenizer.pad_token_id), padded_rows)
        assert use_packed_attention(model)  # attention per example: no work across examples
        segmented = _per_example_nll(model, batch, packed_rows, segmented=True)
        fallback = _per_example_nll(model, batch, packed_rows)  # without segments: transformers' sdpa + mask
        one_span = dict(batch, segments=[[(0, batch["input_ids"].shape[1])] for _ in packed_rows])
        crossing = _per_example_nll(model, one_span, packed_rows, segmented=True)  # proves segments are used
    assert (crossing - alone).abs().max() > 1e-2
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(segmented, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fallback, packed, rtol=0, atol=0)


def test_logits_at_equals_full_logits(tiny_qwen2):
    tokenizer, examples = _examples(tiny_qwen2, n=4)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2).eval()
    batch = collate_rows(pack_examples(examples, 256), tokenizer.pad_token_id)
    select = batch["labels"] != IGNORE_INDEX
    with torch.no_grad():
        full = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        some = logits_at(model, select, input_ids=batch["input_ids"], position_ids=batch["position_ids"])
    assert some.shape == (int(select.sum()), full.shape[-1])
    torch.testing.assert_close(some, full[select], rtol=1e-5, atol=1e-6)


class IgnoresPositionIds(LlamaForCausalLM):
    """A model that cannot honour packed position_ids: it drops them."""

    def forward(self, input_ids=None, position_ids=None, **kwargs):
        return super().forward(input_ids=input_ids, **kwargs)


def test_models_that_ignore_position_ids_are_rejected(tiny_llama):
    model = IgnoresPositionIds.from_pretrained(tiny_llama)
    with pytest.raises(UserError, match="packing=true but IgnoresPositionIds lets attention cross example boundaries"):
        check_packing_support(model)
