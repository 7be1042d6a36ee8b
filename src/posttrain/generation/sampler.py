"""Batched sampling from a Hugging Face causal LM with a KV cache, returning sampled-token log-probs.

    out = generate(model, tokenizer, prompts=[[1, 5, 9], [1, 7]], params=SamplingParams(n=4, seed=0))
    out.token_ids[0], out.logprobs[0], out.texts[0], out.finish_reasons[0]

How it works: prompts are left-padded into one batch and prefilled once (only the last position's
logits are computed); for n > 1 the prefilled cache is repeated n times rather than prefilling n
copies. Each decode step feeds one token per live row with explicit position ids (a left-padded
row's positions start at 0 on its first real token) through `lean_decode.LeanDecoder` for
Llama / Qwen2-style models and the model's own forward otherwise, samples with `logits.sample_next_token`, and
records the token and its log-prob into preallocated buffers. A row finishes at an eos id, at a
stop string (see `stopping` for the text convention) or at `max_new_tokens`; when a quarter of the
batch has finished, the finished rows are dropped from the batch and the KV cache. The loop ends
when every row has finished.

Randomness is per prompt: prompt i's n samples draw their uniforms (one per sample and step, made
before decoding) from a generator of its own, seeded by `seeds[i]` (or by `seed` and i). So a
prompt's completions do not depend on its batch-mates, on the order rows finish in, or on the
device, and N processes that each sample their share of the prompts draw what one process draws.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field

import torch

from posttrain.errors import ConfigError
from posttrain.generation.kv_cache import make_cache
from posttrain.generation.lean_decode import LeanDecoder
from posttrain.generation.logits import policy_logprob, sample_next_token
from posttrain.generation.stopping import StopStringChecker, cut_at_stop, eos_token_ids

_LENGTH, _EOS, _STOP = 0, 1, 2
_REASONS = {_LENGTH: "length", _EOS: "eos", _STOP: "stop"}
_COMPACT_FRACTION = 0.25  # drop finished rows once this fraction of the batch has finished


@dataclass
class SamplingParams:
    """How to sample. `temperature=0` is greedy; top-k then top-p apply after temperature."""

    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    n: int = 1  # samples per prompt
    stop: list[str] = field(default_factory=list)  # text is cut before the first stop string
    seed: int | None = None  # None draws a seed from torch's global generator
    # one per prompt (instead of `seed`): prompt i's samples depend on seeds[i] alone, whatever its batch
    seeds: list[int] | None = None

    def validate(self) -> None:
        problems = []
        if self.max_new_tokens < 0:
            problems.append(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if self.temperature < 0:
            problems.append(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.n < 1:
            problems.append(f"n must be >= 1, got {self.n}")
        if self.seed is not None and self.seeds is not None:
            problems.append("give seed or seeds (one per prompt), not both")
        if isinstance(self.stop, str):
            problems.append(f"stop must be a list of strings, got the string {self.stop!r}: write [{self.stop!r}]")
        if problems:
            raise ConfigError("sampling: " + "; ".join(problems))


@dataclass
class GenerationOutput:
    """One entry per (prompt, sample), prompt-major: prompt 0's n samples, then prompt 1's, ..."""

    prompt_index: list[int]
    token_ids: list[list[int]]  # sampled tokens, including a sampled eos, nothing after it
    texts: list[str]  # decoded without special tokens, cut before the first stop string
    logprobs: list[list[float]]  # per sampled token, under the sampling distribution
    finish_reasons: list[str]  # "eos" | "stop" | "length"
    # per sampled token, under softmax(logits / temperature) before top-k / top-p: what a trainer's
    # forward computes (the same list as `logprobs` when nothing is truncated)
    policy_logprobs: list[list[float]]

    @property
    def truncated(self) -> list[bool]:
        return [reason == "length" for reason in self.finish_reasons]

    def __len__(self) -> int:
        return len(self.token_ids)


def generate(
    model, tokenizer, prompts: list[list[int]], params: SamplingParams, *, ignore_eos: bool = False
) -> GenerationOutput:
    """Sample `params.n` completions for each prompt (token ids, already chat-templated).

    `logprobs` are under the sampling distribution (temperature, top-k, top-p applied and
    renormalised); `policy_logprobs` under the softmax at temperature before top-k / top-p; with
    `temperature=0` (greedy) both are under the unmodified model. The model's
    train/eval mode is restored afterwards. `ignore_eos` never stops at eos (for benchmarks).
    """
    params.validate()
    prompts = [list(map(int, prompt)) for prompt in prompts]
    if any(len(prompt) == 0 for prompt in prompts):
        raise ConfigError("sampling: every prompt needs at least one token (prepend a bos token)")
    if params.seeds is not None and len(params.seeds) != len(prompts):
        raise ConfigError(f"sampling: {len(params.seeds)} seeds for {len(prompts)} prompts; give one seed per prompt")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return _generate(model, tokenizer, prompts, params, ignore_eos)
    finally:
        model.train(was_training)


def _generate(model, tokenizer, prompts, params, ignore_eos) -> GenerationOutput:
    device = next(model.parameters()).device
    n, max_new = params.n, params.max_new_tokens
    num_rows = len(prompts) * n
    prompt_index = [i for i in range(len(prompts)) for _ in range(n)]
    if num_rows == 0 or max_new == 0:
        return GenerationOutput(prompt_index, [[] for _ in prompt_index], ["" for _ in prompt_index], [[] for _ in prompt_index],
                                ["length" for _ in prompt_index], [[] for _ in prompt_index])
    eos_ids = [] if ignore_eos else eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos_token_ids(model, tokenizer) or [0])[0]
    stops = StopStringChecker(tokenizer, list(params.stop))
    uniforms = _uniforms(params, len(prompts), device) if params.temperature > 0 else None

    # Left-pad the prompts; `mask` covers the prompt and every position we may generate.
    width = max(len(prompt) for prompt in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.ones((len(prompts), width + max_new), dtype=torch.bool)
    for i, prompt in enumerate(prompts):
        input_ids[i, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        mask[i, : width - len(prompt)] = False
    input_ids, mask = input_ids.to(device), mask.to(device)
    positions = (mask[:, :width].long().cumsum(-1) - 1).clamp_(min=0)

    cache, plain = make_cache(model, width + max_new)
    own_masks = plain and getattr(model.config, "_attn_implementation", None) == "sdpa"
    lean = LeanDecoder(model, rows=num_rows) if own_masks and LeanDecoder.supports(model) else None
    step_options = {_cache_keyword(model): cache, "use_cache": True, **_logits_to_keep(model)}
    logits = model(input_ids=input_ids, attention_mask=mask[:, :width], position_ids=positions,
                   **step_options).logits[:, -1]
    next_position = positions[:, -1:] + 1
    if n > 1:
        cache.batch_repeat_interleave(n)
        logits, mask, next_position = (t.repeat_interleave(n, dim=0) for t in (logits, mask, next_position))

    out_tokens = torch.full((num_rows, max_new), pad_id, dtype=torch.long, device=device)
    out_logprobs = torch.zeros((num_rows, max_new), dtype=torch.float32, device=device)
    truncating = params.temperature > 0 and (params.top_k > 0 or params.top_p < 1.0)
    out_policy = torch.zeros_like(out_logprobs) if truncating else out_logprobs
    lengths = torch.full((num_rows,), max_new, dtype=torch.long, device=device)
    reasons = torch.full((num_rows,), _LENGTH, dtype=torch.long, device=device)
    row_of = torch.arange(num_rows, device=device)  # output row of each batch row
    done = torch.zeros(num_rows, dtype=torch.bool, device=device)
    eos = torch.tensor(eos_ids, dtype=torch.long, device=device)
    histories: list[list[int]] = [[] for _ in range(num_rows)]  # host-side tokens, for stop strings
    check_every = 1 if (device.type == "cpu" or stops) else 8  # host syncs are cheap on CPU

    for step in range(max_new):
        uniform = None if uniforms is None else uniforms[row_of, step]
        tokens, logprobs = sample_next_token(logits, params.temperature, params.top_k, params.top_p, uniform=uniform)
        out_tokens[row_of, step] = tokens
        out_logprobs[row_of, step] = logprobs
        if truncating:
            out_policy[row_of, step] = policy_logprob(logits, tokens, params.temperature)
        live = ~done
        at_eos = torch.isin(tokens, eos) & live if len(eos_ids) else torch.zeros_like(done)
        at_stop = _stop_hits(stops, histories, row_of, tokens, live & ~at_eos) if stops else torch.zeros_like(done)
        finished = at_eos | at_stop
        lengths[row_of] = torch.where(finished, step + 1, lengths[row_of])
        reasons[row_of] = torch.where(at_stop, _STOP, torch.where(at_eos, _EOS, reasons[row_of]))
        done |= finished
        if step == max_new - 1:
            break
        if step % check_every == check_every - 1:
            live_count = int(done.numel() - done.sum())
            if live_count == 0:
                break
            if done.numel() - live_count >= max(1, _COMPACT_FRACTION * done.numel()):
                keep = (~done).nonzero()[:, 0]
                cache.batch_select_indices(keep)
                row_of, mask, next_position, tokens, done = (
                    t.index_select(0, keep) for t in (row_of, mask, next_position, tokens, done))
        kv_length = width + step + 1
        attention_mask = mask[:, None, None, :kv_length] if own_masks else mask[:, :kv_length]
        if lean is not None:
            logits = lean(tokens, next_position, attention_mask, cache)
        else:
            logits = model(input_ids=tokens[:, None], attention_mask=attention_mask, position_ids=next_position,
                           **step_options).logits[:, -1]
        next_position = next_position + 1

    return _collect(tokenizer, params, prompt_index, out_tokens, out_logprobs, out_policy, lengths, reasons)


def prompt_seeds(seed: int, keys) -> list[int]:
    """One seed per key (e.g. a prompt's index in the data), mixed with `seed` (splitmix64), so
    nearby seeds and keys give unrelated streams."""
    return [_splitmix64((_splitmix64(int(seed)) + int(key)) & _MASK64) for key in keys]


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _uniforms(params: SamplingParams, num_prompts: int, device) -> torch.Tensor:
    """[prompts x n, max_new_tokens]: row i*n + j (prompt i's sample j) uses column t at step t. Drawn
    on the CPU in float64, prompt by prompt from its own generator (same numbers on every device)."""
    seeds = params.seeds
    if seeds is None:
        base = params.seed if params.seed is not None else int(torch.randint(2**62, (1,)).item())
        seeds = prompt_seeds(base, range(num_prompts))
    shape = (params.n, params.max_new_tokens)
    table = torch.cat([torch.rand(shape, generator=torch.Generator().manual_seed(int(s) & _MASK64), dtype=torch.float64)
                       for s in seeds])
    return table.to(device=device, dtype=torch.float32 if device.type == "mps" else torch.float64)  # MPS has no float64


def _stop_hits(stops, histories, row_of, tokens, check) -> torch.Tensor:
    """Append this step's tokens to the live rows' histories; which rows now end in a stop string."""
    rows, new_tokens, checked = row_of.tolist(), tokens.tolist(), check.tolist()
    live = [i for i, c in enumerate(checked) if c]
    for i in live:
        histories[rows[i]].append(new_tokens[i])
    hit = [False] * len(rows)
    for i, found in zip(live, stops.hits([histories[rows[i]] for i in live])):
        hit[i] = found
    return torch.tensor(hit, dtype=torch.bool, device=tokens.device)


def _collect(tokenizer, params, prompt_index, out_tokens, out_logprobs, out_policy, lengths, reasons) -> GenerationOutput:
    lengths_list, reason_list = lengths.tolist(), reasons.tolist()
    token_ids = [row[:length] for row, length in zip(out_tokens.tolist(), lengths_list)]
    logprobs = [row[:length] for row, length in zip(out_logprobs.tolist(), lengths_list)]
    policy = logprobs if out_policy is out_logprobs else [row[:n] for row, n in zip(out_policy.tolist(), lengths_list)]
    texts = tokenizer.batch_decode(token_ids, skip_special_tokens=True)
    if params.stop:
        texts = [cut_at_stop(text, params.stop)[0] for text in texts]
    reasons_text = [_REASONS[r] for r in reason_list]
    return GenerationOutput(prompt_index, token_ids, texts, logprobs, reasons_text, policy)


@functools.cache
def _forward_parameters(model_class: type) -> frozenset[str]:
    return frozenset(inspect.signature(model_class.forward).parameters)


def _parameters(model) -> frozenset[str]:
    """The keyword names `model.forward` takes, with a PEFT wrapper's base model's (it forwards **kwargs)."""
    names = _forward_parameters(type(model))
    if hasattr(model, "get_base_model"):
        names |= _forward_parameters(type(model.get_base_model()))
    return names


def _cache_keyword(model) -> str:
    """What `forward` calls the KV cache: `cache` in transformers 5.x (where `past_key_values` is a deprecated
    alias that warns on every call), `past_key_values` before it and in models that still name it so."""
    return "cache" if "cache" in _parameters(model) else "past_key_values"


def _logits_to_keep(model) -> dict:
    """`logits_to_keep=1` (the prefill computes the last position's logits only) where `forward` takes it."""
    return {"logits_to_keep": 1} if "logits_to_keep" in _parameters(model) else {}
