"""Experience: scored rollouts ready to train on, and how a micro-batch of it becomes tensors.

One `Sample` per completion. A micro-batch (`collate_samples`) is right padded [prompt, completion]
rows plus per-completion-token tensors aligned on the completion (B x T, T = longest completion):
`old_logps`, `ref_logps` (when a reference is used), `mask` (1 on completion tokens the loss
counts; all 0 for a sample masked out: no reward, or truncated under mask_truncated) and per-
sequence `advantages` (B) or per-token ones (B x T).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from posttrain.models.logprobs import TokenTargets, logits_at


@dataclass
class Sample:
    prompt_ids: list[int]
    completion_ids: list[int]
    old_logps: list[float]
    group: int
    reward: float | None = None
    advantage: float | list[float] = 0.0
    ref_logps: list[float] | None = None
    trained: bool = True  # False: kept in the batch (shapes and counts stay equal) but masked out of the loss
    truncated: bool = False
    extra: dict = field(default_factory=dict)


def collate_samples(samples: list[Sample], pad_token_id: int) -> dict:
    rows = [s.prompt_ids + s.completion_ids for s in samples]
    width, longest = max(map(len, rows)), max(max(len(s.completion_ids) for s in samples), 1)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    target_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    completion = torch.zeros((len(rows), longest), dtype=torch.bool)
    old = torch.zeros((len(rows), longest))
    for r, (s, row) in enumerate(zip(samples, rows)):
        n, p = len(s.completion_ids), len(s.prompt_ids)
        input_ids[r, :len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[r, :len(row)] = 1
        target_mask[r, p:p + n] = True
        completion[r, :n] = True
        old[r, :n] = torch.tensor(s.old_logps, dtype=torch.float32)
    trained = torch.tensor([s.trained for s in samples], dtype=torch.bool)
    batch = {
        "input_ids": input_ids, "attention_mask": attention_mask, "target_mask": target_mask,
        "completion_mask": completion, "mask": (completion & trained[:, None]).float(), "old_logps": old,
        "num_sequences": len(samples), "num_tokens": int(attention_mask.sum()),
    }
    if all(s.ref_logps is not None for s in samples):
        ref = torch.zeros((len(rows), longest))
        for r, s in enumerate(samples):
            ref[r, :len(s.ref_logps)] = torch.tensor(s.ref_logps, dtype=torch.float32)
        batch["ref_logps"] = ref
    if isinstance(samples[0].advantage, list):
        adv = torch.zeros((len(rows), longest))
        for r, s in enumerate(samples):
            adv[r, :len(s.advantage)] = torch.tensor(s.advantage, dtype=torch.float32)
        batch["advantages"] = adv
    else:
        batch["advantages"] = torch.tensor([float(s.advantage) for s in samples], dtype=torch.float32)
    return batch


def completion_logps(model, batch: dict, temperature: float = 1.0, with_entropy: bool = False):
    """Per-completion-token log-probs (B x T, 0 off the completion) of the policy at `temperature`
    (logits / T, the distribution the sampler drew from), and optionally the entropy of each token's
    distribution. The head runs only where a completion token is predicted."""
    targets = TokenTargets.from_mask(batch["input_ids"], batch["target_mask"])
    logits = logits_at(model, (targets.rows, targets.cols), input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).float()
    if temperature != 1.0:
        logits = logits / temperature
    log_probs = torch.log_softmax(logits, dim=-1)
    token_logps = log_probs.gather(-1, targets.ids[:, None])[:, 0]
    where = batch["completion_mask"]
    logps = torch.zeros(where.shape, dtype=torch.float32, device=token_logps.device).masked_scatter(where, token_logps)
    if not with_entropy:
        return logps, None
    with torch.no_grad():
        token_entropy = -(log_probs.exp() * log_probs).sum(-1)
        entropy = torch.zeros(where.shape, dtype=torch.float32, device=token_logps.device).masked_scatter(where, token_entropy)
    return logps, entropy
