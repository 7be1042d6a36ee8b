"""rollout.ray_backend without a cluster: the sharding of a request (prompts with their per-prompt seeds)
and the reassembly of the shards' samples against one `generate` call over the whole request, a worker's
copy of the policy (built from the learner's config, loaded with its weights) against the policy itself,
and a ray_address nobody answers at. Ray's own side runs in tests/e2e/test_grpo_ray.py."""

from __future__ import annotations

import itertools

import pytest
import torch
from transformers import AutoModelForCausalLM

from posttrain.errors import UserError
from posttrain.generation import SamplingParams, generate
from posttrain.models.loading import load_tokenizer
from posttrain.rollout.ray_backend import RolloutWorker, merge_outputs, model_spec, shard_bounds, split_request
from posttrain.rollout.vllm_backend import policy_weights


def test_shards_are_contiguous_balanced_and_never_empty():
    assert shard_bounds(5, 2) == [(0, 3), (3, 5)]
    assert shard_bounds(6, 3) == [(0, 2), (2, 4), (4, 6)]
    assert shard_bounds(2, 4) == [(0, 1), (1, 2)]
    assert shard_bounds(0, 3) == []
    for n in range(12):
        for w in range(1, 5):
            bounds = shard_bounds(n, w)
            sizes = [hi - lo for lo, hi in bounds]
            assert sum(sizes) == n and len(bounds) == min(n, w) and all(s > 0 for s in sizes)
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds)) and (not bounds or bounds[0][0] == 0)
            assert not sizes or max(sizes) - min(sizes) <= 1


@pytest.fixture(scope="module")
def policy(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tokenizer = load_tokenizer(tiny_llama)
    prompts = [tokenizer.encode(f"Say something {i}:") for i in range(7)]
    return model, tokenizer, prompts


def _sharded(model, tokenizer, prompts, params, workers):
    return merge_outputs([(offset, generate(model, tokenizer, part, shard_params))
                          for offset, part, shard_params in split_request(prompts, params, workers)])


@pytest.mark.parametrize("seeding", ["seed", "seeds", "global"])
@pytest.mark.parametrize("workers", [1, 3, 10])
def test_shards_reassembled_are_the_one_process_samples(policy, seeding, workers):
    """The reference is the sampler over the whole request: same tokens, texts and finish reasons, the
    same log-probs to float rounding, in prompt order, whether the request names seed, seeds, or neither (torch's generator)."""
    model, tokenizer, prompts = policy
    extra = {"seed": 11} if seeding == "seed" else {"seeds": [100 + 7 * i for i in range(len(prompts))]} if seeding == "seeds" else {}
    params = SamplingParams(max_new_tokens=10, temperature=1.0, top_k=20, n=3, stop=["."], **extra)
    torch.manual_seed(5)
    whole = generate(model, tokenizer, prompts, params)
    torch.manual_seed(5)
    sharded = _sharded(model, tokenizer, prompts, params, workers)
    assert sharded.prompt_index == whole.prompt_index == [i for i in range(len(prompts)) for _ in range(3)]
    assert sharded.token_ids == whole.token_ids and sharded.texts == whole.texts
    assert sharded.finish_reasons == whole.finish_reasons
    # a shard pads its batch to its own longest prompt: the same numbers up to float rounding (~1e-7)
    for name in ("logprobs", "policy_logprobs"):
        got, want = getattr(sharded, name), getattr(whole, name)
        torch.testing.assert_close([torch.tensor(x) for x in got], [torch.tensor(x) for x in want], atol=1e-5, rtol=0)


def test_a_workers_copy_samples_what_the_policy_samples_after_each_sync(policy):
    model, tokenizer, prompts = policy
    worker = RolloutWorker(model_spec(model, tokenizer))
    params = SamplingParams(max_new_tokens=8, n=2, seed=3)
    assert worker.load_weights(policy_weights(model)) == len(model.state_dict())
    assert worker.generate(prompts, params).token_ids == generate(model, tokenizer, prompts, params).token_ids
    changed = AutoModelForCausalLM.from_pretrained(model.name_or_path).eval()
    with torch.no_grad():
        changed.lm_head.weight.mul_(3.0)  # tied: the embeddings change too
    worker.load_weights({k: v.clone() for k, v in policy_weights(changed).items()})
    for (name, a), b in zip(worker.model.state_dict().items(), changed.state_dict().values()):
        assert torch.equal(a, b), name
    got, want = worker.generate(prompts, params), generate(changed, tokenizer, prompts, params)
    assert got.token_ids == want.token_ids
    # equal weights in buffers of other addresses: CPU kernels may round differently (~1e-7)
    torch.testing.assert_close([torch.tensor(x) for x in got.logprobs], [torch.tensor(x) for x in want.logprobs], atol=1e-5, rtol=0)


def test_a_ray_address_nobody_answers_at_is_one_line_in_seconds():
    ray = pytest.importorskip("ray", reason="ray not installed here: pip install 'posttrain[ray]' (bash install.sh dev)")
    from posttrain.rollout.ray_backend import connect

    with pytest.raises(UserError, match=r"ray_address=127\.0\.0\.1:1: no Ray cluster answered there .*ray start --head --port=1"):
        connect(ray, "127.0.0.1:1", probe_seconds=2)
    assert not ray.is_initialized()
