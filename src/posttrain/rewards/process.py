"""Process rewards: a process reward model (PRM) scores every reasoning step of a completion.

Seed 000 (L355-357) defines a process-based reward R_i(y_1:t) on a reasoning prefix; seed 003 puts a
token-level reward of shape (B, L) into PPO, with the KL penalty subtracted per token
(r_t^adj = r_t − β KL_t, S3 L1350, L1373-1374, L1477, L1489), and lists "outcome or process-based"
reward models for GRPO (S3 L378).

A PRM here is what `posttrain prm` trains (TRL's PRMTrainer layout): a token classifier with two
labels (0 = bad step, 1 = good step) over

    prompt tokens, then for each step: tokens(step) + tokens(step_separator)

each step tokenized on its own; step k's score is P(good) at the last token of its separator
(`stepwise_tokens`). A completion is split into steps at `step_separator` (empty steps dropped).

Sequence reward = an aggregate of the step scores p_1..p_K (`aggregate_scores`):

    min    min_k p_k        the weakest step (Math-Shepherd, Wang et al. 2024)
    prod   Π_k p_k          P(every step is correct) (Let's Verify Step by Step, Lightman et al. 2023)
    last   p_K              the final step's score (Snell et al. 2024 report it best for their PRM)
    mean   (1/K) Σ_k p_k    an average: one bad step costs little

A completion with no step gets 0. For PPO, `token_level_rewards` puts p_k (or, `mode="diff"`,
p_k − p_k−1 with p_0 = 0, which sums to p_K) at the token where step k ends.
"""

from __future__ import annotations

import bisect

from posttrain.data.values import completion_text
from posttrain.errors import ConfigError, UserError

AGGREGATES = ("min", "last", "mean", "prod")
TOKEN_REWARD_MODES = ("score", "diff")
SEPARATOR_KEY = "prm_step_separator"  # stored in a trained PRM's config.json
DEFAULT_SEPARATOR = "\n"


def step_spans(text: str, separator: str) -> list[tuple[int, int]]:
    """Character spans [start, end) of the non-blank steps of `text`; `end` includes the separator
    that follows the step, when one does."""
    if not separator:
        raise ConfigError("step_separator must be a non-empty string")
    spans, start = [], 0
    while start <= len(text):
        cut = text.find(separator, start)
        stop = len(text) if cut < 0 else cut
        if text[start:stop].strip():
            spans.append((start, stop if cut < 0 else stop + len(separator)))
        if cut < 0:
            break
        start = cut + len(separator)
    return spans


def split_steps(text: str, separator: str = DEFAULT_SEPARATOR) -> list[str]:
    """The non-blank steps of `text`, without their separators."""
    return [text[a:b].removesuffix(separator) if text[a:b].endswith(separator) else text[a:b]
            for a, b in step_spans(text, separator)]


def separator_ids(tokenizer, separator: str) -> list[int]:
    ids = tokenizer.encode(separator, add_special_tokens=False)
    if not ids:
        raise ConfigError(f"step_separator {separator!r} tokenizes to no tokens; choose a visible separator such as \"\\n\"")
    return ids


def stepwise_tokens(tokenizer, prompt, steps: list[str], separator: str, *, source=None, row_index=None) -> tuple[list[int], list[int]]:
    """(input ids, index of each step's last token): the prompt (a string, or a conversation rendered
    with the generation prompt), then each step's tokens followed by the separator's."""
    from posttrain.data.tokenize import tokenize_prompt

    ids = list(tokenize_prompt(tokenizer, prompt, source=source, row_index=row_index))
    sep = separator_ids(tokenizer, separator)
    ends = []
    for step in steps:
        ids += tokenizer.encode(step, add_special_tokens=False) + sep
        ends.append(len(ids) - 1)
    return ids, ends


def aggregate_scores(scores: list[float], how: str = "min") -> float:
    """One sequence reward from per-step scores (see the module docstring); 0 with no step."""
    if how not in AGGREGATES:
        raise ConfigError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {how!r}")
    if not scores:
        return 0.0
    if how == "min":
        return min(scores)
    if how == "last":
        return scores[-1]
    if how == "mean":
        return sum(scores) / len(scores)
    out = 1.0
    for p in scores:
        out *= p
    return out


# ------------------------------------------------------------------------------------- scoring


def load_prm(path: str, device: str = "auto", option: str = "process_reward_model"):
    """(model in eval mode, tokenizer) of a PRM directory from `posttrain prm` (any 2-label token classifier);
    errors name `option`, the config key that gave `path`."""
    from transformers import AutoModelForTokenClassification

    from posttrain.models.loading import _hub_error, load_tokenizer, resolve_model_path
    from posttrain.models.sharding import frozen_load_device

    hint = "give the final/ directory of a `posttrain prm` run"
    tokenizer = load_tokenizer(path, option=option, hint=hint)
    try:
        model = AutoModelForTokenClassification.from_pretrained(resolve_model_path(path, option, hint))
    except (OSError, ValueError) as exc:
        raise _hub_error(path, exc, option) from None
    if model.config.num_labels != 2:
        raise UserError(f"{path} is a token classifier with {model.config.num_labels} labels; a PRM has 2 (bad, good)")
    return model.to(frozen_load_device(device)).eval().requires_grad_(False), tokenizer  # frozen: sharded under torchrun


def step_scores(model, tokenizer, prompts: list, completions: list, separator: str = DEFAULT_SEPARATOR,
                batch_size: int = 8) -> list[list[float]]:
    """P(good) of every step of every completion, under a PRM (`load_prm`)."""
    import torch

    from posttrain.models.sharding import batch_starts, dummy_forward, reshard, shard_frozen

    sequences = [stepwise_tokens(tokenizer, p, split_steps(completion_text(c), separator), separator)
                 for p, c in zip(prompts, completions)]
    model = shard_frozen(model)  # under torchrun each process holds 1/N of the PRM (every process calls this)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[list[float]] = []
    with torch.no_grad():
        for i in batch_starts(model, len(sequences), batch_size):
            if i is None:
                dummy_forward(model)
                continue
            chunk = sequences[i:i + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, (ids, _) in enumerate(chunk):
                input_ids[r, :len(ids)] = torch.tensor(ids)
                attention[r, :len(ids)] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits.float()
            good = torch.softmax(logits, -1)[..., 1].cpu()
            out += [good[r, ends].tolist() for r, (_, ends) in enumerate(chunk)]
    reshard(model)
    return out


# --------------------------------------------------------------------------- token-level rewards


def step_end_tokens(tokenizer, completion_ids: list[int], text: str, separator: str = DEFAULT_SEPARATOR) -> list[int]:
    """For each step of `text` (the completion decoded from `completion_ids` without special tokens,
    possibly cut at a stop string), the index of the token that completes it: the first token whose
    decoded prefix reaches the step's end (its separator included)."""
    lengths: dict[int, int] = {}

    def decoded_length(n: int) -> int:  # characters of the first n tokens
        if n not in lengths:
            lengths[n] = len(tokenizer.decode(completion_ids[:n], skip_special_tokens=True))
        return lengths[n]

    class Prefixes:  # bisect over n = 1..len(ids) without decoding every prefix
        def __len__(self):
            return len(completion_ids)

        def __getitem__(self, k):
            return decoded_length(k + 1)

    ends = []
    for _, end in step_spans(text, separator):
        k = bisect.bisect_left(Prefixes(), end)
        ends.append(min(k, len(completion_ids) - 1))
    return ends


def token_level_rewards(scores: list[list[float]], step_ends: list[list[int]], length: int, mode: str = "score"):
    """A (B, length) float tensor with step k's reward at token step_ends[b][k], 0 elsewhere:
    `score` puts p_k there, `diff` puts p_k − p_k−1 (p_0 = 0; the rewards of a completion sum to
    p_K). Two steps ending on the same token add up."""
    import torch

    if mode not in TOKEN_REWARD_MODES:
        raise ConfigError(f"process reward mode must be one of {', '.join(TOKEN_REWARD_MODES)}, got {mode!r}")
    out = torch.zeros(len(scores), length)
    for b, (ps, ends) in enumerate(zip(scores, step_ends)):
        if len(ps) != len(ends):
            raise ValueError(f"completion {b}: {len(ps)} step scores for {len(ends)} step ends")
        previous = 0.0
        for p, t in zip(ps, ends):
            out[b, t] += p - previous if mode == "diff" else p
            previous = p
    return out


class ProcessRewardModel:
    """A loaded PRM with its step separator (default: the one it was trained with, else "\\n")."""

    def __init__(self, path: str, step_separator: str | None = None, device: str = "auto", batch_size: int = 8):
        self.model, self.tokenizer = load_prm(path, device)
        self.separator = step_separator or getattr(self.model.config, SEPARATOR_KEY, None) or DEFAULT_SEPARATOR
        self.batch_size = batch_size

    def step_scores(self, prompts: list, completions: list) -> list[list[float]]:
        return step_scores(self.model, self.tokenizer, prompts, completions, self.separator, self.batch_size)

    def token_rewards(self, prompts: list, texts: list[str], completion_ids: list[list[int]], policy_tokenizer,
                      mode: str = "score") -> list[list[float]]:
        """Per completion token of the policy's completions: the step rewards at their steps' last tokens."""
        scores = self.step_scores(prompts, texts)
        out = []
        for ps, text, ids in zip(scores, texts, completion_ids):
            ends = step_end_tokens(policy_tokenizer, ids, text, self.separator) if ids else []
            out.append(token_level_rewards([ps], [ends], len(ids), mode)[0].tolist())
        return out


def process_reward_model(path: str, step_separator: str | None = None, aggregate: str = "min", batch_size: int = 8,
                         device: str = "auto"):
    """Registry factory (`process_reward_model:path=runs/prm/final[:aggregate=min]`): the aggregate of a
    PRM's step scores per completion (`step_separator` defaults to the one the PRM was trained with)."""
    if aggregate not in AGGREGATES:
        raise ConfigError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
    prm = ProcessRewardModel(str(path), step_separator, device, batch_size)

    def process_reward(prompts, completions, **columns) -> list[float]:
        return [aggregate_scores(ps, aggregate) for ps in prm.step_scores(prompts, completions)]

    process_reward.prm = prm
    process_reward.reward_range = (0.0, 1.0)  # step scores are P(good step); min, last, mean and prod stay in [0, 1]
    return process_reward
