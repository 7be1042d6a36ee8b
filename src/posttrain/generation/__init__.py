"""Rollout: batched sampling with a KV cache that returns the sampled tokens' log-probs."""

from posttrain.generation.sampler import GenerationOutput, SamplingParams, generate, prompt_seeds

__all__ = ["GenerationOutput", "SamplingParams", "generate", "prompt_seeds"]
