"""Rollouts: G completions per prompt, as one well-named structure.

    backend = LocalBackend(policy, tokenizer)
    rollouts = generate_rollouts(backend, prompt_ids, group_size=8, params=SamplingParams(...))
    rollouts.completion_ids[i], rollouts.old_logps[i], rollouts.truncated[i], rollouts.group[i]

Samples are group-major: the G samples of prompt 0, then those of prompt 1, ... `group[i]` is the
index of sample i's prompt. `old_logps` are the log-probs of the sampled tokens under the policy at
the sampling temperature, softmax(logits / T), *before* top-k / top-p: the same distribution the
trainer's forward computes for the new log-probs, so the importance ratios of PPO / GRPO are exactly
1 on-policy and PPO's KL-in-reward is not biased. (Under the truncated distribution they would be
too high for every kept token, by the log of the mass top-k / top-p kept, so on-policy ratios would
sit below 1 and clipping would zero the gradients of negative-advantage tokens.) Truncation is
treated as part of the sampler, as TRL and verl do. A completion ends at eos (kept, and trained on: the policy learns to stop), at
a stop string (cut from the text, tokens kept) or at max_new_tokens (`truncated`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from posttrain.generation import GenerationOutput, SamplingParams, generate


class RolloutBackend(Protocol):
    """What a generation engine gives the trainers. `sync_weights` is called after every optimizer
    step that changed the policy; an engine holding its own copy of the weights reloads them there."""

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> GenerationOutput: ...

    def sync_weights(self) -> None: ...


class LocalBackend:
    """posttrain's own sampler. On one process it samples from the live policy (same weights, nothing
    to sync). Under FSDP the policy's weights are sharded and every forward is a collective, which a
    sampling loop (rows finish at different steps on different ranks) cannot keep in step; so each
    process samples from its own full copy, refreshed from the shards by `sync_weights`."""

    def __init__(self, policy, tokenizer, replica=None):
        self.policy, self.tokenizer, self.replica = policy, tokenizer, replica

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> GenerationOutput:
        return generate(self.replica if self.replica is not None else self.policy, self.tokenizer, prompts, params)

    def sync_weights(self) -> None:
        """Collective under FSDP: every process calls it at the same point."""
        if self.replica is None:
            return
        import torch

        from posttrain.ranks import full_tensor

        with torch.no_grad():
            full = {name: full_tensor(value) for name, value in self.policy.state_dict().items()}
            self.replica.load_state_dict(full, strict=False)


def sample_with(sampler, tokenizer, prompts: list[list[int]], params: SamplingParams) -> GenerationOutput:
    """Samples from `sampler`: a `RolloutBackend` (vLLM, ...) or a model (posttrain's sampler on it)."""
    if hasattr(sampler, "sync_weights"):
        return sampler.generate(prompts, params)
    return generate(sampler, tokenizer, prompts, params)


def make_backend(kind: str, policy, tokenizer, *, model_path: str, mode: str = "colocate", url: str = "", replica=None,
                 seed: int = 0, max_model_len: int = 2048, **engine) -> RolloutBackend:
    """The backend a config names (rollout_backend, vllm_mode): posttrain's sampler on `policy` (or
    `replica`), a vLLM engine in this process started from `model_path`, or a vLLM server at `url`.
    `engine`: the colocated engine's settings (gpu_memory_utilization, sleep) or the server's (weights_dir)."""
    if kind == "local":
        return LocalBackend(policy, tokenizer, replica)
    from posttrain.rollout.vllm_backend import VLLMColocated, VLLMServer

    if mode == "server":
        return VLLMServer(policy, tokenizer, url=url, **engine)
    return VLLMColocated(policy, tokenizer, model_path=model_path, seed=seed, max_model_len=max_model_len, **engine)


@dataclass
class Rollouts:
    prompt_ids: list[list[int]]  # per sample (the prompt repeated for each of its G samples)
    completion_ids: list[list[int]]
    old_logps: list[list[float]]  # per completion token, under softmax(logits / T) before top-k / top-p
    texts: list[str]
    truncated: list[bool]  # ended at max_new_tokens
    group: list[int]  # index of the sample's prompt in the step's prompt list
    group_size: int
    seconds: float = 0.0  # wall time of generation
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.completion_ids)

    @property
    def num_completion_tokens(self) -> int:
        return sum(len(c) for c in self.completion_ids)

    def select(self, keep: list[int]) -> "Rollouts":
        """The samples at `keep` (whole groups, to keep the layout group-major)."""
        pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
        return Rollouts(pick(self.prompt_ids), pick(self.completion_ids), pick(self.old_logps), pick(self.texts),
                        pick(self.truncated), pick(self.group), self.group_size, self.seconds, dict(self.extra))


def generate_rollouts(backend: RolloutBackend, prompts: list[list[int]], group_size: int, params: SamplingParams) -> Rollouts:
    """`group_size` samples of each prompt (token ids, already chat-templated)."""
    params = SamplingParams(**{**params.__dict__, "n": group_size})
    began = time.perf_counter()
    out = backend.generate(prompts, params)
    seconds = time.perf_counter() - began
    return Rollouts(
        prompt_ids=[prompts[i] for i in out.prompt_index], completion_ids=out.token_ids, old_logps=out.policy_logprobs,
        texts=out.texts, truncated=out.truncated, group=list(out.prompt_index), group_size=group_size, seconds=seconds,
    )
