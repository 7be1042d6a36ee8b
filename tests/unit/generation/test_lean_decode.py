"""The lean decode step computes what the model's own forward computes (left padding, GQA, q/k/v biases)."""

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

from posttrain.generation.kv_cache import make_cache
from posttrain.generation.lean_decode import LeanDecoder
from posttrain.generation.sampler import _cache_keyword

CONFIGS = {
    "llama-gqa": LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64),
    "llama-bias-untied": LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=4, attention_bias=True,
                                     tie_word_embeddings=False, max_position_embeddings=64),
    "qwen2": Qwen2Config(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_decode_step_matches_model_forward(name):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(CONFIGS[name], attn_implementation="sdpa").eval()
    with torch.no_grad():  # random non-zero biases so they matter
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.normal_(0, 0.5)
    assert LeanDecoder.supports(model)
    lean = LeanDecoder(model)
    if torch.backends.mkldnn.is_available():  # the CPU fast path is what is being checked
        projections = [lean.head, *(part for part in lean.layers[0] if hasattr(part, "packed"))]
        assert len(projections) == 5 and all(projection.packed is not None for projection in projections)
    ids = torch.randint(0, 97, (3, 6))
    mask = torch.ones(3, 8, dtype=torch.bool)
    mask[0, :2] = False  # left padding
    mask[2, :4] = False
    positions = (mask[:, :6].long().cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        caches = [make_cache(model, 8)[0] for _ in range(2)]
        cache_keyword = _cache_keyword(model)
        for cache in caches:
            model(input_ids=ids, attention_mask=mask[:, :6], position_ids=positions, **{cache_keyword: cache}, use_cache=True)
        token, position = torch.tensor([5, 17, 42]), positions[:, -1:] + 1
        step_mask = mask[:, None, None, :7]
        expected = model(input_ids=token[:, None], attention_mask=step_mask, position_ids=position,
                         **{cache_keyword: caches[0]}, use_cache=True).logits[:, -1]
        got = lean(token, position, step_mask, caches[1])
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    assert torch.allclose(caches[1].layers[0].keys, caches[0].layers[0].keys, atol=1e-6)


def test_other_models_keep_their_own_forward():
    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=50, n_embd=32, n_layer=1, n_head=2))
    eager = AutoModelForCausalLM.from_config(CONFIGS["qwen2"], attn_implementation="eager")
    assert not LeanDecoder.supports(gpt2) and not LeanDecoder.supports(eager)
