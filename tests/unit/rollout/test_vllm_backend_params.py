"""How posttrain's sampling settings and vLLM's answers map onto each other (no engine needed)."""

from __future__ import annotations

from posttrain.generation import SamplingParams
from posttrain.rollout.vllm_backend import build_output, finish_reason, policy_weights, request_params


def test_sampling_settings_and_finish_reasons_map_onto_vllms():
    params = SamplingParams(n=4, temperature=0.7, top_k=0, top_p=0.9, max_new_tokens=10, stop=["\n"], seed=7)
    kwargs = request_params(params, 2)
    assert [k["seed"] for k in kwargs] == [7, 8] and kwargs[0]["top_k"] == -1 and kwargs[0]["max_tokens"] == 10
    assert kwargs[0]["logprobs"] == 0 and kwargs[0]["stop"] == ["\n"] and kwargs[0]["n"] == 4
    assert [finish_reason("length", None), finish_reason("stop", None), finish_reason("stop", 2), finish_reason("stop", "\n")] \
        == ["length", "eos", "eos", "stop"]
    out = build_output([[([1, 2], [-0.1, -0.2], "ab", "eos")], [([3], [-0.3], "c", "length")]], params)
    assert out.prompt_index == [0, 1] and out.truncated == [False, True] and out.logprobs == [[-0.1, -0.2], [-0.3]]


def test_policy_weights_use_the_checkpoint_names_and_leave_out_lora_and_critic(tiny_llama):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    names = set(base.state_dict())
    base.v_head = torch.nn.Linear(base.config.hidden_size, 1)  # a PPO critic's head rides on the policy
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    before = {k: v.clone() for k, v in lora.state_dict().items()}
    weights = policy_weights(lora)
    assert set(weights) == names
    layer = lora.base_model.model.model.layers[0].self_attn.q_proj
    merged = layer.base_layer.weight + layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    assert torch.allclose(weights["model.layers.0.self_attn.q_proj.weight"], merged, atol=1e-6)
    after = lora.state_dict()
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)  # unmerged again
