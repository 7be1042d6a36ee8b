"""Shaping rewards that read a completion's length or repetitiveness, not its correctness.

- `soft_overlong`: DAPO's soft overlong punishment (seed 003 L2820-2830; SEED_NOTES §1.3, §2.6).
- `repetition`: a penalty on repeated n-grams, against degenerate looping outputs.

Token counts come from the `completion_ids` the trainer passes (the tokens actually sampled);
without them, from `tokenizer=<path|embedded|hub id>` applied to the completion's text.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

from posttrain.errors import ConfigError, UserError
from posttrain.rewards.format import completion_text
from posttrain.rewards.registry import check_choice

UNITS = ("word", "token")


@lru_cache(maxsize=4)
def _tokenizer(name: str):
    from posttrain.models.loading import load_tokenizer

    return load_tokenizer(name)


def completion_token_ids(completions, completion_ids, tokenizer: str | None, reward: str) -> list[list[int]]:
    """Each completion's token ids: `completion_ids` when given, else `tokenizer` on its text."""
    if completion_ids is not None:
        if len(completion_ids) != len(completions):
            raise UserError(f"{reward}: got {len(completion_ids)} completion_ids for {len(completions)} completions")
        return [list(ids) for ids in completion_ids]
    if not tokenizer:
        raise UserError(f"{reward} counts tokens but got no completion_ids; pass {reward}:tokenizer=PATH "
                        "(a model directory, 'embedded' or a hub id) to tokenize the completions")
    tok = _tokenizer(str(tokenizer))
    return [tok(completion_text(c), add_special_tokens=False)["input_ids"] for c in completions]


def _positive_number(value, key: str, reward: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{reward}: {key} must be a number ≥ 0, got {value!r}")
    return float(value)


def soft_overlong(max_tokens: int, buffer: int | None = None, penalty: float = 1.0,
                  tokenizer: str | None = None) -> Callable:
    """Built-in reward `soft_overlong`: DAPO's soft overlong punishment, scaled by `penalty`
    (seed 003 L2830), with L_max = `max_tokens` and L_cache = `buffer` and |y| in tokens:

        R_length(y) = 0                                 if |y| ≤ L_max − L_cache
                      ((L_max − L_cache) − |y|)/L_cache if L_max − L_cache < |y| ≤ L_max
                      −1                                if |y| > L_max

    reward = penalty · R_length(y), computed by `posttrain.losses.policy.soft_overlong_penalty`.
    max_tokens has no default: set it to the generation limit (DAPO: 20,480). buffer defaults to
    max_tokens // 5 (DAPO's 4,096 of 20,480). Add it to an accuracy reward with a weight of 1.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
        raise ConfigError(f"soft_overlong: max_tokens must be a positive whole number of tokens, got {max_tokens!r}")
    if buffer is None:
        buffer = max(1, max_tokens // 5)
    if isinstance(buffer, bool) or not isinstance(buffer, int) or not 0 < buffer <= max_tokens:
        raise ConfigError(f"soft_overlong: buffer must be a whole number in (0, max_tokens={max_tokens}], got {buffer!r}")
    scale = _positive_number(penalty, "penalty", "soft_overlong")

    def soft_overlong_reward(prompts=None, completions=(), completion_ids=None, **kwargs) -> list[float]:
        from posttrain.losses.policy import soft_overlong_penalty

        ids = completion_token_ids(completions, completion_ids, tokenizer, "soft_overlong")
        lengths = [len(x) for x in ids]
        if not lengths:
            return []
        return [scale * v for v in soft_overlong_penalty(lengths, max_tokens, buffer).tolist()]

    soft_overlong_reward.__name__ = "soft_overlong"
    if scale > 0:
        soft_overlong_reward.reward_range = (-scale, 0.0)
    return soft_overlong_reward


def repeated_ngram_fraction(units: list, n: int) -> float:
    """The share of the sequence's n-grams that repeat an earlier n-gram:
    (#n-grams − #distinct n-grams) / #n-grams; 0 when it has fewer than n units."""
    grams = [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


def repetition_penalty(ngram: int = 3, penalty: float = 1.0, unit: str = "word",
                       tokenizer: str | None = None) -> Callable:
    """Built-in reward `repetition`: −penalty × the share of repeated n-grams,

        reward = −penalty · (N − D) / N

    where N is the number of n-grams (length `ngram`) of the completion and D the number of distinct
    ones, so every occurrence after an n-gram's first counts as a repeat. In [−penalty, 0]: 0 for no
    repeated n-gram (or fewer than `ngram` units), close to −penalty for a loop. Units: `word`
    (the text split on whitespace) or `token` (`completion_ids`, else `tokenizer=`).
    """
    if isinstance(ngram, bool) or not isinstance(ngram, int) or ngram < 1:
        raise ConfigError(f"repetition: ngram must be a whole number ≥ 1, got {ngram!r}")
    check_choice("repetition", "unit", unit, UNITS)
    scale = _positive_number(penalty, "penalty", "repetition")

    def repetition_reward(prompts=None, completions=(), completion_ids=None, **kwargs) -> list[float]:
        if unit == "word":
            sequences = [completion_text(c).split() for c in completions]
        else:
            sequences = completion_token_ids(completions, completion_ids, tokenizer, "repetition")
        fractions = [repeated_ngram_fraction(s, ngram) for s in sequences]
        return [-scale * f if f else 0.0 for f in fractions]

    repetition_reward.__name__ = "repetition"
    if scale > 0:
        repetition_reward.reward_range = (-scale, 0.0)
    return repetition_reward
