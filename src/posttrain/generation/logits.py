"""Turn next-token logits into a sampled token and its log-probability.

The sampling distribution is the model's softmax after temperature, then top-k, then top-p (the
order Hugging Face `generate` and vLLM use), renormalised over the kept tokens. `sample_next_token`
returns a sampled token's log-prob under exactly that distribution; `policy_logprob` gives it under
the softmax at temperature before the truncation, the policy a trainer's forward pass computes (and
the one RL's importance ratios and KL terms must use on both sides; see `rollout/engine.py`).

CPU notes (measured on a 16 x 32000 batch): `torch.multinomial` draws one exponential per vocab
entry (~10 ms), a full-vocab float64 cumsum costs ~2.5 ms and a full-vocab `torch.sort` ~20-40 ms.
So we sample by inverting the CDF in two levels (one uniform per row; block masses, then a
cumsum inside one block), and look for the top-p nucleus among the `torch.topk` candidates first,
sorting the whole vocab (with numpy, values only) only for rows whose nucleus is bigger.
"""

from __future__ import annotations

import numpy
import torch

_BLOCK = 256  # tokens per block of the two-level inverse-CDF sampler
_TOP_P_CANDIDATES = 256  # on CPU, top-p first looks for the nucleus among this many tokens


def sample_next_token(
    logits: torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator | None = None,
    uniform: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row of `logits` [B, V]; return (tokens [B] long, logprobs [B] float32).

    `uniform` [B] (in [0, 1)) gives each row's draw, for a caller that keeps its own random streams
    per row; else one is drawn per row from `generator`.

    `temperature == 0` is greedy decoding: the argmax, with its log-prob under the unmodified model
    distribution (the greedy "distribution" is a point mass, whose log-prob 0 says nothing).
    """
    logits = logits.float()
    if temperature == 0.0:
        tokens = logits.argmax(dim=-1)
        return tokens, policy_logprob(logits, tokens, 0.0)
    scores = logits if temperature == 1.0 else logits / temperature
    vocab = scores.shape[-1]
    index = None  # maps a column of `scores` back to a vocab id when top-k shrank the vocab
    if 0 < top_k < vocab:
        scores, index = torch.topk(scores, top_k, dim=-1)  # sorted, largest first
        if top_p < 1.0:
            scores = _top_p_sorted(scores, top_p)
    elif top_p < 1.0:
        scores = filter_top_p(scores, top_p)
    probs = torch.softmax(scores, dim=-1)
    choice = _inverse_cdf_sample(probs, generator, uniform)
    logprobs = probs.gather(-1, choice[:, None])[:, 0].log()
    tokens = choice if index is None else index.gather(-1, choice[:, None])[:, 0]
    return tokens, logprobs


def policy_logprob(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax(logits / temperature)[token] per row [B]: the token's log-prob under the policy
    before top-k / top-p truncation (temperature 0: under the unmodified model, as for greedy)."""
    scores = logits.float()
    if temperature not in (0.0, 1.0):
        scores = scores / temperature
    return scores.gather(-1, tokens[:, None])[:, 0] - torch.logsumexp(scores, dim=-1)


def _inverse_cdf_sample(probs: torch.Tensor, generator: torch.Generator | None, uniform: torch.Tensor | None = None) -> torch.Tensor:
    """One categorical draw per row of `probs` [B, V] by inverting its CDF with one uniform per row.

    Two levels, so no full-vocab float64 cumsum is needed: pick a block of `_BLOCK` tokens by the
    blocks' masses, then a token inside the block. Sums are in float64, so every token is drawn
    with its float32 probability up to float64 rounding, however small it is.
    """
    batch, vocab = probs.shape
    wide = torch.float32 if probs.device.type == "mps" else torch.float64  # MPS has no float64
    if uniform is not None:
        u = uniform.to(device=probs.device, dtype=wide).view(batch, 1)
    else:
        u = torch.rand((batch, 1), generator=generator, dtype=wide, device=probs.device)
    if vocab <= 2 * _BLOCK:
        cdf = torch.cumsum(probs, dim=-1, dtype=wide)
        return _search(cdf, u * cdf[:, -1:])
    blocks = -(-vocab // _BLOCK)
    padded = torch.nn.functional.pad(probs, (0, blocks * _BLOCK - vocab)) if vocab % _BLOCK else probs
    padded = padded.view(batch, blocks, _BLOCK)
    block_mass = padded.sum(-1).to(wide)  # float32 block sums: relative error ~1e-7 per block
    block_cdf = torch.cumsum(block_mass, dim=-1)
    target = u * block_cdf[:, -1:]
    block = _search(block_cdf, target)[:, None]
    rest = target - (block_cdf.gather(-1, block) - block_mass.gather(-1, block))  # mass into the chosen block
    inside = padded.gather(1, block[:, :, None].expand(batch, 1, _BLOCK))[:, 0]
    return block[:, 0] * _BLOCK + _search(torch.cumsum(inside, dim=-1, dtype=wide), rest)


def _search(cdf: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per row, the first index whose cumulative mass exceeds `target` [B, 1].

    The target is clamped into [0, total) so rounding can never pick a zero-mass token.
    """
    total = cdf[:, -1:]
    target = torch.minimum(target.clamp(min=0.0), total * (1 - 2**-40))
    return torch.searchsorted(cdf, target, right=True)[:, 0]


def _top_p_sorted(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Top-p on scores already sorted largest first: keep a token while the mass before it < top_p."""
    probs = torch.softmax(scores, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    return scores.masked_fill(mass_before >= top_p, float("-inf"))


def filter_top_p(scores: torch.Tensor, top_p: float, candidates: int | None = None) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability mass reaches `top_p`.

    Tokens tied with the least likely kept one are kept too. On GPU this sorts the vocab. On CPU a
    full sort is slow (20-40 ms for 16 x 32000), so we first look at the `candidates` most likely
    tokens (`torch.topk`) and sort the full vocab only for rows whose nucleus is larger than that.
    """
    probs = torch.softmax(scores, dim=-1)
    vocab = probs.shape[-1]
    if candidates is None:
        candidates = vocab if scores.is_cuda else min(vocab, _TOP_P_CANDIDATES)
    if candidates >= vocab:
        return scores.masked_fill(probs < _nucleus_threshold(_sorted_descending(probs), top_p)[0], float("-inf"))
    threshold = torch.zeros_like(probs[:, :1])
    found = torch.zeros_like(probs[:, 0], dtype=torch.bool)
    # `candidates` tokens can only hold top_p of the mass if the largest is at least top_p / candidates
    rows = (probs.amax(-1) * candidates >= top_p).nonzero()[:, 0]
    if len(rows):
        threshold[rows], found[rows] = _nucleus_threshold(torch.topk(probs[rows], candidates, dim=-1).values, top_p)
    rows = (~found).nonzero()[:, 0]
    if len(rows):
        threshold[rows] = _nucleus_threshold(_sorted_descending(probs[rows]), top_p)[0]
    return scores.masked_fill(probs < threshold, float("-inf"))


def _sorted_descending(probs: torch.Tensor) -> torch.Tensor:
    """Each row's values, largest first. On CPU numpy's values-only sort is ~4x faster than torch's."""
    if probs.device.type == "cpu":
        return torch.from_numpy(numpy.ascontiguousarray(numpy.sort(probs.numpy(), axis=-1)[:, ::-1]))
    return probs.sort(dim=-1, descending=True).values


def _nucleus_threshold(top: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """From the largest probabilities of each row, sorted: the smallest kept one [B, 1], and
    whether the nucleus ends inside these (else the threshold is not valid) [B]."""
    cumulative = torch.cumsum(top, dim=-1)
    kept = (cumulative - top) < top_p
    last_kept = kept.sum(-1, keepdim=True) - 1
    return top.gather(-1, last_kept), cumulative[:, -1] >= top_p
