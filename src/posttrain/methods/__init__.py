"""Methods built from the sampler, the rewards and the trainers (best-of-n, rejection sampling)."""

from posttrain.methods.best_of_n import Candidate, PromptCandidates, sample_and_score, select_best

__all__ = ["Candidate", "PromptCandidates", "sample_and_score", "select_best"]
