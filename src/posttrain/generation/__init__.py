"""Rollout: batched sampling with a KV cache that returns the sampled tokens' log-probs."""

from posttrain.generation.sampler import GenerationOutput, SamplingParams, generate

__all__ = ["GenerationOutput", "SamplingParams", "generate"]
