"""Log-probabilities of target tokens under a causal LM, computed without a batch x length x vocab tensor.

`logits_at` runs the output head only on the positions that predict a target token (a forward
pre-hook gathers those hidden states), so for preference data, where the prompt is often most of
the sequence, the head and the log-softmax cost only the completion tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from posttrain.data.collate import TokenTargets


def logits_at(model, select, **inputs) -> torch.Tensor:
    """The model's logits at the positions `select` picks, (N, vocab): a batch x length bool mask, or
    a (rows, cols) pair of index tensors (a position may be picked more than once).

    The output head runs only on the selected hidden states, so no batch x length x vocab tensor is
    ever made. Whatever the model does after its head (e.g. logit soft-capping) still applies.
    """
    head = model.get_output_embeddings()
    handle = head.register_forward_pre_hook(lambda _module, args: (args[0][select],) + tuple(args[1:]))
    try:
        return model(**inputs, use_cache=False).logits
    finally:
        handle.remove()


@dataclass
class SequenceLogprobs:
    """Per-sequence sums of target-token log-probs, with the per-token values they came from."""

    sums: torch.Tensor  # (batch,) float32: sum_t log p(y_t | x, y_<t) over the target tokens
    counts: torch.Tensor  # (batch,) float32: number of target tokens (|y|)
    token_logps: torch.Tensor  # (N,) float32, one per target token, row-major
    rows: torch.Tensor  # (N,) long: the sequence of each entry of token_logps

    @property
    def means(self) -> torch.Tensor:
        """Length-normalised log-probs (1/|y|) sum_t log p: SimPO's and ORPO's sequence score."""
        return self.sums / self.counts.clamp(min=1)


def target_logprobs(model, targets: TokenTargets, temperature: float = 1.0, **inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs of the target tokens (N,), the whole float32 log-softmax of logits / temperature at
    their positions (N, vocab), e.g. for the entropy). The one computation behind both layouts:
    per-sequence sums (`sequence_logprobs`: DPO, KTO, the reference) and per completion token
    (online.experience.completion_logps, PPO's actor: GRPO, PPO). The head runs only where a target is
    predicted; the log-softmax runs in float32."""
    logits = logits_at(model, (targets.rows, targets.cols), **inputs).float()
    if temperature != 1.0:
        logits = logits / temperature
    log_probs = torch.log_softmax(logits, dim=-1)
    return log_probs.gather(-1, targets.ids[:, None])[:, 0], log_probs


def sequence_logprobs(model, input_ids: torch.Tensor, target_mask: torch.Tensor | None = None, *,
                      targets: TokenTargets | None = None, **inputs) -> SequenceLogprobs:
    """Summed log-probs of each sequence's target tokens. The targets are the tokens where
    `target_mask` (batch x length) is 1, one sequence per row; or, for packed layouts, `targets`.
    Extra `inputs` (attention_mask, position_ids, prefix_groups, ...) go to the model."""
    t = targets if targets is not None else TokenTargets.from_mask(input_ids, target_mask)
    token_logps, _ = target_logprobs(model, t, input_ids=input_ids, **inputs)
    zeros = torch.zeros(t.num_sequences, dtype=torch.float32, device=input_ids.device)
    sums = zeros.index_add(0, t.sequence, token_logps)
    counts = zeros.index_add(0, t.sequence, torch.ones_like(token_logps))
    return SequenceLogprobs(sums, counts, token_logps, t.sequence)
