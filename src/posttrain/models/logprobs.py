"""Log-probabilities of target tokens under a causal LM, computed without a batch x length x vocab tensor.

`logits_at` runs the output head only on the positions that predict a target token (a forward
pre-hook gathers those hidden states), so for preference data, where the prompt is often most of
the sequence, the head and the log-softmax cost only the completion tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def logits_at(model, select: torch.Tensor, **inputs) -> torch.Tensor:
    """The model's logits at the positions where `select` (batch x length, bool) is true: (N, vocab).

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
    rows: torch.Tensor  # (N,) long: the batch row of each entry of token_logps

    @property
    def means(self) -> torch.Tensor:
        """Length-normalised log-probs (1/|y|) sum_t log p: SimPO's and ORPO's sequence score."""
        return self.sums / self.counts.clamp(min=1)


def sequence_logprobs(model, input_ids: torch.Tensor, target_mask: torch.Tensor, *, sequence_index: torch.Tensor | None = None,
                      num_sequences: int | None = None, **inputs) -> SequenceLogprobs:
    """Log-probs of the tokens where `target_mask` (batch x length) is 1, each predicted from the
    token before it, summed per row, or per sequence of a packed batch (`sequence_index`: which
    sequence each position belongs to; `num_sequences` of them). Extra `inputs` (attention_mask,
    position_ids, packed_segments, ...) go to the model. The log-softmax runs in float32."""
    predicts = torch.zeros_like(target_mask, dtype=torch.bool)
    predicts[:, :-1] = target_mask[:, 1:].bool()  # position t predicts token t + 1 (of the same sequence:
    targets = input_ids[:, 1:][target_mask[:, 1:].bool()]  # a sequence's first token is never a target)
    logits = logits_at(model, predicts, input_ids=input_ids, **inputs).float()
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None])[:, 0]
    if sequence_index is None:
        rows, size = predicts.nonzero()[:, 0], input_ids.shape[0]
    else:
        rows, size = sequence_index[predicts], num_sequences
    sums = torch.zeros(size, dtype=torch.float32, device=input_ids.device).index_add(0, rows, token_logps)
    counts = torch.zeros(size, dtype=torch.float32, device=input_ids.device).index_add(0, rows, torch.ones_like(token_logps))
    return SequenceLogprobs(sums, counts, token_logps, rows)
