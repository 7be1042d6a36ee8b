"""Experience: scored rollouts ready to train on, and how a micro-batch of it becomes tensors.

One `Sample` per completion. A micro-batch (`collate_samples`) is right padded [prompt, completion]
rows plus per-completion-token tensors aligned on the completion (B x T, T = longest completion):
`old_logps`, `ref_logps` (when a reference is used), `mask` (1 on completion tokens the loss
counts; all 0 for a sample masked out: no reward, or truncated under mask_truncated; 0 on an
episode's observation tokens, its `extra["loss_mask"]`, agents/episodes.py) and per-
sequence `advantages` (B) or per-token ones (B x T); with a critic `returns` and `old_values`, with
truncated importance sampling `tis_weights` (B x T).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from posttrain.data.collate import TokenTargets, pad_sequences
from posttrain.data.shared_prefix import pack_groups
from posttrain.losses.ppo import entropy_of_log_probs
from posttrain.models.logprobs import target_logprobs
from posttrain.models.shared_prefix_attention import shared_prefix_attention

TOKEN_EXTRAS = ("returns", "old_values", "tis_weights")  # per-token Sample.extra entries a micro-batch carries


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


def collate_samples(samples: list[Sample], pad_token_id: int, packed: bool = False) -> dict:
    """Padded rows, or (`packed`) each group's prompt once and then its completions, with no padding
    (data/shared_prefix.py, models/shared_prefix_attention.py); the per-completion-token tensors are the same either way."""
    rows = [s.prompt_ids + s.completion_ids for s in samples]
    targets = [[0] * len(s.prompt_ids) + [1] * len(s.completion_ids) for s in samples]
    input_ids, attention_mask, target_mask = pad_sequences(rows, targets, pad_token_id)
    longest = max(max(len(s.completion_ids) for s in samples), 1)
    completion = completion_tensor([[1.0] * len(s.completion_ids) for s in samples], longest).bool()
    trained = torch.tensor([s.trained for s in samples], dtype=torch.bool)
    acted = completion_tensor([s.extra.get("loss_mask", [1.0] * len(s.completion_ids)) for s in samples], longest).bool()
    batch = {
        "input_ids": input_ids, "attention_mask": attention_mask,
        "targets": TokenTargets.from_mask(input_ids, target_mask),
        "completion_mask": completion, "mask": (completion & acted & trained[:, None]).float(),
        "old_logps": completion_tensor([s.old_logps for s in samples], longest),
        "num_sequences": len(samples), "num_tokens": int(attention_mask.sum()),
    }
    if all(s.ref_logps is not None for s in samples):
        batch["ref_logps"] = completion_tensor([s.ref_logps for s in samples], longest)
    for key in TOKEN_EXTRAS:  # a critic's targets, importance weights: only once a round's experience is made
        if all(key in s.extra for s in samples):
            batch[key] = completion_tensor([s.extra[key] for s in samples], longest)
    if isinstance(samples[0].advantage, list):
        batch["advantages"] = completion_tensor([s.advantage for s in samples], longest)
    else:
        batch["advantages"] = torch.tensor([float(s.advantage) for s in samples], dtype=torch.float32)
    if packed:
        batch.update(_packed_layout(samples, rows, pad_token_id))
    return batch


def completion_tensor(values: list[list[float]], longest: int) -> torch.Tensor:
    """Per-completion-token values, one row per sample, zero after each completion: (B, longest)."""
    out = torch.zeros((len(values), longest))
    for r, row in enumerate(values):
        out[r, :len(row)] = torch.tensor(row, dtype=torch.float32)
    return out


def _packed_layout(samples: list[Sample], rows: list[list[int]], pad_token_id: int) -> dict:
    """The shared-prompt layout of a micro-batch, with targets listed sample by sample (the order
    `completion_logps` scatters them back in)."""
    by_group: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        by_group.setdefault(s.group, []).append(i)
    order = [i for members in by_group.values() for i in members]
    layout = pack_groups([[rows[i] for i in members] for members in by_group.values()], pad_token_id)
    where = {sample: k for k, sample in enumerate(order)}  # sample -> its index in the layout
    t_rows, cols, ids, owner = [], [], [], []
    for i, s in enumerate(samples):
        k, p = where[i], len(s.prompt_ids)
        for j, token in enumerate(s.completion_ids):
            t_rows.append(int(layout["rows"][k]))
            cols.append(layout["token_cols"][k][p + j - 1])  # the token before it predicts it
            ids.append(token)
            owner.append(i)
    targets = TokenTargets(*(torch.tensor(v, dtype=torch.long) for v in (t_rows, cols, ids, owner)), len(samples))
    return {"input_ids": layout["input_ids"], "attention_mask": layout["attention_mask"],
            "position_ids": layout["position_ids"], "prefix_groups": layout["prefix_groups"], "targets": targets,
            "num_tokens": layout["num_tokens"]}


def completion_logps(model, batch: dict, temperature: float = 1.0, with_entropy: bool = False):
    """Per-completion-token log-probs (B x T, 0 off the completion) of the policy at `temperature`
    (logits / T, the distribution the sampler drew from), and optionally the entropy of each token's
    distribution (else None)."""
    out = policy_outputs(model, batch, temperature, with_entropy)
    return out.logps, out.entropy


@dataclass
class PolicyOutputs:
    logps: torch.Tensor  # (B, T) log π_θ of the completion tokens, with gradient
    entropy: torch.Tensor | None  # (B, T) the entropy of each token's distribution
    values: torch.Tensor | None  # (B, T) the critic's V(s_t)


def policy_outputs(model, batch: dict, temperature: float = 1.0, with_entropy: bool = False, critic=None,
                   entropy_grad: bool = False) -> PolicyOutputs:
    """Log-probs, entropy and (with a `critic`, online.critic.Critic) values at the completion tokens
    from one forward of the policy; the output head runs only where a completion token is predicted,
    and a value head on the shared trunk reads those same hidden states. Padded or packed layout alike.
    The entropy carries its gradient only with `entropy_grad` (an entropy bonus trains on it; a
    logged entropy need not keep the N x vocab graph)."""
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids", "prefix_groups") if k in batch}
    captured = {}
    handle = None
    if critic is not None:  # the hidden states the head reads, for a value head on the same trunk
        head = model.get_output_embeddings()
        handle = head.register_forward_hook(lambda _module, args, _output: captured.update(hidden=args[0]))
    try:
        with shared_prefix_attention(model) if "prefix_groups" in batch else contextlib.nullcontext():
            token_logps, log_probs = target_logprobs(model, batch["targets"], temperature, **inputs)
    finally:
        if handle is not None:
            handle.remove()
    where = batch["completion_mask"]
    scatter = lambda v: torch.zeros(where.shape, dtype=torch.float32, device=v.device).masked_scatter(where, v)  # noqa: E731
    values = scatter(critic.values(model, batch, captured["hidden"])) if critic is not None else None
    entropy = None
    if with_entropy:
        with contextlib.nullcontext() if entropy_grad else torch.no_grad():
            entropy = scatter(entropy_of_log_probs(log_probs))
    return PolicyOutputs(scatter(token_logps), entropy, values)
