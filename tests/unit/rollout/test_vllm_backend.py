"""The vLLM rollout backend against the trainer's own forward: layout, log-probs, stop strings, eos,
seeds and weight sync (a full model and a LoRA policy). Runs where vLLM is importable: `.ci/run`
installs it in an environment of its own (.ci/extras/vllm-venv, `bash install.sh vllm`) and runs
the tests marked `vllm` there; elsewhere they skip."""

from __future__ import annotations

import pytest
import torch

vllm = pytest.importorskip("vllm", reason="vLLM not installed here: .ci/run installs it in .ci/extras/vllm-venv (bash install.sh vllm)")

from posttrain.embedded import SHIPPED  # noqa: E402
from posttrain.generation import SamplingParams  # noqa: E402
from posttrain.rollout.vllm_backend import VLLMColocated  # noqa: E402

pytestmark = pytest.mark.vllm
MODEL = str(SHIPPED["embedded"])


@pytest.fixture(scope="module")
def policy_and_backend():
    """One engine for the module: a process holds one in-process vLLM engine (it owns the process group)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    policy = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    backend = VLLMColocated(policy, tokenizer, model_path=MODEL, dtype="float32", max_model_len=512)
    return policy, tokenizer, backend


def chat_ids(tokenizer, text: str) -> list[int]:
    out = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def trainer_logps(policy, prompt: list[int], completion: list[int], temperature: float) -> torch.Tensor:
    """log softmax(logits / T) of each completion token under one plain forward (what GRPO's loss reads)."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = policy(ids).logits[0, len(prompt) - 1:-1].float() / temperature
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None])[:, 0]


def test_group_major_samples_whose_logprobs_are_the_trainers(policy_and_backend):
    policy, tokenizer, backend = policy_and_backend
    prompts = [chat_ids(tokenizer, "What is 12 + 7?"), chat_ids(tokenizer, "Write a short review of a film.")]
    out = backend.generate(prompts, SamplingParams(n=4, temperature=0.8, max_new_tokens=48, seed=3))
    assert out.prompt_index == [0, 0, 0, 0, 1, 1, 1, 1]
    assert len(out.token_ids) == 8 and all(len(t) == len(lp) for t, lp in zip(out.token_ids, out.policy_logprobs))
    worst = 0.0
    for i, tokens in enumerate(out.token_ids):
        expected = trainer_logps(policy, prompts[out.prompt_index[i]], tokens, 0.8)
        worst = max(worst, float((expected - torch.tensor(out.policy_logprobs[i])).abs().max()))
    assert worst < 1e-3, worst  # float32 on both sides: the kernels differ only in rounding


def test_eos_and_stop_strings_end_completions_as_our_sampler_does(policy_and_backend):
    policy, tokenizer, backend = policy_and_backend
    prompt = chat_ids(tokenizer, "What is 31 + 25?")
    out = backend.generate([prompt], SamplingParams(n=6, temperature=1.0, max_new_tokens=200, seed=0))
    eos = backend.eos_ids
    for tokens, reason in zip(out.token_ids, out.finish_reasons):
        assert reason in ("eos", "length")
        assert (tokens[-1] in eos) == (reason == "eos")  # a sampled eos is kept (the policy learns to stop)
    stopped = backend.generate([prompt], SamplingParams(n=6, temperature=1.0, max_new_tokens=200, seed=0, stop=["</think>"]))
    hits = [i for i, r in enumerate(stopped.finish_reasons) if r == "stop"]
    assert hits, stopped.texts
    for i in hits:
        assert "</think>" not in stopped.texts[i]  # the text is cut before the stop string ...
        assert "</think>" in tokenizer.decode(stopped.token_ids[i])  # ... the tokens that wrote it are kept


def test_a_prompts_samples_depend_on_its_seed_alone(policy_and_backend):
    _, tokenizer, backend = policy_and_backend
    a, b = chat_ids(tokenizer, "What is 5 + 9?"), chat_ids(tokenizer, "What is 40 + 2?")
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=32, seeds=[11, 12])
    together = backend.generate([a, b], params)
    alone = backend.generate([b], SamplingParams(n=3, temperature=1.0, max_new_tokens=32, seeds=[12]))
    assert together.token_ids[3:] == alone.token_ids  # b's samples do not depend on its batch-mate
    other = backend.generate([b], SamplingParams(n=3, temperature=1.0, max_new_tokens=32, seeds=[13]))
    assert other.token_ids != alone.token_ids


def test_sync_weights_makes_the_engine_sample_from_the_trained_policy(policy_and_backend):
    policy, tokenizer, backend = policy_and_backend
    prompt = chat_ids(tokenizer, "What is 64 + 17?")
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=24)
    before = backend.generate([prompt], greedy).token_ids[0]
    original = {k: v.clone() for k, v in policy.state_dict().items()}
    try:
        with torch.no_grad():
            for name, p in policy.named_parameters():
                if name.endswith("mlp.down_proj.weight"):
                    p.add_(torch.randn_like(p) * 0.5)
        backend.sync_weights()
        sampled = backend.generate([prompt], SamplingParams(n=2, temperature=1.0, max_new_tokens=24, seed=1))
        for tokens, logps in zip(sampled.token_ids, sampled.policy_logprobs):
            assert torch.allclose(trainer_logps(policy, prompt, tokens, 1.0), torch.tensor(logps), atol=1e-3)
        assert backend.generate([prompt], greedy).token_ids[0] != before
    finally:
        policy.load_state_dict(original)
        backend.sync_weights()
    assert backend.generate([prompt], greedy).token_ids[0] == before  # restored exactly


def test_a_lora_policy_is_synced_with_its_adapter_merged(policy_and_backend):
    from peft import LoraConfig, get_peft_model

    policy, tokenizer, backend = policy_and_backend
    prompt = chat_ids(tokenizer, "What is 3 + 4?")
    lora = get_peft_model(policy, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    backend.policy = lora
    try:
        backend.sync_weights()
        out = backend.generate([prompt], SamplingParams(n=2, temperature=1.0, max_new_tokens=24, seed=5))
        for tokens, logps in zip(out.token_ids, out.policy_logprobs):
            assert torch.allclose(trainer_logps(lora, prompt, tokens, 1.0), torch.tensor(logps), atol=1e-3)
        assert not any(".base_layer." in n or "lora_" in n for n in backend.last_synced)
    finally:
        lora.unload()
        backend.policy = policy
        backend.sync_weights()



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bf16 weights and vLLM's sleep mode)")
def test_bfloat16_engine_on_a_gpu_sleeps_between_rollouts_and_tracks_the_policy():
    """The GPU path: a bf16 policy, vLLM sharing the GPU at a third of its memory and sleeping between
    rollouts; its log-probs stay within bf16 rounding of the trainer's and a sync still takes effect."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    policy = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.bfloat16).cuda().eval()
    backend = VLLMColocated(policy, tokenizer, model_path=MODEL, max_model_len=512, gpu_memory_utilization=0.3, sleep=True)
    assert backend.sleep
    prompt = chat_ids(tokenizer, "What is 12 + 7?")
    out = backend.generate([prompt], SamplingParams(n=4, temperature=1.0, max_new_tokens=32, seed=0))
    for tokens, logps in zip(out.token_ids, out.policy_logprobs):
        ids = torch.tensor([prompt + tokens], device="cuda")
        with torch.no_grad():
            logits = policy(ids).logits[0, len(prompt) - 1:-1].float()
        expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(tokens, device="cuda")[:, None])[:, 0].cpu()
        assert (expected - torch.tensor(logps)).abs().mean() < 0.05  # bf16 kernels differ; tis_cap corrects the rest
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=16)
    before = backend.generate([prompt], greedy).token_ids[0]
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if name.endswith("mlp.down_proj.weight"):
                p.add_(torch.randn_like(p) * 0.5)
    backend.sync_weights()
    assert backend.generate([prompt], greedy).token_ids[0] != before
