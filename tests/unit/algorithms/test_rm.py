"""Reward modeling's pieces: the shared-prefix packed layout equals the padded one and transformers' pooling,
K-wise rankings take one forward per completion, soft labels and margins reach the loss, and identical
completions are an error or dropped."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import preference_rows, ranking_rows, rm_config, write_jsonl
from posttrain.algorithms.rm import RewardModeling, load_items
from posttrain.errors import DataError
from posttrain.losses.reward import ranking_loss
from posttrain.models.loading import load_tokenizer
from posttrain.models.reward_model import (
    collate_sequences, load_reward_model, sequence_rewards,
)
from posttrain.data.shared_prefix import last_index, pack_groups
from posttrain.models.shared_prefix_attention import use_shared_prefix_attention


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_packed_layout_equals_padded_and_transformers(arch, request):
    """Shared-prefix packing gives the padded rewards; last-token pooling is transformers' own."""
    path = request.getfixturevalue(f"tiny_{arch}")
    tok = load_tokenizer(path)
    torch.manual_seed(0)
    model = load_reward_model(path, tok.pad_token_id).eval()
    g = torch.Generator().manual_seed(1)
    groups = []
    for k in (2, 3, 2, 4):
        prompt = torch.randint(3, 200, (int(torch.randint(0, 6, (1,), generator=g)),), generator=g).tolist()
        groups.append([prompt + torch.randint(3, 200, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g).tolist()
                       + [tok.eos_token_id] for _ in range(k)])
    flat = [s for group in groups for s in group]
    padded = collate_sequences(flat, tok.pad_token_id)
    with torch.no_grad():
        hf = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits[:, 0]
        pad_last, pad_mean = (sequence_rewards(model, padded, p) for p in ("last", "mean"))
        assert use_shared_prefix_attention(model)
        packed = pack_groups(groups, tok.pad_token_id, 24)
        pack_last, pack_mean = (sequence_rewards(model, packed, p) for p in ("last", "mean"))
    assert packed["input_ids"].numel() < padded["input_ids"].numel()
    assert torch.allclose(pad_last, hf, atol=1e-6) and torch.allclose(pack_last, hf, atol=1e-5)
    assert torch.allclose(pack_mean, pad_mean, atol=1e-5)
    assert not torch.allclose(pad_mean, pad_last, atol=1e-3)


def test_last_index_is_transformers_rule():
    assert last_index([5, 6, 7, 0, 0], 0) == 2
    assert last_index([5, 6, 2], 2) == 1  # pad == eos: a trailing eos counts as padding, as in transformers
    assert last_index([2, 2], 2) == 1


def test_kwise_rankings_one_forward_per_completion(tiny_llama, tmp_path):
    rows = ranking_rows(6)
    data = write_jsonl(tmp_path / "rank.jsonl", rows)
    tok = load_tokenizer(tiny_llama)
    items, _ = load_items(tok, data, None, rm_config(dataset=data))
    assert [len(it["sequences"]) for it in items] == [3, 4] * 3
    assert [len(it["pairs"]) for it in items] == [3, 6] * 3  # all C(K, 2) pairs, in one batch element
    pairs, _ = load_items(tok, data, None, rm_config(dataset=data, rankings="pairs"))
    assert len(pairs) == 27
    torch.manual_seed(0)
    model = load_reward_model(tiny_llama, tok.pad_token_id).eval()
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)
    for packing in (False, True):
        algorithm = RewardModeling(tok.pad_token_id, packing=packing)
        algorithm.setup(model)
        batch = algorithm.collate(items[:2])
        assert batch["rows"].numel() == 7  # K forwards per prompt (3 + 4), not 2 x C(K, 2) = 18
        with torch.no_grad():
            loss, metrics = algorithm.loss(model, batch)
            alone = [sequence_rewards(model, collate_sequences(it["sequences"], tok.pad_token_id)) for it in items[:2]]
        expected = sum(ranking_loss(r, row["ranking"]) for r, row in zip(alone, rows[:2]))
        assert algorithm.batch_weight(batch) == 2 and float(loss) == pytest.approx(float(expected), abs=1e-5)
        assert metrics["accuracy"][1] == 9 and metrics["margin"][1] == 9  # metrics count pairs


def test_soft_labels_and_margins_reach_the_loss(tiny_llama, tmp_path):
    rows = preference_rows(4)
    for row, label, margin in zip(rows, [True, 0.5, 0.0, 0.8], [0.0, 0.0, 1.0, 2.5]):
        row.update(label=label, margin=margin)
    data = write_jsonl(tmp_path / "soft.jsonl", rows)
    tok = load_tokenizer(tiny_llama)
    items, _ = load_items(tok, data, None, rm_config(dataset=data))
    assert [it["label"][0] for it in items] == [1.0, 0.5, 0.0, 0.8] and [it["margin"][0] for it in items] == [0.0, 0.0, 1.0, 2.5]
    torch.manual_seed(0)
    model = load_reward_model(tiny_llama, tok.pad_token_id).eval()
    algorithm = RewardModeling(tok.pad_token_id, packing=False)
    batch = algorithm.collate(items)
    with torch.no_grad():
        loss, metrics = algorithm.loss(model, batch)
        r = sequence_rewards(model, batch)
    delta = (r[batch["winner"]] - r[batch["loser"]]).tolist()
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731  (−log σ(x) = softplus(−x))
    mu, m = [1.0, 0.5, 0.0, 0.8], [0.0, 0.0, 1.0, 2.5]
    expected = sum(u * sp(-(d - g)) + (1 - u) * sp(d + g) for d, u, g in zip(delta, mu, m))
    assert float(loss) == pytest.approx(expected, abs=1e-5)
    assert metrics["accuracy"][1] == 3  # the tie is not counted


def test_identical_completions_error_or_drop(tmp_path, tiny_llama):
    rows = ranking_rows(3)
    rows[1]["completions"][2] = rows[1]["completions"][0]
    data = write_jsonl(tmp_path / "dup.jsonl", rows)
    tok = load_tokenizer(tiny_llama)
    with pytest.raises(DataError, match=r"row 1, column 'completions': two completions are identical"):
        load_items(tok, data, None, rm_config(dataset=data))
    items, dropped = load_items(tok, data, None, rm_config(dataset=data, invalid_pairs="drop"))
    assert [it["row"] for it in items] == [0, 2] and dropped == {"identical completions": 1}
