"""The pooled last layer (models/last_layer.py): rewards and gradients equal the full forward's."""

from __future__ import annotations

import pytest
import torch

from posttrain.models import last_layer
from posttrain.models.loading import load_tokenizer
from posttrain.models.reward_model import load_reward_model, sequence_rewards
from posttrain.data.shared_prefix import pack_groups
from posttrain.models.shared_prefix_attention import use_shared_prefix_attention
from posttrain.train.loop import enable_checkpointing


def _groups(tok, seed: int = 1) -> list[list[list[int]]]:
    g = torch.Generator().manual_seed(seed)
    groups = []
    for k in (2, 3, 2):
        prompt = torch.randint(3, 200, (int(torch.randint(1, 6, (1,), generator=g)),), generator=g).tolist()
        groups.append([prompt + torch.randint(3, 200, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g).tolist()
                       + [tok.eos_token_id] for _ in range(k)])
    return groups


def _rewards_and_grads(model, batch):
    model.zero_grad()
    rewards = sequence_rewards(model, batch)
    (rewards * torch.arange(1, len(rewards) + 1)).sum().backward()  # a different weight per sequence
    return rewards.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_pooled_last_layer_equals_the_full_forward(arch, request, monkeypatch):
    path = request.getfixturevalue(f"tiny_{arch}")
    tok = load_tokenizer(path)
    torch.manual_seed(0)
    model = load_reward_model(path, tok.pad_token_id).train()
    assert last_layer.supports(model) and use_shared_prefix_attention(model)
    batch = pack_groups(_groups(tok), tok.pad_token_id, 20)
    fast, fast_grads = _rewards_and_grads(model, batch)
    monkeypatch.setattr(last_layer, "supports", lambda m: False)
    full, full_grads = _rewards_and_grads(model, batch)
    torch.testing.assert_close(fast, full, atol=1e-6, rtol=1e-5)
    assert fast_grads.keys() == full_grads.keys()
    for name in full_grads:
        torch.testing.assert_close(fast_grads[name], full_grads[name], atol=1e-5, rtol=1e-4)
    assert float(full_grads["model.layers.1.mlp.down_proj.weight"].abs().sum()) > 0  # the last layer does learn


def test_not_used_where_it_would_be_wrong(tiny_llama, tiny_gpt2):
    tok = load_tokenizer(tiny_llama)
    model = load_reward_model(tiny_llama, tok.pad_token_id)
    enable_checkpointing(model)  # backward would recompute the usual forward
    assert not last_layer.supports(model)
    assert not last_layer.supports(load_reward_model(tiny_gpt2, load_tokenizer(tiny_gpt2).pad_token_id))
