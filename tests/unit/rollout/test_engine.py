"""Rollouts' old log-probs: the trainer's forward gives the same numbers on-policy, with top-k and
top-p truncation on, so the importance ratios PPO and GRPO clip are exactly 1 before any update."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from posttrain.generation import SamplingParams
from posttrain.models.loading import load_tokenizer
from posttrain.online.experience import Sample, collate_samples, completion_logps
from posttrain.rollout import LocalBackend, generate_rollouts

TEMPERATURE, TOP_P, TOP_K = 0.9, 0.7, 20


def on_policy_rollouts(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = load_tokenizer(model_dir)
    prompts = [tokenizer.encode(text) for text in ("the cat sat on", "hello there friend", "1 2 3 4 5")]
    params = SamplingParams(max_new_tokens=12, temperature=TEMPERATURE, top_p=TOP_P, top_k=TOP_K, seed=0)
    rollouts = generate_rollouts(LocalBackend(model, tokenizer), prompts, group_size=4, params=params)
    samples = [Sample(p, c, lp, g) for p, c, lp, g in
               zip(rollouts.prompt_ids, rollouts.completion_ids, rollouts.old_logps, rollouts.group)]
    batch = collate_samples(samples, pad_token_id=tokenizer.pad_token_id or 0)
    with torch.no_grad():
        new_logps, _ = completion_logps(model, batch, temperature=TEMPERATURE)
    return model, tokenizer, prompts, params, batch, new_logps


def test_on_policy_ratios_are_one_with_top_p_and_top_k(tiny_llama):
    _, _, _, _, batch, new_logps = on_policy_rollouts(tiny_llama)
    mask = batch["mask"].bool()
    ratio = torch.exp(new_logps - batch["old_logps"])[mask]
    assert mask.sum() > 50
    torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=1e-4, rtol=0)


def test_the_truncated_distribution_would_bias_the_ratios_below_one(tiny_llama):
    """What the old log-probs were before: under the renormalised top-k / top-p distribution every kept
    token's log-prob is higher by -log(kept mass), so the on-policy ratio is the kept mass, < 1."""
    model, tokenizer, prompts, params, _, _ = on_policy_rollouts(tiny_llama)
    out = LocalBackend(model, tokenizer).generate(prompts, SamplingParams(**{**params.__dict__, "n": 4}))
    sampling = torch.tensor(sum(out.logprobs, []))
    policy = torch.tensor(sum(out.policy_logprobs, []))
    assert (sampling >= policy - 1e-6).all()  # renormalising over fewer tokens only raises a log-prob
    assert torch.exp(policy - sampling).mean() < 0.9  # the ratio the old log-probs gave on-policy


def test_without_truncation_the_two_log_probs_are_one_list(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tokenizer = load_tokenizer(tiny_llama)
    out = LocalBackend(model, tokenizer).generate([tokenizer.encode("the cat")], SamplingParams(max_new_tokens=6, n=2, seed=1))
    assert out.policy_logprobs is out.logprobs
