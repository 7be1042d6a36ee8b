"""The rollout engine: G samples per prompt from the current policy, with the sampled tokens'
log-probs kept as the old-policy log-probs. Trainers talk to a `RolloutBackend`, so a faster
engine (vLLM, Ray workers) can replace the local sampler without touching them."""

from posttrain.rollout.engine import LocalBackend, RolloutBackend, Rollouts, generate_rollouts, make_backend, sample_with
from posttrain.rollout.plain_prompts import warn_if_plain_prompts_unanswered

__all__ = ["LocalBackend", "RolloutBackend", "Rollouts", "generate_rollouts", "make_backend", "sample_with", "warn_if_plain_prompts_unanswered"]
